// SPDX-License-Identifier: BSD-2-Clause
//
// Miss-path overhead: what the cache adds (monitor watch and unwatch, index
// and tree bookkeeping, eviction, the reclaim fence) to the ibv_reg_mr() +
// ibv_dereg_mr() it cannot avoid on a miss, measured against the raw pair on
// the same device, protection domain and buffers, in one binary.
//
// Cases (docs/benchmarks.md, "Monitor costs"):
//   BM_RegDereg/raw/<bytes>             ibv_reg_mr + ibv_dereg_mr
//   BM_RegDereg/regcache-kmod/<bytes>   regcache_get (a miss) + regcache_put,
//                                       REGCACHE_MONITOR_KMOD
//   BM_RegDereg/regcache-uffd/<bytes>   the same with REGCACHE_MONITOR_UFFD
//   BM_RegDeregPaired/<monitor>/<bytes> raw, cached, and raw in the cache's
//                                       order, interleaved in one run and
//                                       each timed: the overhead with the
//                                       machine's drift taken out (against
//                                       raw calls in the cache's order), and
//                                       how much lies inside the cache's
//                                       own ibv_reg_mr/ibv_dereg_mr calls
//                                       (monitors kmod, uffd, and none)
// for 4 KiB, 1 MiB and 64 MiB, and a diagnostic that needs no device:
//   BM_MissOverhead/<monitor>           the same misses of 4 KiB with the
//                                       fake no-op registrar: the cache's
//                                       own cost per miss, in absolute time
//   BM_UncachedPaired/<monitor>/<bytes> the adaptive admission's uncached
//                                       get (a range that churns) against
//                                       raw ibv_reg_mr + ibv_dereg_mr,
//                                       interleaved in one run
//   BM_UncachedPairedSwitched/<monitor>/<bytes>  the same, each of the two
//                                       right after a switch to another
//                                       process and back (4 KiB and 1 MiB)
//
// The cached-miss cases force admission (REGCACHE_ADMISSION_ALWAYS): they
// measure a miss that is kept. Every such case alternates between two
// buffers of the size, touched before the timed loop so that no page fault
// is timed. The cache runs with max_entries = 1: each get of the other buffer
// misses, evicts the previous buffer's unused entry and reclaims it (fence,
// hold scan, unwatch, deregister), then watches, registers and inserts the new
// one, all in the calling thread. That is the steady state of a full cache
// taking a capacity miss: exactly one registration and one deregistration per
// iteration, both in the timed thread, with no help from the reaper thread.
// (The alternative, get + put + regcache_invalidate() of the same range, adds a
// wake-up of the reaper that a real miss does not pay.) Each run checks the
// cache's counters and fails if an iteration did not register and deregister
// exactly once.
//
// BM_RegDeregPaired at 64 MiB runs at least one second whatever
// --benchmark_min_time says.
//
// BM_RegDereg needs an RDMA device (rxe0 in the VM rig); without one those
// cases are skipped with the reason. REGCACHE_BENCH_DEVICE=name picks a device.
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <initializer_list>
#include <map>
#include <string>
#include <utility>

#include <benchmark/benchmark.h>
#include <regcache/ibverbs.h>
#include <regcache/regcache.h>

#include "bench_common.h"
#include "samples.h"

