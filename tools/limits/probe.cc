// SPDX-License-Identifier: BSD-2-Clause
//
// regcache-limits, the probes: Gather() reads the memlock limit and
// capabilities, /proc and /sys, opens /dev/regcache for its STATS and its
// contiguous-memory limits and usage (CONTIG_INFO), creates a
// throwaway cache to see which monitor the library picks, and lists RDMA
// devices. Each probe records what failed and why; none aborts the run.

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <infiniband/verbs.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <tuple>

#include "regcache/ibverbs.h"
#include "regcache/regcache.h"
#include "report.h"

namespace regcache_limits {
namespace {

// The whole of a (/proc or /sys) file; *err is the errno when it fails.
std::optional<std::string> ReadFile(const std::string& path,
                                    int* err = nullptr) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (err) *err = errno;
    return std::nullopt;
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (err) *err = errno;
      close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buf, size_t(n));
  }
  close(fd);
  return text;
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string UserName(uid_t uid) {
  passwd pw, *result = nullptr;
  char buf[4096];
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &result) == 0 && result != nullptr)
    return pw.pw_name;
  return std::to_string(uid);
}

std::string GroupName(gid_t gid) {
  group gr, *result = nullptr;
  char buf[4096];
  if (getgrgid_r(gid, &gr, buf, sizeof buf, &result) == 0 && result != nullptr)
    return gr.gr_name;
  return std::to_string(gid);
}

bool InGroup(gid_t gid) {
  if (getegid() == gid) return true;
  const int n = getgroups(0, nullptr);
  if (n <= 0) return false;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  const int got = getgroups(n, groups.data());
  return got > 0 && std::find(groups.begin(), groups.begin() + got, gid) !=
                        groups.begin() + got;
}

bool AllDigits(const char* s) {
  if (*s == '\0') return false;
  for (; *s; ++s) {
    if (*s < '0' || *s > '9') return false;
  }
  return true;
}

MemlockInfo ProbeMemlock(const Paths& paths) {
  MemlockInfo m;
  rlimit rl{};
  if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
    m.ok = true;
    m.soft_unlimited = rl.rlim_cur == RLIM_INFINITY;
    m.hard_unlimited = rl.rlim_max == RLIM_INFINITY;
    m.soft_bytes = m.soft_unlimited ? 0 : uint64_t(rl.rlim_cur);
    m.hard_bytes = m.hard_unlimited ? 0 : uint64_t(rl.rlim_max);
  } else {
    m.error = std::string("getrlimit(RLIMIT_MEMLOCK): ") + strerror(errno);
  }
  // The kernel's pin and mlock paths test capable(CAP_IPC_LOCK): the
  // effective set, in the initial user namespace.
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) == 0) {
    m.cap_ipc_lock = (data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &
                      CAP_TO_MASK(CAP_IPC_LOCK)) != 0;
  }
  // The initial namespace maps every uid to itself: "0 0 4294967295".
  if (auto map = ReadFile(paths.proc + "/self/uid_map")) {
    unsigned long long inside, outside, count;
    int n = 0;
    const bool one = sscanf(map->c_str(), " %llu %llu %llu %n", &inside,
                            &outside, &count, &n) == 3;
    m.in_user_namespace = !(one && inside == 0 && outside == 0 &&
                            count == 4294967295ULL && size_t(n) == map->size());
  }
  return m;
}

NodeInfo ProbeNode(const Paths& paths) {
  NodeInfo n;
  int err = 0;
  if (auto meminfo = ReadFile(paths.proc + "/meminfo", &err)) {
    n.mem_total_bytes = ParseMemTotal(*meminfo);
    if (!n.mem_total_bytes)
      n.mem_total_error = "no MemTotal line in /proc/meminfo";
  } else {
    n.mem_total_error = paths.proc + "/meminfo: " + strerror(err);
  }
  n.numa_nodes = CountNumaNodes(paths.sys_node);
  n.cpus_online = sysconf(_SC_NPROCESSORS_ONLN);
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    n.cpus_allowed = CPU_COUNT(&set);
  return n;
}

