// SPDX-License-Identifier: BSD-2-Clause
//
// regcache-limits, the JSON output: one object for tools, documented in
// docs/operators.md. Limits that are unlimited are the string "unlimited";
// facts that could not be learned are null; the warnings are Warnings()'s.

#include "report.h"

namespace regcache_limits {

std::string RenderJson(const Report& r) {
  JsonWriter j;
  // key: number, or null when unknown
  auto opt_number = [&j](const char* key, const std::optional<uint64_t>& v) {
    j.Key(key);
    if (v)
      j.Number(*v);
    else
      j.Null();
  };
  // key: string, or null when empty
  auto opt_string = [&j](const char* key, const std::string& s) {
    j.Key(key);
    if (s.empty())
      j.Null();
    else
      j.String(s);
  };
  // key: bytes, or "unlimited"
  auto limit = [&j](const char* key, bool unlimited, uint64_t bytes) {
    j.Key(key);
    if (unlimited)
      j.String("unlimited");
    else
      j.Number(bytes);
  };
  j.BeginObject();
  j.Key("tool").String("regcache-limits");
  j.Key("regcache_version").String(r.version);
  j.Key("host").String(r.hostname);
  j.Key("user").String(r.user);
  j.Key("uid").Number(uint64_t(r.uid));
  j.Key("pid").Number(int64_t(r.pid));

  const MemlockInfo& m = r.memlock;
  j.Key("memlock").BeginObject();
  if (m.ok) {
    limit("soft_bytes", m.soft_unlimited, m.soft_bytes);
    limit("hard_bytes", m.hard_unlimited, m.hard_bytes);
  } else {
    j.Key("soft_bytes").Null();
    j.Key("hard_bytes").Null();
  }
  j.Key("cap_ipc_lock");
  if (m.cap_ipc_lock)
    j.Bool(*m.cap_ipc_lock);
  else
    j.Null();
  j.Key("user_namespace").Bool(m.in_user_namespace);
  opt_string("error", m.error);
  j.EndObject();

  j.Key("self").BeginObject();
  opt_number("vm_pin_bytes", r.self.vm_pin_bytes);
  opt_number("vm_lck_bytes", r.self.vm_lck_bytes);
  j.EndObject();

  j.Key("processes");
  if (!r.processes) {
    j.Null();
  } else {
    const ProcessScan& p = *r.processes;
    j.BeginObject();
    j.Key("scanned").Number(uint64_t(p.scanned));
    j.Key("unreadable").Number(uint64_t(p.unreadable));
    j.Key("total_vm_pin_bytes").Number(p.total_pin_bytes);
    j.Key("total_vm_lck_bytes").Number(p.total_lck_bytes);
    j.Key("pinning").Number(uint64_t(p.pinning));
    j.Key("locking").Number(uint64_t(p.locking));
    j.Key("top").BeginArray();
    for (const ProcEntry& e : p.top) {
      j.BeginObject();
      j.Key("pid").Number(int64_t(e.pid));
      j.Key("name").String(e.name);
      j.Key("user").String(e.user);
      j.Key("vm_pin_bytes").Number(e.vm_pin_bytes);
      j.Key("vm_lck_bytes").Number(e.vm_lck_bytes);
      j.EndObject();
    }
    j.EndArray();
    j.EndObject();
  }

  j.Key("node").BeginObject();
  opt_number("mem_total_bytes", r.node.mem_total_bytes);
  j.Key("numa_nodes");
  if (r.node.numa_nodes < 0)
    j.Null();
  else
    j.Number(int64_t(r.node.numa_nodes));
  j.Key("cpus_online").Number(int64_t(r.node.cpus_online));
  j.Key("cpus_allowed").Number(int64_t(r.node.cpus_allowed));
  j.EndObject();

  const ModuleInfo& mod = r.module;
  j.Key("module").BeginObject();
  j.Key("loaded");
  if (mod.proc_modules_read)
    j.Bool(mod.loaded.has_value());
  else
    j.Null();
  opt_string("loaded_error", mod.proc_modules_error);
  opt_string("state", mod.loaded ? mod.loaded->state : "");
  j.Key("refcount");
  if (mod.loaded)
    j.Number(mod.loaded->refcount);
  else
    j.Null();
  opt_string("param_max_ranges", mod.max_ranges_param);
  opt_string("param_ring_entries", mod.ring_entries_param);
  j.Key("device").BeginObject();
  j.Key("path").String(REGCACHE_KMOD_DEVICE_PATH);
  j.Key("exists").Bool(mod.device_exists);
  opt_string("error", mod.device_error);
  if (mod.device_exists) {
    j.Key("char_device").Bool(mod.device_is_char);
    j.Key("mode").String(FormatMode(mod.device_mode));
    j.Key("owner").String(mod.device_owner);
    j.Key("group").String(mod.device_group);
    j.Key("in_group").Bool(mod.device_group_is_ours);
  }
  j.EndObject();
  j.Key("opened").Bool(mod.opened);
  j.Key("abi_version");
  if (mod.opened && mod.abi_version)
    j.Number(uint64_t(mod.abi_version));
  else
    j.Null();
  j.Key("counters");
  if (!mod.stats_read) {
    j.Null();
  } else {
    const regcache_kmod_stats& s = mod.stats;
    j.BeginObject();
    j.Key("ranges_now").Number(uint64_t(s.ranges_now));
    j.Key("max_ranges").Number(uint64_t(s.max_ranges));
    j.Key("monitors").Number(uint64_t(s.monitors));
    j.Key("unmonitors").Number(uint64_t(s.unmonitors));
    j.Key("notifier_calls").Number(uint64_t(s.notifier_calls));
    j.Key("ignored_calls").Number(uint64_t(s.ignored_calls));
    j.Key("invalidated").BeginObject();
    for (int i = 1; i <= REGCACHE_KMOD_REASON_EXCLUSIVE; ++i)
      j.Key(KmodReasonName(i)).Number(uint64_t(s.invalidated[i]));
    j.EndObject();
    j.Key("late").Number(uint64_t(s.late));
    j.Key("events").Number(uint64_t(s.events));
    j.Key("ring_overflows").Number(uint64_t(s.ring_overflows));
    j.Key("inval_seq").Number(uint64_t(s.inval_seq));
    j.EndObject();
  }
  opt_string(
      "counters_error",
      mod.stats_read ? "" : (mod.opened ? mod.stats_error : mod.open_error));
  j.EndObject();

  const LibraryChoice& lib = r.library;
  j.Key("library").BeginObject();
  opt_string("env_monitor", lib.monitor_env);
  opt_string("env_mode", lib.mode_env);
  opt_string("monitor", lib.created ? lib.monitor : "");
  opt_string("monitor_note", lib.monitor_note);
  j.Key("mode").String(lib.mode);
  opt_string("mode_reason", lib.mode_reason);
  j.Key("mode_policy").Bool(lib.mode_policy);
  j.Key("ibverbs").BeginArray();
  for (const DeviceChoice& d : lib.ibverbs) {
    j.BeginObject();
    j.Key("device").String(d.device);
    j.Key("created").Bool(d.created);
    opt_string("monitor", d.monitor);
    opt_string("mode", d.mode);
    opt_string("mode_reason", d.mode_reason);
    opt_string("error", d.error);
    j.EndObject();
  }
  j.EndArray();
  opt_string("error", lib.error);
  opt_string("config_error", lib.config_error);
  j.EndObject();

  j.Key("rdma_devices");
  if (!r.rdma.listed) {
    j.Null();
  } else {
    j.BeginArray();
    for (const std::string& d : r.rdma.devices) j.String(d);
    j.EndArray();
  }
  opt_string("rdma_error", r.rdma.error);

  j.Key("recommendation");
  if (!r.recommendation) {
    j.Null();
  } else {
    const Recommendation& rec = *r.recommendation;
    j.BeginObject();
    j.Key("ranks_per_node").Number(uint64_t(rec.ranks));
    j.Key("ranks_from_cpus").Bool(r.ranks_from_cpus);
    j.Key("reserve_percent").String(FormatPercent(rec.reserve_basis_points));
    j.Key("mem_total_bytes").Number(rec.mem_total_bytes);
    j.Key("usable_bytes").Number(rec.usable_bytes);
    j.Key("share_bytes").Number(rec.share_bytes);
    j.Key("floor_bytes").Number(kFloorBytes);
    j.Key("floor_applied").Bool(rec.floor_applied);
    j.Key("memlock_bytes").Number(rec.recommended_bytes);
    j.Key("memlock_kib").Number(rec.recommended_bytes / kKiB);
    j.Key("regcache_max_bytes").Number(rec.max_bytes_hint);
    j.Key("limits_conf").String(LimitsConfLines(rec.recommended_bytes));
    j.Key("systemd").String(SystemdDropIn(rec.recommended_bytes));
    j.Key("slurm").String(SlurmHint(rec.recommended_bytes));
    j.EndObject();
  }

  j.Key("warnings").BeginArray();
  for (const std::string& w : Warnings(r)) j.String(w);
  j.EndArray();
  j.EndObject();
  return j.str();
}

}  // namespace regcache_limits
