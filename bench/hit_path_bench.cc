// SPDX-License-Identifier: BSD-2-Clause
//
// Hit-path benchmark: regcache_get()+regcache_put() on ranges already in the
// cache, against the same pair on UCX's ucs_rcache (ucx_peer.h) in the same
// binary, so one run gives the ratio. Both sides register nothing (no-op
// registrars) and watch no memory (regcache: REGCACHE_MONITOR_NONE; UCX:
// ucm_events = 0): what is timed is the lookup structure, the reference
// count and the locking, nothing else. Every case is a hit; each run checks
// afterwards that no get missed and fails the case if one did.
//
// Cases (see docs/benchmarks.md for the targets):
//   BM_HitSame/<side>                 one 64 KiB range, over and over
//   BM_HitRandom/<side>/<N>           N cached 4 KiB ranges, random order
//   BM_HitSameThreads/<side>          BM_HitSame from 1 and 2 threads sharing
//                                     one cache (real time)
//   BM_HitRandomThreads/<side>/10000  BM_HitRandom/10000 likewise
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <regcache/regcache.h>

#include "bench_common.h"
#include "ucx_peer.h"

namespace regcache_bench {
namespace {

constexpr size_t kSameLength = 64 * 1024;        // BM_HitSame's range
constexpr size_t kRandomLength = 4096;           // each BM_HitRandom range
constexpr size_t kMaxRanges = 1000000;           // largest BM_HitRandom N
constexpr size_t kIndexCount = size_t{1} << 20;  // power of two
constexpr size_t kIndexMask = kIndexCount - 1;
constexpr uint32_t kAccess = REGCACHE_ACCESS_ALL;  // UCX's IB MD asks as much

// ---------------------------------------------------------------------------
// The two sides, behind one shape so every case is written once.

class RegcacheSide {
 public:
  using Handle = regcache_handle_t*;
  static constexpr const char* kName = "regcache";

  ~RegcacheSide() {
    if (cache_ != nullptr) regcache_destroy(cache_);
  }

  bool Create(std::string* why) {
    int rc = regcache_registrar_fake(/*lock_memory=*/0, &registrar_);
    if (rc != 0) return Fail("regcache_registrar_fake", rc, why);
    regcache_config config;
    rc = regcache_config_init(&config);
    if (rc != 0) return Fail("regcache_config_init", rc, why);
    config.max_entries = 2 * kMaxRanges;     // no eviction in any case
    config.max_bytes = 0;                    // no byte limit either
    config.monitor = REGCACHE_MONITOR_NONE;  // measure the cache, not a monitor
    config.print_stats_at_exit = 0;
    rc = regcache_create(&registrar_, &config, &cache_);
    if (rc != 0) return Fail("regcache_create", rc, why);
    return true;
  }

  Handle Get(void* addr, size_t length) {
    regcache_handle_t* handle = nullptr;
    return regcache_get(cache_, addr, length, kAccess, &handle) == 0 ? handle
                                                                     : nullptr;
  }
  void Put(Handle handle) { regcache_put(cache_, handle); }
  static const char* LastError() { return regcache_last_error(); }

  // Gets that had to register: constant while only hits happen.
  uint64_t Misses() {
    struct regcache_stats stats;
    return regcache_stats(cache_, &stats) == 0 ? stats.misses : ~uint64_t{0};
  }

 private:
  static bool Fail(const char* what, int rc, std::string* why) {
    *why = std::string(what) + ": " + strerror(-rc) + " (" +
           regcache_last_error() + ")";
    return false;
  }

  regcache_registrar registrar_{};
  regcache_t* cache_ = nullptr;
};

class UcxSide {
 public:
  using Handle = ucs_rcache_region_t*;
  static constexpr const char* kName = "ucx";

  bool Create(std::string* why) { return peer_.Create(why); }
  Handle Get(void* addr, size_t length) { return peer_.Get(addr, length); }
  void Put(Handle region) { peer_.Put(region); }
  static const char* LastError() { return "ucs_rcache_get failed"; }
  uint64_t Misses() { return peer_.registrations(); }

 private:
  UcxRcachePeer peer_;
};

// ---------------------------------------------------------------------------
// Memory. Nothing is ever touched: the no-op registrars do not read it, so
// the 4 GiB arena for a million ranges costs address space only.

char* MapOrDie(size_t length) {
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "hit_path_bench: mmap(%zu): %s\n", length, strerror(errno));
    abort();
  }
  return static_cast<char*>(p);
}

char* SameBuffer() {
  static char* const buffer = MapOrDie(kSameLength);
  return buffer;
}

char* Arena() {
  static char* const arena = MapOrDie(kMaxRanges * kRandomLength);
  return arena;
}

// kIndexCount range numbers in [0, n), xorshift64, fixed seed: the same
// sequence for both sides.
std::vector<uint32_t> RandomIndices(size_t n) {
  std::vector<uint32_t> indices(kIndexCount);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (uint32_t& index : indices) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    index = static_cast<uint32_t>(x % n);
  }
  return indices;
}

// ---------------------------------------------------------------------------
// Fixtures: a created, populated cache. At most one is alive at a time (the
// 1M-range ones are large); it is built the first time a case asks for it,
// before the timed loop, and kept while consecutive runs (iteration-count
// probing, thread counts) ask for the same one. All threads of a run ask for
// the same fixture, so replacing one never pulls it from under a user.

struct FixtureBase {
  virtual ~FixtureBase() = default;
  std::string key;
  std::string error;  // non-empty: creation failed, the case is skipped
};