// Why open(/dev/regcache) failed, and what to do about it.
std::string OpenAdvice(int err, const ModuleInfo& m) {
  std::string why = std::string("open: ") + strerror(err);
  if (err == ENOENT) {
    if (m.loaded)
      why +=
          " (the module is loaded but udev made no node: check "
          "`udevadm trigger --subsystem-match=misc`)";
    else if (m.proc_modules_read)
      why +=
          " (the module is not loaded: modprobe regcache, docs/operators.md)";
    else
      why += " (is the module loaded? modprobe regcache, docs/operators.md)";
  } else if (err == ENXIO || err == ENODEV) {
    why += " (a stale node: the module is not loaded)";
  } else if (err == EACCES || err == EPERM) {
    why += " (the node is " + m.device_owner + ":" + m.device_group + " mode 0";
    char mode[16];
    snprintf(mode, sizeof mode, "%03o", m.device_mode & 07777);
    why += mode;
    why += m.device_group_is_ours
               ? "; this process is in that group but the group has no rw)"
               : "; this process is not in group " + m.device_group +
                     ": install the udev rule and add the user to group "
                     "rdma, docs/operators.md)";
  }
  return why;
}

// The mode a cache reports, when this libregcache has the ODP mode policy
// (regcache_stats.mode and .mode_reason); nullopt when it does not. A
// template so that the fields and regcache_mode_name() are looked up only
// when they exist.
template <typename Stats>
std::optional<std::pair<std::string, std::string>> ModeOf(const Stats& s) {
  if constexpr (requires {
                  s.mode;
                  s.mode_reason;
                }) {
    return std::make_pair(std::string(regcache_mode_name(s.mode)),
                          std::string(s.mode_reason));
  } else {
    return std::nullopt;
  }
}

// The message without the "regcache_create: " a caller already knows.
std::string CreateError() {
  std::string why = regcache_last_error();
  const std::string prefix = "regcache_create: ";
  if (why.compare(0, prefix.size(), prefix) == 0) why.erase(0, prefix.size());
  return why;
}

// A throwaway ibverbs cache on `device`: what an ibverbs application gets.
DeviceChoice ProbeIbverbsCache(ibv_device* device,
                               const regcache_config& config) {
  DeviceChoice d;
  d.device = ibv_get_device_name(device);
  ibv_context* context = ibv_open_device(device);
  if (context == nullptr) {
    d.error = std::string("ibv_open_device: ") + strerror(errno);
    return d;
  }
  ibv_pd* pd = ibv_alloc_pd(context);
  if (pd == nullptr) {
    d.error = std::string("ibv_alloc_pd: ") + strerror(errno);
    ibv_close_device(context);
    return d;
  }
  regcache_registrar registrar{};
  regcache_registrar_ibverbs(pd, &registrar);
  regcache_t* cache = nullptr;
  if (regcache_create(&registrar, &config, &cache) == 0) {
    struct regcache_stats stats {};
    regcache_stats(cache, &stats);
    regcache_destroy(cache);
    d.created = true;
    d.monitor = regcache_monitor_name(stats.monitor);
    if (auto mode = ModeOf(stats)) std::tie(d.mode, d.mode_reason) = *mode;
  } else {
    d.error = CreateError();
  }
  ibv_dealloc_pd(pd);
  ibv_close_device(context);
  return d;
}

}  // namespace

ProcessScan ScanProcesses(const std::string& proc_dir, uint32_t top) {
  ProcessScan scan;
  DIR* dir = opendir(proc_dir.c_str());
  if (dir == nullptr) return scan;
  std::vector<ProcEntry> all;
  std::map<uint32_t, std::string> users;
  while (dirent* e = readdir(dir)) {
    if (!AllDigits(e->d_name)) continue;
    int err = 0;
    auto text = ReadFile(proc_dir + "/" + e->d_name + "/status", &err);
    if (!text) {
      if (err != ENOENT && err != ESRCH) ++scan.unreadable;  // not just gone
      continue;
    }
    ++scan.scanned;
    const ProcStatus st = ParseProcStatus(*text);
    const uint64_t pin = st.vm_pin_bytes.value_or(0);
    const uint64_t lck = st.vm_lck_bytes.value_or(0);
    scan.total_pin_bytes += pin;
    scan.total_lck_bytes += lck;
    if (pin > 0) ++scan.pinning;
    if (lck > 0) ++scan.locking;
    if (pin == 0 && lck == 0) continue;
    ProcEntry p;
    p.pid = atoi(e->d_name);
    p.name = st.name;
    if (st.uid) {
      auto it = users.find(*st.uid);
      if (it == users.end())
        it = users.emplace(*st.uid, UserName(*st.uid)).first;
      p.user = it->second;
    }
    p.vm_pin_bytes = pin;
    p.vm_lck_bytes = lck;
    all.push_back(std::move(p));
  }
  closedir(dir);
  std::sort(all.begin(), all.end(), [](const ProcEntry& a, const ProcEntry& b) {
    if (a.vm_pin_bytes != b.vm_pin_bytes)
      return a.vm_pin_bytes > b.vm_pin_bytes;
    if (a.vm_lck_bytes != b.vm_lck_bytes)
      return a.vm_lck_bytes > b.vm_lck_bytes;
    return a.pid < b.pid;
  });
  if (all.size() > top) all.resize(top);
  scan.top = std::move(all);
  return scan;
}

