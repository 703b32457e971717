// SPDX-License-Identifier: BSD-2-Clause
//
// What a memory monitor adds to munmap(): the same munmap() of a 64 KiB
// region (one page touched) timed with nothing watching, under regcache's
// kmod and uffd monitors, and under UCX's memory hooks (libucm), in one
// binary so that every ratio comes out of one run. The monitors are used
// through the cache API with the fake no-op registrar: the cost measured is
// the one a user of the cache pays, including the kernel work of the
// module's notifier, which runs synchronously inside munmap(), and for uffd
// the round trip to the monitor's reader thread that munmap() waits for.
//
// Cases (docs/benchmarks.md, "Monitor costs"):
//   BM_Munmap/plain        no cache, no hooks
//   BM_Munmap/kmod/<N>     a cache with REGCACHE_MONITOR_KMOD holding N other
//                          4 KiB entries; for N > 0 the unmapped region is
//                          cached (monitored) too, for N = 0 it is not
//   BM_Munmap/uffd/<N>     the same with REGCACHE_MONITOR_UFFD
//   BM_Munmap/ucx_hooks    a ucs_rcache with ucm_events = UCM_EVENT_VM_UNMAPPED
//                          holding the region: libucm intercepts munmap()
// and two diagnostics through the module's raw ABI (no cache), which tell
// the notifier's own work from the wake-up of the thread reading its events:
//   BM_Munmap/kmod_abi/<N>         N ranges and the region MONITORed, nobody
//                                  polling the fd
//   BM_Munmap/kmod_abi_reader/<N>  the same with a thread in poll() on it
//
// Each iteration maps the region (MAP_FIXED_NOREPLACE into a hole between two
// PROT_NONE guard pages, so the VMA never merges with a neighbour and every
// case does the same VMA work), touches one page, caches it, and then times
// the munmap() alone with clock_gettime() (UseManualTime): real_time is the
// time of one munmap(); counters give the median and 10th percentile
// (samples.h) and how often the thread was preempted or blocked inside
// munmap(). Before the next iteration it waits until the cache has applied
// the invalidation and reclaimed the entry, and a little longer, so the
// monitor's threads are asleep again when the next munmap() wakes them. Each
// run checks that every monitored munmap() was seen as an invalidation, and
// fails otherwise. Where the monitor's threads run decides whether their
// work lands inside the timed munmap(): see "Where the monitors' threads
// run" below (REGCACHE_BENCH_IDLE_HELPERS, REGCACHE_BENCH_CPUS).
//
// libucm's hooks cannot be removed once installed (and they replace malloc),
// so BM_Munmap/ucx_hooks is registered last and every other case refuses to
// run after it in the same process.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <regcache/kmod_uapi.h>
#include <regcache/regcache.h>

#include "bench_common.h"
#include "samples.h"

