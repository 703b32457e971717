// SPDX-License-Identifier: BSD-2-Clause
// Admission (src/regcache/core/admission.h): the churn table and the
// frequency sketch on their own, then the cache's use of them with the
// checking fake registrar and explicit invalidation: which gets are served
// uncached, the probes and their backoff, the return to caching, TinyLFU
// against a cyclic scan, and the limits an uncached get still respects.
#include <sys/mman.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/admission.h"
#include "core/cache.h"
#include "core/fences.h"
#include "core/thread_state.h"
#include "fake_registrar.h"
#include "gtest/gtest.h"
#include "regcache/regcache.h"
#include "test_util.h"

namespace {

using regcache_internal::ChurnTable;
using regcache_internal::FrequencySketch;
using regcache_test::CheckingFakeRegistrar;
using Decision = ChurnTable::Decision;

constexpr uint64_t kPage = 4096;
constexpr uint32_t kLW = REGCACHE_ACCESS_LOCAL_WRITE;

// ---------------------------------------------------------------------------
// ChurnTable

TEST(ChurnTable, TwoWastedRegistrationsInARowMakeARangeChurn) {
  ChurnTable t;
  const uint64_t a = 0x7f0000000000;
  EXPECT_EQ(t.OnMiss(a), Decision::kCache);
  t.OnInvalidated(a, /*hit=*/false);
  EXPECT_FALSE(t.Churning(a)) << "one wasted registration is not a pattern";
  EXPECT_EQ(t.OnMiss(a), Decision::kCache);
  t.OnInvalidated(a, /*hit=*/false);
  uint32_t left = 0;
  ASSERT_TRUE(t.Churning(a, &left));
  EXPECT_EQ(left, ChurnTable::kInitialSkip);
  EXPECT_FALSE(t.Churning(a + kPage)) << "churn is per first page";
  EXPECT_TRUE(t.CheckInvariants());
}

TEST(ChurnTable, AHitBetweenWastedRegistrationsResetsTheCount) {
  ChurnTable t;
  const uint64_t a = 0x10000;
  t.OnInvalidated(a, false);
  t.OnInvalidated(a, true);
  t.OnInvalidated(a, false);
  EXPECT_FALSE(t.Churning(a));
}

TEST(ChurnTable, ProbesBackOffExponentiallyUpToTheCap) {
  ChurnTable t;
  const uint64_t a = 0x200000;
  t.OnInvalidated(a, false);
  t.OnInvalidated(a, false);
  uint32_t expected_skip = ChurnTable::kInitialSkip;
  for (int round = 0; round < 8; ++round) {
    for (uint32_t i = 0; i < expected_skip; ++i)
      ASSERT_EQ(t.OnMiss(a), Decision::kBypass)
          << "round " << round << " get " << i;
    ASSERT_EQ(t.OnMiss(a), Decision::kProbe) << "round " << round;
    // Until the probe is invalidated, every miss probes.
    ASSERT_EQ(t.OnMiss(a), Decision::kProbe);
    t.OnInvalidated(a, /*hit=*/false);  // the probe was wasted too
    expected_skip = std::min(2 * expected_skip, ChurnTable::kMaxSkip);
    uint32_t left = 0;
    ASSERT_TRUE(t.Churning(a, &left));
    ASSERT_EQ(left, expected_skip);
    ASSERT_TRUE(t.CheckInvariants());
  }
  EXPECT_EQ(expected_skip, ChurnTable::kMaxSkip);
}

TEST(ChurnTable, AProbeThatIsHitEndsTheChurn) {
  ChurnTable t;
  const uint64_t a = 0x300000;
  t.OnInvalidated(a, false);
  t.OnInvalidated(a, false);
  for (uint32_t i = 0; i < ChurnTable::kInitialSkip; ++i) t.OnMiss(a);
  ASSERT_EQ(t.OnMiss(a), Decision::kProbe);
  t.OnInvalidated(a, /*hit=*/true);
  EXPECT_FALSE(t.Churning(a));
  EXPECT_EQ(t.OnMiss(a), Decision::kCache);
}

TEST(ChurnTable, AFullTableForgetsItsLeastRecentlyTouchedRanges) {
  ChurnTable t;
  // Many more churning ranges than slots, made to churn in order: each set
  // keeps its kWays most recently touched ones.
  std::vector<uint64_t> keys;
  for (uint64_t p = 1; keys.size() < 4096; ++p) keys.push_back(p * kPage);
  for (uint64_t k : keys) {
    t.OnInvalidated(k, false);
    t.OnInvalidated(k, false);
  }
  size_t churning = 0;
  for (uint64_t k : keys) churning += t.Churning(k) ? 1 : 0;
  EXPECT_EQ(churning, ChurnTable::kSets * ChurnTable::kWays)
      << "a full table keeps exactly its capacity";
  EXPECT_TRUE(t.Churning(keys.back())) << "the newest is kept";
  EXPECT_FALSE(t.Churning(keys.front())) << "the oldest was forgotten";
  EXPECT_TRUE(t.CheckInvariants());
}

TEST(ChurnTable, InvariantsHoldUnderRandomUse) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  ChurnTable t;
  for (int i = 0; i < 200000; ++i) {
    const uint64_t k = (rng() % 2048) * kPage;
    if (rng() % 3 == 0)
      t.OnInvalidated(k, rng() % 4 == 0);
    else
      t.OnMiss(k);
  }
  EXPECT_TRUE(t.CheckInvariants());
}