namespace regcache_bench {
namespace {

constexpr uint32_t kCacheAccess = REGCACHE_ACCESS_LOCAL_WRITE |
                                  REGCACHE_ACCESS_REMOTE_WRITE |
                                  REGCACHE_ACCESS_REMOTE_READ;
// What the ibverbs registrar passes for kCacheAccess.
constexpr int kIbvAccess =
    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

// ---------------------------------------------------------------------------
// The device: opened once, kept for the whole run.

struct Device {
  ibv_context* context = nullptr;
  ibv_pd* pd = nullptr;
  std::string name;
  std::string error;  // non-empty: every case is skipped with this reason
};

Device* GetDevice() {
  static Device* const device = [] {
    auto* d = new Device();
    int n = 0;
    ibv_device** list = ibv_get_device_list(&n);
    if (list == nullptr || n == 0) {
      d->error =
          "no RDMA device (ibv_get_device_list found none): run in "
          "the VM rig, tests/vm/run-in-vm.sh, which has rxe0";
      if (list != nullptr) ibv_free_device_list(list);
      return d;
    }
    const char* want = getenv("REGCACHE_BENCH_DEVICE");
    ibv_device* chosen = nullptr;
    for (int i = 0; i < n && chosen == nullptr; ++i) {
      if (want == nullptr || strcmp(ibv_get_device_name(list[i]), want) == 0)
        chosen = list[i];
    }
    if (chosen == nullptr) {
      d->error = std::string("no RDMA device named ") + want;
    } else {
      d->name = ibv_get_device_name(chosen);
      d->context = ibv_open_device(chosen);
      if (d->context == nullptr) {
        d->error = "ibv_open_device(" + d->name + "): " + strerror(errno);
      } else {
        d->pd = ibv_alloc_pd(d->context);
        if (d->pd == nullptr)
          d->error = "ibv_alloc_pd(" + d->name + "): " + strerror(errno);
      }
    }
    ibv_free_device_list(list);
    return d;
  }();
  return device;
}

// ---------------------------------------------------------------------------
// Buffers: two per size and set, every page written once before any timing.
// The paired cases give raw registration its own set (set 1), so that it
// never registers the pages the cache holds registered.

struct BufferPair {
  char* buffer[2] = {nullptr, nullptr};
};

// All sets of a size come from one mapping, their buffers interleaved
// (set 0 buffer 0, set 1 buffer 0, set 2 buffer 0, set 0 buffer 1, ...) and
// written in one pass, so that no set gets physically "better" memory than
// another. Allocated one set at a time, the set allocated first (the cache's)
// was registered up to 27 % slower than the raw sides' at 1 MiB in some
// runs (fewer physically contiguous pages after earlier cases had run),
// which the paired comparison then charged to the cache. Buffers of 2 MiB
// and more are 2 MiB aligned, so every one gets the same transparent huge
// page backing; smaller ones are MADV_NOHUGEPAGE (the rig's kernel has THP
// "always").
constexpr int kBufferSets = 3;

BufferPair* GetBuffers(size_t bytes, int set = 0) {
  constexpr size_t kHugeAlign = size_t{2} << 20;
  static std::map<size_t, std::array<BufferPair, kBufferSets>> sizes;
  auto found = sizes.find(bytes);
  if (found == sizes.end()) {
    const size_t align = bytes >= kHugeAlign ? kHugeAlign : kPageSize;
    const size_t stride = (bytes + align - 1) / align * align;
    const size_t n = 2 * kBufferSets;
    void* p = mmap(nullptr, n * stride + align, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    char* base = reinterpret_cast<char*>(
        (reinterpret_cast<uintptr_t>(p) + align - 1) & ~(uintptr_t{align} - 1));
    if (bytes < kHugeAlign) madvise(base, n * stride, MADV_NOHUGEPAGE);
    memset(base, 0x5a, n * stride);  // fault every page in now
    found = sizes.emplace(bytes, std::array<BufferPair, kBufferSets>{}).first;
    for (int b = 0; b < 2; ++b)
      for (int s = 0; s < kBufferSets; ++s)
        found->second[s].buffer[b] = base + (b * kBufferSets + s) * stride;
  }
  return set < kBufferSets ? &found->second[set] : nullptr;
}

// The rxe device and the buffer sets `sets` of this size, or nullptr after
// marking the case skipped with the reason.
Device* DeviceAndBuffers(benchmark::State& state, size_t bytes,
                         std::initializer_list<BufferPair**> sets) {
  Device* dev = GetDevice();
  if (!dev->error.empty()) {
    state.SkipWithError(dev->error.c_str());
    return nullptr;
  }
  int set = 0;
  for (BufferPair** out : sets) {
    *out = GetBuffers(bytes, set++);
    if (*out == nullptr) {
      state.SkipWithError("mmap of the buffers failed");
      return nullptr;
    }
  }
  return dev;
}

// ---------------------------------------------------------------------------
// The cases

void BM_RegDeregRaw(benchmark::State& state, size_t bytes) {
  BufferPair* bufs = nullptr;
  Device* dev = DeviceAndBuffers(state, bytes, {&bufs});
  if (dev == nullptr) return;
  Samples samples;
  size_t i = 0;
  for (auto _ : state) {
    const uint64_t t0 = NowNs();
    ibv_mr* mr = ibv_reg_mr(dev->pd, bufs->buffer[i++ & 1], bytes, kIbvAccess);
    if (mr == nullptr) {
      state.SkipWithError((std::string("ibv_reg_mr: ") + strerror(errno) +
                           " (RLIMIT_MEMLOCK? run as root in the VM)")
                              .c_str());
      break;
    }
    ibv_dereg_mr(mr);
    samples.Add(state, NowNs() - t0);
  }
  samples.Report(state, "iteration");
  state.SetItemsProcessed(int64_t(state.iterations()));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
}

// A cache with max_entries = 1 holding buffer 1 of `bufs`, so that every
// get of the other buffer misses and evicts (see the top of this file), and
// the checks that the timed gets did exactly that.
class MissCache {
 public:
  ~MissCache() {
    if (cache_ != nullptr) regcache_destroy(cache_);
  }

  // False with *why set on failure.
  bool Create(const regcache_registrar& registrar, size_t bytes,
              regcache_monitor_kind monitor, BufferPair* bufs,
              std::string* why) {
    bytes_ = bytes;
    bufs_ = bufs;
    if (monitor == REGCACHE_MONITOR_KMOD &&
        access("/dev/regcache", F_OK) != 0) {
      *why =
          "no /dev/regcache (the regcache module is not loaded; run in "
          "the VM with --module, see docs/kmod.md)";
      return false;
    }
    regcache_config config;
    int rc = regcache_config_init(&config);
    if (rc != 0) return Fail("regcache_config_init", rc, why);
    config.max_entries = 1;  // every get of the other buffer evicts
    config.max_bytes = 0;
    // Every miss is kept: the adaptive admission would keep the incumbent
    // and serve the other buffer uncached (a tie in the frequency sketch),
    // which is not the cached miss these cases measure.
    config.admission = REGCACHE_ADMISSION_ALWAYS;
    config.monitor = monitor;
    config.print_stats_at_exit = 0;
    rc = regcache_create(&registrar, &config, &cache_);
    if (rc != 0) {
      cache_ = nullptr;
      return Fail("regcache_create", rc, why);
    }
    // Steady state: buffer 1 cached, so the first timed get (buffer 0)
    // already evicts.
    regcache_handle_t* h = nullptr;
    rc = regcache_get(cache_, bufs_->buffer[1], bytes_, kCacheAccess, &h);
    if (rc != 0) return Fail("regcache_get", rc, why);
    regcache_put(cache_, h);
    regcache_stats(cache_, &before_);
    return true;
  }

  // Gets (a miss) and puts buffer i % 2. 0 or a negative errno.
  int Miss(size_t i) { return Miss(bufs_->buffer[i & 1]); }
  // The same for `buf`, which must not be the buffer cached now.
  int Miss(char* buf) {
    regcache_handle_t* h = nullptr;
    const int rc = regcache_get(cache_, buf, bytes_, kCacheAccess, &h);
    if (rc == 0) regcache_put(cache_, h);
    return rc;
  }

  // Counters, and an error unless each of the n gets registered once and
  // deregistered once.
  void Check(benchmark::State& state, uint64_t n) {
    struct regcache_stats after;
    regcache_stats(cache_, &after);
    const uint64_t regs = after.registrations - before_.registrations;
    const uint64_t deregs = after.deregistrations - before_.deregistrations;
    const uint64_t misses = after.misses - before_.misses;
    const uint64_t uncacheable = after.uncacheable - before_.uncacheable;
    state.counters["regs_per_iter"] = n ? double(regs) / double(n) : 0.0;
    state.counters["deregs_per_iter"] = n ? double(deregs) / double(n) : 0.0;
    if (regs != n || deregs != n || misses != n || uncacheable != 0) {
      state.SkipWithError(
          ("not one miss per iteration: " + std::to_string(n) +
           " iterations, " + std::to_string(misses) + " misses, " +
           std::to_string(regs) + " registrations, " + std::to_string(deregs) +
           " deregistrations, " + std::to_string(uncacheable) + " uncacheable")
              .c_str());
    }
  }

 private:
  static bool Fail(const char* what, int rc, std::string* why) {
    *why = Describe(what, rc);
    return false;
  }

  regcache_t* cache_ = nullptr;
  size_t bytes_ = 0;
  BufferPair* bufs_ = nullptr;
  struct regcache_stats before_ {};
};

// The cache cases' loop: one miss per iteration.
void RunMisses(benchmark::State& state, const regcache_registrar& registrar,
               size_t bytes, regcache_monitor_kind monitor, BufferPair* bufs) {
  MissCache cache;
  std::string why;
  if (!cache.Create(registrar, bytes, monitor, bufs, &why)) {
    state.SkipWithError(why.c_str());
    return;
  }
  Samples samples;
  size_t i = 0;
  int rc = 0;
  for (auto _ : state) {
    const uint64_t t0 = NowNs();
    rc = cache.Miss(i++);
    if (rc != 0) {
      state.SkipWithError(Describe("regcache_get", rc).c_str());
      break;
    }
    samples.Add(state, NowNs() - t0);
  }
  samples.Report(state, "iteration");
  state.SetItemsProcessed(int64_t(state.iterations()));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
  if (rc == 0) cache.Check(state, uint64_t(state.iterations()));
}

void BM_RegDeregCache(benchmark::State& state, size_t bytes,
                      regcache_monitor_kind monitor) {
  BufferPair* bufs = nullptr;
  Device* dev = DeviceAndBuffers(state, bytes, {&bufs});
  if (dev == nullptr) return;
  regcache_registrar registrar;
  const int rc = regcache_registrar_ibverbs(dev->pd, &registrar);
  if (rc != 0) {
    state.SkipWithError(Describe("regcache_registrar_ibverbs", rc).c_str());
    return;
  }
  RunMisses(state, registrar, bytes, monitor, bufs);
}

// Diagnostic: the same misses with the fake no-op registrar, i.e. the
// cache's own cost per miss (monitor watch/unwatch, bookkeeping, eviction,
// reclaim fence) in absolute time, without any device. Runs on the host.
void BM_MissOverhead(benchmark::State& state, regcache_monitor_kind monitor) {
  constexpr size_t kBytes = 4096;
  BufferPair* bufs = GetBuffers(kBytes);
  if (bufs == nullptr) {
    state.SkipWithError("mmap of the buffers failed");
    return;
  }
  regcache_registrar registrar;
  const int rc = regcache_registrar_fake(/*lock_memory=*/0, &registrar);
  if (rc != 0) {
    state.SkipWithError(Describe("regcache_registrar_fake", rc).c_str());
    return;
  }
  RunMisses(state, registrar, kBytes, monitor, bufs);
}

// The ibverbs registrar with its reg and dereg calls timed: how long the
// cache's own ibv_reg_mr()/ibv_dereg_mr() take, next to the raw ones, so
// that the overhead splits into "inside the registrar" (the kernel's work
// on the same buffers, which the cache cannot change) and "around it".
class TimedRegistrar {
 public:
  explicit TimedRegistrar(const regcache_registrar& inner) : inner_(inner) {}

  regcache_registrar Get() {
    return regcache_registrar{"timed-ibverbs", &Reg, &Dereg, this};
  }
  Samples& reg_samples() { return reg_; }
  Samples& dereg_samples() { return dereg_; }
  // Nanoseconds spent in reg and dereg calls so far.
  uint64_t ns_in_calls() const { return ns_in_calls_; }

 private:
  static int Reg(void* ctx, void* addr, size_t length, uint32_t access,
                 regcache_mr* out) {
    auto* self = static_cast<TimedRegistrar*>(ctx);
    const uint64_t t0 = NowNs();
    const int rc =
        self->inner_.reg(self->inner_.ctx, addr, length, access, out);
    const uint64_t ns = NowNs() - t0;
    self->reg_.Record(ns);
    self->ns_in_calls_ += ns;
    return rc;
  }
  static int Dereg(void* ctx, regcache_mr* mr) {
    auto* self = static_cast<TimedRegistrar*>(ctx);
    const uint64_t t0 = NowNs();
    const int rc = self->inner_.dereg(self->inner_.ctx, mr);
    const uint64_t ns = NowNs() - t0;
    self->dereg_.Record(ns);
    self->ns_in_calls_ += ns;
    return rc;
  }

  regcache_registrar inner_;
  Samples reg_, dereg_;
  // Only the benchmark's thread registers and deregisters: max_entries = 1
  // evicts in the calling thread, and nothing is invalidated for the reaper.
  uint64_t ns_in_calls_ = 0;
};

// BM_RegDeregPaired/<monitor>/<bytes>: each iteration does, in rotating
// order and each timed, one raw ibv_reg_mr + ibv_dereg_mr, one cache miss,
// and one "raw in the cache's order": ibv_dereg_mr of the registration made
// one iteration earlier, then ibv_reg_mr of the other buffer, which is what
// the miss does around its bookkeeping (a full cache evicts, then
// registers: one registration of the size stays alive between misses).
// The three kinds take turns with the three buffer sets: in iteration i,
// kind k registers buffer i % 2 of set (k + i) % 3, so each kind registers
// every buffer equally often (which pages, and at which addresses, moves a
// registration's cost by up to a third at 1 MiB in the rig, whoever makes
// it), and no buffer is registered by two kinds at once: the cache and the
// raw-in-order side hold the other buffer of the set they used one
// iteration earlier. All medians come from the same seconds of the same
// run, which takes the machine's drift out of their ratios:
//   overhead_pct          cache / raw in the cache's order - 1 (the
//                         target: the same registrations, in the same
//                         order and memory state, with and without the
//                         cache's work around them)
//   plain_overhead_pct    cache / plain raw reg + dereg - 1
//   order_overhead_pct    raw in the cache's order / plain raw - 1
// The order and memory state alone change what the raw calls cost (by
// tens of percent at 64 MiB in the VM rig: results/README.md), which is
// why the target compares like with like. Then where the cache's time
// goes (medians of the calls it makes through TimedRegistrar, against the
// ibv_reg_mr and ibv_dereg_mr of the raw calls in the cache's order,
// raw_reg and raw_dereg):
//   registrar_pct         (cache's reg + dereg) / (raw reg + dereg) - 1:
//                         the kernel's work for the same sizes, slower or
//                         faster under the cache (another buffer, a monitor)
//   around_registrar_median_ns  per miss, its time less the time of the
//                         reg and dereg calls it made: the cache's own work
//                         (watch, unwatch, index, fence)
// The iteration time Google Benchmark reports is the sum of the three.
// With REGCACHE_MONITOR_NONE the same loop shows what the cache core costs
// without any monitor.
void BM_RegDeregPaired(benchmark::State& state, size_t bytes,
                       regcache_monitor_kind monitor) {
  BufferPair* sets[3] = {nullptr, nullptr, nullptr};
  Device* dev = DeviceAndBuffers(state, bytes, {&sets[0], &sets[1], &sets[2]});
  if (dev == nullptr) return;
  // Kind k's buffer in iteration i (0: raw, 1: cache, 2: raw in order).
  auto buffer = [&](int kind, size_t i) {
    return sets[(size_t(kind) + i) % 3]->buffer[i & 1];
  };
  regcache_registrar ibverbs;
  int rc = regcache_registrar_ibverbs(dev->pd, &ibverbs);
  if (rc != 0) {
    state.SkipWithError(Describe("regcache_registrar_ibverbs", rc).c_str());
    return;
  }
  TimedRegistrar timed(ibverbs);
  MissCache cache;
  std::string why;
  // Both start where iteration -1 left them: the cache with buffer 1 of
  // set 0, the raw-in-cache-order side with buffer 1 of set 1.
  if (!cache.Create(timed.Get(), bytes, monitor, sets[0], &why)) {
    state.SkipWithError(why.c_str());
    return;
  }
  ibv_mr* held = ibv_reg_mr(dev->pd, sets[1]->buffer[1], bytes, kIbvAccess);
  if (held == nullptr) {
    state.SkipWithError(Describe("ibv_reg_mr", -errno).c_str());
    return;
  }
  // Create() registered buffer 1: only the timed loop's calls count.
  timed.reg_samples() = Samples();
  timed.dereg_samples() = Samples();
  Samples raw_samples, cache_samples, order_samples, raw_reg, raw_dereg, around;
  size_t i = 0;
  for (auto _ : state) {
    uint64_t ns[3] = {0, 0, 0};  // raw, cache, raw in the cache's order
    for (int step = 0; step < 3 && rc == 0; ++step) {
      const int kind = int((step + i) % 3);  // rotate which goes first
      const uint64_t t0 = NowNs();
      if (kind == 0) {
        ibv_mr* mr = ibv_reg_mr(dev->pd, buffer(0, i), bytes, kIbvAccess);
        if (mr == nullptr) {
          rc = errno != 0 ? -errno : -EIO;
          break;
        }
        ibv_dereg_mr(mr);
      } else if (kind == 1) {
        const uint64_t in_calls = timed.ns_in_calls();
        rc = cache.Miss(buffer(1, i));
        if (rc != 0) break;
        around.Record(NowNs() - t0 - (timed.ns_in_calls() - in_calls));
      } else {
        ibv_dereg_mr(held);
        const uint64_t t1 = NowNs();
        held = ibv_reg_mr(dev->pd, buffer(2, i), bytes, kIbvAccess);
        if (held == nullptr) {
          rc = errno != 0 ? -errno : -EIO;
          break;
        }
        raw_dereg.Record(t1 - t0);
        raw_reg.Record(NowNs() - t1);
      }
      ns[kind] = NowNs() - t0;
    }
    if (rc != 0) {
      state.SkipWithError(Describe("registration", rc).c_str());
      break;
    }
    ++i;
    raw_samples.Record(ns[0]);
    cache_samples.Record(ns[1]);
    order_samples.Record(ns[2]);
    state.SetIterationTime(double(ns[0] + ns[1] + ns[2]) * 1e-9);
  }
  if (held != nullptr) ibv_dereg_mr(held);
  raw_samples.Report(state, "raw");
  cache_samples.Report(state, "cache");
  order_samples.Report(state, "raw_cache_order");
  raw_reg.Report(state, "raw_reg");
  raw_dereg.Report(state, "raw_dereg");
  timed.reg_samples().Report(state, "cache_reg");
  timed.dereg_samples().Report(state, "cache_dereg");
  around.Report(state, "around_registrar");
  auto counter = [&](const char* name) {
    return state.counters.count(name) ? double(state.counters[name]) : 0.0;
  };
  const double raw = counter("raw_median_ns");
  const double cached = counter("cache_median_ns");
  const double ordered = counter("raw_cache_order_median_ns");
  if (raw > 0) {
    state.counters["plain_overhead_pct"] = 100.0 * (cached / raw - 1.0);
    state.counters["order_overhead_pct"] = 100.0 * (ordered / raw - 1.0);
  }
  if (ordered > 0)
    state.counters["overhead_pct"] = 100.0 * (cached / ordered - 1.0);
  const double raw_calls =
      counter("raw_reg_median_ns") + counter("raw_dereg_median_ns");
  const double cache_calls =
      counter("cache_reg_median_ns") + counter("cache_dereg_median_ns");
  if (raw_calls > 0 && cache_calls > 0)
    state.counters["registrar_pct"] = 100.0 * (cache_calls / raw_calls - 1.0);
  state.SetItemsProcessed(int64_t(state.iterations()));
  if (rc == 0) cache.Check(state, uint64_t(state.iterations()));
}

// Hands the CPU to another process and takes it back: a child blocked in
// read() on one pipe answers each byte on another. On one CPU (the rig runs
// the benchmarks on one vCPU) every Switch() is two context switches, as
// between the two endpoints of the main job, which share a CPU; under qemu's
// TCG each switch of address space empties the emulated TLB, so the next
// call pays for the first touch of every page of code and data it uses
// again. Not a fake: the child is a real process doing nothing else.
class ProcessSwitch {
 public:
  ProcessSwitch() = default;
  ProcessSwitch(const ProcessSwitch&) = delete;
  ProcessSwitch& operator=(const ProcessSwitch&) = delete;
  ~ProcessSwitch() {
    if (to_child_ >= 0) close(to_child_);  // the child's read() sees EOF
    if (from_child_ >= 0) close(from_child_);
    if (child_ > 0) waitpid(child_, nullptr, 0);
  }

  // False with *why set when the pipes or the child cannot be made.
  bool Start(std::string* why) {
    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC) != 0) {
      *why = std::string("pipe2: ") + strerror(errno);
      return false;
    }
    if (pipe2(up, O_CLOEXEC) != 0) {
      *why = std::string("pipe2: ") + strerror(errno);
      close(down[0]);
      close(down[1]);
      return false;
    }
    child_ = fork();
    if (child_ < 0) {
      *why = std::string("fork: ") + strerror(errno);
      for (int fd : {down[0], down[1], up[0], up[1]}) close(fd);
      return false;
    }
    if (child_ == 0) {
      close(down[1]);
      close(up[0]);
      char c;
      while (read(down[0], &c, 1) == 1 && write(up[1], &c, 1) == 1) {
      }
      _exit(0);
    }
    close(down[0]);
    close(up[1]);
    to_child_ = down[1];
    from_child_ = up[0];
    return true;
  }

