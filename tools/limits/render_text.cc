// SPDX-License-Identifier: BSD-2-Clause
//
// regcache-limits, the text output: Warnings() says what a Report means
// for an operator, RenderText() prints the report for people (render_json.cc
// prints it for tools).

#include <cinttypes>
#include <cstdio>

#include "report.h"

namespace regcache_limits {
namespace {

std::string LimitText(bool unlimited, uint64_t bytes) {
  if (unlimited) return "unlimited";
  return FormatBytes(bytes) + " (" + std::to_string(bytes) + " bytes)";
}

// Each line of `text` indented by `indent`.
std::string Indent(const std::string& text, const std::string& indent) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    out += indent + text.substr(pos, end - pos) + "\n";
    pos = end + 1;
  }
  return out;
}

std::string Row(const std::string& label, const std::string& value) {
  std::string l = "  " + label;
  if (l.size() < 19)
    l.append(19 - l.size(), ' ');
  else
    l += ' ';
  return l + value + "\n";
}

std::string Processes(size_t n) {
  return std::to_string(n) + (n == 1 ? " process" : " processes");
}

// The byte limit a cache gets and where it came from.
std::string MaxBytesText(const LibraryChoice& lib) {
  const std::string bytes = lib.max_bytes == 0
                                ? "no limit"
                                : FormatBytes(lib.max_bytes) + " (" +
                                      std::to_string(lib.max_bytes) + " bytes)";
  if (lib.max_bytes_env.empty())
    return "unset: " + bytes +
           (lib.max_bytes == 0 ? " (RLIMIT_MEMLOCK is unlimited)"
                               : ", the soft memlock limit");
  if (lib.config_error.find("REGCACHE_MAX_BYTES=") != std::string::npos)
    return lib.max_bytes_env + ": not valid, so the default: " + bytes;
  return lib.max_bytes_env + " = " + bytes;
}

bool Limited(const Report& r) {
  return r.memlock.ok && !r.memlock.cap_ipc_lock.value_or(false);
}

// The module's contiguous memory: its limits, the sizes this kernel can
// allocate, and what all processes hold now.
std::string ContigRows(const ModuleInfo& mod) {
  if (!mod.contig_read)
    return Row("contiguous", "unknown: " + mod.contig_error);
  const regcache_kmod_contig_info& c = mod.contig;
  std::string limits = FormatBytes(c.max_process_bytes) + " per process, " +
                       FormatBytes(c.max_total_bytes) +
                       " in all (contig_max_per_process_mb, "
                       "contig_max_total_mb)";
  if (c.max_bytes == 0) limits += ": turned off";
  const std::string sizes =
      "up to " + FormatBytes(c.max_buddy_bytes) +
      " from the buddy allocator; " +
      ((c.flags & REGCACHE_KMOD_CONTIG_F_LARGE)
           ? "larger from the kernel's range allocator (largest to try: " +
                 FormatBytes(c.max_bytes) + ")"
           : "nothing larger (the kernel lets no module allocate a range)");
  const std::string held =
      FormatBytes(c.total_bytes) + " in " + std::to_string(c.total_mappings) +
      (c.total_mappings == 1 ? " mapping" : " mappings") +
      ", all processes (docs/kmod.md, \"Contiguous memory\")";
  return Row("contiguous", limits) + Row("", sizes) +
         Row("contiguous held", held);
}

}  // namespace

std::string GroupNote(const GroupInfo& g, const std::string& user) {
  const std::string note =
      "the @" + g.name + " lines apply only to members of group " + g.name;
  if (!g.exists)
    return note + ", which does not exist on this node: groupadd " + g.name +
           " and add the users, or write a user's name or * (every user but "
           "root) instead";
  if (!g.user_is_member)
    return note + "; user " + user + " has no passwd entry, so no group";
  if (*g.user_is_member) return note + "; user " + user + " is one";
  return note + "; user " + user + " is not (usermod -aG " + g.name + " " +
         user + ", then log in again)";
}