// ---------------------------------------------------------------------------
// FrequencySketch

TEST(FrequencySketch, NeverUnderCountsBeforeItAges) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  FrequencySketch s;
  ASSERT_TRUE(s.Init(1024));
  std::map<uint64_t, uint32_t> truth;
  // Fewer additions than the aging period (10 x width).
  for (int i = 0; i < 9000; ++i) {
    const uint64_t k = (rng() % 3000) * kPage;
    s.Increment(k);
    ++truth[k];
  }
  for (const auto& [k, n] : truth)
    ASSERT_GE(s.Estimate(k), std::min<uint32_t>(n, FrequencySketch::kMaxCount))
        << k;
}

TEST(FrequencySketch, AgingHalvesTheCounts) {
  FrequencySketch s;
  ASSERT_TRUE(s.Init(64));
  const uint64_t hot = 0x40000000;
  for (int i = 0; i < 12; ++i) s.Increment(hot);
  EXPECT_GE(s.Estimate(hot), 12u);
  // Fill the rest of the aging period (10 x 64) with other keys.
  for (uint64_t i = 0; i < 10 * 64 - 12; ++i) s.Increment((i + 1) * kPage);
  EXPECT_LE(s.Estimate(hot), 7u) << "halved once";
  EXPECT_GE(s.Estimate(hot), 6u);
}

// ---------------------------------------------------------------------------
// The cache's admission

struct Region {
  explicit Region(size_t bytes) : size(bytes) {
    base = static_cast<char*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  }
  ~Region() { munmap(base, size); }
  char* base;
  size_t size;
};

class CacheAdmission : public ::testing::Test {
 protected:
  void Make(regcache_admission admission, size_t max_entries = 0,
            size_t max_bytes = 0) {
    regcache_config cfg;
    ASSERT_EQ(regcache_config_init(&cfg), 0) << regcache_last_error();
    cfg.monitor = REGCACHE_MONITOR_NONE;
    cfg.max_entries = max_entries;
    cfg.max_bytes = max_bytes;
    cfg.admission = admission;
    cfg.print_stats_at_exit = 0;
    reg_ = fake_.registrar();
    ASSERT_EQ(regcache_create(&reg_, &cfg, &cache_), 0)
        << regcache_last_error();
  }
  void TearDown() override {
    if (cache_ != nullptr) {
      Check();
      EXPECT_EQ(regcache_destroy(cache_), 0) << regcache_last_error();
    }
    EXPECT_EQ(fake_.violations(), 0u) << "a held registration was deregistered";
    EXPECT_EQ(fake_.live(), 0u) << "destroy left registrations behind";
  }
  void Check() {
    std::string why;
    EXPECT_TRUE(
        reinterpret_cast<regcache_internal::Cache*>(cache_)->CheckInvariants(
            &why))
        << why;
  }
  // Gets and puts [p, p + len); true if the get was a hit.
  bool Use(const void* p, size_t len = kPage) {
    const uint64_t hits = Stats().hits;
    regcache_handle_t* h = nullptr;
    EXPECT_EQ(regcache_get(cache_, p, len, kLW, &h), 0)
        << regcache_last_error();
    if (h == nullptr) return false;
    CheckingFakeRegistrar::Hold(regcache_handle_mr(h));
    CheckingFakeRegistrar::Unhold(regcache_handle_mr(h));
    EXPECT_EQ(regcache_put(cache_, h), 0) << regcache_last_error();
    return Stats().hits > hits;
  }
  // One use of the buffer and then its "reallocation" (what a monitor
  // would report for munmap + mmap at the same address).
  void UseAndRealloc(const void* p) {
    Use(p);
    ASSERT_EQ(regcache_invalidate(cache_, p, kPage), 0);
  }
  // The old set used 3 times, then the new set 20 times: how many of the
  // new set's next gets are hits.
  int NewSetHitsAfterSwitch(const std::vector<char*>& old_set,
                            const std::vector<char*>& new_set) {
    for (int cycle = 0; cycle < 3; ++cycle)
      for (char* p : old_set) Use(p);
    for (int cycle = 0; cycle < 20; ++cycle)
      for (char* p : new_set) Use(p);
    int hits = 0;
    for (char* p : new_set) hits += Use(p) ? 1 : 0;
    return hits;
  }
  struct regcache_stats Stats() {
    struct regcache_stats s;
    EXPECT_EQ(regcache_stats(cache_, &s), 0);
    return s;
  }

