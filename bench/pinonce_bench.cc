// SPDX-License-Identifier: BSD-2-Clause
//
// What pin-once memory saves: ibv_reg_mr() of 64 MiB of each kind of memory
// regcache_mem_alloc() can hand out, side by side in one run, and the pool's
// free-and-allocate-again of a 64 MiB block (no registration) as their peer.
//
// Cases (docs/benchmarks.md, "Pin-once memory"):
//   BM_RegMr/pages/64MiB       ordinary 4 KiB pages (MADV_NOHUGEPAGE)
//   BM_RegMr/thp/64MiB         transparent huge pages (2 MiB aligned,
//                              MADV_HUGEPAGE)
//   BM_RegMr/hugetlb/64MiB     hugetlb pages (MAP_HUGETLB; skipped with the
//                              reason without vm.nr_hugepages)
//   BM_RegMr/contig/64MiB      the regcache module's contiguous memory
//                              (skipped with the reason where there is none)
//   BM_PoolRealloc/{pages,huge,contig}/64MiB  regcache_mem_free +
//   regcache_mem_alloc +
//                              regcache_get + regcache_put of one 64 MiB
//                              pool block (ibverbs registrar): each
//                              iteration must register nothing
// The time of a BM_RegMr iteration is ibv_reg_mr() alone (manual time; the
// ibv_dereg_mr() after it is reported as `dereg_median_ns`). Every buffer is
// written once before timing, so no page fault is timed, and `huge_kB` says
// how much of it huge pages back (smaps AnonHugePages or Private_Hugetlb):
// 0 for pages, the whole 65536 for thp and hugetlb, or the case is wrong.
//
// Needs an RDMA device (rxe0 in the VM rig, which reserves hugetlb pages);
// without one every case is skipped with the reason. REGCACHE_BENCH_DEVICE
// picks a device. Numbers: results/README.md.
#include <errno.h>
#include <infiniband/verbs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include <benchmark/benchmark.h>
#include <regcache/ibverbs.h>
#include <regcache/regcache.h>

#include "bench_common.h"
#include "monitor/contig.h"
#include "samples.h"

namespace regcache_bench {
namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kLength = 64 * kMiB;
constexpr size_t kHuge = 2 * kMiB;
constexpr int kIbvAccess =
    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
constexpr uint32_t kCacheAccess = REGCACHE_ACCESS_LOCAL_WRITE |
                                  REGCACHE_ACCESS_REMOTE_WRITE |
                                  REGCACHE_ACCESS_REMOTE_READ;

enum class Kind { kPages, kThp, kHugetlb, kContig };

struct Device {
  ibv_context* context = nullptr;
  ibv_pd* pd = nullptr;
  std::string error;  // non-empty: every case is skipped with this reason
};

Device* GetDevice() {
  static Device* const device = [] {
    auto* d = new Device();
    int n = 0;
    ibv_device** list = ibv_get_device_list(&n);
    const char* want = getenv("REGCACHE_BENCH_DEVICE");
    ibv_device* chosen = nullptr;
    for (int i = 0; list != nullptr && i < n && chosen == nullptr; ++i) {
      if (want == nullptr || strcmp(ibv_get_device_name(list[i]), want) == 0)
        chosen = list[i];
    }
    if (chosen == nullptr) {
      d->error =
          "no RDMA device: run in the VM rig, tests/vm/run-in-vm.sh, "
          "which has rxe0";
    } else if ((d->context = ibv_open_device(chosen)) == nullptr) {
      d->error = std::string("ibv_open_device: ") + strerror(errno);
    } else if ((d->pd = ibv_alloc_pd(d->context)) == nullptr) {
      d->error = std::string("ibv_alloc_pd: ") + strerror(errno);
    }
    if (list != nullptr) ibv_free_device_list(list);
    return d;
  }();
  return device;
}

// smaps' huge-page backing of the mapping that holds `p`, in kB.
long HugeKb(const void* p) {
  FILE* f = fopen("/proc/self/smaps", "re");
  if (f == nullptr) return -1;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  char line[512];
  bool in = false;
  long kb = 0;
  while (fgets(line, sizeof line, f) != nullptr) {
    unsigned long start, end;
    long v;
    if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
      if (in) break;
      in = a >= start && a < end;
    } else if (in && (sscanf(line, "AnonHugePages: %ld kB", &v) == 1 ||
                      sscanf(line, "Private_Hugetlb: %ld kB", &v) == 1)) {
      kb += v;
    }
  }
  fclose(f);
  return kb;
}