  // False when the child is gone.
  bool Switch() {
    char c = 's';
    return write(to_child_, &c, 1) == 1 && read(from_child_, &c, 1) == 1;
  }

 private:
  pid_t child_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
};

// BM_UncachedPaired/<monitor>/<bytes>: the adaptive admission's way out, a
// get served uncached (registered for the use, deregistered at its put,
// never watched), which is what a range that churns (freed and reallocated
// between uses, as in the main job's realloc workload) and a newcomer that
// a full cache does not admit both get. The cache runs with the default,
// adaptive admission and no limits; its buffer is invalidated before every
// get (regcache_invalidate, outside the timed part), so after two wasted
// registrations the range churns and its gets are served uncached, with a
// cached probe every 8, 16, 32 and then 64 gets (a probe's median-free
// share: under 2 %). Each iteration times, in rotating order, one such get
// + put and one raw ibv_reg_mr + ibv_dereg_mr of another buffer, and the
// two sides swap buffers every iteration: which pages (and which virtual
// addresses) a registration gets moved its cost by up to a third at 1 MiB
// in the rig, whoever registered them, and the swap gives both sides the
// same pages in equal shares:
//   overhead_pct   uncached get + put / raw reg + dereg - 1 (the verdict)
//   around_registrar_median_ns  per get, its time less its reg and dereg
// and the run fails unless nearly every get was served uncached.
// BM_UncachedPairedSwitched/<monitor>/<bytes> (`switched`): the same with a
// ProcessSwitch before each of the two, outside the timed part: the get and
// the raw calls each start as they do in the main job, right after the
// other endpoint ran.
void BM_UncachedPaired(benchmark::State& state, size_t bytes,
                       regcache_monitor_kind monitor, bool switched) {
  BufferPair *cache_bufs = nullptr, *raw_bufs = nullptr;
  Device* dev = DeviceAndBuffers(state, bytes, {&cache_bufs, &raw_bufs});
  if (dev == nullptr) return;
  if (monitor == REGCACHE_MONITOR_KMOD && access("/dev/regcache", F_OK) != 0) {
    state.SkipWithError(
        "no /dev/regcache (the regcache module is not loaded; "
        "run in the VM with --module, see docs/kmod.md)");
    return;
  }
  regcache_registrar ibverbs;
  int rc = regcache_registrar_ibverbs(dev->pd, &ibverbs);
  if (rc != 0) {
    state.SkipWithError(Describe("regcache_registrar_ibverbs", rc).c_str());
    return;
  }
  ProcessSwitch other;
  std::string why;
  if (switched && !other.Start(&why)) {
    state.SkipWithError(why.c_str());
    return;
  }
  TimedRegistrar timed(ibverbs);
  const regcache_registrar registrar = timed.Get();
  regcache_config config;
  rc = regcache_config_init(&config);
  if (rc != 0) {
    state.SkipWithError(Describe("regcache_config_init", rc).c_str());
    return;
  }
  config.max_entries = 0;
  config.max_bytes = 0;
  config.monitor = monitor;
  config.admission = REGCACHE_ADMISSION_ADAPTIVE;
  config.print_stats_at_exit = 0;
  regcache_t* cache = nullptr;
  rc = regcache_create(&registrar, &config, &cache);
  if (rc != 0) {
    state.SkipWithError(Describe("regcache_create", rc).c_str());
    return;
  }
  char* const bufs[2] = {cache_bufs->buffer[0], raw_bufs->buffer[0]};
  auto get_put = [&](char* buf) {
    regcache_handle_t* h = nullptr;
    const int r = regcache_get(cache, buf, bytes, kCacheAccess, &h);
    if (r == 0) regcache_put(cache, h);
    return r;
  };
  // Two wasted registrations each: from now on both ranges churn.
  for (int i = 0; i < 4 && rc == 0; ++i) {
    rc = get_put(bufs[i & 1]);
    regcache_invalidate(cache, bufs[i & 1], bytes);
  }
  struct regcache_stats before {};
  regcache_stats(cache, &before);
  Samples raw_samples, cache_samples, around;
  size_t i = 0;
  for (auto _ : state) {
    if (rc != 0) break;
    char* const buf = bufs[i & 1];
    char* const raw_buf = bufs[(i + 1) & 1];
    // A probe's entry, if any, of either.
    regcache_invalidate(cache, buf, bytes);
    regcache_invalidate(cache, raw_buf, bytes);
    uint64_t ns[2] = {0, 0};  // raw, cache
    for (int step = 0; step < 2 && rc == 0; ++step) {
      const int kind = int((step + i) % 2);
      if (switched && !other.Switch()) {
        rc = -ECHILD;
        break;
      }
      const uint64_t t0 = NowNs();
      if (kind == 0) {
        ibv_mr* mr = ibv_reg_mr(dev->pd, raw_buf, bytes, kIbvAccess);
        if (mr == nullptr) {
          rc = errno != 0 ? -errno : -EIO;
          break;
        }
        ibv_dereg_mr(mr);
      } else {
        const uint64_t in_calls = timed.ns_in_calls();
        rc = get_put(buf);
        if (rc != 0) break;
        around.Record(NowNs() - t0 - (timed.ns_in_calls() - in_calls));
      }
      ns[kind] = NowNs() - t0;
    }
    if (rc != 0) break;
    ++i;
    raw_samples.Record(ns[0]);
    cache_samples.Record(ns[1]);
    state.SetIterationTime(double(ns[0] + ns[1]) * 1e-9);
  }
  struct regcache_stats after {};
  regcache_stats(cache, &after);
  regcache_destroy(cache);
  if (rc != 0) {
    state.SkipWithError(Describe("registration", rc).c_str());
    return;
  }
  raw_samples.Report(state, "raw");
  cache_samples.Report(state, "cache");
  around.Report(state, "around_registrar");
  auto counter = [&](const char* name) {
    return state.counters.count(name) ? double(state.counters[name]) : 0.0;
  };
  const double raw = counter("raw_median_ns");
  if (raw > 0)
    state.counters["overhead_pct"] =
        100.0 * (counter("cache_median_ns") / raw - 1.0);
  const uint64_t n = uint64_t(state.iterations());
  const uint64_t uncached = after.uncached_churn - before.uncached_churn;
  state.counters["uncached_per_iter"] = n ? double(uncached) / double(n) : 0.0;
  state.SetItemsProcessed(int64_t(n));
  if (n >= 64 && uncached * 100 < n * 90) {
    state.SkipWithError(("only " + std::to_string(uncached) + " of " +
                         std::to_string(n) + " gets were served uncached")
                            .c_str());
  }
}

void RegisterAll() {
  // Sizes outermost, so each size's raw and cached runs are neighbours in
  // time (the machine's speed drifts less between them).
  for (size_t bytes : {size_t{4} << 10, size_t{1} << 20, size_t{64} << 20}) {
    const std::string size = "/" + std::to_string(bytes);
    benchmark::RegisterBenchmark(
        ("BM_RegDereg/raw" + size).c_str(),
        [bytes](benchmark::State& s) { BM_RegDeregRaw(s, bytes); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("BM_RegDereg/regcache-kmod" + size).c_str(),
                                 [bytes](benchmark::State& s) {
                                   BM_RegDeregCache(s, bytes,
                                                    REGCACHE_MONITOR_KMOD);
                                 })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("BM_RegDereg/regcache-uffd" + size).c_str(),
                                 [bytes](benchmark::State& s) {
                                   BM_RegDeregCache(s, bytes,
                                                    REGCACHE_MONITOR_UFFD);
                                 })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
    for (regcache_monitor_kind monitor :
         {REGCACHE_MONITOR_KMOD, REGCACHE_MONITOR_UFFD,
          REGCACHE_MONITOR_NONE}) {
      benchmark::internal::Benchmark* b =
          benchmark::RegisterBenchmark((std::string("BM_RegDeregPaired/") +
                                        regcache_monitor_name(monitor) + size)
                                           .c_str(),
                                       [bytes, monitor](benchmark::State& s) {
                                         BM_RegDeregPaired(s, bytes, monitor);
                                       });
      b->UseManualTime()->Unit(benchmark::kMicrosecond);
      // 64 MiB iterations take milliseconds: at least a second each run,
      // or a few preemptions of the VM decide the median.
      if (bytes >= (size_t{64} << 20)) b->MinTime(1.0);
    }
    for (bool switched : {false, true}) {
      // Between processes only where registering is as cheap as switching.
      if (switched && bytes > (size_t{1} << 20)) continue;
      for (regcache_monitor_kind monitor :
           {REGCACHE_MONITOR_KMOD, REGCACHE_MONITOR_UFFD,
            REGCACHE_MONITOR_NONE}) {
        const std::string name =
            std::string(switched ? "BM_UncachedPairedSwitched/"
                                 : "BM_UncachedPaired/") +
            regcache_monitor_name(monitor) + size;
        benchmark::internal::Benchmark* b = benchmark::RegisterBenchmark(
            name.c_str(), [bytes, monitor, switched](benchmark::State& s) {
              BM_UncachedPaired(s, bytes, monitor, switched);
            });
        b->UseManualTime()->Unit(benchmark::kMicrosecond);
        if (bytes >= (size_t{64} << 20)) b->MinTime(1.0);
      }
    }
  }
  for (regcache_monitor_kind monitor :
       {REGCACHE_MONITOR_NONE, REGCACHE_MONITOR_KMOD, REGCACHE_MONITOR_UFFD}) {
    benchmark::RegisterBenchmark(
        (std::string("BM_MissOverhead/") + regcache_monitor_name(monitor))
            .c_str(),
        [monitor](benchmark::State& s) { BM_MissOverhead(s, monitor); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace
}  // namespace regcache_bench

int main(int argc, char** argv) {
  using namespace regcache_bench;
  if (!StartBenchmark(&argc, argv, "miss_path_bench")) return 1;
  Device* dev = GetDevice();
  benchmark::AddCustomContext("rdma_device",
                              dev->error.empty() ? dev->name : "none");
  RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