  CheckingFakeRegistrar fake_;
  regcache_registrar reg_{};
  regcache_t* cache_ = nullptr;
};

TEST_F(CacheAdmission, ARangeReallocatedWithoutHitsIsServedUncached) {
  Make(REGCACHE_ADMISSION_ADAPTIVE);
  Region r(4 * kPage);
  UseAndRealloc(r.base);
  UseAndRealloc(r.base);
  EXPECT_EQ(Stats().uncached_churn, 0u) << "both were cached";
  const uint64_t regs = fake_.regs(), deregs = fake_.deregs();
  const uint64_t invalidations = Stats().invalidations[REGCACHE_INVAL_EXPLICIT];
  UseAndRealloc(r.base);
  const struct regcache_stats s = Stats();
  EXPECT_EQ(s.uncached_churn, 1u);
  EXPECT_EQ(s.uncacheable, 0u);
  EXPECT_EQ(fake_.regs(), regs + 1);
  EXPECT_EQ(fake_.deregs(), deregs + 1) << "deregistered at its put";
  EXPECT_EQ(s.entries_now, 0u) << "nothing kept";
  EXPECT_EQ(s.invalidations[REGCACHE_INVAL_EXPLICIT], invalidations)
      << "nothing cached, nothing to invalidate";
  // Other ranges are cached as before.
  Use(r.base + 2 * kPage);
  EXPECT_TRUE(Use(r.base + 2 * kPage));
}

// An uncached get takes its entry and hold before it registers; when the
// registration fails, both go back: more failures than a thread has hold
// slots leave nothing held or allocated, and the range is served again once
// memory is available.
TEST_F(CacheAdmission, AFailedUncachedGetGivesItsEntryAndHoldBack) {
  Make(REGCACHE_ADMISSION_ADAPTIVE);
  Region r(2 * kPage);
  UseAndRealloc(r.base);
  UseAndRealloc(r.base);  // r.base churns from now on
  fake_.set_budget(kPage);
  regcache_handle_t* fill = nullptr;  // held: no eviction makes room
  ASSERT_EQ(regcache_get(cache_, r.base + kPage, kPage, kLW, &fill), 0)
      << regcache_last_error();
  const uint64_t failures = fake_.failures();
  for (int i = 0; i < 3 * regcache_internal::kSlotsPerThread; ++i) {
    regcache_handle_t* h = nullptr;
    EXPECT_EQ(regcache_get(cache_, r.base, kPage, kLW, &h), -ENOMEM);
    EXPECT_EQ(h, nullptr);
  }
  EXPECT_GT(fake_.failures(), failures);
  EXPECT_EQ(Stats().entries_now, 1u) << "only the held registration";
  Check();
  ASSERT_EQ(regcache_put(cache_, fill), 0) << regcache_last_error();
  const uint64_t regs = fake_.regs();
  Use(r.base);
  EXPECT_EQ(fake_.regs(), regs + 1);
}