// One 64 MiB buffer of a kind, written once; unmapped at scope exit.
class Buffer {
 public:
  Buffer(Kind kind, std::string* why) {
    void* p = MAP_FAILED;
    switch (kind) {
      case Kind::kPages:
        p = mmap(nullptr, kLength, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) madvise(p, kLength, MADV_NOHUGEPAGE);
        map_length_ = kLength;
        break;
      case Kind::kThp: {
        map_length_ = kLength + kHuge;
        void* raw = mmap(nullptr, map_length_, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED) break;
        map_ = raw;
        p = reinterpret_cast<void*>(
            (reinterpret_cast<uintptr_t>(raw) + kHuge - 1) &
            ~(uintptr_t{kHuge} - 1));
        if (madvise(p, kLength, MADV_HUGEPAGE) != 0) {
          *why = std::string("madvise(MADV_HUGEPAGE): ") + strerror(errno);
          return;
        }
        break;
      }
      case Kind::kHugetlb:
        p = mmap(nullptr, kLength, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
        map_length_ = kLength;
        if (p == MAP_FAILED) {
          *why = std::string("mmap MAP_HUGETLB of 64 MiB: ") + strerror(errno) +
                 " (reserve 32 or more pages: sysctl vm.nr_hugepages)";
          return;
        }
        break;
      case Kind::kContig: {
        uint64_t base = 0;
        const int rc = regcache_internal::MapKmodContig(kLength, &base, why);
        if (rc != 0) return;
        p = reinterpret_cast<void*>(base);
        map_length_ = kLength;
        break;
      }
    }
    if (p == MAP_FAILED) {
      if (why->empty()) *why = std::string("mmap: ") + strerror(errno);
      return;
    }
    if (map_ == nullptr) map_ = p;
    data_ = static_cast<char*>(p);
    memset(data_, 0x5a, kLength);  // fault every page in now
  }
  ~Buffer() {
    if (map_ != nullptr) munmap(map_, map_length_);
  }
  char* data() const { return data_; }

 private:
  void* map_ = nullptr;
  size_t map_length_ = 0;
  char* data_ = nullptr;
};

void BM_RegMr(benchmark::State& state, Kind kind) {
  Device* dev = GetDevice();
  if (!dev->error.empty()) {
    state.SkipWithError(dev->error.c_str());
    return;
  }
  std::string why;
  Buffer buf(kind, &why);
  if (buf.data() == nullptr) {
    state.SkipWithError(why.c_str());
    return;
  }
  Samples reg, dereg;
  for (auto _ : state) {
    const uint64_t t0 = NowNs();
    ibv_mr* mr = ibv_reg_mr(dev->pd, buf.data(), kLength, kIbvAccess);
    const uint64_t t1 = NowNs();
    if (mr == nullptr) {
      state.SkipWithError((std::string("ibv_reg_mr: ") + strerror(errno) +
                           " (RLIMIT_MEMLOCK? run as root in the VM)")
                              .c_str());
      break;
    }
    ibv_dereg_mr(mr);
    dereg.Record(NowNs() - t1);
    reg.Add(state, t1 - t0);
  }
  reg.Report(state, "reg");
  dereg.Report(state, "dereg");
  state.counters["huge_kB"] = double(HugeKb(buf.data()));
  state.SetItemsProcessed(int64_t(state.iterations()));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kLength));
}