template <class Side>
struct Fixture : FixtureBase {
  Side side;
  size_t ranges = 0;              // 0: the BM_HitSame buffer
  std::vector<uint32_t> indices;  // random case only
  uint64_t misses_after_populate = 0;
};

std::mutex fixture_mutex;
std::unique_ptr<FixtureBase> current_fixture;  // GUARDED_BY(fixture_mutex)

template <class Side>
Fixture<Side>* BuildFixture(const std::string& key, size_t ranges) {
  auto fixture = std::make_unique<Fixture<Side>>();
  fixture->key = key;
  fixture->ranges = ranges;
  if (!fixture->side.Create(&fixture->error)) return fixture.release();
  // Populate: every range gotten and put once, so the timed loop only hits.
  if (ranges == 0) {
    auto handle = fixture->side.Get(SameBuffer(), kSameLength);
    if (handle == nullptr) {
      fixture->error = Side::LastError();
    } else {
      fixture->side.Put(handle);
    }
  } else {
    char* arena = Arena();
    for (size_t i = 0; i < ranges; ++i) {
      auto handle = fixture->side.Get(arena + i * kRandomLength, kRandomLength);
      if (handle == nullptr) {
        fixture->error = Side::LastError();
        break;
      }
      fixture->side.Put(handle);
    }
    fixture->indices = RandomIndices(ranges);
  }
  fixture->misses_after_populate = fixture->side.Misses();
  return fixture.release();
}

template <class Side>
Fixture<Side>* GetFixture(size_t ranges) {
  std::string key = std::string(Side::kName) + "/" + std::to_string(ranges);
  std::lock_guard<std::mutex> lock(fixture_mutex);
  if (current_fixture == nullptr || current_fixture->key != key) {
    current_fixture.reset();  // free the old one first: at most one alive
    current_fixture.reset(BuildFixture<Side>(key, ranges));
  }
  return static_cast<Fixture<Side>*>(current_fixture.get());
}

void DestroyFixture() {
  std::lock_guard<std::mutex> lock(fixture_mutex);
  current_fixture.reset();
}

template <class Side>
bool CheckAllHits(benchmark::State& state, Fixture<Side>* fixture) {
  if (fixture->side.Misses() != fixture->misses_after_populate) {
    state.SkipWithError("a get in the timed loop missed: not a hit-path run");
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// The cases.

template <class Side>
void BM_HitSame(benchmark::State& state) {
  Fixture<Side>* fixture = GetFixture<Side>(0);
  if (!fixture->error.empty()) {
    state.SkipWithError(fixture->error.c_str());
    return;
  }
  Side& side = fixture->side;
  char* const buffer = SameBuffer();
  for (auto _ : state) {
    typename Side::Handle handle = side.Get(buffer, kSameLength);
    if (handle == nullptr) {
      state.SkipWithError(Side::LastError());
      break;
    }
    benchmark::DoNotOptimize(handle);
    side.Put(handle);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  CheckAllHits(state, fixture);
}

template <class Side>
void BM_HitRandom(benchmark::State& state) {
  const size_t ranges = static_cast<size_t>(state.range(0));
  Fixture<Side>* fixture = GetFixture<Side>(ranges);
  if (!fixture->error.empty()) {
    state.SkipWithError(fixture->error.c_str());
    return;
  }
  Side& side = fixture->side;
  char* const arena = Arena();
  const uint32_t* const indices = fixture->indices.data();
  // Threads start at different points of the sequence so that they do not
  // walk the same ranges in lockstep.
  size_t next = static_cast<size_t>(state.thread_index()) * (kIndexCount / 8);
  for (auto _ : state) {
    char* addr = arena + size_t{indices[next & kIndexMask]} * kRandomLength;
    ++next;
    typename Side::Handle handle = side.Get(addr, kRandomLength);
    if (handle == nullptr) {
      state.SkipWithError(Side::LastError());
      break;
    }
    benchmark::DoNotOptimize(handle);
    side.Put(handle);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  CheckAllHits(state, fixture);
}

template <class Side>
void RegisterSide() {
  const std::string side = Side::kName;
  benchmark::RegisterBenchmark(("BM_HitSame/" + side).c_str(),
                               BM_HitSame<Side>);
  benchmark::RegisterBenchmark(("BM_HitRandom/" + side).c_str(),
                               BM_HitRandom<Side>)
      ->Arg(100)
      ->Arg(10000)
      ->Arg(static_cast<int64_t>(kMaxRanges));
}

template <class Side>
void RegisterSideThreads() {
  const std::string side = Side::kName;
  benchmark::RegisterBenchmark(("BM_HitSameThreads/" + side).c_str(),
                               BM_HitSame<Side>)
      ->Threads(1)
      ->Threads(2)
      ->UseRealTime();
  benchmark::RegisterBenchmark(("BM_HitRandomThreads/" + side).c_str(),
                               BM_HitRandom<Side>)
      ->Arg(10000)
      ->Threads(1)
      ->Threads(2)
      ->UseRealTime();
}

}  // namespace
}  // namespace regcache_bench

int main(int argc, char** argv) {
  using namespace regcache_bench;
  if (!StartBenchmark(&argc, argv, "hit_path_bench")) return 1;
  benchmark::AddCustomContext("regcache_monitor", "none");
  benchmark::AddCustomContext("ucx_rcache",
                              "ucs_rcache, ucm_events=0, no-op "
                              "mem_reg/mem_dereg");
  RegisterSide<RegcacheSide>();
  RegisterSide<UcxSide>();
  RegisterSideThreads<RegcacheSide>();
  RegisterSideThreads<UcxSide>();
  benchmark::RunSpecifiedBenchmarks();
  DestroyFixture();
  benchmark::Shutdown();
  return 0;
}