TEST_F(CacheAdmission, AChurningRangeIsProbedWithBackoff) {
  Make(REGCACHE_ADMISSION_ADAPTIVE);
  Region r(kPage);
  UseAndRealloc(r.base);
  UseAndRealloc(r.base);
  // Each probe is cached (an entry exists between its get and the
  // invalidation); in between, gets are uncached. Record which gets were
  // cached over 100 reallocations.
  std::vector<int> cached_at;
  for (int i = 0; i < 100; ++i) {
    const uint64_t churn = Stats().uncached_churn;
    Use(r.base);
    if (Stats().uncached_churn == churn) cached_at.push_back(i);
    ASSERT_EQ(regcache_invalidate(cache_, r.base, kPage), 0);
  }
  // Probes after 8, then 16, 32, 64 uncached gets.
  const std::vector<int> expected = {8, 8 + 1 + 16, 8 + 1 + 16 + 1 + 32};
  EXPECT_EQ(cached_at, expected);
}

TEST_F(CacheAdmission, AProbeThatIsHitReturnsTheRangeToCaching) {
  Make(REGCACHE_ADMISSION_ADAPTIVE);
  Region r(kPage);
  UseAndRealloc(r.base);
  UseAndRealloc(r.base);
  for (uint32_t i = 0; i < ChurnTable::kInitialSkip; ++i) UseAndRealloc(r.base);
  EXPECT_EQ(Stats().uncached_churn, ChurnTable::kInitialSkip);
  // The program changes its habits: the buffer is now reused.
  Use(r.base);  // the probe: cached
  EXPECT_TRUE(Use(r.base)) << "the probe serves a hit";
  ASSERT_EQ(regcache_invalidate(cache_, r.base, kPage), 0);  // hit: churn over
  const uint64_t churn = Stats().uncached_churn;
  EXPECT_FALSE(Use(r.base));
  EXPECT_TRUE(Use(r.base));
  EXPECT_TRUE(Use(r.base));
  EXPECT_EQ(Stats().uncached_churn, churn);
}

TEST_F(CacheAdmission, AlwaysCachesARangeThatChurns) {
  Make(REGCACHE_ADMISSION_ALWAYS);
  Region r(kPage);
  for (int i = 0; i < 20; ++i) UseAndRealloc(r.base);
  const struct regcache_stats s = Stats();
  EXPECT_EQ(s.uncached_churn, 0u);
  EXPECT_EQ(s.invalidations[REGCACHE_INVAL_EXPLICIT], 20u);
}

// A cyclic scan over twice as many ranges as the cache keeps: CLOCK (like
// LRU) evicts each range just before its next use and never hits; the
// frequency admission keeps the incumbents and serves the rest uncached.
TEST_F(CacheAdmission, CyclicScanLargerThanTheCacheKeepsHalfOfItCached) {
  for (regcache_admission admission :
       {REGCACHE_ADMISSION_ALWAYS, REGCACHE_ADMISSION_ADAPTIVE}) {
    SCOPED_TRACE(admission == REGCACHE_ADMISSION_ALWAYS ? "always"
                                                        : "adaptive");
    Make(admission, /*max_entries=*/32);
    Region r(128 * kPage);
    for (int cycle = 0; cycle < 2; ++cycle)
      for (int i = 0; i < 64; ++i) Use(r.base + 2 * i * kPage);
    const struct regcache_stats before = Stats();
    for (int cycle = 0; cycle < 10; ++cycle)
      for (int i = 0; i < 64; ++i) Use(r.base + 2 * i * kPage);
    const struct regcache_stats after = Stats();
    const double hit_rate = double(after.hits - before.hits) / (10 * 64);
    if (admission == REGCACHE_ADMISSION_ALWAYS) {
      EXPECT_EQ(hit_rate, 0.0);
      EXPECT_EQ(after.uncached_admission, 0u);
    } else {
      EXPECT_GE(hit_rate, 0.45);
      EXPECT_GT(after.uncached_admission, before.uncached_admission);
      EXPECT_LE(after.entries_now, 32u);
    }
    Check();
    EXPECT_EQ(regcache_destroy(cache_), 0);
    cache_ = nullptr;
  }
}