// The peer: the pool's block freed and allocated again, and a get of all of
// it, with the real registrar. The block is registered once, before timing.
void BM_PoolRealloc(benchmark::State& state, uint32_t flags) {
  Device* dev = GetDevice();
  if (!dev->error.empty()) {
    state.SkipWithError(dev->error.c_str());
    return;
  }
  regcache_registrar registrar;
  regcache_config config;
  regcache_t* cache = nullptr;
  int rc = regcache_registrar_ibverbs(dev->pd, &registrar);
  if (rc == 0) rc = regcache_config_init(&config);
  config.max_bytes = 0;
  if (rc == 0) rc = regcache_create(&registrar, &config, &cache);
  if (rc != 0) {
    state.SkipWithError(Describe("regcache_create", rc).c_str());
    return;
  }
  void* p = nullptr;
  rc = regcache_mem_alloc(cache, kLength, flags, &p);
  if (rc != 0) {
    state.SkipWithError(Describe("regcache_mem_alloc", rc).c_str());
    regcache_destroy(cache);
    return;
  }
  memset(p, 0x5a, kLength);
  struct regcache_stats before;
  regcache_stats(cache, &before);
  Samples samples;
  for (auto _ : state) {
    const uint64_t t0 = NowNs();
    rc = regcache_mem_free(cache, p);
    if (rc == 0) rc = regcache_mem_alloc(cache, kLength, flags, &p);
    regcache_handle_t* h = nullptr;
    if (rc == 0) rc = regcache_get(cache, p, kLength, kCacheAccess, &h);
    if (rc == 0) rc = regcache_put(cache, h);
    samples.Add(state, NowNs() - t0);
    if (rc != 0) {
      state.SkipWithError(Describe("free/alloc/get/put", rc).c_str());
      break;
    }
  }
  struct regcache_stats after;
  regcache_stats(cache, &after);
  if (after.registrations != before.registrations)
    state.SkipWithError(
        "an iteration registered: the pool did not reuse its block");
  samples.Report(state, "iteration");
  state.counters["huge_kB"] = double(HugeKb(p));
  // Which kind the pool's block is (regcache_stats): hugetlb, THP or pages.
  state.counters["hugetlb_allocs"] = double(after.mem_hugetlb_allocs);
  state.counters["thp_allocs"] = double(after.mem_thp_allocs);
  state.counters["pages_allocs"] = double(after.mem_pages_allocs);
  state.SetItemsProcessed(int64_t(state.iterations()));
  regcache_mem_free(cache, p);
  regcache_destroy(cache);
}

void RegisterAll() {
  const struct {
    const char* name;
    Kind kind;
  } kinds[] = {
      {"pages", Kind::kPages},
      {"thp", Kind::kThp},
      {"hugetlb", Kind::kHugetlb},
      {"contig", Kind::kContig},
  };
  for (const auto& k : kinds) {
    benchmark::RegisterBenchmark(
        (std::string("BM_RegMr/") + k.name + "/64MiB").c_str(), BM_RegMr,
        k.kind)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  // The pool's kinds: ordinary pages, huge (hugetlb where reserved, else
  // THP) and contiguous.
  const struct {
    const char* name;
    uint32_t flags;
  } pool_kinds[] = {{"pages", 0},
                    {"huge", REGCACHE_MEM_HUGE},
                    {"contig", REGCACHE_MEM_CONTIG}};
  for (const auto& k : pool_kinds) {
    benchmark::RegisterBenchmark(
        (std::string("BM_PoolRealloc/") + k.name + "/64MiB").c_str(),
        BM_PoolRealloc, k.flags)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace
}  // namespace regcache_bench

int main(int argc, char** argv) {
  if (!regcache_bench::StartBenchmark(&argc, argv, "pinonce_bench")) return 1;
  regcache_bench::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