std::vector<std::string> Warnings(const Report& r) {
  std::vector<std::string> w;
  const MemlockInfo& m = r.memlock;
  const bool cap = m.cap_ipc_lock.value_or(false);
  if (!m.ok) w.push_back(m.error);
  if (m.ok && m.soft_unlimited && !cap) {
    w.push_back(
        "RLIMIT_MEMLOCK is unlimited: nothing stops one process from "
        "pinning the whole node (pinned pages cannot be reclaimed; the "
        "OOM killer takes other processes instead). Set the recommended "
        "limit below.");
  }
  if (cap) {
    w.push_back(
        std::string("this process has CAP_IPC_LOCK") +
        (m.in_user_namespace ? " in a user namespace (the kernel checks "
                               "the initial namespace, so the limit may "
                               "still apply)"
                             : ", so the kernel does not apply "
                               "RLIMIT_MEMLOCK to it") +
        "; run regcache-limits as a job's user to see the limit jobs get");
  }
  if (Limited(r) && !m.soft_unlimited && r.recommendation &&
      m.soft_bytes < r.recommendation->recommended_bytes) {
    std::string s =
        "the soft memlock limit (" + FormatBytes(m.soft_bytes) +
        ") is below the recommended " +
        FormatBytes(r.recommendation->recommended_bytes) +
        ": registrations beyond it fail or make the cache evict and "
        "re-register (thrash)";
    if (m.soft_bytes <= 64 * kKiB)
      s += "; at the 64 KiB default even queue creation fails "
           "(openucx/ucx#8229)";
    w.push_back(s);
  }
  if (Limited(r) && !m.soft_unlimited &&
      (m.hard_unlimited || m.hard_bytes > m.soft_bytes)) {
    w.push_back(
        "the soft limit is below the hard limit (" +
        LimitText(m.hard_unlimited, m.hard_bytes) +
        "): a process may raise its own soft limit up to it (ulimit -l)");
  }
  if (r.recommendation && r.recommendation->floor_applied) {
    const Recommendation& rec = *r.recommendation;
    w.push_back("the " + FormatBytes(kFloorBytes) +
                " floor is above this node's "
                "share per process (" +
                FormatBytes(rec.share_bytes) +
                "): " + std::to_string(rec.ranks) + " ranks x " +
                FormatBytes(kFloorBytes) + " exceeds the usable " +
                FormatBytes(rec.usable_bytes) +
                "; run fewer ranks per node or lower --reserve");
  }
  if (r.self.vm_pin_bytes.value_or(0) > 0 && m.ok && !m.soft_unlimited &&
      *r.self.vm_pin_bytes > m.soft_bytes && !cap) {
    w.push_back("this process pins more than its soft limit (VmPin " +
                FormatBytes(*r.self.vm_pin_bytes) + ")");
  }
  const ModuleInfo& mod = r.module;
  if (mod.loaded && !mod.device_exists)
    w.push_back("the regcache module is loaded but " +
                std::string(REGCACHE_KMOD_DEVICE_PATH) +
                " does not exist: udev did not create it");
  if (!mod.loaded && mod.device_exists && mod.proc_modules_read)
    w.push_back(
        std::string(REGCACHE_KMOD_DEVICE_PATH) +
        " exists but the module is not in /proc/modules (a stale node?)");
  if (mod.device_exists && (mod.device_mode & 0060) != 0060 &&
      (mod.device_mode & 0006) != 0006) {
    w.push_back(
        std::string(REGCACHE_KMOD_DEVICE_PATH) + " is " + mod.device_owner +
        ":" + mod.device_group + " " + FormatMode(mod.device_mode) +
        ": only its owner can open it; install 99-regcache.rules (group "
        "rdma, 0660), docs/operators.md");
  }
  if (mod.opened && mod.abi_version != 0 &&
      mod.abi_version != REGCACHE_KMOD_ABI_VERSION)
    w.push_back("the module's ABI version is " +
                std::to_string(mod.abi_version) + ", this build expects " +
                std::to_string(REGCACHE_KMOD_ABI_VERSION));
  if (mod.contig_read && mod.contig.max_total_bytes > 0 &&
      mod.contig.total_bytes >= mod.contig.max_total_bytes / 10 * 9)
    w.push_back("contiguous memory held by all processes (" +
                FormatBytes(mod.contig.total_bytes) +
                ") is near contig_max_total_mb (" +
                FormatBytes(mod.contig.max_total_bytes) +
                "): further mappings of it fail with ENOMEM");
  if (mod.loaded && r.library.created && r.library.monitor != "kmod")
    w.push_back("the module is loaded but the library would use " +
                r.library.monitor + " (" + r.library.monitor_note + ")");
  if (!r.library.config_error.empty())
    w.push_back("the environment is not valid for the library: " +
                r.library.config_error);
  if (!r.library.max_bytes_env.empty() && m.ok && !m.soft_unlimited &&
      r.library.max_bytes > m.soft_bytes) {
    w.push_back(
        "REGCACHE_MAX_BYTES=" + r.library.max_bytes_env + " (" +
        FormatBytes(r.library.max_bytes) +
        ") exceeds the soft memlock limit (" + FormatBytes(m.soft_bytes) +
        "): the cache never reaches its own limit, registrations fail at "
        "the memlock limit instead and the cache then evicts every unused "
        "registration at once; set it below the limit by what else the "
        "process pins" +
        (cap ? " (this process has CAP_IPC_LOCK, so the limit binds only "
               "processes without it)"
             : ""));
  }
  if (!r.library.created)
    w.push_back(
        "the library cannot create a cache with the fake registrar (nor "
        "with libfabric or callback registrars): " +
        r.library.error);
  if (r.rdma.listed && r.rdma.devices.empty())
    w.push_back("no RDMA device: nothing here registers memory with a NIC");
  return w;
}