// TinyLFU still lets a new working set in: ranges asked for again and
// again get more requests than the old, unused entries.
TEST_F(CacheAdmission, ANewWorkingSetReplacesAnIdleOne) {
  Make(REGCACHE_ADMISSION_ADAPTIVE, /*max_entries=*/16);
  Region r(128 * kPage);
  std::vector<char*> old_set, new_set;
  for (int i = 0; i < 16; ++i) {
    old_set.push_back(r.base + 2 * i * kPage);
    new_set.push_back(r.base + (64 + 2 * i) * kPage);
  }
  EXPECT_EQ(NewSetHitsAfterSwitch(old_set, new_set), 16)
      << "the new set did not replace the old one";
}

// A count-min sketch over-counts a range whose counters all collide with
// busier ranges: such an entry ties with every newcomer of the new set
// without a hit of its own. It may keep them out for a few passes of the
// CLOCK hand, not for good. The page is chosen so that its counters in a
// sketch of the cache's width (four per entry) are all the new set's.
TEST_F(CacheAdmission, AnIdleEntryTheSketchOverCountsDoesNotKeepANewSetOut) {
  constexpr size_t kEntries = 16;
  Make(REGCACHE_ADMISSION_ADAPTIVE, kEntries);
  Region r(16384 * kPage);  // address space only: few pages are touched
  auto page = [&](size_t i) { return r.base + i * kPage; };
  std::vector<char*> new_set, old_set;
  FrequencySketch same_width;
  ASSERT_TRUE(same_width.Init(4 * kEntries));
  for (size_t i = 0; i < kEntries; ++i) {
    new_set.push_back(page(2 * i));
    same_width.Increment(reinterpret_cast<uint64_t>(new_set.back()));
  }
  // About one page in 400 collides in all four rows.
  for (size_t i = 64; i < 8192 && old_set.empty(); ++i) {
    if (same_width.Estimate(reinterpret_cast<uint64_t>(page(i))) > 0)
      old_set.push_back(page(i));
  }
  ASSERT_FALSE(old_set.empty()) << "no page collides with the new set";
  for (size_t i = 1; i < kEntries; ++i) old_set.push_back(page(8192 + 2 * i));

  const int hits = NewSetHitsAfterSwitch(old_set, new_set);
  EXPECT_EQ(hits, int(kEntries)) << "the over-counted idle entry kept "
                                 << kEntries - hits << " newcomers out";
  EXPECT_GT(Stats().uncached_admission, 0u) << "no duel was ever won";
  Check();
}

// max_bytes bounds pinned memory, uncached gets included: at the memlock
// budget, neither kind of uncached get makes a registration fail.
TEST_F(CacheAdmission, UncachedGetsStayWithinMaxBytes) {
  Make(REGCACHE_ADMISSION_ADAPTIVE, /*max_entries=*/4, /*max_bytes=*/8 * kPage);
  fake_.set_budget(8 * kPage);  // RLIMIT_MEMLOCK == max_bytes
  Region r(256 * kPage);
  for (int cycle = 0; cycle < 4; ++cycle) {
    for (int i = 0; i < 16; ++i) Use(r.base + i * 4 * kPage, 2 * kPage);
    for (int i = 0; i < 4; ++i) {
      UseAndRealloc(r.base + 128 * kPage);  // churns
      Use(r.base + 192 * kPage, kPage);
    }
  }
  EXPECT_GT(Stats().uncached_churn, 0u);
  EXPECT_EQ(fake_.failures(), 0u) << "a registration hit the memlock budget";
  EXPECT_LE(fake_.peak_live_bytes(), 8 * kPage);
}

// An uncached get is never published, so no other thread can hold it
// without the mutex knowing: its reclaim needs no membarrier() even when
// other threads use the cache.
TEST_F(CacheAdmission, UncachedGetsNeedNoReclaimFence) {
  Make(REGCACHE_ADMISSION_ADAPTIVE);
  Region r(64 * kPage);
  std::mutex mu;
  std::condition_variable cv;
  bool got = false, release = false;
  std::thread other([&] {
    Use(r.base + 40 * kPage);
    std::unique_lock<std::mutex> lock(mu);
    got = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return got; });
  }
  UseAndRealloc(r.base);
  UseAndRealloc(r.base);
  const uint64_t fences = regcache_internal::HeavyFenceCount();
  const uint64_t churn = Stats().uncached_churn;
  for (int i = 0; i < 4; ++i) Use(r.base);  // uncached: nothing to invalidate
  EXPECT_EQ(Stats().uncached_churn, churn + 4);
  EXPECT_EQ(regcache_internal::HeavyFenceCount(), fences);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  other.join();
}