int CountNumaNodes(const std::string& sys_node_dir) {
  DIR* dir = opendir(sys_node_dir.c_str());
  if (dir == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(dir)) {
    if (strncmp(e->d_name, "node", 4) == 0 && AllDigits(e->d_name + 4)) ++n;
  }
  closedir(dir);
  return n;
}

ModuleInfo ProbeModule(const Paths& paths) {
  ModuleInfo m;
  int err = 0;
  if (auto modules = ReadFile(paths.proc + "/modules", &err)) {
    m.proc_modules_read = true;
    m.loaded = FindModule(*modules, "regcache");
  } else {
    m.proc_modules_error = paths.proc + "/modules: " + strerror(err);
  }
  if (auto v = ReadFile(paths.sys_module + "/parameters/max_ranges"))
    m.max_ranges_param = Trimmed(*v);
  if (auto v = ReadFile(paths.sys_module + "/parameters/ring_entries"))
    m.ring_entries_param = Trimmed(*v);

  struct stat st {};
  if (stat(paths.device.c_str(), &st) != 0) {
    m.device_error = strerror(errno);
  } else {
    m.device_exists = true;
    m.device_is_char = S_ISCHR(st.st_mode);
    m.device_mode = st.st_mode & 07777;
    m.device_owner = UserName(st.st_uid);
    m.device_group = GroupName(st.st_gid);
    m.device_group_is_ours = InGroup(st.st_gid);
    m.device_major = major(st.st_rdev);
    m.device_minor = minor(st.st_rdev);
  }

  // A context of our own: its counters start at zero, so what it shows is
  // that the device opens, which ABI it speaks and the slots per context.
  const int fd = open(paths.device.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    m.open_error = OpenAdvice(errno, m);
    return m;
  }
  m.opened = true;
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  void* head = mmap(nullptr, page, PROT_READ, MAP_SHARED, fd, 0);
  if (head != MAP_FAILED) {
    const auto* sh = static_cast<const regcache_kmod_shared*>(head);
    m.abi_version = sh->abi_version;
    m.max_ranges = sh->max_ranges;
    m.ring_entries = sh->ring_entries;
  }
  // STATS before the munmap below, which the context's notifier would count.
  const int stats_rc = ioctl(fd, REGCACHE_IOC_STATS, &m.stats);
  const int stats_errno = errno;
  if (ioctl(fd, REGCACHE_IOC_CONTIG_INFO, &m.contig) == 0) {
    m.contig_read = true;
  } else {
    const int err = errno;
    m.contig_error = std::string("REGCACHE_IOC_CONTIG_INFO: ") + strerror(err);
    if (err == ENOTTY)
      m.contig_error +=
          " (this module has no contiguous memory: an older build)";
  }
  if (head != MAP_FAILED) munmap(head, page);
  if (stats_rc == 0) {
    m.stats_read = true;
  } else {
    const int err = stats_errno;
    m.stats_error = std::string("REGCACHE_IOC_STATS: ") + strerror(err);
    if (err == ENOTTY) {
      m.stats_error +=
          " (the module speaks another ABI than this tool's version " +
          std::to_string(REGCACHE_KMOD_ABI_VERSION) +
          ": rebuild and reload it)";
    }
  }
  close(fd);
  return m;
}

