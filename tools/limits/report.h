// SPDX-License-Identifier: BSD-2-Clause
//
// regcache-limits, what it finds out: a Report of this node and this
// process (memlock limit and CAP_IPC_LOCK, pinned memory, node size, the
// regcache module and /dev/regcache, the monitor and mode the library
// picks, RDMA devices) and the recommendation. Gather() (probe.cc) fills
// it; RenderText() (render_text.cc) and RenderJson() (render_json.cc)
// print it. Every probe that can fail records why instead of failing the
// run: the tool is for machines that are not set up yet.
//
// Paths are parameters so that tests can point the probes at fixtures.
#ifndef REGCACHE_TOOLS_LIMITS_REPORT_H_
#define REGCACHE_TOOLS_LIMITS_REPORT_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "limits.h"
#include "regcache/kmod_uapi.h"

namespace regcache_limits {

struct Paths {
  std::string proc = "/proc";
  std::string sys_node = "/sys/devices/system/node";
  std::string sys_module = "/sys/module/regcache";
  std::string device = REGCACHE_KMOD_DEVICE_PATH;
};

struct MemlockInfo {
  bool ok = false;  // getrlimit worked
  std::string error;
  bool soft_unlimited = false, hard_unlimited = false;
  uint64_t soft_bytes = 0, hard_bytes = 0;
  std::optional<bool> cap_ipc_lock;  // effective; nullopt: capget failed
  bool in_user_namespace = false;    // capabilities are then namespaced
};

struct ProcEntry {
  int pid = 0;
  std::string name;
  std::string user;  // name, or the uid as text
  uint64_t vm_pin_bytes = 0;
  uint64_t vm_lck_bytes = 0;
};

// --all: processes by VmPin (then VmLck), and totals over all of them.
struct ProcessScan {
  std::vector<ProcEntry> top;  // at most Options::top, VmPin or VmLck > 0
  uint64_t total_pin_bytes = 0, total_lck_bytes = 0;
  size_t scanned = 0;     // /proc/<pid>/status files read
  size_t unreadable = 0;  // ... that could not be read (hidepid, exited)
  size_t pinning = 0;     // with VmPin > 0
  size_t locking = 0;     // with VmLck > 0
};
ProcessScan ScanProcesses(const std::string& proc_dir, uint32_t top);

struct NodeInfo {
  std::optional<uint64_t> mem_total_bytes;
  std::string mem_total_error;
  int numa_nodes = -1;  // -1: unknown (no sysfs)
  long cpus_online = 0;
  long cpus_allowed = 0;  // in this process's affinity mask
};
// node<N> entries of /sys/devices/system/node; -1 if it cannot be read.
int CountNumaNodes(const std::string& sys_node_dir);

struct ModuleInfo {
  // /proc/modules
  bool proc_modules_read = false;
  std::string proc_modules_error;  // why it could not be read
  std::optional<ModuleLine> loaded;
  std::string max_ranges_param, ring_entries_param;  // sysfs, "" if absent
  // the device node
  bool device_exists = false;
  std::string device_error;  // stat's error when it does not exist
  bool device_is_char = false;
  uint32_t device_mode = 0;  // permission bits
  std::string device_owner, device_group;
  uint32_t device_major = 0, device_minor = 0;
  bool device_group_is_ours = false;  // the group is one of this process's
  // a context: open, map the header, STATS
  bool opened = false;
  std::string open_error;  // why the counters were not read
  uint32_t abi_version = 0;
  uint32_t max_ranges = 0, ring_entries = 0;
  bool stats_read = false;
  std::string stats_error;
  regcache_kmod_stats stats{};
  // Contiguous memory (REGCACHE_IOC_CONTIG_INFO): the module's limits and
  // what every process holds now (docs/kmod.md, "Contiguous memory").
  bool contig_read = false;
  std::string contig_error;  // why not (ENOTTY: a module without it)
  regcache_kmod_contig_info contig{};
};
ModuleInfo ProbeModule(const Paths& paths);

// What a cache with the ibverbs registrar on one device gets.
struct DeviceChoice {
  std::string device;
  bool created = false;
  std::string error;  // why the device, its PD or the cache failed
  std::string monitor, mode, mode_reason;
};

// The library's choices, from throwaway caches configured by
// regcache_config_init() (so the environment counts): one with the fake
// registrar (what libfabric and callback registrars get), and, when the
// library has the ODP mode policy, one with the ibverbs registrar per RDMA
// device (ODP is decided per device).
struct LibraryChoice {
  std::string monitor_env;    // REGCACHE_MONITOR as set, "" if unset
  std::string mode_env;       // REGCACHE_MODE as set, "" if unset
  std::string max_bytes_env;  // REGCACHE_MAX_BYTES as set, "" if unset
  // The byte limit a cache gets: regcache_config_init()'s, which parses
  // REGCACHE_MAX_BYTES ("512M", "4G") or defaults to the soft memlock
  // limit (0: no limit).
  uint64_t max_bytes = 0;
  std::string config_error;  // regcache_config_init's complaint about the env
  bool created = false;
  std::string error;         // regcache_create's message when it failed
  std::string monitor;       // "kmod", "uffd", "none"
  std::string monitor_note;  // why (for auto: why not kmod)
  bool mode_policy = false;  // the library reports a mode (REGCACHE_MODE)
  std::string mode;          // "pin", "odp"; "pin (ODP policy not built)"
  std::string mode_reason;
  std::vector<DeviceChoice> ibverbs;  // with mode_policy only
};
LibraryChoice ProbeLibrary();

struct RdmaInfo {
  bool listed = false;  // ibv_get_device_list worked
  std::string error;
  std::vector<std::string> devices;
};
RdmaInfo ProbeRdma();

// Group rdma, which the limits.d lines ("@rdma ...") name: they apply only
// to its members.
struct GroupInfo {
  std::string name = "rdma";
  bool exists = false;
  uint32_t gid = 0;
  // Whether the report's user is a member (primary or supplementary, as
  // the group database says, which is what pam_limits reads at login);
  // nullopt when the user has no passwd entry.
  std::optional<bool> user_is_member;
};
GroupInfo ProbeGroup(const std::string& group, uint32_t uid);

struct Report {
  std::string version;  // of regcache
  std::string hostname, user;
  uint32_t uid = 0;
  int pid = 0;
  MemlockInfo memlock;
  ProcStatus self;
  std::optional<ProcessScan> processes;  // with --all
  NodeInfo node;
  ModuleInfo module;
  LibraryChoice library;
  RdmaInfo rdma;
  GroupInfo rdma_group;
  // The recommendation's inputs and result; no result without a MemTotal.
  uint32_t ranks = 1;
  bool ranks_from_cpus = false;  // --ranks-per-node not given
  uint32_t reserve_basis_points = kDefaultReserveBasisPoints;
  bool mem_total_from_flag = false;
  std::optional<Recommendation> recommendation;
};

// Everything, for this process and node.
Report Gather(const Options& options, const Paths& paths = Paths());

// What the report means for an operator: one sentence each, most serious
// first. Part of both outputs ("warnings" in JSON).
std::vector<std::string> Warnings(const Report& report);

// The limits.d lines name a group ("@rdma"): to whom they apply, and
// whether `user` is one of them (and how to make it so).
std::string GroupNote(const GroupInfo& group, const std::string& user);

std::string RenderText(const Report& report);
std::string RenderJson(const Report& report);

}  // namespace regcache_limits

#endif  // REGCACHE_TOOLS_LIMITS_REPORT_H_