// ---------------------------------------------------------------------------
// The churn lane: a thread serves a churning range's uncached gets between
// two probes without asking the churn table again.

// Which of `n` reallocations of each range in `ranges` (used in turn, as a
// ping-pong's send and receive buffers are) were cached, per range.
std::vector<std::vector<int>> CachedAtOverReallocations(
    regcache_t* cache, const std::vector<char*>& ranges, int n) {
  std::vector<std::vector<int>> cached_at(ranges.size());
  for (int i = 0; i < n; ++i) {
    for (size_t r = 0; r < ranges.size(); ++r) {
      struct regcache_stats before, after;
      EXPECT_EQ(regcache_stats(cache, &before), 0);
      regcache_handle_t* h = nullptr;
      EXPECT_EQ(regcache_get(cache, ranges[r], kPage, kLW, &h), 0)
          << regcache_last_error();
      if (h == nullptr) return cached_at;
      CheckingFakeRegistrar::Hold(regcache_handle_mr(h));
      CheckingFakeRegistrar::Unhold(regcache_handle_mr(h));
      EXPECT_EQ(regcache_put(cache, h), 0) << regcache_last_error();
      EXPECT_EQ(regcache_stats(cache, &after), 0);
      if (after.uncached_churn == before.uncached_churn)
        cached_at[r].push_back(i);
      EXPECT_EQ(regcache_invalidate(cache, ranges[r], kPage), 0);
    }
  }
  return cached_at;
}

uint64_t LaneGets(regcache_t* cache) {
  return reinterpret_cast<regcache_internal::Cache*>(cache)->lane_gets();
}

// The probes of AChurningRangeIsProbedWithBackoff (after 8, 16 and 32
// uncached gets) come at the same gets however many ranges churn in one
// thread: more than the thread has lanes makes them take lanes over and
// give the unused gets back.
TEST_F(CacheAdmission, LanesKeepTheProbesWhereTheChurnTablePutsThem) {
  const std::vector<int> expected = {8, 8 + 1 + 16, 8 + 1 + 16 + 1 + 32};
  for (size_t ranges : {size_t{1}, size_t{regcache_internal::kChurnLanes},
                        size_t{regcache_internal::kChurnLanes + 1}}) {
    SCOPED_TRACE(std::to_string(ranges) + " churning ranges");
    Make(REGCACHE_ADMISSION_ADAPTIVE);
    Region r(16 * kPage);
    std::vector<char*> set;
    for (size_t i = 0; i < ranges; ++i) set.push_back(r.base + 2 * i * kPage);
    for (int i = 0; i < 2; ++i)
      for (char* p : set) UseAndRealloc(p);
    const uint64_t regs = fake_.regs(), deregs = fake_.deregs();
    const auto cached_at = CachedAtOverReallocations(cache_, set, 100);
    for (size_t i = 0; i < ranges; ++i)
      EXPECT_EQ(cached_at[i], expected) << "range " << i;
    const struct regcache_stats s = Stats();
    EXPECT_EQ(s.uncached_churn, ranges * (100 - expected.size()));
    EXPECT_EQ(fake_.regs() - regs, ranges * 100);
    EXPECT_EQ(fake_.deregs() - deregs, ranges * 100);
    EXPECT_EQ(s.entries_now, 0u);
    if (ranges <= size_t{regcache_internal::kChurnLanes}) {
      // Four windows of uncached gets (8, 16, 32 and the first 41 of 64);
      // the slow path serves the first get of each and grants the rest.
      EXPECT_EQ(LaneGets(cache_), s.uncached_churn - 4 * ranges);
    }
    // With more ranges than lanes, used in turn, each grant takes over the
    // lane of the range used next: the slow path serves them all.
    Check();
    EXPECT_EQ(regcache_destroy(cache_), 0);
    cache_ = nullptr;
  }
}