LibraryChoice ProbeLibrary() {
  LibraryChoice lc;
  if (const char* v = getenv("REGCACHE_MONITOR")) lc.monitor_env = v;
  if (const char* v = getenv("REGCACHE_MODE")) lc.mode_env = v;
  if (const char* v = getenv("REGCACHE_MAX_BYTES")) lc.max_bytes_env = v;
  lc.mode = "pin (ODP policy not built)";  // unless the cache says otherwise

  regcache_registrar registrar{};
  regcache_registrar_fake(/*lock_memory=*/0, &registrar);
  regcache_config config{};
  if (regcache_config_init(&config) != 0)
    lc.config_error = regcache_last_error();
  config.print_stats_at_exit = 0;
  lc.max_bytes = config.max_bytes;

  struct regcache_stats stats {};
  lc.mode_policy = ModeOf(stats).has_value();
  if (lc.mode_policy) {
    int n = 0;
    if (ibv_device** list = ibv_get_device_list(&n)) {
      for (int i = 0; i < n; ++i)
        lc.ibverbs.push_back(ProbeIbverbsCache(list[i], config));
      ibv_free_device_list(list);
    }
  }

  regcache_t* cache = nullptr;
  if (regcache_create(&registrar, &config, &cache) != 0) {
    lc.error = CreateError();
    return lc;
  }
  regcache_stats(cache, &stats);
  regcache_destroy(cache);
  lc.created = true;
  lc.monitor = regcache_monitor_name(stats.monitor);
  if (auto mode = ModeOf(stats)) std::tie(lc.mode, lc.mode_reason) = *mode;

  if (config.monitor != REGCACHE_MONITOR_AUTO) {
    lc.monitor_note = "requested (REGCACHE_MONITOR=" + lc.monitor_env + ")";
  } else if (stats.monitor == REGCACHE_MONITOR_KMOD) {
    lc.monitor_note = "auto: /dev/regcache is available";
  } else {
    // Ask for kmod explicitly to learn why auto passed it over.
    regcache_config kmod = config;
    kmod.monitor = REGCACHE_MONITOR_KMOD;
    regcache_t* probe = nullptr;
    if (regcache_create(&registrar, &kmod, &probe) == 0) {
      regcache_destroy(probe);
      lc.monitor_note = "auto (kmod works now; it did not a moment ago)";
    } else {
      std::string why = CreateError();
      const std::string prefix = "monitor kmod unavailable: ";
      if (why.compare(0, prefix.size(), prefix) == 0)
        why.erase(0, prefix.size());
      lc.monitor_note = "auto: kmod unavailable: " + why;
    }
  }
  return lc;
}

GroupInfo ProbeGroup(const std::string& name, uint32_t uid) {
  GroupInfo g;
  g.name = name;
  group gr, *found = nullptr;
  char buf[16384];
  if (getgrnam_r(name.c_str(), &gr, buf, sizeof buf, &found) != 0 ||
      found == nullptr)
    return g;
  g.exists = true;
  g.gid = gr.gr_gid;
  passwd pw, *user = nullptr;
  char pw_buf[4096];
  if (getpwuid_r(uid, &pw, pw_buf, sizeof pw_buf, &user) != 0 ||
      user == nullptr)
    return g;
  int n = 64;
  std::vector<gid_t> groups;
  do {
    groups.resize(size_t(n));
  } while (getgrouplist(user->pw_name, user->pw_gid, groups.data(), &n) < 0 &&
           n > int(groups.size()));
  groups.resize(size_t(std::max(n, 0)));
  g.user_is_member =
      std::find(groups.begin(), groups.end(), g.gid) != groups.end();
  return g;
}

RdmaInfo ProbeRdma() {
  RdmaInfo r;
  int n = 0;
  errno = 0;
  ibv_device** list = ibv_get_device_list(&n);
  if (list == nullptr) {
    const int err = errno;
    r.error =
        std::string("ibv_get_device_list: ") + (err ? strerror(err) : "failed");
    if (err == ENOSYS)
      r.error += " (no RDMA support in this kernel: ib_uverbs is not loaded)";
    return r;
  }
  r.listed = true;
  for (int i = 0; i < n; ++i)
    r.devices.emplace_back(ibv_get_device_name(list[i]));
  ibv_free_device_list(list);
  return r;
}

Report Gather(const Options& options, const Paths& paths) {
  Report r;
  r.version = std::to_string(REGCACHE_VERSION_MAJOR) + "." +
              std::to_string(REGCACHE_VERSION_MINOR);
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) r.hostname = host;
  r.uid = getuid();
  r.user = UserName(r.uid);
  r.pid = getpid();
  r.memlock = ProbeMemlock(paths);
  if (auto status = ReadFile(paths.proc + "/self/status"))
    r.self = ParseProcStatus(*status);
  if (options.all) r.processes = ScanProcesses(paths.proc, options.top);
  r.node = ProbeNode(paths);
  r.module = ProbeModule(paths);
  r.library = ProbeLibrary();
  r.rdma = ProbeRdma();
  r.rdma_group = ProbeGroup("rdma", r.uid);

  r.ranks_from_cpus = !options.ranks_per_node.has_value();
  r.ranks = options.ranks_per_node.value_or(
      uint32_t(std::max<long>(1, r.node.cpus_online)));
  r.reserve_basis_points = options.reserve_basis_points;
  r.mem_total_from_flag = options.mem_total_bytes.has_value();
  const std::optional<uint64_t> mem_total = options.mem_total_bytes
                                                ? options.mem_total_bytes
                                                : r.node.mem_total_bytes;
  if (mem_total)
    r.recommendation = Recommend(*mem_total, r.ranks, r.reserve_basis_points);
  return r;
}

}  // namespace regcache_limits
