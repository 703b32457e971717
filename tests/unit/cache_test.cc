// SPDX-License-Identifier: BSD-2-Clause
// Cache semantics with a fake registrar and no monitor: hits and misses,
// superset and access-superset hits, reference counts, invalidation of
// entries in use, CLOCK eviction, memlock exhaustion, bad input, handles
// across threads, thread exit, fork, destroy, configuration and statistics.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/cache.h"
#include "core/fences.h"
#include "fake_registrar.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "regcache/regcache.h"
#include "regcache/regcache.hpp"
#include "test_util.h"

namespace {

using regcache_internal::HeavyFenceCount;
using regcache_test::CheckingFakeRegistrar;

constexpr uint32_t kLW = REGCACHE_ACCESS_LOCAL_WRITE;
constexpr uint32_t kRR = REGCACHE_ACCESS_REMOTE_READ;

size_t Page() { return size_t(sysconf(_SC_PAGESIZE)); }

// Defaults and environment, but no monitor: these tests invalidate
// explicitly, so they run the same on every machine.
regcache_config NoMonitorConfig() {
  regcache_config cfg;
  regcache_config_init(&cfg);
  cfg.monitor = REGCACHE_MONITOR_NONE;
  return cfg;
}

// Anonymous memory that the test owns; never touched by the fake registrar.
struct Region {
  explicit Region(size_t bytes) : size(bytes) {
    base = static_cast<char*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  }
  ~Region() { munmap(base, size); }
  char* base;
  size_t size;
};

class CacheTest : public ::testing::Test {
 protected:
  // Tests of CLOCK's own mechanics pass REGCACHE_ADMISSION_ALWAYS: the
  // adaptive admission would serve their one-shot newcomers uncached.
  void Make(size_t max_entries = 0, size_t max_bytes = 0,
            regcache_admission admission = REGCACHE_ADMISSION_ADAPTIVE) {
    regcache_config cfg;
    ASSERT_EQ(regcache_config_init(&cfg), 0) << regcache_last_error();
    cfg.monitor = REGCACHE_MONITOR_NONE;
    cfg.max_entries = max_entries;
    cfg.max_bytes = max_bytes;
    cfg.admission = admission;
    reg_ = fake_.registrar();
    ASSERT_EQ(regcache_create(&reg_, &cfg, &cache_), 0)
        << regcache_last_error();
  }
  void TearDown() override {
    if (cache_ != nullptr) {
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
  regcache_handle_t* Get(const void* p, size_t len, uint32_t access = kLW) {
    regcache_handle_t* h = nullptr;
    int rc = regcache_get(cache_, p, len, access, &h);
    EXPECT_EQ(rc, 0) << regcache_last_error();
    return h;
  }
  void Put(regcache_handle_t* h) {
    EXPECT_EQ(regcache_put(cache_, h), 0) << regcache_last_error();
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

TEST_F(CacheTest, SecondGetOfSameRangeIsAHit) {
  Make();
  Region r(16 * Page());
  regcache_handle_t* a = Get(r.base, 8 * Page());
  Put(a);
  regcache_handle_t* b = Get(r.base, 8 * Page());
  EXPECT_EQ(regcache_handle_mr(b)->lkey, 1u);
  Put(b);
  struct regcache_stats s = Stats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(fake_.regs(), 1u);
  Check();
}

TEST_F(CacheTest, RequestIsRoundedOutToPages) {
  Make();
  Region r(4 * Page());
  regcache_handle_t* h = Get(r.base + 100, Page());  // spans two pages
  const regcache_mr* mr = regcache_handle_mr(h);
  EXPECT_EQ(mr->addr, r.base);
  EXPECT_EQ(mr->length, 2 * Page());
  EXPECT_EQ(mr->access & kLW, kLW);
  Put(h);
}

TEST_F(CacheTest, SubrangeOfCachedEntryIsAHitWithoutNewRegistration) {
  Make();
  Region r(64 * Page());
  Put(Get(r.base, 64 * Page()));
  // Same start, shorter; then inside, twice (second time via the alias).
  Put(Get(r.base, Page()));
  Put(Get(r.base + 10 * Page() + 7, 3 * Page()));
  Put(Get(r.base + 10 * Page() + 7, 3 * Page()));
  EXPECT_EQ(fake_.regs(), 1u);
  EXPECT_EQ(Stats().hits, 3u);
  Check();
}

TEST_F(CacheTest, AccessMustBeASubsetOfTheEntrys) {
  Make();
  Region r(4 * Page());
  Put(Get(r.base, Page(), kLW));
  Put(Get(r.base, Page(), kLW | kRR));  // needs more: miss
  EXPECT_EQ(fake_.regs(), 2u);
  Put(Get(r.base, Page(), kRR));  // the second covers it: hit
  Put(Get(r.base, Page(), kLW));
  EXPECT_EQ(fake_.regs(), 2u);
  Check();
}

TEST_F(CacheTest, BadArgumentsReturnEinvalWithAMessage) {
  Make();
  Region r(Page());
  regcache_handle_t* h = nullptr;
  struct Case {
    const void* addr;
    size_t len;
    uint32_t access;
    const char* expect;
  } cases[] = {
      {r.base, 0, kLW, "length is 0"},
      {nullptr, 10, kLW, "NULL"},
      {reinterpret_cast<void*>(~uintptr_t{0} - 10), 100, kLW, "overflows"},
      {r.base, 10, 1u << 20, "unknown access"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(regcache_get(cache_, c.addr, c.len, c.access, &h), -EINVAL);
    EXPECT_NE(strstr(regcache_last_error(), c.expect), nullptr)
        << regcache_last_error();
  }
  EXPECT_EQ(regcache_get(nullptr, r.base, 1, kLW, &h), -EINVAL);
  EXPECT_EQ(regcache_get(cache_, r.base, 1, kLW, nullptr), -EINVAL);
  EXPECT_EQ(fake_.regs(), 0u);
}

TEST_F(CacheTest, PutOfForeignPointerOrReleasedHandleIsRefused) {
  Make();
  Region r(Page());
  int local = 0;
  EXPECT_EQ(regcache_put(cache_, reinterpret_cast<regcache_handle_t*>(&local)),
            -EINVAL);
  EXPECT_NE(strstr(regcache_last_error(), "not a handle"), nullptr);
  EXPECT_EQ(regcache_put(cache_, nullptr), -EINVAL);
  regcache_handle_t* h = Get(r.base, Page());
  // One byte off a real handle is not a handle either.
  EXPECT_EQ(regcache_put(cache_, reinterpret_cast<regcache_handle_t*>(
                                     reinterpret_cast<char*>(h) + 1)),
            -EINVAL);
  Put(h);
  EXPECT_EQ(regcache_put(cache_, h), -EALREADY);
  EXPECT_NE(strstr(regcache_last_error(), "already released"), nullptr);
  // Nothing was lost: the entry is still cached and usable.
  Put(Get(r.base, Page()));
  EXPECT_EQ(fake_.regs(), 1u);
}

TEST_F(CacheTest, DoublePutFromAnotherThreadIsRefused) {
  Make();
  Region r(Page());
  regcache_handle_t* h = Get(r.base, Page());
  Put(h);
  int rc = 0;
  std::thread([&] { rc = regcache_put(cache_, h); }).join();
  EXPECT_EQ(rc, -EALREADY);
}

TEST_F(CacheTest, InvalidatedEntryInUseIsDeregisteredAtLastPut) {
  Make();
  Region r(8 * Page());
  regcache_handle_t* h = Get(r.base, 8 * Page());
  CheckingFakeRegistrar::Hold(regcache_handle_mr(h));
  ASSERT_EQ(regcache_invalidate(cache_, r.base + Page(), 1), 0);
  EXPECT_EQ(fake_.deregs(), 0u) << "deregistered while in use";
  EXPECT_EQ(Stats().invalidations[REGCACHE_INVAL_EXPLICIT], 1u);
  // It is out of lookup at once: a new get registers anew.
  regcache_handle_t* h2 = Get(r.base, 8 * Page());
  EXPECT_NE(regcache_handle_mr(h2)->lkey, regcache_handle_mr(h)->lkey);
  EXPECT_EQ(fake_.regs(), 2u);
  CheckingFakeRegistrar::Unhold(regcache_handle_mr(h));
  Put(h);
  EXPECT_EQ(fake_.deregs(), 1u) << "last put must deregister";
  Put(h2);
  EXPECT_EQ(fake_.deregs(), 1u);
  Check();
}

TEST_F(CacheTest, InvalidateOnlyTouchesOverlappingEntries) {
  Make();
  Region r(16 * Page());
  Put(Get(r.base, 4 * Page()));
  Put(Get(r.base + 4 * Page(), 4 * Page()));
  Put(Get(r.base + 8 * Page(), 4 * Page()));
  ASSERT_EQ(regcache_invalidate(cache_, r.base + 4 * Page(), Page()), 0);
  EXPECT_EQ(fake_.deregs(), 1u);
  Put(Get(r.base, 4 * Page()));
  Put(Get(r.base + 8 * Page(), 4 * Page()));
  EXPECT_EQ(fake_.regs(), 3u);
  EXPECT_EQ(regcache_invalidate(cache_, r.base, 0), -EINVAL);
  Check();
}

TEST_F(CacheTest, FlushDropsUnusedAndKeepsHeldUntilPut) {
  Make();
  Region r(8 * Page());
  regcache_handle_t* held = Get(r.base, Page());
  Put(Get(r.base + 2 * Page(), Page()));
  CheckingFakeRegistrar::Hold(regcache_handle_mr(held));
  ASSERT_EQ(regcache_flush(cache_), 0);
  EXPECT_EQ(fake_.deregs(), 1u);
  EXPECT_EQ(Stats().entries_now, 1u);
  CheckingFakeRegistrar::Unhold(regcache_handle_mr(held));
  Put(held);
  EXPECT_EQ(fake_.deregs(), 2u);
  EXPECT_EQ(Stats().entries_now, 0u);
}

TEST_F(CacheTest, EntryLimitEvictsUnusedEntries) {
  Make(/*max_entries=*/4, 0, REGCACHE_ADMISSION_ALWAYS);
  Region r(64 * Page());
  for (int i = 0; i < 32; ++i) {
    Put(Get(r.base + i * 2 * Page(), Page()));
    EXPECT_LE(Stats().entries_now, 4u) << "after " << i;
    Check();
  }
  EXPECT_GE(Stats().evictions, 28u);
}

TEST_F(CacheTest, ReclaimSkipsTheHeavyFenceWhileNoOtherThreadCanHit) {
  // The reclaim fence (membarrier) only matters to other threads that may
  // be on the hit path; this thread is the cache's only user.
  Make(/*max_entries=*/1, 0, REGCACHE_ADMISSION_ALWAYS);
  Region r(64 * Page());
  Put(Get(r.base, Page()));
  const uint64_t fences = HeavyFenceCount();
  const uint64_t deregs = fake_.deregs();
  for (int i = 1; i <= 8; ++i) Put(Get(r.base + i * 2 * Page(), Page()));
  EXPECT_EQ(fake_.deregs(), deregs + 8) << "each miss evicts and reclaims one";
  EXPECT_EQ(HeavyFenceCount(), fences);

  // Another thread with a state of its own: every reclaim fences again.
  std::mutex mu;
  std::condition_variable cv;
  bool got = false, release = false;
  std::thread other([&] {
    Put(Get(r.base + 40 * Page(), Page()));
    std::unique_lock<std::mutex> lock(mu);
    got = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return got; });
  }
  const uint64_t with_other = HeavyFenceCount();
  for (int i = 1; i <= 4; ++i) Put(Get(r.base + i * 2 * Page(), Page()));
  EXPECT_GE(HeavyFenceCount(), with_other + 4);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  other.join();

  // Its state was orphaned at exit: back to no fence.
  const uint64_t after_exit = HeavyFenceCount();
  for (int i = 1; i <= 4; ++i) Put(Get(r.base + i * 2 * Page(), Page()));
  EXPECT_EQ(HeavyFenceCount(), after_exit);
  Check();
}

TEST_F(CacheTest, ByteLimitEvictsUnusedEntries) {
  Make(0, /*max_bytes=*/8 * Page());
  Region r(64 * Page());
  for (int i = 0; i < 16; ++i) Put(Get(r.base + i * 4 * Page(), 2 * Page()));
  EXPECT_LE(Stats().pinned_bytes_now, 8 * Page());
  EXPECT_GE(Stats().evictions, 12u);
}

TEST_F(CacheTest, ClockGivesARecentlyHitEntryASecondChance) {
  Make(/*max_entries=*/4);
  Region r(64 * Page());
  regcache_handle_t* hot = Get(r.base, Page());
  Put(hot);
  for (int i = 1; i < 4; ++i) Put(Get(r.base + i * 2 * Page(), Page()));
  // The oldest entry is the hot one; hit it, then overflow by one.
  Put(Get(r.base, Page()));
  Put(Get(r.base + 20 * Page(), Page()));
  const uint64_t regs = fake_.regs();
  Put(Get(r.base, Page()));
  EXPECT_EQ(fake_.regs(), regs) << "the recently hit entry was evicted";
}

TEST_F(CacheTest, EntriesInUseAreNeverEvicted) {
  Make(/*max_entries=*/2);
  Region r(64 * Page());
  std::vector<regcache_handle_t*> held;
  for (int i = 0; i < 8; ++i) {
    held.push_back(Get(r.base + i * 2 * Page(), Page()));
    CheckingFakeRegistrar::Hold(regcache_handle_mr(held.back()));
  }
  EXPECT_EQ(fake_.deregs(), 0u);
  EXPECT_EQ(Stats().in_use_now, 8u);
  for (regcache_handle_t* h : held) {
    CheckingFakeRegistrar::Unhold(regcache_handle_mr(h));
    Put(h);
  }
  // Back under the limit once the holds are gone and another miss evicts.
  Put(Get(r.base + 40 * Page(), Page()));
  EXPECT_LE(Stats().entries_now, 2u);
}

// A full cache makes room before it registers: the registrations alive at
// once never exceed the limits, so a max_bytes equal to the memlock limit
// never sees a registration fail.
TEST_F(CacheTest, FullCacheEvictsBeforeItRegisters) {
  Make(/*max_entries=*/4, /*max_bytes=*/8 * Page(), REGCACHE_ADMISSION_ALWAYS);
  fake_.set_budget(8 * Page());  // RLIMIT_MEMLOCK == max_bytes
  Region r(128 * Page());
  for (int i = 0; i < 16; ++i) Put(Get(r.base + i * 4 * Page(), 2 * Page()));
  for (int i = 0; i < 16; ++i)
    Put(Get(r.base + 64 * Page() + i * 2 * Page(), Page()));
  EXPECT_EQ(fake_.failures(), 0u) << "a registration hit the memlock budget";
  EXPECT_LE(fake_.peak_live_bytes(), 8 * Page());
  EXPECT_LE(fake_.peak_live(), 4u);
  EXPECT_GE(Stats().evictions, 24u);
  Check();
}

TEST_F(CacheTest, MemlockExhaustionEvictsAndRetries) {
  Make();
  fake_.set_budget(4 * Page());
  Region r(64 * Page());
  for (int i = 0; i < 4; ++i) Put(Get(r.base + i * 2 * Page(), Page()));
  // Full: the next registration fails once, the cache evicts and retries.
  regcache_handle_t* h = Get(r.base + 20 * Page(), Page());
  EXPECT_NE(h, nullptr);
  EXPECT_GE(fake_.failures(), 1u);
  EXPECT_GE(Stats().evictions, 1u);
  Put(h);
}

TEST_F(CacheTest, MemlockExhaustionWithEverythingInUseFailsClearly) {
  Make();
  fake_.set_budget(2 * Page());
  Region r(64 * Page());
  regcache_handle_t* a = Get(r.base, Page());
  regcache_handle_t* b = Get(r.base + 2 * Page(), Page());
  regcache_handle_t* c = nullptr;
  int rc = regcache_get(cache_, r.base + 4 * Page(), Page(), kLW, &c);
  EXPECT_EQ(rc, -ENOMEM);
  const std::string msg = regcache_last_error();
  EXPECT_NE(msg.find("RLIMIT_MEMLOCK"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2 registrations"), std::string::npos) << msg;
  // Nothing lost: the held ones are intact, and releasing one makes room.
  Put(a);
  c = Get(r.base + 4 * Page(), Page());
  EXPECT_NE(c, nullptr);
  Put(b);
  Put(c);
}

TEST_F(CacheTest, HandleMayBeReleasedByAnotherThread) {
  Make();
  Region r(Page());
  regcache_handle_t* h = Get(r.base, Page());
  int rc = -1;
  std::thread([&] { rc = regcache_put(cache_, h); }).join();
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(Stats().in_use_now, 0u);
}

TEST_F(CacheTest, HandleOutlivesTheThreadThatGotIt) {
  Make();
  Region r(Page());
  regcache_handle_t* h = nullptr;
  std::thread([&] { h = Get(r.base, Page()); }).join();
  Put(h);
  // A new thread adopts the orphaned state and still hits.
  std::thread([&] { Put(Get(r.base, Page())); }).join();
  EXPECT_EQ(fake_.regs(), 1u);
}

TEST_F(CacheTest, ManyHandlesOnOneThreadOverflowTheSlotBlock) {
  Make();
  Region r(Page());
  std::vector<regcache_handle_t*> hs;
  for (int i = 0; i < 100; ++i) hs.push_back(Get(r.base, Page()));
  EXPECT_EQ(Stats().in_use_now, 100u);
  for (auto* h : hs) Put(h);
  EXPECT_EQ(fake_.regs(), 1u);
}

TEST_F(CacheTest, ConcurrentGetPutInvalidateNeverDeregistersAHeldEntry) {
  Make(/*max_entries=*/64);
  Region r(256 * Page());
  const unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(seed + t);
      for (int i = 0; i < 20000 && !stop; ++i) {
        const size_t page = rng() % 200;
        const size_t pages = 1 + rng() % 8;
        char* p = r.base + page * Page();
        if (rng() % 16 == 0) {
          regcache_invalidate(cache_, p, pages * Page());
          continue;
        }
        regcache_handle_t* h = nullptr;
        if (regcache_get(cache_, p, pages * Page(), kLW, &h) != 0) {
          ADD_FAILURE() << "get: " << regcache_last_error();
          errors++;
          continue;
        }
        const regcache_mr* mr = regcache_handle_mr(h);
        CheckingFakeRegistrar::Hold(mr);
        auto* rec = CheckingFakeRegistrar::RecordOf(mr);
        if (!rec->live) {
          ADD_FAILURE() << "got a deregistered registration";
          errors++;
        } else if (rec->addr > uint64_t(p) ||
                   rec->addr + rec->length < uint64_t(p) + pages * Page()) {
          ADD_FAILURE() << "registration [" << rec->addr << ", +" << rec->length
                        << ") does not cover [" << uint64_t(p) << ", +"
                        << pages * Page() << ")";
          errors++;
        }
        CheckingFakeRegistrar::Unhold(mr);
        if (regcache_put(cache_, h) != 0) {
          ADD_FAILURE() << "put: " << regcache_last_error();
          errors++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0u);
  EXPECT_EQ(fake_.violations(), 0u);
  Check();
}

TEST_F(CacheTest, ForkedChildCachesAfreshAndNeverDeregistersParentEntries) {
  Make();
  Region r(8 * Page());
  Put(Get(r.base, Page()));
  regcache_handle_t* held = Get(r.base + 2 * Page(), Page());
  const uint64_t regs_before = fake_.regs();
  auto outcome = regcache_test::RunInChild([&]() -> std::string {
    regcache_handle_t* h = nullptr;
    // The inherited entry must not be returned: the child registers again.
    if (regcache_get(cache_, r.base, Page(), kLW, &h) != 0)
      return regcache_last_error();
    if (fake_.regs() != regs_before + 1) return "child hit an inherited entry";
    if (regcache_put(cache_, h) != 0) return regcache_last_error();
    // The handle the forking thread held is still releasable.
    if (regcache_put(cache_, held) != 0) return regcache_last_error();
    if (fake_.deregs() != 0) return "child deregistered an inherited entry";
    struct regcache_stats s;
    regcache_stats(cache_, &s);
    if (s.invalidations[REGCACHE_INVAL_FORK] != 2)
      return "fork invalidations not counted";
    return "";
  });
  EXPECT_FALSE(outcome.skipped);
  EXPECT_EQ(outcome.message, "");
  // The parent is unaffected.
  Put(Get(r.base, Page()));
  EXPECT_EQ(fake_.regs(), regs_before);
  Put(held);
}

// The child's first call is the put of a handle on an entry invalidated
// before the fork: the last put of a zombie reclaims it, but in a child it
// is the parent's, so it is forgotten, not deregistered.
TEST_F(CacheTest, ForkedChildPutsAnInvalidatedParentEntryWithoutDereg) {
  Make();
  Region r(4 * Page());
  regcache_handle_t* held = Get(r.base, Page());
  ASSERT_EQ(regcache_invalidate(cache_, r.base, Page()), 0);  // a held zombie
  const uint64_t deregs = fake_.deregs();
  auto outcome = regcache_test::RunInChild([&]() -> std::string {
    if (regcache_put(cache_, held) != 0) return regcache_last_error();
    if (fake_.deregs() != deregs)
      return "the child deregistered its parent's registration";
    return "";
  });
  EXPECT_FALSE(outcome.skipped);
  EXPECT_EQ(outcome.message, "");
  Put(held);
  EXPECT_EQ(fake_.deregs(), deregs + 1) << "the parent's put deregisters it";
}

// A child whose first call destroys the cache (a forked helper that
// cleans up before it exits) leaves its parent's registrations alone.
void ChildDestroyLeavesParentEntries(regcache_monitor_kind monitor) {
  CheckingFakeRegistrar fake;
  const regcache_registrar reg = fake.registrar();
  regcache_config cfg = NoMonitorConfig();
  cfg.monitor = monitor;
  regcache_t* c = nullptr;
  if (regcache_create(&reg, &cfg, &c) == -ENODEV) {
    GTEST_SKIP() << "no userfaultfd here: " << regcache_last_error();
  }
  ASSERT_NE(c, nullptr) << regcache_last_error();
  Region r(4 * Page());
  regcache_handle_t* h = nullptr;
  ASSERT_EQ(regcache_get(c, r.base, Page(), kLW, &h), 0);
  ASSERT_EQ(regcache_put(c, h), 0);
  regcache_handle_t* held = nullptr;
  ASSERT_EQ(regcache_get(c, r.base + 2 * Page(), Page(), kLW, &held), 0);
  const uint64_t deregs = fake.deregs();
  auto outcome = regcache_test::RunInChild([&]() -> std::string {
    alarm(20);  // a hang (joining a thread the child does not have) fails
    regcache_destroy(c);
    if (fake.deregs() != deregs)
      return "the child deregistered its parent's registrations";
    return "";
  });
  EXPECT_FALSE(outcome.skipped);
  EXPECT_EQ(outcome.message, "");
  EXPECT_EQ(regcache_put(c, held), 0);
  EXPECT_EQ(regcache_destroy(c), 0) << regcache_last_error();
  EXPECT_EQ(fake.live(), 0u);
}

TEST(CacheFork, ChildDestroysTheCacheWithoutDeregisteringParentEntries) {
  ChildDestroyLeavesParentEntries(REGCACHE_MONITOR_NONE);
}

TEST(CacheFork, ChildDestroysAUffdCacheWithoutDeregisteringParentEntries) {
#if defined(REGCACHE_TEST_TSAN)
  GTEST_SKIP() << "ThreadSanitizer cannot follow threads started in the "
                  "child of a multi-threaded fork (the child restarts the "
                  "uffd monitor's threads); the plain and ASan runs cover "
                  "this test";
#endif
  ChildDestroyLeavesParentEntries(REGCACHE_MONITOR_UFFD);
}

TEST(CacheLifetime, DestroyWithHeldHandlesDeregistersAndReportsBusy) {
  CheckingFakeRegistrar fake;
  regcache_registrar reg = fake.registrar();
  regcache_config cfg = NoMonitorConfig();
  regcache_t* c = nullptr;
  ASSERT_EQ(regcache_create(&reg, &cfg, &c), 0);
  Region r(Page());
  regcache_handle_t* h = nullptr;
  ASSERT_EQ(regcache_get(c, r.base, Page(), kLW, &h), 0);
  EXPECT_EQ(regcache_destroy(c), -EBUSY);
  EXPECT_NE(strstr(regcache_last_error(), "still held"), nullptr);
  EXPECT_EQ(fake.live(), 0u);
}

TEST(CacheMonitors, TheReaperIsNamedBlocksSignalsAndRunsOnceCreateReturns) {
  // Like a monitor's event threads: no application signal handler (which
  // might munmap or take a lock) runs on it, top -H names it, and it is
  // past its start-up when regcache_create() returns (a fork right after
  // must not find it inside the thread library).
  CheckingFakeRegistrar fake;
  const regcache_registrar reg = fake.registrar();
  regcache_config cfg = NoMonitorConfig();
  regcache_t* c = nullptr;
  ASSERT_EQ(regcache_create(&reg, &cfg, &c), 0);
  EXPECT_EQ(regcache_test::ThreadsNamed("regcache-reap"), 0)
      << "monitor none has nothing to reap in the background";
  ASSERT_EQ(regcache_destroy(c), 0);

  cfg.monitor = REGCACHE_MONITOR_UFFD;
  if (regcache_create(&reg, &cfg, &c) == -ENODEV) {
    GTEST_SKIP() << "no userfaultfd here: " << regcache_last_error();
  }
  ASSERT_NE(c, nullptr) << regcache_last_error();
  const std::vector<std::string> reapers =
      regcache_test::ThreadIdsNamed("regcache-reap");
  ASSERT_EQ(reapers.size(), 1u);
  const uint64_t blocked = regcache_test::BlockedSignals(reapers[0]);
  for (int sig : {SIGHUP, SIGINT, SIGUSR1, SIGALRM, SIGTERM, SIGCHLD})
    EXPECT_NE(blocked & (uint64_t{1} << (sig - 1)), 0u) << strsignal(sig);
  ASSERT_EQ(regcache_destroy(c), 0);
  EXPECT_EQ(regcache_test::ThreadsNamedOnceGone("regcache-reap"), 0);
}

TEST(CacheMonitors, TwoUffdCachesBothCacheASharedBufferAndSeeItsMunmap) {
  // Two caches (two NICs, say) registering the same buffer share the
  // process's userfaultfd: neither serves it uncached, both drop it when
  // it is unmapped.
  CheckingFakeRegistrar fake_a, fake_b;
  regcache_config cfg = NoMonitorConfig();
  cfg.monitor = REGCACHE_MONITOR_UFFD;
  regcache_t* a = nullptr;
  regcache_t* b = nullptr;
  const regcache_registrar ra = fake_a.registrar();
  const regcache_registrar rb = fake_b.registrar();
  if (regcache_create(&ra, &cfg, &a) == -ENODEV) {
    GTEST_SKIP() << "no userfaultfd here: " << regcache_last_error();
  }
  ASSERT_NE(a, nullptr) << regcache_last_error();
  ASSERT_EQ(regcache_create(&rb, &cfg, &b), 0) << regcache_last_error();
  char* buf =
      static_cast<char*>(mmap(nullptr, 4 * Page(), PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(buf, MAP_FAILED);
  for (regcache_t* c : {a, b, a, b}) {
    regcache_handle_t* h = nullptr;
    ASSERT_EQ(regcache_get(c, buf, 4 * Page(), kLW, &h), 0)
        << regcache_last_error();
    ASSERT_EQ(regcache_put(c, h), 0);
  }
  for (regcache_t* c : {a, b}) {
    struct regcache_stats s;
    ASSERT_EQ(regcache_stats(c, &s), 0);
    EXPECT_EQ(s.uncacheable, 0u);
    EXPECT_EQ(s.misses, 1u);
    EXPECT_EQ(s.hits, 1u);
  }
  // The monitor applies events asynchronously (a get after munmap() waits
  // for them; statistics do not): give it up to 10 s.
  auto unmaps = [](regcache_t* c, uint64_t want) {
    struct regcache_stats s {};
    for (int i = 0; i < 10000; ++i) {
      if (regcache_stats(c, &s) != 0) return uint64_t{0};
      if (s.invalidations[REGCACHE_INVAL_UNMAP] >= want) break;
      usleep(1000);
    }
    return s.invalidations[REGCACHE_INVAL_UNMAP];
  };
  ASSERT_EQ(munmap(buf, 4 * Page()), 0);
  EXPECT_EQ(unmaps(a, 1), 1u);
  EXPECT_EQ(unmaps(b, 1), 1u);
  // Destroying one leaves the other monitored.
  EXPECT_EQ(regcache_destroy(a), 0);
  buf = static_cast<char*>(mmap(nullptr, 2 * Page(), PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(buf, MAP_FAILED);
  regcache_handle_t* h = nullptr;
  ASSERT_EQ(regcache_get(b, buf, 2 * Page(), kLW, &h), 0);
  ASSERT_EQ(regcache_put(b, h), 0);
  ASSERT_EQ(munmap(buf, 2 * Page()), 0);
  EXPECT_EQ(unmaps(b, 2), 2u);
  EXPECT_EQ(regcache_destroy(b), 0);
}

TEST(CacheLifetime, CreateRejectsBadRegistrarAndFlags) {
  regcache_registrar reg{};
  regcache_t* c = nullptr;
  EXPECT_EQ(regcache_create(&reg, nullptr, &c), -EINVAL);
  CheckingFakeRegistrar fake;
  reg = fake.registrar();
  regcache_config cfg = NoMonitorConfig();
  cfg.flags = 0x80;
  EXPECT_EQ(regcache_create(&reg, &cfg, &c), -EINVAL);
  EXPECT_NE(strstr(regcache_last_error(), "unknown config flags 0x80"), nullptr)
      << regcache_last_error();
  cfg.flags =
      REGCACHE_CONFIG_ODP_PREFETCH_SYNC | REGCACHE_CONFIG_ODP_NO_PREFETCH;
  EXPECT_EQ(regcache_create(&reg, &cfg, &c), -EINVAL);
  EXPECT_NE(strstr(regcache_last_error(), "together"), nullptr)
      << regcache_last_error();
  EXPECT_EQ(c, nullptr);
}

TEST(CacheConfig, EnvironmentIsParsedAndBadValuesAreNamed) {
  setenv("REGCACHE_MAX_ENTRIES", "64K", 1);
  setenv("REGCACHE_MAX_BYTES", "512MiB", 1);
  setenv("REGCACHE_MONITOR", "uffd", 1);
  setenv("REGCACHE_STATS", "1", 1);
  regcache_config cfg;
  EXPECT_EQ(regcache_config_init(&cfg), 0) << regcache_last_error();
  EXPECT_EQ(cfg.max_entries, 65536u);
  EXPECT_EQ(cfg.max_bytes, size_t{512} << 20);
  EXPECT_EQ(cfg.monitor, REGCACHE_MONITOR_UFFD);
  EXPECT_EQ(cfg.print_stats_at_exit, 1);
  setenv("REGCACHE_MAX_BYTES", "lots", 1);
  EXPECT_EQ(regcache_config_init(&cfg), -EINVAL);
  EXPECT_NE(strstr(regcache_last_error(), "REGCACHE_MAX_BYTES"), nullptr);
  setenv("REGCACHE_MAX_BYTES", "99999999999T", 1);
  EXPECT_EQ(regcache_config_init(&cfg), -EINVAL);
  setenv("REGCACHE_MAX_BYTES", "1G", 1);
  setenv("REGCACHE_MONITOR", "magic", 1);
  EXPECT_EQ(regcache_config_init(&cfg), -EINVAL);
  EXPECT_NE(strstr(regcache_last_error(), "REGCACHE_MONITOR"), nullptr);
  for (const char* v : {"REGCACHE_MAX_ENTRIES", "REGCACHE_MAX_BYTES",
                        "REGCACHE_MONITOR", "REGCACHE_STATS"})
    unsetenv(v);
}

TEST(CacheCxx, RegistrationReleasesAtScopeExit) {
  CheckingFakeRegistrar fake;
  regcache_config cfg = NoMonitorConfig();
  regcache::Cache cache;
  ASSERT_EQ(regcache::Cache::Create(fake.registrar(), &cfg, &cache), 0);
  Region r(Page());
  {
    regcache::Registration reg;
    ASSERT_EQ(cache.Get(r.base, 10, kLW, &reg), 0);
    EXPECT_EQ(reg.lkey(), 1u);
    EXPECT_EQ(cache.Stats().in_use_now, 1u);
    regcache::Registration moved = std::move(reg);
    EXPECT_FALSE(reg);
    EXPECT_TRUE(moved);
  }
  EXPECT_EQ(cache.Stats().in_use_now, 0u);
  EXPECT_EQ(cache.Destroy(), 0);
  EXPECT_EQ(fake.live(), 0u);
}

TEST(CacheCxx, EmptyRegistrationAfterAFailedGetReadsAsZeros) {
  CheckingFakeRegistrar fake;
  regcache_config cfg = NoMonitorConfig();
  regcache::Cache cache;
  ASSERT_EQ(regcache::Cache::Create(fake.registrar(), &cfg, &cache), 0);
  regcache::Registration reg;
  EXPECT_EQ(cache.Get(nullptr, 10, kLW, &reg), -EINVAL);
  EXPECT_FALSE(reg);
  EXPECT_EQ(reg.lkey(), 0u);
  EXPECT_EQ(reg.rkey(), 0u);
  EXPECT_EQ(reg.addr(), nullptr);
  EXPECT_EQ(reg.length(), 0u);
  EXPECT_EQ(cache.Destroy(), 0);
}

TEST_F(CacheTest, HandleMrOfANullOrReleasedHandleIsNullWithAMessage) {
  Make();
  EXPECT_EQ(regcache_handle_mr(nullptr), nullptr);
  EXPECT_NE(strstr(regcache_last_error(), "NULL handle"), nullptr)
      << regcache_last_error();
  Region r(Page());
  regcache_handle_t* h = nullptr;
  ASSERT_EQ(regcache_get(cache_, r.base, 10, kLW, &h), 0);
  ASSERT_NE(regcache_handle_mr(h), nullptr);
  ASSERT_EQ(regcache_put(cache_, h), 0);
  EXPECT_EQ(regcache_handle_mr(h), nullptr);
  EXPECT_NE(strstr(regcache_last_error(), "released"), nullptr)
      << regcache_last_error();
}

TEST(CacheStats, PrintedWithEveryField) {
  CheckingFakeRegistrar fake;
  regcache_registrar reg = fake.registrar();
  regcache_config cfg = NoMonitorConfig();
  regcache_t* c = nullptr;
  ASSERT_EQ(regcache_create(&reg, &cfg, &c), 0);
  Region r(Page());
  regcache_handle_t* h = nullptr;
  ASSERT_EQ(regcache_get(c, r.base, 1, kLW, &h), 0);
  regcache_put(c, h);
  char buf[2048] = {};
  FILE* f = fmemopen(buf, sizeof buf - 1, "w");
  ASSERT_EQ(regcache_print_stats(c, f), 0);
  fclose(f);
  for (const char* field :
       {"monitor=none", "hits=0", "misses=1",
        "pinned_bytes=", "invalidations:", "unmap=0", "reg_time_avg_us="})
    EXPECT_NE(strstr(buf, field), nullptr) << field << " missing in: " << buf;
  struct regcache_stats s;
  regcache_stats(c, &s);
  EXPECT_GT(s.registration_ns, 0u);
  EXPECT_EQ(s.pinned_bytes_now, Page());
  regcache_destroy(c);
}

}  // namespace

namespace {

// With the fake registrar that really mlock()s, RLIMIT_MEMLOCK bites as it
// does for ibv_reg_mr: the cache evicts unused entries to make room, and
// when everything is in use it fails with a message naming the limit.
TEST(CacheMemlock, RealMlockLimitEvictsThenFailsWithTheLimitNamed) {
  auto outcome = regcache_test::RunInChild([]() -> std::string {
    std::string why;
    if (!regcache_test::DropIpcLockCapability(&why))
      return std::string(regcache_test::kChildSkip) + why;
    if (!regcache_test::SetMemlockSoftLimit(64 << 10, &why)) return why;
    regcache_registrar reg;
    if (regcache_registrar_fake(/*lock_memory=*/1, &reg) != 0) return "fake";
    regcache_config cfg = NoMonitorConfig();
    cfg.max_bytes = 0;  // let the kernel's limit be what bites
    regcache_t* c = nullptr;
    if (regcache_create(&reg, &cfg, &c) != 0) return regcache_last_error();
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    Region r(64 * page);
    memset(r.base, 1, r.size);
    const size_t chunk = 32 << 10;
    regcache_handle_t* h[3] = {};
    // Two 32 KiB entries fill the limit; a third fits only by evicting one.
    for (int i = 0; i < 3; ++i) {
      if (regcache_get(c, r.base + i * chunk, chunk, kLW, &h[i]) != 0)
        return std::string("get ") + std::to_string(i) + ": " +
               regcache_last_error();
      if (i < 2) regcache_put(c, h[i]);
    }
    struct regcache_stats s;
    regcache_stats(c, &s);
    if (s.evictions == 0) return "the limit was met without evicting";
    // Now hold what fits and ask for more: a clear error, nothing lost.
    regcache_handle_t* held = nullptr;
    if (regcache_get(c, r.base + 3 * chunk, chunk, kLW, &held) != 0)
      return std::string("second held get: ") + regcache_last_error();
    regcache_handle_t* extra = nullptr;
    const int rc = regcache_get(c, r.base + 6 * chunk, chunk, kLW, &extra);
    if (rc != -ENOMEM && rc != -EAGAIN)
      return "over the limit gave " + std::to_string(rc);
    if (strstr(regcache_last_error(), "RLIMIT_MEMLOCK soft 65536 bytes") ==
        nullptr)
      return std::string("message does not name the limit: ") +
             regcache_last_error();
    regcache_put(c, held);
    regcache_put(c, h[2]);
    if (regcache_get(c, r.base + 6 * chunk, chunk, kLW, &extra) != 0)
      return std::string("after releasing: ") + regcache_last_error();
    regcache_put(c, extra);
    if (regcache_destroy(c) != 0) return regcache_last_error();
    return "";
  });
  if (outcome.skipped) GTEST_SKIP() << outcome.message;
  EXPECT_EQ(outcome.message, "");
}

// REGCACHE_STATS=1 prints the statistics when the process exits, even if
// the application never destroys the cache.
// Runs a child that sets REGCACHE_STATS=`value`, makes one cache, gets the
// same buffer three times and exits without destroying it; returns what the
// child wrote to stderr, and its pid.
std::string StderrOfChildExitingWithStats(const char* value, pid_t* child) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  EXPECT_GE(pid, 0);
  if (pid == 0) {
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    setenv("REGCACHE_STATS", value, 1);
    regcache_registrar reg;
    regcache_registrar_fake(0, &reg);
    regcache_t* c = nullptr;
    regcache_config cfg;
    if (regcache_config_init(&cfg) != 0) _exit(2);
    cfg.monitor = REGCACHE_MONITOR_NONE;
    cfg.max_entries = 77;
    if (regcache_create(&reg, &cfg, &c) != 0) _exit(2);
    static char buf[4096];
    regcache_handle_t* h;
    for (int i = 0; i < 3; ++i) {
      if (regcache_get(c, buf, 100, kLW, &h) != 0) _exit(3);
      regcache_put(c, h);
    }
    exit(0);  // atexit handlers run; no regcache_destroy
  }
  close(fds[1]);
  std::string err;
  char chunk[512];
  ssize_t n;
  while ((n = read(fds[0], chunk, sizeof chunk)) > 0)
    err.append(chunk, size_t(n));
  close(fds[0]);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  *child = pid;
  return err;
}

TEST(CacheStats, PrintedAtExitWithRegcacheStats) {
  pid_t pid = 0;
  const std::string err = StderrOfChildExitingWithStats("1", &pid);
  EXPECT_NE(
      err.find("regcache stats: pid=" + std::to_string(pid) + " cache=0x"),
      std::string::npos)
      << err;
  EXPECT_NE(err.find("registrar=fake"), std::string::npos) << err;
  EXPECT_NE(err.find("hits=2 misses=1"), std::string::npos) << err;
}

TEST(CacheStats, PrintedAtExitAsOneJsonObjectWithRegcacheStatsJson) {
  pid_t pid = 0;
  const std::string err = StderrOfChildExitingWithStats("json", &pid);
  ASSERT_FALSE(err.empty());
  ASSERT_EQ(err.back(), '\n');
  ASSERT_EQ(err.find('\n'), err.size() - 1) << "one line: " << err;
  const nlohmann::json j =
      nlohmann::json::parse(err, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object()) << err;
  EXPECT_EQ(j["pid"], pid);
  EXPECT_TRUE(j["cache"].is_string());
  EXPECT_EQ(j["registrar"], "fake");
  EXPECT_EQ(j["monitor"], "none");
  EXPECT_EQ(j["mode"], "pin");
  EXPECT_TRUE(j["hits"].is_number_unsigned()) << err;
  EXPECT_EQ(j["hits"], 2);
  EXPECT_EQ(j["misses"], 1);
  EXPECT_EQ(j["limits"]["max_entries"], 77);
  EXPECT_TRUE(j["limits"]["max_bytes"].is_number_unsigned());
  EXPECT_EQ(j["invalidations"]["unmap"], 0);
}

TEST(CacheConfig, RegcacheStatsTakesTextAndJson) {
  struct Case {
    const char* value;
    int format;
  };
  for (const Case& c :
       {Case{"0", 0}, Case{"1", REGCACHE_STATS_TEXT},
        Case{"text", REGCACHE_STATS_TEXT}, Case{"json", REGCACHE_STATS_JSON}}) {
    setenv("REGCACHE_STATS", c.value, 1);
    regcache_config cfg;
    EXPECT_EQ(regcache_config_init(&cfg), 0)
        << c.value << ": " << regcache_last_error();
    EXPECT_EQ(cfg.print_stats_at_exit, c.format) << c.value;
  }
  setenv("REGCACHE_STATS", "yes", 1);
  regcache_config cfg;
  EXPECT_EQ(regcache_config_init(&cfg), -EINVAL);
  EXPECT_NE(strstr(regcache_last_error(),
                   "REGCACHE_STATS=\"yes\": expected 0, 1 (or text) or json"),
            nullptr)
      << regcache_last_error();
  unsetenv("REGCACHE_STATS");
}

// regcache_print_config() into a string.
std::string PrintedConfig() {
  char* text = nullptr;
  size_t size = 0;
  FILE* f = open_memstream(&text, &size);
  EXPECT_EQ(regcache_print_config(f), 0);
  fclose(f);
  std::string out(text, size);
  free(text);
  return out;
}

TEST(CacheConfig, PrintConfigShowsEveryVariableItsValueAndItsSource) {
  for (const char* v :
       {"REGCACHE_MAX_ENTRIES", "REGCACHE_MAX_BYTES", "REGCACHE_MONITOR",
        "REGCACHE_STATS", "REGCACHE_MODE", "REGCACHE_ODP_IMPLICIT",
        "REGCACHE_ODP_PREFETCH", "REGCACHE_ADMISSION"})
    unsetenv(v);
  setenv("REGCACHE_MONITOR", "uffd", 1);
  setenv("REGCACHE_MAX_ENTRIES", "4K", 1);
  setenv("REGCACHE_MODE", "sometimes", 1);
  const std::string out = PrintedConfig();
  for (const char* line : {"REGCACHE_MONITOR=uffd  (environment)\n",
                           "REGCACHE_MAX_ENTRIES=4096  (environment)\n",
                           "REGCACHE_STATS=0  (default)\n",
                           "REGCACHE_ODP_PREFETCH=async  (default)\n",
                           "REGCACHE_ODP_IMPLICIT=0  (default)\n",
                           "REGCACHE_ADMISSION=adaptive  (default)\n",
                           "REGCACHE_MODE=auto  (environment: \"sometimes\" is "
                           "invalid, expected auto, odp or "
                           "pin; regcache_config_init() fails)\n",
                           "# REGCACHE_MAX_BYTES: "})
    EXPECT_NE(out.find(line), std::string::npos) << line << " missing in:\n"
                                                 << out;
  rlimit rl{};
  ASSERT_EQ(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
  if (rl.rlim_cur != RLIM_INFINITY) {
    EXPECT_NE(out.find("REGCACHE_MAX_BYTES=" + std::to_string(rl.rlim_cur) +
                       "  (RLIMIT_MEMLOCK soft limit)"),
              std::string::npos)
        << out;
  } else {
    EXPECT_NE(
        out.find(
            "REGCACHE_MAX_BYTES=0  (default: RLIMIT_MEMLOCK is unlimited)"),
        std::string::npos)
        << out;
  }
  for (const char* v :
       {"REGCACHE_MONITOR", "REGCACHE_MAX_ENTRIES", "REGCACHE_MODE"})
    unsetenv(v);
}

}  // namespace