// A second get of the range while the lane's entry is held goes the slow
// way; both are registrations of their own, and a put from another thread
// gives the lane's entry back.
TEST_F(CacheAdmission, ALaneEntryIsHeldByOneHandleAtATime) {
  Make(REGCACHE_ADMISSION_ADAPTIVE);
  Region r(2 * kPage);
  UseAndRealloc(r.base);
  UseAndRealloc(r.base);
  UseAndRealloc(r.base);  // the slow path's uncached get grants the lane
  const uint64_t lane = LaneGets(cache_);
  regcache_handle_t* a = nullptr;
  regcache_handle_t* b = nullptr;
  ASSERT_EQ(regcache_get(cache_, r.base, kPage, kLW, &a), 0);
  EXPECT_EQ(LaneGets(cache_), lane + 1) << "the lane served the first";
  ASSERT_EQ(regcache_get(cache_, r.base, kPage, kLW, &b), 0);
  EXPECT_EQ(LaneGets(cache_), lane + 1) << "and not the second";
  EXPECT_NE(regcache_handle_mr(a)->lkey, regcache_handle_mr(b)->lkey);
  EXPECT_EQ(Stats().entries_now, 2u);
  Check();
  std::thread other([&] { EXPECT_EQ(regcache_put(cache_, a), 0); });
  other.join();
  ASSERT_EQ(regcache_put(cache_, b), 0);
  EXPECT_NE(regcache_put(cache_, a), 0) << "a put twice";
  Use(r.base);
  EXPECT_EQ(LaneGets(cache_), lane + 2) << "the entry came back to the lane";
  EXPECT_EQ(Stats().entries_now, 0u);
  EXPECT_EQ(fake_.live(), 0u);
}

// A fork child owns none of its parent's registrations, uncached ones
// included: putting a handle the forking thread held, before the child
// does anything else with the cache, must not deregister the parent's
// registration (the device's objects are shared through the inherited
// file descriptor). Both kinds: a lane's and the slow path's.
TEST_F(CacheAdmission, AForkChildPutsItsParentsUncachedHandlesWithoutDereg) {
  Make(REGCACHE_ADMISSION_ADAPTIVE);
  Region r(2 * kPage);
  UseAndRealloc(r.base);
  UseAndRealloc(r.base);
  UseAndRealloc(r.base);  // grants the lane
  const uint64_t lane = LaneGets(cache_);
  regcache_handle_t* in_lane = nullptr;
  regcache_handle_t* slow = nullptr;
  ASSERT_EQ(regcache_get(cache_, r.base, kPage, kLW, &in_lane), 0);
  ASSERT_EQ(regcache_get(cache_, r.base, kPage, kLW, &slow), 0);
  ASSERT_EQ(LaneGets(cache_), lane + 1);
  ASSERT_EQ(Stats().uncached_churn, 3u);
  const uint64_t deregs = fake_.deregs();
  auto outcome = regcache_test::RunInChild([&]() -> std::string {
    if (regcache_put(cache_, in_lane) != 0) return regcache_last_error();
    if (regcache_put(cache_, slow) != 0) return regcache_last_error();
    if (fake_.deregs() != deregs)
      return "the child deregistered its parent's registration";
    const uint64_t regs = fake_.regs();
    regcache_handle_t* h = nullptr;
    if (regcache_get(cache_, r.base, kPage, kLW, &h) != 0)
      return regcache_last_error();
    if (regcache_put(cache_, h) != 0) return regcache_last_error();
    if (fake_.regs() != regs + 1 || fake_.deregs() != deregs + 1)
      return "the child's own get was not registered and deregistered";
    std::string why;
    if (!reinterpret_cast<regcache_internal::Cache*>(cache_)->CheckInvariants(
            &why))
      return why;
    return "";
  });
  EXPECT_FALSE(outcome.skipped);
  EXPECT_EQ(outcome.message, "");
  EXPECT_EQ(regcache_put(cache_, in_lane), 0);
  EXPECT_EQ(regcache_put(cache_, slow), 0);
  EXPECT_EQ(fake_.deregs(), deregs + 2) << "the parent's puts deregister";
}