std::string RenderText(const Report& r) {
  std::string o;
  o += "regcache-limits (regcache " + r.version + "): host " + r.hostname +
       ", user " + r.user + " (uid " + std::to_string(r.uid) + "), pid " +
       std::to_string(r.pid) + "\n\n";

  const MemlockInfo& m = r.memlock;
  o += "Memory-lock limit (RLIMIT_MEMLOCK) of this process\n";
  if (m.ok) {
    o += Row("soft", LimitText(m.soft_unlimited, m.soft_bytes));
    o += Row("hard", LimitText(m.hard_unlimited, m.hard_bytes));
  } else {
    o += Row("error", m.error);
  }
  std::string cap = !m.cap_ipc_lock ? "unknown (capget failed)"
                    : *m.cap_ipc_lock
                        ? "yes: the kernel does not apply the limit"
                        : "no: the limit applies";
  if (m.cap_ipc_lock.value_or(false) && m.in_user_namespace)
    cap = "yes, in a user namespace: the limit may still apply";
  o += Row("CAP_IPC_LOCK", cap);

  o += "\nPinned memory of this process\n";
  auto opt_bytes = [](const std::optional<uint64_t>& v) {
    return v ? FormatBytes(*v) : std::string("n/a");
  };
  o += Row("VmPin", opt_bytes(r.self.vm_pin_bytes) +
                        "  (pinned by drivers: ibv_reg_mr, fi_mr_reg)");
  o += Row("VmLck", opt_bytes(r.self.vm_lck_bytes) + "  (mlock)");
  o += "  (the kernel counts each against RLIMIT_MEMLOCK separately)\n";

  if (r.processes) {
    const ProcessScan& p = *r.processes;
    o += "\nProcesses by pinned memory (" + std::to_string(p.scanned) + " read";
    if (p.unreadable) o += ", " + std::to_string(p.unreadable) + " unreadable";
    o += ")\n";
    if (p.top.empty()) {
      o += "  none pins or locks memory\n";
    } else {
      char line[256];
      snprintf(line, sizeof line, "  %8s  %-12s %12s %12s  %s\n", "PID", "USER",
               "VmPin", "VmLck", "NAME");
      o += line;
      for (const ProcEntry& e : p.top) {
        snprintf(line, sizeof line, "  %8d  %-12.12s %12s %12s  ", e.pid,
                 e.user.c_str(), FormatBytes(e.vm_pin_bytes).c_str(),
                 FormatBytes(e.vm_lck_bytes).c_str());
        o += line + e.name + "\n";
      }
    }
    o += Row("total VmPin",
             FormatBytes(p.total_pin_bytes) + " in " + Processes(p.pinning));
    o += Row("total VmLck",
             FormatBytes(p.total_lck_bytes) + " in " + Processes(p.locking));
  }

  o += "\nNode\n";
  o += Row("MemTotal", r.node.mem_total_bytes
                           ? FormatBytes(*r.node.mem_total_bytes)
                           : "unknown (" + r.node.mem_total_error + ")");
  o += Row("NUMA nodes", r.node.numa_nodes < 0
                             ? "unknown (no /sys/devices/system/node)"
                             : std::to_string(r.node.numa_nodes));
  o += Row("CPUs", std::to_string(r.node.cpus_online) + " online, " +
                       std::to_string(r.node.cpus_allowed) +
                       " in this process's affinity");

  const ModuleInfo& mod = r.module;
  o += "\nKernel module regcache\n";
  if (!mod.proc_modules_read) {
    o += Row("loaded", "unknown (" + mod.proc_modules_error + ")");
  } else if (mod.loaded) {
    o += Row("loaded",
             "yes (" + mod.loaded->state + ", " +
                 std::to_string(mod.loaded->refcount) + " references" +
                 (mod.loaded->taint.empty() ? "" : ", " + mod.loaded->taint) +
                 ")");
  } else {
    o += Row("loaded", "no (not in /proc/modules)");
  }
  if (!mod.max_ranges_param.empty())
    o += Row("parameters", "max_ranges=" + mod.max_ranges_param +
                               " ring_entries=" + mod.ring_entries_param);
  if (mod.device_exists) {
    char dev[64];
    snprintf(dev, sizeof dev, "%s %u:%u, ",
             mod.device_is_char ? "char" : "NOT a char device",
             mod.device_major, mod.device_minor);
    o += Row(REGCACHE_KMOD_DEVICE_PATH,
             dev + FormatMode(mod.device_mode) + " " + mod.device_owner + ":" +
                 mod.device_group +
                 (mod.device_group_is_ours ? " (our group)" : ""));
  } else {
    o += Row(REGCACHE_KMOD_DEVICE_PATH, "absent (" + mod.device_error + ")");
  }
  if (!mod.opened) {
    o += Row("counters", "not read: " + mod.open_error);
  } else {
    o += Row("context",
             "opened: ABI version " + std::to_string(mod.abi_version) +
                 " (this build: " + std::to_string(REGCACHE_KMOD_ABI_VERSION) +
                 "), " + std::to_string(mod.max_ranges) + " slots, " +
                 std::to_string(mod.ring_entries) + " ring entries");
    if (mod.stats_read) {
      const regcache_kmod_stats& s = mod.stats;
      o +=
          "  counters of this tool's own, fresh context (each process has its\n"
          "  own; an application's invalidations are in its REGCACHE_STATS=1 "
          "output):\n";
      char buf[512];
      snprintf(
          buf, sizeof buf,
          "    ranges_now=%llu max_ranges=%llu monitors=%llu unmonitors=%llu\n"
          "    notifier_calls=%llu ignored_calls=%llu late=%llu events=%llu\n"
          "    ring_overflows=%llu inval_seq=%llu\n",
          (unsigned long long)s.ranges_now, (unsigned long long)s.max_ranges,
          (unsigned long long)s.monitors, (unsigned long long)s.unmonitors,
          (unsigned long long)s.notifier_calls,
          (unsigned long long)s.ignored_calls, (unsigned long long)s.late,
          (unsigned long long)s.events, (unsigned long long)s.ring_overflows,
          (unsigned long long)s.inval_seq);
      o += buf;
      o += "    invalidated:";
      for (int i = 1; i <= REGCACHE_KMOD_REASON_EXCLUSIVE; ++i)
        o += std::string(" ") + KmodReasonName(i) + "=" +
             std::to_string(s.invalidated[i]);
      o += "\n";
    } else {
      o += Row("counters", "not read: " + mod.stats_error);
    }
    o += ContigRows(mod);
  }

  const LibraryChoice& lib = r.library;
  o += "\nLibrary: throwaway caches (fake registrar";
  o += lib.mode_policy ? "; ibverbs on each device)\n" : ")\n";
  o += Row("REGCACHE_MONITOR",
           lib.monitor_env.empty() ? "unset (auto)" : lib.monitor_env);
  o += Row("REGCACHE_MODE", lib.mode_env.empty()
                                ? (lib.mode_policy ? "unset (auto)" : "unset")
                                : lib.mode_env);
  o += Row("REGCACHE_MAX_BYTES", MaxBytesText(lib));
  if (lib.created)
    o += Row("monitor", lib.monitor + ": " + lib.monitor_note);
  else
    o += Row("monitor", "unknown: cache creation failed: " + lib.error);
  if (!lib.mode_policy) {
    o += Row("mode", lib.mode);
  } else {
    if (lib.created)
      o += Row("mode",
               lib.mode +
                   (lib.mode_reason.empty() ? "" : ": " + lib.mode_reason) +
                   " (libfabric and callback registrars)");
    for (const DeviceChoice& d : lib.ibverbs) {
      o += Row(
          "ibverbs " + d.device,
          d.created
              ? "mode " + d.mode +
                    (d.mode_reason.empty() ? "" : " (" + d.mode_reason + ")") +
                    ", monitor " + d.monitor
              : "no cache: " + d.error);
    }
  }

  o += "\nRDMA devices\n";
  if (!r.rdma.listed) {
    o += Row("devices", "unknown (" + r.rdma.error + ")");
  } else if (r.rdma.devices.empty()) {
    o += Row("devices", "none");
  } else {
    std::string names;
    for (const std::string& d : r.rdma.devices)
      names += (names.empty() ? "" : " ") + d;
    o += Row("devices", names);
  }

  o += "\nRecommendation: " + std::to_string(r.ranks) + " ranks per node (" +
       (r.ranks_from_cpus ? "the online CPUs; " : "") + "--ranks-per-node), " +
       FormatPercent(r.reserve_basis_points) + " reserved (--reserve)\n";
  if (!r.recommendation) {
    o += "  none: MemTotal is unknown; give --mem-total SIZE\n";
  } else {
    const Recommendation& rec = *r.recommendation;
    o += Row("usable", "MemTotal " + FormatBytes(rec.mem_total_bytes) +
                           (r.mem_total_from_flag ? " (--mem-total)" : "") +
                           " x " +
                           FormatPercent(10000 - rec.reserve_basis_points) +
                           " = " + FormatBytes(rec.usable_bytes));
    o += Row("per process",
             "usable / " + std::to_string(rec.ranks) +
                 ", rounded down to a MiB = " + FormatBytes(rec.share_bytes));
    o += Row("memlock limit",
             FormatBytes(rec.recommended_bytes) + " = " +
                 std::to_string(rec.recommended_bytes) +
                 " bytes = " + std::to_string(rec.recommended_bytes / kKiB) +
                 " KiB" + (rec.floor_applied ? " (the floor)" : ""));
    o += "\n  /etc/security/limits.d/90-rdma.conf (pam_limits: logins and ssh, "
         "not "
         "services):\n";
    o += Indent(LimitsConfLines(rec.recommended_bytes), "    ");
    o += "  " + GroupNote(r.rdma_group, r.user) + "\n";
    o += "  a systemd service: "
         "/etc/systemd/system/<name>.service.d/memlock.conf:\n";
    o += Indent(SystemdDropIn(rec.recommended_bytes), "    ");
    o += "  Slurm:\n";
    o += Indent(SlurmHint(rec.recommended_bytes), "    ");
    o += "  containers:\n    docker run --ulimit memlock=" +
         std::to_string(rec.recommended_bytes) + ":" +
         std::to_string(rec.recommended_bytes) + " ...\n";
    o +=
        "  regcache (3/4 of the limit; the rest is for queues and other pinned "
        "buffers):\n    REGCACHE_MAX_BYTES=" +
        std::to_string(rec.max_bytes_hint) + "\n";
    o += "\n  Why this number: pinned pages cannot be swapped, reclaimed or "
         "moved.\n"
         "  With `unlimited`, one job can pin the node until the OOM killer "
         "takes\n"
         "  other processes; the hfi1 driver's authors made the same point by\n"
         "  capping their pin cache themselves, since RLIMIT_MEMLOCK alone "
         "does not\n"
         "  bound a cache. Too small a limit makes registration fail (UCX "
         "issue\n"
         "  8229: under the 64 KiB default even ibv_create_cq failed) or makes "
         "the\n"
         "  cache evict and re-register on every pass (thrash: watch "
         "`evictions`\n"
         "  in REGCACHE_STATS=1). This limit lets every rank pin its share at "
         "once\n"
         "  and still leaves the reserve to the OS. Nothing was written.\n";
  }

  const std::vector<std::string> warnings = Warnings(r);
  if (!warnings.empty()) {
    o += "\nWarnings\n";
    for (const std::string& w : warnings) o += "  - " + w + "\n";
  }
  return o;
}

}  // namespace regcache_limits
