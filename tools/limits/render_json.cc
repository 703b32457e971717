// SPDX-License-Identifier: BSD-2-Clause
//
// regcache-limits, the JSON output: one object for tools, documented in
// docs/operators.md, written with nlohmann-json. Numbers are JSON numbers;
// limits that are unlimited are the string "unlimited"; facts that could
// not be learned are null; the warnings are Warnings()'s. Keys keep the
// order below.

#include <nlohmann/json.hpp>

#include "command_line.h"
#include "report.h"

namespace regcache_limits {
namespace {

using Json = nlohmann::ordered_json;

// A number, or null when unknown.
Json OptNumber(const std::optional<uint64_t>& v) {
  return v ? Json(*v) : Json(nullptr);
}

// A string, or null when empty.
Json OptString(const std::string& s) {
  return s.empty() ? Json(nullptr) : Json(s);
}

// Bytes, or "unlimited".
Json Limit(bool unlimited, uint64_t bytes) {
  return unlimited ? Json("unlimited") : Json(bytes);
}

// A module parameter as sysfs prints it ("1048576\n" read as "1048576"):
// a number, or null when absent or not a number.
Json Parameter(const std::string& text) {
  uint64_t n = 0;
  return regcache_tools::ParseCount(text, 0, UINT64_MAX, &n) ? Json(n)
                                                             : Json(nullptr);
}

Json Memlock(const MemlockInfo& m) {
  Json j = Json::object();
  j["soft_bytes"] = m.ok ? Limit(m.soft_unlimited, m.soft_bytes) : nullptr;
  j["hard_bytes"] = m.ok ? Limit(m.hard_unlimited, m.hard_bytes) : nullptr;
  j["cap_ipc_lock"] = m.cap_ipc_lock ? Json(*m.cap_ipc_lock) : Json(nullptr);
  j["user_namespace"] = m.in_user_namespace;
  j["error"] = OptString(m.error);
  return j;
}

Json Processes(const std::optional<ProcessScan>& scan) {
  if (!scan) return nullptr;
  const ProcessScan& p = *scan;
  Json top = Json::array();
  for (const ProcEntry& e : p.top) {
    top.push_back({{"pid", e.pid},
                   {"name", e.name},
                   {"user", e.user},
                   {"vm_pin_bytes", e.vm_pin_bytes},
                   {"vm_lck_bytes", e.vm_lck_bytes}});
  }
  return {{"scanned", p.scanned},
          {"unreadable", p.unreadable},
          {"total_vm_pin_bytes", p.total_pin_bytes},
          {"total_vm_lck_bytes", p.total_lck_bytes},
          {"pinning", p.pinning},
          {"locking", p.locking},
          {"top", top}};
}

Json Counters(const ModuleInfo& mod) {
  if (!mod.stats_read) return nullptr;
  const regcache_kmod_stats& s = mod.stats;
  Json invalidated = Json::object();
  for (int i = 1; i <= REGCACHE_KMOD_REASON_EXCLUSIVE; ++i)
    invalidated[KmodReasonName(i)] = s.invalidated[i];
  return {{"ranges_now", s.ranges_now},
          {"max_ranges", s.max_ranges},
          {"monitors", s.monitors},
          {"unmonitors", s.unmonitors},
          {"notifier_calls", s.notifier_calls},
          {"ignored_calls", s.ignored_calls},
          {"invalidated", invalidated},
          {"late", s.late},
          {"events", s.events},
          {"ring_overflows", s.ring_overflows},
          {"inval_seq", s.inval_seq}};
}

// Contiguous memory: limits and what all processes hold; null when unread.
Json Contig(const ModuleInfo& mod) {
  if (!mod.contig_read) return nullptr;
  const regcache_kmod_contig_info& c = mod.contig;
  return {{"max_process_bytes", c.max_process_bytes},
          {"max_total_bytes", c.max_total_bytes},
          {"max_buddy_bytes", c.max_buddy_bytes},
          {"max_bytes", c.max_bytes},
          {"large_sizes", (c.flags & REGCACHE_KMOD_CONTIG_F_LARGE) != 0},
          {"page_size", c.page_size},
          {"total_bytes", c.total_bytes},
          {"total_mappings", c.total_mappings}};
}

Json Module(const ModuleInfo& mod) {
  Json j = Json::object();
  j["loaded"] =
      mod.proc_modules_read ? Json(mod.loaded.has_value()) : Json(nullptr);
  j["loaded_error"] = OptString(mod.proc_modules_error);
  j["state"] = OptString(mod.loaded ? mod.loaded->state : "");
  j["refcount"] = mod.loaded ? Json(mod.loaded->refcount) : Json(nullptr);
  j["param_max_ranges"] = Parameter(mod.max_ranges_param);
  j["param_ring_entries"] = Parameter(mod.ring_entries_param);
  Json device = {{"path", REGCACHE_KMOD_DEVICE_PATH},
                 {"exists", mod.device_exists},
                 {"error", OptString(mod.device_error)}};
  if (mod.device_exists) {
    device["char_device"] = mod.device_is_char;
    device["mode"] = FormatMode(mod.device_mode);  // "0660", as chmod takes it
    device["owner"] = mod.device_owner;
    device["group"] = mod.device_group;
    device["in_group"] = mod.device_group_is_ours;
  }
  j["device"] = device;
  j["opened"] = mod.opened;
  j["abi_version"] =
      mod.opened && mod.abi_version ? Json(mod.abi_version) : Json(nullptr);
  j["counters"] = Counters(mod);
  j["counters_error"] = OptString(
      mod.stats_read ? "" : (mod.opened ? mod.stats_error : mod.open_error));
  j["contig"] = Contig(mod);
  j["contig_error"] = OptString(
      mod.contig_read ? "" : (mod.opened ? mod.contig_error : mod.open_error));
  return j;
}

Json Library(const LibraryChoice& lib) {
  Json ibverbs = Json::array();
  for (const DeviceChoice& d : lib.ibverbs) {
    ibverbs.push_back({{"device", d.device},
                       {"created", d.created},
                       {"monitor", OptString(d.monitor)},
                       {"mode", OptString(d.mode)},
                       {"mode_reason", OptString(d.mode_reason)},
                       {"error", OptString(d.error)}});
  }
  return {{"env_monitor", OptString(lib.monitor_env)},
          {"env_mode", OptString(lib.mode_env)},
          {"env_max_bytes", OptString(lib.max_bytes_env)},
          {"max_bytes", lib.max_bytes},
          {"monitor", OptString(lib.created ? lib.monitor : "")},
          {"monitor_note", OptString(lib.monitor_note)},
          {"mode", lib.mode},
          {"mode_reason", OptString(lib.mode_reason)},
          {"mode_policy", lib.mode_policy},
          {"ibverbs", ibverbs},
          {"error", OptString(lib.error)},
          {"config_error", OptString(lib.config_error)}};
}

Json RecommendationJson(const Report& r) {
  if (!r.recommendation) return nullptr;
  const Recommendation& rec = *r.recommendation;
  return {{"ranks_per_node", rec.ranks},
          {"ranks_from_cpus", r.ranks_from_cpus},
          {"reserve_percent", rec.reserve_basis_points / 100.0},
          {"mem_total_bytes", rec.mem_total_bytes},
          {"usable_bytes", rec.usable_bytes},
          {"share_bytes", rec.share_bytes},
          {"floor_bytes", kFloorBytes},
          {"floor_applied", rec.floor_applied},
          {"memlock_bytes", rec.recommended_bytes},
          {"memlock_kib", rec.recommended_bytes / kKiB},
          {"regcache_max_bytes", rec.max_bytes_hint},
          {"limits_conf", LimitsConfLines(rec.recommended_bytes)},
          {"systemd", SystemdDropIn(rec.recommended_bytes)},
          {"slurm", SlurmHint(rec.recommended_bytes)}};
}

}  // namespace

std::string RenderJson(const Report& r) {
  Json j = Json::object();
  j["tool"] = "regcache-limits";
  j["regcache_version"] = r.version;
  j["host"] = r.hostname;
  j["user"] = r.user;
  j["uid"] = r.uid;
  j["pid"] = r.pid;
  j["memlock"] = Memlock(r.memlock);
  j["self"] = {{"vm_pin_bytes", OptNumber(r.self.vm_pin_bytes)},
               {"vm_lck_bytes", OptNumber(r.self.vm_lck_bytes)}};
  j["processes"] = Processes(r.processes);
  j["node"] = {{"mem_total_bytes", OptNumber(r.node.mem_total_bytes)},
               {"numa_nodes", r.node.numa_nodes < 0 ? Json(nullptr)
                                                    : Json(r.node.numa_nodes)},
               {"cpus_online", r.node.cpus_online},
               {"cpus_allowed", r.node.cpus_allowed}};
  j["module"] = Module(r.module);
  j["library"] = Library(r.library);
  j["rdma_devices"] = r.rdma.listed ? Json(r.rdma.devices) : Json(nullptr);
  j["rdma_error"] = OptString(r.rdma.error);
  j["rdma_group"] = {
      {"name", r.rdma_group.name},
      {"exists", r.rdma_group.exists},
      {"gid", r.rdma_group.exists ? Json(r.rdma_group.gid) : Json(nullptr)},
      {"user_is_member", r.rdma_group.user_is_member
                             ? Json(*r.rdma_group.user_is_member)
                             : Json(nullptr)}};
  j["recommendation"] = RecommendationJson(r);
  j["warnings"] = Warnings(r);
  // A process name may hold any bytes: invalid UTF-8 becomes U+FFFD, so
  // the output is always valid JSON.
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace regcache_limits