// A registration that fails in the lane gives the entry and the hold back
// and fails the get, as the slow path's uncached get does.
TEST_F(CacheAdmission, AFailedLaneGetGivesItsEntryBack) {
  Make(REGCACHE_ADMISSION_ADAPTIVE);
  Region r(2 * kPage);
  UseAndRealloc(r.base);
  UseAndRealloc(r.base);
  UseAndRealloc(r.base);
  const uint64_t lane = LaneGets(cache_);
  fake_.set_budget(kPage / 2);
  regcache_handle_t* h = nullptr;
  EXPECT_EQ(regcache_get(cache_, r.base, kPage, kLW, &h), -ENOMEM);
  EXPECT_EQ(h, nullptr);
  EXPECT_EQ(LaneGets(cache_), lane + 1);
  EXPECT_EQ(Stats().entries_now, 0u);
  Check();
  fake_.set_budget(0);  // no memlock budget
  Use(r.base);
  EXPECT_EQ(LaneGets(cache_), lane + 2);
  EXPECT_EQ(fake_.live(), 0u);
}

// Near max_bytes the lane steps aside: the slow path makes room first.
TEST_F(CacheAdmission, TheLaneLeavesGetsThatMayNeedEvictionToTheSlowPath) {
  Make(REGCACHE_ADMISSION_ADAPTIVE, /*max_entries=*/0, /*max_bytes=*/4 * kPage);
  fake_.set_budget(4 * kPage);  // RLIMIT_MEMLOCK == max_bytes
  Region r(16 * kPage);
  auto use_and_realloc = [&] {
    Use(r.base, 2 * kPage);
    ASSERT_EQ(regcache_invalidate(cache_, r.base, 2 * kPage), 0);
  };
  for (int i = 0; i < 3; ++i) use_and_realloc();  // the third grants a lane
  const uint64_t lane = LaneGets(cache_);
  const uint64_t churn = Stats().uncached_churn;
  use_and_realloc();  // 2 pages pinned of 4: the lane
  EXPECT_EQ(LaneGets(cache_), lane + 1);
  Use(r.base + 8 * kPage, 3 * kPage);  // cached, unheld
  EXPECT_EQ(Stats().entries_now, 1u);
  use_and_realloc();  // 3 + 2 > 4: the slow path evicts, then registers
  EXPECT_EQ(LaneGets(cache_), lane + 1) << "the lane did not step aside";
  EXPECT_EQ(Stats().entries_now, 0u) << "the cached range was not evicted";
  EXPECT_EQ(Stats().uncached_churn, churn + 2);
  use_and_realloc();  // room again: the lane, with the gets it had left
  EXPECT_EQ(LaneGets(cache_), lane + 2);
  EXPECT_EQ(fake_.failures(), 0u) << "a registration hit the memlock budget";
  EXPECT_LE(fake_.peak_live_bytes(), 4 * kPage);
}

TEST_F(CacheAdmission, StatisticsNameBothKinds) {
  Make(REGCACHE_ADMISSION_ADAPTIVE, /*max_entries=*/1);
  Region r(8 * kPage);
  Use(r.base);
  Use(r.base + 2 * kPage);  // a tie: the incumbent stays
  EXPECT_EQ(Stats().uncached_admission, 1u);
  char* text = nullptr;
  size_t size = 0;
  FILE* f = open_memstream(&text, &size);
  ASSERT_EQ(regcache_print_stats_json(cache_, f), 0);
  fclose(f);
  const std::string json(text, size);
  free(text);
  EXPECT_NE(json.find("\"uncached_admission\":1"), std::string::npos) << json;
  EXPECT_NE(json.find("\"uncached_churn\":0"), std::string::npos) << json;
  EXPECT_NE(json.find("\"admission\":\"adaptive\""), std::string::npos) << json;
}

TEST(AdmissionConfig, EnvironmentChoosesAndBadValuesAreNamed) {
  regcache_config cfg;
  unsetenv("REGCACHE_ADMISSION");
  ASSERT_EQ(regcache_config_init(&cfg), 0);
  EXPECT_EQ(cfg.admission, REGCACHE_ADMISSION_ADAPTIVE);
  setenv("REGCACHE_ADMISSION", "always", 1);
  ASSERT_EQ(regcache_config_init(&cfg), 0);
  EXPECT_EQ(cfg.admission, REGCACHE_ADMISSION_ALWAYS);
  setenv("REGCACHE_ADMISSION", "sometimes", 1);
  EXPECT_EQ(regcache_config_init(&cfg), -EINVAL);
  EXPECT_NE(strstr(regcache_last_error(),
                   "REGCACHE_ADMISSION=\"sometimes\": expected "
                   "adaptive or always"),
            nullptr)
      << regcache_last_error();
  unsetenv("REGCACHE_ADMISSION");
}

}  // namespace