extern "C" {
#include <ucm/api/ucm.h>
#include <ucs/memory/rcache.h>
}

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace regcache_bench {
namespace {

constexpr size_t kRegionLength = 64 * 1024;  // the region munmap() removes
constexpr size_t kOtherLength = 4096;        // each of the N other entries
constexpr size_t kMaxOthers = 100000;
constexpr uint32_t kAccess = REGCACHE_ACCESS_ALL;
constexpr double kQuiesceTimeoutSeconds = 10.0;

// Set once UCX's hooks are in: every later munmap() of this process goes
// through libucm, so the other cases would no longer measure what they say.
bool g_ucm_hooks_installed = false;

// ---------------------------------------------------------------------------
// Where the monitors' threads run (the cache's event and reaper threads, the
// raw-ABI reader). munmap() wakes them; how soon they run decides whether
// their work lands inside the timed munmap(). Two knobs model a machine with
// a core to spare for them:
//   REGCACHE_BENCH_CPUS=M:H       the timed thread on CPU M, theirs on CPU H
//   REGCACHE_BENCH_IDLE_HELPERS=1 they run SCHED_IDLE: on a shared CPU they
//                                 never preempt the timed thread, which
//                                 then pays only for waking them
// Unset, the scheduler places everything (a woken thread on the same CPU
// may preempt the timed one before munmap() returns to it).
// A diagnostic knob, for every case alike:
//   REGCACHE_BENCH_PACE_US=N      sleep N us right before each timed
//                                 munmap(), so every case munmaps after the
//                                 same idle period (docs/benchmarks.md has
//                                 what that does to munmap() under TCG)
//   REGCACHE_BENCH_WARM=0         no untimed scratch munmap() right before
//                                 each timed one (see WarmUp())

int g_main_cpu = -1;
int g_helper_cpu = -1;
bool g_idle_helpers = false;

bool PinCallingThread(int cpu) {
  if (cpu < 0) return true;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

int g_pace_us = 0;
bool g_warm = true;

// Before each timed munmap(), every case maps, touches and unmaps a scratch
// page of its own (untimed; REGCACHE_BENCH_WARM=0 turns it off). The
// monitored cases sleep between iterations while the monitor's threads
// finish, plain and ucx_hooks never do, and under TCG the first munmap()
// after the CPU idled costs several times more (docs/benchmarks.md): that
// penalty landed in the monitored cases only. In one VM run, without the
// warm-up: plain 21.3 us, kmod/1000 +23.7 us, kmod_abi/1000 -5.9 us (below
// plain); with it: plain 12.2 us, kmod/1000 +2.9 us, kmod_abi/1000 +1.5 us.
void WarmUp() {
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;
  *static_cast<volatile char*>(p) = 1;
  munmap(p, 4096);
}

bool SetPolicy(int policy) {
  sched_param param{};
  return pthread_setschedparam(pthread_self(), policy, &param) == 0;
}

bool SetUpHelpers() {
  if (const char* pace = getenv("REGCACHE_BENCH_PACE_US"))
    g_pace_us = atoi(pace);
  if (const char* warm = getenv("REGCACHE_BENCH_WARM"))
    g_warm = atoi(warm) != 0;
  const char* idle = getenv("REGCACHE_BENCH_IDLE_HELPERS");
  g_idle_helpers = idle != nullptr && strcmp(idle, "1") == 0;
  const char* plan = getenv("REGCACHE_BENCH_CPUS");
  if (plan == nullptr || *plan == '\0') return true;
  if (sscanf(plan, "%d:%d", &g_main_cpu, &g_helper_cpu) != 2 ||
      g_main_cpu < 0 || g_helper_cpu < 0) {
    fprintf(stderr, "munmap_bench: REGCACHE_BENCH_CPUS=%s: want MAIN:HELPERS\n",
            plan);
    return false;
  }
  if (!PinCallingThread(g_main_cpu)) {
    fprintf(stderr, "munmap_bench: cannot run on CPU %d\n", g_main_cpu);
    return false;
  }
  return true;
}

std::string HelpersDescription() {
  std::string d = g_main_cpu < 0
                      ? "unpinned"
                      : "timed thread on CPU " + std::to_string(g_main_cpu) +
                            ", monitor threads on CPU " +
                            std::to_string(g_helper_cpu);
  if (g_idle_helpers) d += ", monitor threads SCHED_IDLE";
  return d;
}

// While alive, the calling thread has the helpers' CPU and policy, so the
// threads it creates start with them (pthreads inherit both).
class HelperSettings {
 public:
  HelperSettings() {
    PinCallingThread(g_helper_cpu);
    if (g_idle_helpers && !SetPolicy(SCHED_IDLE))
      fprintf(stderr, "munmap_bench: SCHED_IDLE: %s\n", strerror(errno));
  }
  ~HelperSettings() {
    if (g_idle_helpers && !SetPolicy(SCHED_OTHER))
      fprintf(stderr, "munmap_bench: back to SCHED_OTHER: %s\n",
              strerror(errno));
    PinCallingThread(g_main_cpu);
  }
};

// ---------------------------------------------------------------------------
// Memory

// A hole for a region: [guard page][region][guard page], the guards
// PROT_NONE. Placed low in the address space, far below where mmap() puts
// things, so that nothing else the process maps lands in the hole between
// iterations. `offset` keeps the two holes apart.
char* MakeHole(uintptr_t offset) {
  const size_t span = kRegionLength + 2 * kPageSize;
  void* p = MAP_FAILED;
  for (uintptr_t hint = (uintptr_t{1} << 44) + offset;
       hint < (uintptr_t{1} << 46) && p == MAP_FAILED;
       hint += uintptr_t{1} << 40) {
    p = mmap(reinterpret_cast<void*>(hint), span, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
             -1, 0);
    if (p != MAP_FAILED && p != reinterpret_cast<void*>(hint)) {
      munmap(p, span);  // a kernel that ignored NOREPLACE: try the next
      p = MAP_FAILED;
    }
  }
  if (p == MAP_FAILED) {
    p = mmap(nullptr, span, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  }
  if (p == MAP_FAILED) {
    fprintf(stderr, "munmap_bench: mmap of the region hole: %s\n",
            strerror(errno));
    abort();
  }
  char* r = static_cast<char*>(p) + kPageSize;
  munmap(r, kRegionLength);  // the hole the iterations fill and empty
  return r;
}

// The region each case unmaps (monitored, cached, hooked: what the case is
// about), and the control region unmapped next to it in every iteration,
// never cached and always by the raw system call, so that no hook sees it
// (MunmapTimer::TimePair()).
char* RegionHole() {
  static char* const region = MakeHole(0);
  return region;
}
char* ControlHole() {
  static char* const control = MakeHole(uintptr_t{1} << 39);
  return control;
}

// Maps the region into its hole and touches one page. False on failure.
bool MapRegion(char* region) {
  void* p = mmap(region, kRegionLength, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p != region) {
    if (p != MAP_FAILED) munmap(p, kRegionLength);
    return false;
  }
  *static_cast<volatile char*>(p) = 1;
  return true;
}

// The N other entries: 4 KiB ranges carved from one untouched
// MAP_NORESERVE mapping (address space only; the fake registrar never
// touches memory, and both monitors watch untouched memory fine).
char* OthersArena() {
  static char* const arena = [] {
    void* p = mmap(nullptr, kMaxOthers * kOtherLength, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      fprintf(stderr, "munmap_bench: mmap of the arena: %s\n", strerror(errno));
      abort();
    }
    return static_cast<char*>(p);
  }();
  return arena;
}

// ---------------------------------------------------------------------------
// A regcache with a monitor and N other cached entries. One alive at a time,
// kept across the repetitions of a case.

struct CacheFixture {
  std::string key;
  std::string error;  // non-empty: the case is skipped with this reason
  regcache_registrar registrar{};
  regcache_t* cache = nullptr;
  size_t others = 0;

  ~CacheFixture() {
    if (cache != nullptr) regcache_destroy(cache);
  }
};

std::unique_ptr<CacheFixture> g_fixture;

// Destroys whichever fixture (cache or raw module context) is alive.
void DropFixtures();

CacheFixture* GetCacheFixture(regcache_monitor_kind monitor, size_t others) {
  const std::string key = std::string(regcache_monitor_name(monitor)) + "/" +
                          std::to_string(others);
  if (g_fixture != nullptr && g_fixture->key == key) return g_fixture.get();
  DropFixtures();  // at most one cache (and one monitor) alive
  auto f = std::make_unique<CacheFixture>();
  f->key = key;
  f->others = others;
  g_fixture = std::move(f);
  CacheFixture* fx = g_fixture.get();

  if (monitor == REGCACHE_MONITOR_KMOD && access("/dev/regcache", F_OK) != 0) {
    fx->error =
        "no /dev/regcache (the regcache module is not loaded; "
        "run in the VM with --module, see docs/kmod.md)";
    return fx;
  }
  int rc = regcache_registrar_fake(/*lock_memory=*/0, &fx->registrar);
  if (rc != 0) {
    fx->error = Describe("regcache_registrar_fake", rc);
    return fx;
  }
  regcache_config config;
  rc = regcache_config_init(&config);
  if (rc != 0) {
    fx->error = Describe("regcache_config_init", rc);
    return fx;
  }
  config.max_entries = 0;  // no eviction: every entry stays cached
  config.max_bytes = 0;
  // Every get is cached: the region is mapped, cached and unmapped again
  // and again at one address without a hit, which the adaptive admission
  // would soon serve uncached (unwatched, so its munmap would cost the
  // monitor nothing). What is measured is the munmap() of a watched range.
  config.admission = REGCACHE_ADMISSION_ALWAYS;
  config.monitor = monitor;
  config.print_stats_at_exit = 0;
  {
    HelperSettings helpers;  // the monitor's threads and the reaper start there
    rc = regcache_create(&fx->registrar, &config, &fx->cache);
  }
  if (rc != 0) {
    fx->cache = nullptr;
    fx->error = Describe("regcache_create", rc);
    return fx;
  }
  char* const arena = OthersArena();
  for (size_t i = 0; i < others; ++i) {
    regcache_handle_t* h = nullptr;
    rc = regcache_get(fx->cache, arena + i * kOtherLength, kOtherLength,
                      kAccess, &h);
    if (rc != 0) {
      fx->error = Describe("regcache_get of another entry", rc);
      return fx;
    }
    regcache_put(fx->cache, h);
  }
  struct regcache_stats stats;
  regcache_stats(fx->cache, &stats);
  if (stats.entries_now != others || stats.uncacheable != 0) {
    fx->error = "populating: " + std::to_string(stats.entries_now) +
                " entries, " + std::to_string(stats.uncacheable) +
                " uncacheable; expected " + std::to_string(others) +
                " watched entries";
  }
  return fx;
}

// Sleeping (not spinning) while waiting for the monitor threads lets them
// run even when they are SCHED_IDLE on the timed thread's CPU.
constexpr useconds_t kPollSleepUs = 20;
// After their work is visible, a little longer, so that they are back asleep
// (in poll(), on their condition variable) when the next munmap() wakes them.
constexpr useconds_t kSettleUs = 100;

// Waits until the cache has counted `unmaps` unmap invalidations and holds
// `entries` registrations, i.e. its monitor threads and reaper are done with
// the last munmap(). False on timeout.
bool WaitQuiescent(regcache_t* cache, uint64_t unmaps, uint64_t entries) {
  const uint64_t deadline = NowNs() + uint64_t(kQuiesceTimeoutSeconds * 1e9);
  for (;;) {
    struct regcache_stats s;
    if (regcache_stats(cache, &s) != 0) return false;
    if (s.invalidations[REGCACHE_INVAL_UNMAP] >= unmaps &&
        s.entries_now == entries) {
      usleep(kSettleUs);
      return true;
    }
    if (NowNs() > deadline) return false;
    usleep(kPollSleepUs);
  }
}

// ---------------------------------------------------------------------------
// The cases

// Times munmap() calls of the region, one per iteration, and counts those
// during which the thread was switched out: preempted (another thread ran
// on its CPU, e.g. a monitor thread it had just woken) or blocked (it
// waited, e.g. for the uffd reader). getrusage() runs outside the timed
// window.
//
// TimePair() also unmaps the control region in the same iteration, by the
// raw system call (no libc wrapper, so no munmap() hook sees it) and never
// cached, in alternating order with the region. The median of the
// per-iteration differences (`paired_added_ns`) is what the case adds to a
// munmap() measured against one made in the same process at the same
// moment: slow drifts of the machine, which move whole cases run minutes
// apart by several microseconds in the VM, cancel out. In a case with a
// kmod monitor the control still runs the notifier (which finds nothing
// there); kmod/0 against plain measures that part.
class MunmapTimer {
 public:
  uint64_t Time(benchmark::State& state, char* region) {
    BeforeTimedMunmap();
    rusage before, after;
    getrusage(RUSAGE_THREAD, &before);
    const uint64_t t0 = NowNs();
    munmap(region, kRegionLength);
    const uint64_t t1 = NowNs();
    getrusage(RUSAGE_THREAD, &after);
    samples_.Add(state, t1 - t0);
    ++calls_;
    if (after.ru_nivcsw != before.ru_nivcsw) ++preempted_;
    if (after.ru_nvcsw != before.ru_nvcsw) ++blocked_;
    return t1 - t0;
  }

  void TimePair(benchmark::State& state, char* region, char* control) {
    const bool control_first = (calls_ & 1) != 0;
    uint64_t c = control_first ? TimeControl(control) : 0;
    const uint64_t r = Time(state, region);
    if (!control_first) c = TimeControl(control);
    control_.Record(c);
    if (differences_.size() < differences_.capacity())
      differences_.push_back(int64_t(r) - int64_t(c));
  }

  void Report(benchmark::State& state) {
    samples_.Report(state, "munmap");
    control_.Report(state, "control");
    if (!differences_.empty()) {
      std::sort(differences_.begin(), differences_.end());
      state.counters["paired_added_ns"] =
          double(differences_[differences_.size() / 2]);
    }
    if (calls_ == 0) return;
    state.counters["preempted_pct"] =
        100.0 * double(preempted_) / double(calls_);
    state.counters["blocked_pct"] = 100.0 * double(blocked_) / double(calls_);
  }

 private:
  // What every timed munmap() is preceded by (REGCACHE_BENCH_PACE_US,
  // REGCACHE_BENCH_WARM).
  static void BeforeTimedMunmap() {
    if (g_pace_us > 0) usleep(useconds_t(g_pace_us));
    if (g_warm) WarmUp();
  }

  uint64_t TimeControl(char* control) {
    BeforeTimedMunmap();
    const uint64_t t0 = NowNs();
    syscall(SYS_munmap, control, kRegionLength);
    return NowNs() - t0;
  }

  Samples samples_;
  Samples control_;
  std::vector<int64_t> differences_ = [] {
    std::vector<int64_t> v;
    v.reserve(size_t{1} << 20);
    return v;
  }();
  uint64_t calls_ = 0, preempted_ = 0, blocked_ = 0;
};

// Maps both holes for one TimePair(). False (with the case skipped) on
// failure.
bool MapPair(benchmark::State& state, char* region, char* control) {
  if (MapRegion(region) && MapRegion(control)) return true;
  state.SkipWithError("mmap into the region's or the control's hole failed");
  return false;
}

bool RefuseAfterUcx(benchmark::State& state) {
  if (!g_ucm_hooks_installed) return false;
  state.SkipWithError(
      "UCX's memory hooks were installed by BM_Munmap/ucx_hooks earlier in "
      "this process and cannot be removed: run this case in another process");
  return true;
}

void BM_MunmapPlain(benchmark::State& state) {
  if (RefuseAfterUcx(state)) return;
  DropFixtures();  // no cache, no monitor thread
  char* const region = RegionHole();
  char* const control = ControlHole();
  MunmapTimer timer;
  for (auto _ : state) {
    if (!MapPair(state, region, control)) break;
    timer.TimePair(state, region, control);
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
  timer.Report(state);
}

void BM_MunmapMonitored(benchmark::State& state,
                        regcache_monitor_kind monitor) {
  if (RefuseAfterUcx(state)) return;
  const size_t others = size_t(state.range(0));
  CacheFixture* fx = GetCacheFixture(monitor, others);
  if (!fx->error.empty()) {
    state.SkipWithError(fx->error.c_str());
    return;
  }
  // N = 0: the monitor runs but caches nothing; N > 0: the region is one
  // of the cached (watched) buffers as well.
  const bool cache_region = others > 0;
  regcache_t* const cache = fx->cache;
  char* const region = RegionHole();
  char* const control = ControlHole();
  struct regcache_stats before;
  regcache_stats(cache, &before);
  uint64_t unmaps = before.invalidations[REGCACHE_INVAL_UNMAP];
  MunmapTimer timer;
  for (auto _ : state) {
    if (!MapPair(state, region, control)) break;
    if (cache_region) {
      regcache_handle_t* h = nullptr;
      const int rc = regcache_get(cache, region, kRegionLength, kAccess, &h);
      if (rc != 0) {
        state.SkipWithError(Describe("regcache_get of the region", rc).c_str());
        break;
      }
      regcache_put(cache, h);
    }
    timer.TimePair(state, region, control);
    if (cache_region) {
      ++unmaps;
      if (!WaitQuiescent(cache, unmaps, others)) {
        state.SkipWithError(
            "the monitor did not report the munmap() as an invalidation "
            "within 10 s: not a monitored munmap");
        break;
      }
    }
  }
  struct regcache_stats after;
  regcache_stats(cache, &after);
  const double iterations = double(state.iterations());
  state.counters["registrations_per_munmap"] =
      iterations > 0
          ? double(after.registrations - before.registrations) / iterations
          : 0.0;
  state.counters["others"] = double(others);
  state.SetItemsProcessed(int64_t(state.iterations()));
  timer.Report(state);
  if (after.uncacheable != before.uncacheable ||
      after.uncached_churn != before.uncached_churn) {
    state.SkipWithError(
        "the region was served uncached (the monitor could "
        "not watch it): not a monitored munmap");
  }
}

void BM_MunmapKmod(benchmark::State& state) {
  BM_MunmapMonitored(state, REGCACHE_MONITOR_KMOD);
}
void BM_MunmapUffd(benchmark::State& state) {
  BM_MunmapMonitored(state, REGCACHE_MONITOR_UFFD);
}

// ---------------------------------------------------------------------------
// Diagnostics: the module through its raw ABI (no cache), to tell the
// notifier's own work from the wake-up of the thread that reads its events.
//   BM_Munmap/kmod_abi/<N>         N other ranges and the region MONITORed;
//                                  nobody polls the fd, so the notifier's
//                                  wake-up finds no waiter
//   BM_Munmap/kmod_abi_reader/<N>  the same with a thread blocked in poll()
//                                  on the fd (as the cache's event thread
//                                  is), which each munmap() wakes

struct AbiFixture {
  int fd = -1;
  int stop = -1;  // eventfd that stops the reader
  std::thread reader;
  std::atomic<uint64_t> acked{0};  // ring position the reader acknowledged
  std::string error;

  ~AbiFixture() {
    if (reader.joinable()) {
      const uint64_t one = 1;
      (void)!write(stop, &one, sizeof(one));
      reader.join();
    }
    if (stop >= 0) close(stop);
    if (fd >= 0) close(fd);
  }

  static void ReaderLoop(AbiFixture* fx, int fd, int stop) {
    for (;;) {
      pollfd fds[2] = {{fd, POLLIN, 0}, {stop, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0 && errno == EINTR) continue;
      if (fds[1].revents != 0 ||
          (fds[0].revents & (POLLERR | POLLNVAL | POLLHUP)))
        return;
      regcache_kmod_ack ack{};
      ack.tail = ~uint64_t{0};  // everything so far (clamped to the head)
      if (ioctl(fd, REGCACHE_IOC_ACK_EVENTS, &ack) != 0) return;
      fx->acked.store(ack.head, std::memory_order_release);
    }
  }
};

std::unique_ptr<AbiFixture> g_abi_fixture;
std::string g_abi_key;

void DropFixtures() {
  g_fixture.reset();
  g_abi_fixture.reset();
}

AbiFixture* GetAbiFixture(size_t others, bool with_reader) {
  const std::string key =
      std::to_string(others) + (with_reader ? "/reader" : "/none");
  if (g_abi_fixture != nullptr && g_abi_key == key) return g_abi_fixture.get();
  DropFixtures();
  g_abi_key = key;
  g_abi_fixture = std::make_unique<AbiFixture>();
  AbiFixture* fx = g_abi_fixture.get();
  fx->fd = open(REGCACHE_KMOD_DEVICE_PATH, O_RDWR | O_CLOEXEC);
  if (fx->fd < 0) {
    fx->error = std::string("no /dev/regcache (") + strerror(errno) +
                "; the regcache module is not loaded: run in the VM with "
                "--module, see docs/kmod.md)";
    return fx;
  }
  char* const arena = OthersArena();
  std::vector<regcache_kmod_range> batch(REGCACHE_KMOD_BATCH_MAX);
  for (size_t done = 0; done < others;) {
    const size_t n = std::min(others - done, batch.size());
    for (size_t i = 0; i < n; ++i) {
      batch[i] = regcache_kmod_range{};
      batch[i].start = uint64_t(uintptr_t(arena + (done + i) * kOtherLength));
      batch[i].length = kOtherLength;
      batch[i].cookie = done + i + 1;
    }
    regcache_kmod_monitor_batch b{};
    b.ranges = uint64_t(uintptr_t(batch.data()));
    b.count = uint32_t(n);
    if (ioctl(fx->fd, REGCACHE_IOC_MONITOR_BATCH, &b) != 0) {
      fx->error = std::string("REGCACHE_IOC_MONITOR_BATCH: ") + strerror(errno);
      return fx;
    }
    done += n;
  }
  if (with_reader) {
    fx->stop = eventfd(0, EFD_CLOEXEC);
    if (fx->stop < 0) {
      fx->error = std::string("eventfd: ") + strerror(errno);
      return fx;
    }
    HelperSettings helpers;
    fx->reader = std::thread(&AbiFixture::ReaderLoop, fx, fx->fd, fx->stop);
  }
  return fx;
}

// Waits until the reader acknowledged `events` ring events, then lets it get
// back into poll(). False on timeout.
bool WaitAcked(AbiFixture* fx, uint64_t events) {
  const uint64_t deadline = NowNs() + uint64_t(kQuiesceTimeoutSeconds * 1e9);
  while (fx->acked.load(std::memory_order_acquire) < events) {
    if (NowNs() > deadline) return false;
    usleep(kPollSleepUs);
  }
  usleep(kSettleUs);
  return true;
}

void BM_MunmapKmodAbi(benchmark::State& state, bool with_reader) {
  if (RefuseAfterUcx(state)) return;
  const size_t others = size_t(state.range(0));
  AbiFixture* fx = GetAbiFixture(others, with_reader);
  if (!fx->error.empty()) {
    state.SkipWithError(fx->error.c_str());
    return;
  }
  char* const region = RegionHole();
  char* const control = ControlHole();
  regcache_kmod_stats before{};
  ioctl(fx->fd, REGCACHE_IOC_STATS, &before);
  MunmapTimer timer;
  uint64_t events = before.events;  // one ring event per munmap()
  for (auto _ : state) {
    if (!MapPair(state, region, control)) break;
    regcache_kmod_range r{};
    r.start = uint64_t(uintptr_t(region));
    r.length = kRegionLength;
    r.cookie = 0;
    if (ioctl(fx->fd, REGCACHE_IOC_MONITOR, &r) != 0) {
      state.SkipWithError(
          (std::string("REGCACHE_IOC_MONITOR: ") + strerror(errno)).c_str());
      break;
    }
    timer.TimePair(state, region, control);
    regcache_kmod_unmonitor u{};
    u.slot = r.slot;
    u.generation = r.generation;
    ioctl(fx->fd, REGCACHE_IOC_UNMONITOR, &u);
    ++events;
    if (with_reader && !WaitAcked(fx, events)) {
      state.SkipWithError("the reader did not acknowledge the event in 10 s");
      break;
    }
  }
  regcache_kmod_stats after{};
  ioctl(fx->fd, REGCACHE_IOC_STATS, &after);
  const uint64_t stale = after.invalidated[REGCACHE_KMOD_REASON_UNMAP] -
                         before.invalidated[REGCACHE_KMOD_REASON_UNMAP];
  state.counters["others"] = double(others);
  state.SetItemsProcessed(int64_t(state.iterations()));
  timer.Report(state);
  if (stale != uint64_t(state.iterations())) {
    state.SkipWithError(("the module made " + std::to_string(stale) +
                         " ranges stale for " +
                         std::to_string(state.iterations()) + " munmap() calls")
                            .c_str());
  }
}

// ---------------------------------------------------------------------------
// UCX: a ucs_rcache that asks libucm for VM_UNMAPPED events, which makes
// libucm intercept munmap() (UCX_MEM_MMAP_HOOK_MODE: bistro or reloc). The
// registrar is a no-op that counts deregistrations: a region is deregistered
// when the rcache processes the unmap event its hook queued, so the count
// proves that the hook saw every munmap().

struct UcxHooks {
  ucs_rcache_t* rcache = nullptr;
  uint64_t deregistrations = 0;  // under UCX's page-table lock
  std::string error;

  static ucs_status_t MemReg(void*, ucs_rcache_t*, void*, ucs_rcache_region_t*,
                             uint16_t) {
    return UCS_OK;
  }
  static void MemDereg(void* context, ucs_rcache_t*, ucs_rcache_region_t*) {
    ++static_cast<UcxHooks*>(context)->deregistrations;
  }
  static void DumpRegion(void*, ucs_rcache_t*, ucs_rcache_region_t*, char* buf,
                         size_t max) {
    snprintf(buf, max, "no-op");
  }

  bool Create() {
    static const ucs_rcache_ops_t ops = {
        .mem_reg = &UcxHooks::MemReg,
        .mem_dereg = &UcxHooks::MemDereg,
        .dump_region = &UcxHooks::DumpRegion,
    };
    ucs_rcache_params_t params = {};
    params.region_struct_size = sizeof(ucs_rcache_region_t);
    params.alignment = kPageSize;
    params.max_alignment = kPageSize;
    params.ucm_events = UCM_EVENT_VM_UNMAPPED;  // installs the munmap hook
    params.ucm_event_priority = 1000;           // UCX's default
    params.ops = &ops;
    params.context = this;
    params.flags = 0;
    params.max_regions = ULONG_MAX;
    params.max_size = SIZE_MAX;
    params.max_unreleased = SIZE_MAX;
    g_ucm_hooks_installed = true;  // from here on, even if creation fails
    const ucs_status_t status =
        ucs_rcache_create(&params, "regcache_munmap_bench", nullptr, &rcache);
    if (status != UCS_OK) {
      rcache = nullptr;
      error = std::string("ucs_rcache_create with UCM_EVENT_VM_UNMAPPED: ") +
              ucs_status_string(status);
      return false;
    }
    return true;
  }
};

UcxHooks* GetUcxHooks() {
  static UcxHooks* const hooks = [] {
    DropFixtures();            // no regcache monitor alongside
    auto* h = new UcxHooks();  // never destroyed: the hooks stay anyway
    h->Create();
    return h;
  }();
  return hooks;
}

const char* UcmHookModeName() {
  switch (ucm_global_opts.mmap_hook_mode) {
    case UCM_MMAP_HOOK_NONE:
      return "none";
    case UCM_MMAP_HOOK_RELOC:
      return "reloc";
    case UCM_MMAP_HOOK_BISTRO:
      return "bistro";
    default:
      return "unknown";
  }
}

void BM_MunmapUcxHooks(benchmark::State& state) {
  UcxHooks* ucx = GetUcxHooks();
  if (!ucx->error.empty()) {
    state.SkipWithError(ucx->error.c_str());
    return;
  }
  char* const region = RegionHole();
  char* const control = ControlHole();
  const uint64_t deregs_before = ucx->deregistrations;
  MunmapTimer timer;
  for (auto _ : state) {
    if (!MapPair(state, region, control)) break;
    // The get also processes the unmap event of the previous iteration.
    ucs_rcache_region_t* r = nullptr;
    if (ucs_rcache_get(ucx->rcache, region, kRegionLength,
                       PROT_READ | PROT_WRITE, nullptr, &r) != UCS_OK) {
      state.SkipWithError("ucs_rcache_get of the region failed");
      break;
    }
    ucs_rcache_region_put(ucx->rcache, r);
    timer.TimePair(state, region, control);
  }
  // Process the last event too: one deregistration per munmap().
  if (MapRegion(region)) {
    ucs_rcache_region_t* r = nullptr;
    if (ucs_rcache_get(ucx->rcache, region, kRegionLength,
                       PROT_READ | PROT_WRITE, nullptr, &r) == UCS_OK) {
      ucs_rcache_region_put(ucx->rcache, r);
    }
    munmap(region, kRegionLength);
  }
  const uint64_t deregs = ucx->deregistrations - deregs_before;
  state.counters["ucm_hook_mode_bistro"] =
      ucm_global_opts.mmap_hook_mode == UCM_MMAP_HOOK_BISTRO ? 1 : 0;
  state.SetItemsProcessed(int64_t(state.iterations()));
  timer.Report(state);
  if (deregs < uint64_t(state.iterations())) {
    state.SkipWithError(("UCX's munmap hook saw " + std::to_string(deregs) +
                         " of " + std::to_string(state.iterations()) +
                         " munmap() calls: hooks not working here")
                            .c_str());
  }
}

void RegisterAll() {
  benchmark::RegisterBenchmark("BM_Munmap/plain", BM_MunmapPlain)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_Munmap/kmod", BM_MunmapKmod)
      ->Arg(0)
      ->Arg(1000)
      ->Arg(int64_t(kMaxOthers))
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_Munmap/uffd", BM_MunmapUffd)
      ->Arg(0)
      ->Arg(1000)
      ->Arg(int64_t(kMaxOthers))
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(
      "BM_Munmap/kmod_abi",
      [](benchmark::State& s) { BM_MunmapKmodAbi(s, /*with_reader=*/false); })
      ->Arg(1000)
      ->Arg(int64_t(kMaxOthers))
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(
      "BM_Munmap/kmod_abi_reader",
      [](benchmark::State& s) { BM_MunmapKmodAbi(s, /*with_reader=*/true); })
      ->Arg(1000)
      ->Arg(int64_t(kMaxOthers))
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  // Last: its hooks stay installed for the rest of the process.
  benchmark::RegisterBenchmark("BM_Munmap/ucx_hooks", BM_MunmapUcxHooks)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace
}  // namespace regcache_bench

int main(int argc, char** argv) {
  using namespace regcache_bench;
  if (!StartBenchmark(&argc, argv, "munmap_bench")) return 1;
  if (!SetUpHelpers()) return 1;
  benchmark::AddCustomContext("region_bytes", std::to_string(kRegionLength));
  benchmark::AddCustomContext("registrar", "regcache_registrar_fake(0): no-op");
  benchmark::AddCustomContext("ucm_mmap_hook_mode", UcmHookModeName());
  benchmark::AddCustomContext(
      "dev_regcache", access("/dev/regcache", F_OK) == 0 ? "yes" : "no");
  benchmark::AddCustomContext("monitor_threads", HelpersDescription());
  RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  DropFixtures();
  benchmark::Shutdown();
  return 0;
}
