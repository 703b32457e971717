// SPDX-License-Identifier: BSD-2-Clause
// Pin-once memory (regcache_mem_alloc, regcache_mem_free, regcache_mem_trim)
// with the checking fake registrar: one registration per block, hits from
// the first get, reuse after free without registering, trim and destroy
// returning memory to the system, the limits, bad input, memory unmapped
// behind the pool's back, fork, threads, and the C++ form.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/cache.h"
#include "fake_registrar.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "regcache/regcache.h"
#include "regcache/regcache.hpp"
#include "test_util.h"

namespace {

using regcache_test::CheckingFakeRegistrar;

constexpr uint32_t kLW = REGCACHE_ACCESS_LOCAL_WRITE;
constexpr uint32_t kPoolAccess = REGCACHE_ACCESS_LOCAL_WRITE |
                                 REGCACHE_ACCESS_REMOTE_WRITE |
                                 REGCACHE_ACCESS_REMOTE_READ;
constexpr size_t kMiB = size_t{1} << 20;

size_t Page() { return size_t(sysconf(_SC_PAGESIZE)); }

bool Contains(const char* haystack, const char* needle) {
  return strstr(haystack, needle) != nullptr;
}

// Whether [p, p+len) is mapped: msync fails with ENOMEM at a hole.
bool Mapped(const void* p, size_t len) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~(Page() - 1);
  return msync(reinterpret_cast<void*>(a), len, MS_ASYNC) == 0;
}

long long Meminfo(const char* name) {
  FILE* f = fopen("/proc/meminfo", "re");
  if (f == nullptr) return -1;
  char line[256];
  long long v = -1;
  const size_t n = strlen(name);
  while (fgets(line, sizeof line, f) != nullptr) {
    if (strncmp(line, name, n) == 0 && line[n] == ':') {
      v = strtoll(line + n + 1, nullptr, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

class MemPoolTest : public ::testing::Test {
 protected:
  void Make(size_t max_entries = 0, size_t max_bytes = 0,
            regcache_monitor_kind monitor = REGCACHE_MONITOR_NONE,
            regcache_admission admission = REGCACHE_ADMISSION_ALWAYS) {
    regcache_config cfg;
    ASSERT_EQ(regcache_config_init(&cfg), 0) << regcache_last_error();
    cfg.monitor = monitor;
    // Every ordinary miss cached, so that CLOCK evicts when these tests
    // fill the cache (adaptive admission would serve newcomers uncached);
    // pool memory is never subject to admission either way.
    cfg.admission = admission;
    cfg.max_entries = max_entries;
    cfg.max_bytes = max_bytes;
    reg_ = fake_.registrar();
    const int rc = regcache_create(&reg_, &cfg, &cache_);
    if (rc == -ENODEV) GTEST_SKIP() << regcache_last_error();
    ASSERT_EQ(rc, 0) << regcache_last_error();
  }
  void TearDown() override {
    if (cache_ != nullptr) {
      Check();
      EXPECT_EQ(regcache_destroy(cache_), 0) << regcache_last_error();
    }
    EXPECT_EQ(fake_.violations(), 0u) << "a held registration was deregistered";
    EXPECT_EQ(fake_.live(), 0u) << "destroy left registrations behind";
  }
  regcache_internal::Cache* Core() {
    return reinterpret_cast<regcache_internal::Cache*>(cache_);
  }
  void Check() {
    std::string why;
    EXPECT_TRUE(Core()->CheckInvariants(&why)) << why;
    EXPECT_TRUE(Core()->CheckPoolInvariants(&why)) << why;
  }
  struct regcache_stats Stats() {
    struct regcache_stats s;
    EXPECT_EQ(regcache_stats(cache_, &s), 0);
    return s;
  }
  char* Alloc(size_t len, uint32_t flags = 0) {
    void* p = nullptr;
    const int rc = regcache_mem_alloc(cache_, len, flags, &p);
    EXPECT_EQ(rc, 0) << regcache_last_error();
    return static_cast<char*>(p);
  }
  // Gets and puts [p, p+len) with `access`; returns the registration's
  // serial (0 on failure).
  uint64_t Touch(const void* p, size_t len, uint32_t access = kLW) {
    regcache_handle_t* h = nullptr;
    const int rc = regcache_get(cache_, p, len, access, &h);
    EXPECT_EQ(rc, 0) << regcache_last_error();
    if (rc != 0) return 0;
    const uint64_t serial =
        CheckingFakeRegistrar::RecordOf(regcache_handle_mr(h))->serial;
    EXPECT_EQ(regcache_put(cache_, h), 0) << regcache_last_error();
    return serial;
  }

  CheckingFakeRegistrar fake_;
  regcache_registrar reg_{};
  regcache_t* cache_ = nullptr;
};

// ---------------------------------------------------------------------------
// Allocation, hits, reuse

TEST_F(MemPoolTest, AllocReturnsPageAlignedMemoryRegisteredOnceWithFullAccess) {
  Make();
  char* p = Alloc(10000);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % Page(), 0u);
  memset(p, 0x5a, 10000);  // ours to write
  EXPECT_EQ(fake_.regs(), 1u);
  regcache_handle_t* h = nullptr;
  ASSERT_EQ(regcache_get(cache_, p, 10000, kPoolAccess, &h), 0)
      << regcache_last_error();
  const regcache_mr* mr = regcache_handle_mr(h);
  EXPECT_EQ(mr->addr, p);
  EXPECT_EQ(mr->length, 3 * Page());
  EXPECT_EQ(mr->access & kPoolAccess, kPoolAccess);
  EXPECT_EQ(regcache_put(cache_, h), 0);
  const auto s = Stats();
  EXPECT_EQ(s.mem_allocs, 1u);
  EXPECT_EQ(s.mem_reuses, 0u);
  EXPECT_EQ(s.mem_pages_allocs, 1u);
  EXPECT_EQ(s.mem_pages_bytes, 3 * Page());
  EXPECT_EQ(s.mem_bytes_now, 3 * Page());
  EXPECT_EQ(s.mem_free_bytes_now, 0u);
  EXPECT_EQ(s.entries_now, 1u);
  EXPECT_EQ(s.pinned_bytes_now, 3 * Page());
  EXPECT_EQ(regcache_mem_free(cache_, p), 0) << regcache_last_error();
}

TEST_F(MemPoolTest, EveryGetInsideAnAllocationIsAHitFromTheFirstCall) {
  Make();
  const size_t len = 64 * Page();
  char* p = Alloc(len);
  ASSERT_NE(p, nullptr);
  const uint64_t serial = fake_.last_serial();
  // The whole block, its first page, interior ranges (the slow path's hit,
  // which also publishes alias pages), its last byte, again and again.
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(Touch(p, len), serial);
    EXPECT_EQ(Touch(p, 100), serial);
    EXPECT_EQ(Touch(p + 5 * Page() + 17, 3 * Page()), serial);
    EXPECT_EQ(Touch(p + 40 * Page(), 24 * Page()), serial);
    for (size_t i = 0; i < 64; i += 7)
      EXPECT_EQ(Touch(p + i * Page(), 1), serial);
    EXPECT_EQ(Touch(p + len - 1, 1, kPoolAccess), serial);
  }
  const auto s = Stats();
  EXPECT_EQ(s.misses, 0u);
  EXPECT_EQ(s.registrations, 1u);
  EXPECT_EQ(fake_.regs(), 1u);
  EXPECT_GT(s.hits, 0u);
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
}

TEST_F(MemPoolTest, AGetBeyondTheAllocationOrWithAtomicAccessRegistersAsUsual) {
  // The pool registers local write, remote read and remote write; a get
  // that needs more, or reaches past the block, is an ordinary miss.
  Make();
  char* p = Alloc(4 * Page());
  ASSERT_NE(p, nullptr);
  EXPECT_GT(Touch(p, Page(), REGCACHE_ACCESS_REMOTE_ATOMIC), 1u);
  EXPECT_EQ(Stats().misses, 1u);
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
}

TEST_F(MemPoolTest, FreeAndAllocateAgainCostsNoRegistration) {
  Make();
  const size_t len = 16 * Page();
  char* p = Alloc(len);
  ASSERT_NE(p, nullptr);
  const uint64_t serial = fake_.last_serial();
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(regcache_mem_free(cache_, p), 0) << regcache_last_error();
    // Same size, then a smaller one that still needs more than half.
    char* q = Alloc(i % 2 == 0 ? len : len - 5 * Page());
    ASSERT_EQ(q, p) << "the kept block is reused";
    EXPECT_EQ(Touch(q, len), serial);
  }
  const auto s = Stats();
  EXPECT_EQ(fake_.regs(), 1u);
  EXPECT_EQ(s.registrations, 1u);
  EXPECT_EQ(s.mem_allocs, 101u);
  EXPECT_EQ(s.mem_reuses, 100u);
  EXPECT_EQ(s.misses, 0u);
  ASSERT_EQ(regcache_mem_free(cache_, p), 0);
  EXPECT_EQ(Stats().mem_free_bytes_now, len);
  EXPECT_TRUE(Mapped(p, len)) << "a freed block stays mapped";
}

TEST_F(MemPoolTest,
       AFreedBlockServesOnlyRequestsOfItsKindThatNeedMoreThanHalfOfIt) {
  Make();
  char* big = Alloc(16 * Page());
  ASSERT_NE(big, nullptr);
  ASSERT_EQ(regcache_mem_free(cache_, big), 0);
  char* small = Alloc(4 * Page());  // a quarter: a block of its own
  EXPECT_NE(small, big);
  void* huge = nullptr;
  const int rc =
      regcache_mem_alloc(cache_, 8 * Page(), REGCACHE_MEM_HUGE, &huge);
  if (rc == 0) {
    EXPECT_NE(huge, big) << "ordinary pages never serve REGCACHE_MEM_HUGE";
    EXPECT_EQ(regcache_mem_free(cache_, huge), 0);
  }
  EXPECT_EQ(fake_.regs(), rc == 0 ? 3u : 2u);
  EXPECT_EQ(Stats().mem_reuses, 0u);
  EXPECT_EQ(regcache_mem_free(cache_, small), 0);
}

// ---------------------------------------------------------------------------
// Trim and destroy

TEST_F(MemPoolTest, TrimReturnsFreedBlocksToTheSystemAndLeavesAllocatedOnes) {
  Make();
  const size_t len = 8 * Page();
  char* a = Alloc(len);
  char* b = Alloc(len);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(regcache_mem_free(cache_, a), 0);
  ASSERT_EQ(regcache_mem_trim(cache_), 0) << regcache_last_error();
  Check();
  EXPECT_EQ(fake_.deregs(), 1u);
  EXPECT_FALSE(Mapped(a, len)) << "trim unmaps a freed block";
  EXPECT_TRUE(Mapped(b, len));
  const auto s = Stats();
  EXPECT_EQ(s.mem_bytes_now, len);
  EXPECT_EQ(s.mem_free_bytes_now, 0u);
  EXPECT_EQ(s.entries_now, 1u);
  // The trimmed address is no allocation any more.
  EXPECT_EQ(regcache_mem_free(cache_, a), -ENOENT);
  // The allocated block still hits.
  const uint64_t before = fake_.regs();
  Touch(b, len);
  EXPECT_EQ(fake_.regs(), before);
  EXPECT_EQ(regcache_mem_free(cache_, b), 0);
  EXPECT_EQ(regcache_mem_trim(cache_), 0);
  EXPECT_EQ(Stats().mem_bytes_now, 0u);
  EXPECT_EQ(fake_.live(), 0u);
}

TEST_F(MemPoolTest, DestroyDeregistersAndUnmapsEveryBlockAllocatedOrFree) {
  Make();
  const size_t len = 8 * Page();
  char* a = Alloc(len);
  void* b = nullptr;  // hugetlb or THP, or nothing where neither works
  if (regcache_mem_alloc(cache_, len, REGCACHE_MEM_HUGE, &b) != 0) b = nullptr;
  char* c = Alloc(len);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(regcache_mem_free(cache_, c), 0);
  Check();
  EXPECT_EQ(regcache_destroy(cache_), 0) << regcache_last_error();
  cache_ = nullptr;
  EXPECT_EQ(fake_.live(), 0u);
  EXPECT_FALSE(Mapped(a, len));
  if (b != nullptr) {
    EXPECT_FALSE(Mapped(b, len));
  }
  EXPECT_FALSE(Mapped(c, len));
}

TEST_F(MemPoolTest, AHandleHeldOnATrimmedBlockKeepsItsRegistrationUntilPut) {
  Make();
  char* p = Alloc(4 * Page());
  ASSERT_NE(p, nullptr);
  regcache_handle_t* h = nullptr;
  ASSERT_EQ(regcache_get(cache_, p, Page(), kLW, &h), 0);
  CheckingFakeRegistrar::Hold(regcache_handle_mr(h));
  ASSERT_EQ(regcache_mem_free(cache_, p), 0);
  ASSERT_EQ(regcache_mem_trim(cache_), 0);
  EXPECT_EQ(fake_.deregs(), 0u) << "deregistered while held";
  CheckingFakeRegistrar::Unhold(regcache_handle_mr(h));
  ASSERT_EQ(regcache_put(cache_, h), 0);
  EXPECT_EQ(fake_.deregs(), 1u) << "the last put deregisters it";
}

// ---------------------------------------------------------------------------
// Eviction and limits

TEST_F(MemPoolTest, ClockEvictionAndFlushNeverTakePoolMemory) {
  Make(/*max_entries=*/4);
  char* p = Alloc(4 * Page());
  ASSERT_NE(p, nullptr);
  const uint64_t serial = fake_.last_serial();
  // Many other buffers push the cache over max_entries again and again.
  const size_t n = 64;
  char* other =
      static_cast<char*>(mmap(nullptr, n * Page(), PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(other, MAP_FAILED);
  for (int round = 0; round < 3; ++round)
    for (size_t i = 0; i < n; ++i) Touch(other + i * Page(), Page());
  EXPECT_GT(Stats().evictions, 0u);
  EXPECT_EQ(Touch(p, 4 * Page()), serial)
      << "the pool's registration was evicted";
  ASSERT_EQ(regcache_flush(cache_), 0);
  EXPECT_EQ(Touch(p, 4 * Page()), serial)
      << "flush dropped the pool's registration";
  Check();
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
  munmap(other, n * Page());
}

TEST_F(MemPoolTest, AdaptiveAdmissionNeverServesPoolMemoryUncached) {
  // A full cache under the default admission serves newcomers uncached;
  // the pool's blocks are cached when allocated, whatever it decides.
  Make(/*max_entries=*/4, 0, REGCACHE_MONITOR_NONE,
       REGCACHE_ADMISSION_ADAPTIVE);
  const size_t n = 32;
  char* other =
      static_cast<char*>(mmap(nullptr, n * Page(), PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(other, MAP_FAILED);
  for (int round = 0; round < 2; ++round)
    for (size_t i = 0; i < n; ++i) Touch(other + i * Page(), Page());
  EXPECT_GT(Stats().uncached_admission, 0u)
      << "the control: newcomers went uncached";
  char* p = Alloc(2 * Page());
  ASSERT_NE(p, nullptr);
  const uint64_t regs = fake_.regs();
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(Touch(p, 2 * Page()), fake_.last_serial());
  EXPECT_EQ(fake_.regs(), regs) << "a get inside pool memory registered";
  for (size_t i = 0; i < n; ++i) Touch(other + i * Page(), Page());
  EXPECT_EQ(Touch(p, 2 * Page()), regs)
      << "the pool's registration left the cache";
  Check();
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
  munmap(other, n * Page());
}

TEST_F(MemPoolTest,
       PoolBytesCountAgainstMaxBytesAndMakeClockEvictCachedEntries) {
  const size_t limit = 64 * Page();
  Make(/*max_entries=*/0, limit);
  char* buf = static_cast<char*>(mmap(nullptr, limit, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(buf, MAP_FAILED);
  for (size_t i = 0; i < 32; ++i) Touch(buf + 2 * i * Page(), 2 * Page());
  EXPECT_EQ(Stats().pinned_bytes_now, limit);
  EXPECT_EQ(Stats().evictions, 0u);
  char* p = Alloc(16 * Page());
  ASSERT_NE(p, nullptr);
  const auto s = Stats();
  EXPECT_GE(s.evictions, 8u) << "cached entries made room for the pool";
  EXPECT_LE(fake_.live_bytes(), limit);
  Check();
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
  munmap(buf, limit);
}

TEST_F(MemPoolTest,
       AnAllocationPastMaxBytesFailsNamingTheLimitAndLosesNothing) {
  const size_t limit = 32 * Page();
  Make(/*max_entries=*/0, limit);
  char* a = Alloc(20 * Page());
  ASSERT_NE(a, nullptr);
  void* q = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(regcache_mem_alloc(cache_, 20 * Page(), 0, &q), -ENOMEM);
  EXPECT_TRUE(Contains(regcache_last_error(), "max_bytes"))
      << regcache_last_error();
  EXPECT_TRUE(Contains(regcache_last_error(), "REGCACHE_MAX_BYTES"))
      << regcache_last_error();
  EXPECT_EQ(fake_.regs(), 1u);
  EXPECT_EQ(Stats().mem_bytes_now, 20 * Page());
  Check();
  // A free block yields to an allocation that does not fit beside it.
  ASSERT_EQ(regcache_mem_free(cache_, a), 0);
  char* b = Alloc(24 * Page());
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(fake_.deregs(), 1u) << "the free block went back to the system";
  EXPECT_EQ(Stats().mem_bytes_now, 24 * Page());
  EXPECT_EQ(regcache_mem_free(cache_, b), 0);
}

TEST_F(MemPoolTest, AnAllocationPastMaxEntriesFails) {
  Make(/*max_entries=*/2);
  char* a = Alloc(Page());
  char* b = Alloc(Page());
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  void* q = nullptr;
  EXPECT_EQ(regcache_mem_alloc(cache_, Page(), 0, &q), -ENOMEM);
  EXPECT_TRUE(Contains(regcache_last_error(), "max_entries"))
      << regcache_last_error();
  EXPECT_EQ(regcache_mem_free(cache_, a), 0);
  EXPECT_EQ(regcache_mem_free(cache_, b), 0);
}

TEST_F(MemPoolTest, ARegistrationOutOfPinnableMemoryReturnsFreeBlocksFirst) {
  Make();
  char* p = Alloc(32 * Page());
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(regcache_mem_free(cache_, p), 0);  // kept: 32 pages pinned
  fake_.set_budget(40 * Page());               // as RLIMIT_MEMLOCK would
  char* buf =
      static_cast<char*>(mmap(nullptr, 16 * Page(), PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(buf, MAP_FAILED);
  EXPECT_GT(Touch(buf, 16 * Page()), 0u) << "the free block was not given up";
  EXPECT_EQ(fake_.failures(), 1u);
  EXPECT_EQ(Stats().mem_bytes_now, 0u);
  EXPECT_FALSE(Mapped(p, 32 * Page()));
  munmap(buf, 16 * Page());
}

TEST_F(MemPoolTest,
       ARegistrarFailureFailsTheAllocationWithItsMessageAndMapsNothing) {
  Make();
  fake_.set_budget(4 * Page());
  void* q = nullptr;
  EXPECT_EQ(regcache_mem_alloc(cache_, 8 * Page(), 0, &q), -ENOMEM);
  EXPECT_TRUE(Contains(regcache_last_error(), "regcache_mem_alloc:"))
      << regcache_last_error();
  EXPECT_TRUE(Contains(regcache_last_error(), "RLIMIT_MEMLOCK"))
      << regcache_last_error();
  EXPECT_EQ(q, nullptr);
  const auto s = Stats();
  EXPECT_EQ(s.mem_allocs, 0u);
  EXPECT_EQ(s.mem_bytes_now, 0u);
  EXPECT_EQ(s.entries_now, 0u);
}

// ---------------------------------------------------------------------------
// Bad input

TEST_F(MemPoolTest, BadArgumentsFailWithAMessageAndChangeNothing) {
  Make();
  char* p = Alloc(4 * Page());
  ASSERT_NE(p, nullptr);
  const auto before = Stats();
  void* q = nullptr;
  struct Case {
    int rc;
    const char* message;
  };
  const Case cases[] = {
      {regcache_mem_alloc(nullptr, Page(), 0, &q), "NULL cache"},
      {regcache_mem_alloc(cache_, Page(), 0, nullptr), "NULL addr"},
      {regcache_mem_alloc(cache_, 0, 0, &q), "length is 0"},
      {regcache_mem_alloc(cache_, Page(), 0x8, &q), "unknown flags 0x8"},
      {regcache_mem_alloc(cache_, Page(), 0x80000000u, &q), "unknown flags"},
      {regcache_mem_alloc(cache_, Page(),
                          REGCACHE_MEM_HUGE | REGCACHE_MEM_CONTIG, &q),
       "REGCACHE_MEM_CONTIG with REGCACHE_MEM_HUGE"},
      {regcache_mem_alloc(cache_, Page(),
                          REGCACHE_MEM_HUGE_ONLY | REGCACHE_MEM_CONTIG, &q),
       "REGCACHE_MEM_CONTIG with REGCACHE_MEM_HUGE_ONLY"},
      {regcache_mem_free(nullptr, p), "NULL cache"},
      {regcache_mem_free(cache_, nullptr), "NULL addr"},
      {regcache_mem_trim(nullptr), "NULL cache"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.rc, -EINVAL) << c.message;
  }
  EXPECT_EQ(q, nullptr);
  // The messages, one by one (regcache_last_error is the latest only).
  EXPECT_EQ(regcache_mem_alloc(cache_, Page(),
                               REGCACHE_MEM_HUGE | REGCACHE_MEM_CONTIG, &q),
            -EINVAL);
  EXPECT_TRUE(Contains(regcache_last_error(),
                       "REGCACHE_MEM_CONTIG with REGCACHE_MEM_HUGE"))
      << regcache_last_error();
  EXPECT_EQ(regcache_mem_alloc(cache_, 0, 0, &q), -EINVAL);
  EXPECT_TRUE(Contains(regcache_last_error(), "length is 0"))
      << regcache_last_error();
  EXPECT_EQ(regcache_mem_alloc(cache_, ~size_t{0}, 0, &q), -ENOMEM);
  EXPECT_TRUE(Contains(regcache_last_error(), "beyond"))
      << regcache_last_error();

  // Pointers the pool did not hand out.
  int on_stack = 0;
  EXPECT_EQ(regcache_mem_free(cache_, &on_stack), -ENOENT);
  EXPECT_TRUE(
      Contains(regcache_last_error(), "not allocated by regcache_mem_alloc"))
      << regcache_last_error();
  EXPECT_EQ(regcache_mem_free(cache_, p + Page()), -ENOENT);
  EXPECT_TRUE(Contains(regcache_last_error(), "inside the block"))
      << regcache_last_error();
  EXPECT_EQ(regcache_mem_free(cache_, p + 1), -ENOENT);

  const auto after = Stats();
  EXPECT_EQ(after.mem_allocs, before.mem_allocs);
  EXPECT_EQ(after.mem_bytes_now, before.mem_bytes_now);
  EXPECT_EQ(after.registrations, before.registrations);
  EXPECT_EQ(Touch(p, 4 * Page()), fake_.last_serial())
      << "the allocation still hits";
  Check();

  // Double free.
  ASSERT_EQ(regcache_mem_free(cache_, p), 0);
  EXPECT_EQ(regcache_mem_free(cache_, p), -ENOENT);
  EXPECT_TRUE(Contains(regcache_last_error(), "already freed"))
      << regcache_last_error();
  EXPECT_EQ(Stats().mem_free_bytes_now, 4 * Page())
      << "the block is on the free list once";
  Check();
  char* again = Alloc(4 * Page());
  EXPECT_EQ(again, p);
  void* other = nullptr;
  ASSERT_EQ(regcache_mem_alloc(cache_, 4 * Page(), 0, &other), 0);
  EXPECT_NE(other, again) << "a double free must not hand one block out twice";
  EXPECT_EQ(regcache_mem_free(cache_, again), 0);
  EXPECT_EQ(regcache_mem_free(cache_, other), 0);
}

TEST_F(MemPoolTest, AnotherCachesAllocationIsNotThisCaches) {
  Make();
  CheckingFakeRegistrar fake2;
  const regcache_registrar r2 = fake2.registrar();
  regcache_config cfg;
  ASSERT_EQ(regcache_config_init(&cfg), 0);
  cfg.monitor = REGCACHE_MONITOR_NONE;
  regcache_t* c2 = nullptr;
  ASSERT_EQ(regcache_create(&r2, &cfg, &c2), 0) << regcache_last_error();
  void* p = nullptr;
  ASSERT_EQ(regcache_mem_alloc(c2, Page(), 0, &p), 0);
  EXPECT_EQ(regcache_mem_free(cache_, p), -ENOENT);
  EXPECT_EQ(regcache_mem_free(c2, p), 0);
  EXPECT_EQ(regcache_destroy(c2), 0);
  EXPECT_EQ(fake2.live(), 0u);
}

// ---------------------------------------------------------------------------
// Kinds of memory

TEST_F(MemPoolTest, ContigWithoutTheModuleFailsWithEopnotsuppAndSaysWhy) {
  if (access("/dev/regcache", F_OK) == 0)
    GTEST_SKIP()
        << "/dev/regcache exists: tests/rdma's pinonce test covers CONTIG";
  Make();
  void* p = nullptr;
  EXPECT_EQ(regcache_mem_alloc(cache_, Page(), REGCACHE_MEM_CONTIG, &p),
            -EOPNOTSUPP);
  EXPECT_TRUE(Contains(regcache_last_error(),
                       "REGCACHE_MEM_CONTIG needs the regcache kernel module"))
      << regcache_last_error();
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(Stats().mem_bytes_now, 0u);
  EXPECT_EQ(fake_.regs(), 0u);
}

TEST_F(MemPoolTest,
       HugeGetsHugetlbPagesOrTransparentHugePagesOrSaysWhatToReserve) {
  Make();
  const size_t len = 3 * kMiB;
  void* p = nullptr;
  const int rc = regcache_mem_alloc(cache_, len, REGCACHE_MEM_HUGE, &p);
  const auto s = Stats();
  if (rc != 0) {
    EXPECT_EQ(rc, -ENOMEM);
    EXPECT_TRUE(Contains(regcache_last_error(), "vm.nr_hugepages"))
        << regcache_last_error();
    EXPECT_TRUE(
        Contains(regcache_last_error(), "transparent huge pages are off"))
        << regcache_last_error();
    EXPECT_EQ(s.mem_bytes_now, 0u);
    return;
  }
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (2 * kMiB), 0u);
  EXPECT_EQ(s.mem_hugetlb_allocs + s.mem_thp_allocs, 1u);
  EXPECT_EQ(s.mem_hugetlb_bytes + s.mem_thp_bytes, 4 * kMiB)
      << "rounded to huge pages";
  EXPECT_EQ(s.mem_pages_allocs, 0u);
  memset(p, 1, len);
  EXPECT_EQ(Touch(p, len), fake_.last_serial());
  EXPECT_EQ(fake_.regs(), 1u);
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
  // A huge request reuses the huge block.
  void* q = nullptr;
  ASSERT_EQ(regcache_mem_alloc(cache_, 4 * kMiB, REGCACHE_MEM_HUGE, &q), 0);
  EXPECT_EQ(q, p);
  EXPECT_EQ(regcache_mem_free(cache_, q), 0);
}

TEST_F(MemPoolTest, HugeOnlyWithoutReservedPagesFailsNamingVmNrHugepages) {
  const long long free_pages = Meminfo("HugePages_Free");
  const long long size_kib = Meminfo("Hugepagesize");
  Make();
  const size_t len = 4 * kMiB;
  void* p = nullptr;
  const int rc = regcache_mem_alloc(cache_, len, REGCACHE_MEM_HUGE_ONLY, &p);
  if (free_pages > 0 && size_kib > 0 &&
      (unsigned long long)free_pages * (unsigned long long)size_kib * 1024 >=
          len) {
    // Pages are reserved here (the rig does that): the hugetlb path works.
    ASSERT_EQ(rc, 0) << regcache_last_error();
    const auto s = Stats();
    EXPECT_EQ(s.mem_hugetlb_allocs, 1u);
    EXPECT_EQ(s.mem_thp_allocs, 0u);
    EXPECT_EQ(regcache_mem_free(cache_, p), 0);
    return;
  }
  EXPECT_EQ(rc, -ENOMEM);
  EXPECT_TRUE(Contains(regcache_last_error(), "REGCACHE_MEM_HUGE_ONLY"))
      << regcache_last_error();
  EXPECT_TRUE(Contains(regcache_last_error(), "vm.nr_hugepages"))
      << regcache_last_error();
  EXPECT_FALSE(Contains(regcache_last_error(), "transparent"))
      << "no THP fallback";
  const auto s = Stats();
  EXPECT_EQ(s.mem_allocs, 0u);
  EXPECT_EQ(s.mem_bytes_now, 0u);
  EXPECT_EQ(fake_.regs(), 0u);
}

// ---------------------------------------------------------------------------
// Memory changed behind the pool's back

TEST_F(MemPoolTest,
       MemoryUnmappedBehindThePoolsBackIsInvalidatedAndNeverUnmappedByThePool) {
  // Monitor none: the application reports the munmap, as it must for any
  // cached memory under that monitor.
  Make();
  const size_t len = 4 * Page();
  char* p = Alloc(len);
  ASSERT_NE(p, nullptr);
  const uint64_t old_serial = fake_.last_serial();
  ASSERT_EQ(munmap(p, len), 0);
  ASSERT_EQ(regcache_invalidate(cache_, p, len), 0);
  EXPECT_EQ(Stats().invalidations[REGCACHE_INVAL_EXPLICIT], 1u);
  EXPECT_EQ(fake_.deregs(), 1u);
  // Someone else's memory at the same address.
  char* mine = static_cast<char*>(
      mmap(p, len, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0));
  if (mine != p) GTEST_SKIP() << "another mapping took the address";
  EXPECT_GT(Touch(mine, len), old_serial)
      << "a stale registration was returned";
  // Freeing the lost block forgets it without unmapping someone else's memory.
  EXPECT_EQ(regcache_mem_free(cache_, p), 0) << regcache_last_error();
  EXPECT_TRUE(Mapped(mine, len))
      << "the pool unmapped memory that is not its own";
  EXPECT_EQ(Stats().mem_bytes_now, 0u);
  Check();
  munmap(mine, len);
}

TEST_F(MemPoolTest, AFreeBlockUnmappedBehindThePoolsBackIsNeverHandedOut) {
  Make();
  const size_t len = 4 * Page();
  char* p = Alloc(len);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(regcache_mem_free(cache_, p), 0);
  ASSERT_EQ(munmap(p, len), 0);
  ASSERT_EQ(regcache_invalidate(cache_, p, len), 0);
  char* mine = static_cast<char*>(
      mmap(p, len, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0));
  char* q = Alloc(len);
  EXPECT_NE(q, p) << "a lost block was handed out again";
  EXPECT_EQ(fake_.regs(), 2u);
  EXPECT_EQ(regcache_mem_free(cache_, q), 0);
  EXPECT_EQ(regcache_mem_trim(cache_), 0);
  if (mine == p) {
    EXPECT_TRUE(Mapped(mine, len));
  }
  Check();
  if (mine != MAP_FAILED) munmap(mine, len);
}

TEST_F(MemPoolTest, TheUffdMonitorInvalidatesPoolMemoryUnmappedBehindItsBack) {
  Make(0, 0, REGCACHE_MONITOR_UFFD);  // skips without userfaultfd
  const size_t len = 4 * Page();
  char* p = Alloc(len);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(Stats().uncacheable, 0u);
  const uint64_t old_serial = fake_.last_serial();
  EXPECT_EQ(Touch(p, len), old_serial);
  ASSERT_EQ(munmap(p, len), 0);
  char* mine = static_cast<char*>(
      mmap(p, len, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0));
  if (mine != p) GTEST_SKIP() << "another mapping took the address";
  // A get after munmap() returned sees the monitor's event applied.
  EXPECT_GT(Touch(mine, len), old_serial)
      << "a stale registration was returned";
  EXPECT_EQ(Stats().invalidations[REGCACHE_INVAL_UNMAP], 1u);
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
  EXPECT_TRUE(Mapped(mine, len))
      << "the pool unmapped memory that is not its own";
  munmap(mine, len);
}

// ---------------------------------------------------------------------------
// Fork, threads, statistics, C++

TEST_F(MemPoolTest, InAForkChildTheParentsAllocationIsOrdinaryMemory) {
  Make();
  const size_t len = 4 * Page();
  char* p = Alloc(len);
  ASSERT_NE(p, nullptr);
  const uint64_t parent_serial = fake_.last_serial();
  const regcache_test::ChildOutcome child =
      regcache_test::RunInChild([&]() -> std::string {
        regcache_handle_t* h = nullptr;
        if (regcache_get(cache_, p, len, kLW, &h) != 0)
          return regcache_last_error();
        const uint64_t serial =
            CheckingFakeRegistrar::RecordOf(regcache_handle_mr(h))->serial;
        regcache_put(cache_, h);
        if (serial == parent_serial)
          return "the child got the parent's registration";
        if (regcache_mem_free(cache_, p) != 0) return regcache_last_error();
        if (!Mapped(p, len)) return "the child unmapped inherited memory";
        void* q = nullptr;
        if (regcache_mem_alloc(cache_, len, 0, &q) != 0)
          return regcache_last_error();
        if (q == p) return "the child reused a block it does not own";
        if (regcache_mem_free(cache_, q) != 0) return regcache_last_error();
        if (regcache_mem_trim(cache_) != 0) return regcache_last_error();
        return "";
      });
  EXPECT_TRUE(child.passed) << child.message;
  EXPECT_EQ(Touch(p, len), parent_serial) << "the parent's pool is untouched";
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
}

TEST_F(MemPoolTest, ThreadsAllocateGetAndFreeConcurrently) {
  Make(/*max_entries=*/0, /*max_bytes=*/0);
  constexpr int kThreads = 4;
  constexpr int kRounds = 300;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<char*> mine;
      for (int i = 0; i < kRounds; ++i) {
        const size_t len = size_t(1 + (i + t) % 4) * Page();
        void* p = nullptr;
        if (regcache_mem_alloc(cache_, len, 0, &p) != 0) {
          failures++;
          continue;
        }
        static_cast<char*>(p)[0] = char(t);
        regcache_handle_t* h = nullptr;
        if (regcache_get(cache_, p, len, kLW, &h) != 0) {
          failures++;
        } else {
          regcache_put(cache_, h);
        }
        mine.push_back(static_cast<char*>(p));
        if (mine.size() > 3 || i % 3 == 0) {
          if (regcache_mem_free(cache_, mine.front()) != 0) failures++;
          mine.erase(mine.begin());
        }
        if (t == 0 && i % 50 == 49) regcache_mem_trim(cache_);
      }
      for (char* p : mine)
        if (regcache_mem_free(cache_, p) != 0) failures++;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0) << regcache_last_error();
  const auto s = Stats();
  EXPECT_EQ(s.mem_allocs, uint64_t(kThreads * kRounds));
  EXPECT_EQ(s.misses, 0u) << "every get inside an allocation hits";
  EXPECT_GT(s.mem_reuses, 0u);
  EXPECT_EQ(s.mem_bytes_now, s.mem_free_bytes_now) << "everything was freed";
  Check();
  ASSERT_EQ(regcache_mem_trim(cache_), 0);
  EXPECT_EQ(fake_.live(), 0u);
}

TEST_F(MemPoolTest, StatisticsShowThePoolInTextAndJson) {
  Make();
  char* p = Alloc(2 * Page());
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(regcache_mem_free(cache_, p), 0);
  ASSERT_NE(Alloc(2 * Page()), nullptr);
  char* text = nullptr;
  size_t size = 0;
  FILE* f = open_memstream(&text, &size);
  ASSERT_EQ(regcache_print_stats(cache_, f), 0);
  ASSERT_EQ(regcache_print_stats_json(cache_, f), 0);
  fclose(f);
  const std::string out(text, size);
  free(text);
  const std::string pages = "pages=2/" + std::to_string(4 * Page());
  EXPECT_NE(out.find("regcache mem: allocs=2 reuses=1 " + pages),
            std::string::npos)
      << out;
  const std::string json_line = out.substr(out.find('{'));
  const auto j = nlohmann::json::parse(json_line);
  EXPECT_EQ(j["mem"]["allocs"], 2);
  EXPECT_EQ(j["mem"]["reuses"], 1);
  EXPECT_EQ(j["mem"]["pages"]["allocs"], 2);
  EXPECT_EQ(j["mem"]["hugetlb"]["allocs"], 0);
  EXPECT_EQ(j["mem"]["thp"]["bytes"], 0);
  EXPECT_EQ(j["mem"]["contig"]["allocs"], 0);
  EXPECT_EQ(j["mem"]["bytes_now"], 2 * Page());
  EXPECT_EQ(j["mem"]["free_bytes_now"], 0);
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
}

TEST_F(MemPoolTest, CxxMemoryIsMoveOnlyAndFreesInItsDestructor) {
  static_assert(!std::is_copy_constructible<regcache::Memory>::value,
                "move-only");
  static_assert(std::is_nothrow_move_constructible<regcache::Memory>::value,
                "movable");
  Make();
  void* where = nullptr;
  {
    regcache::Memory outer;
    {
      regcache::Memory m;
      EXPECT_FALSE(m);
      ASSERT_EQ(regcache_mem_alloc(cache_, 0, 0, &where), -EINVAL);
      regcache::Memory filled(cache_, nullptr, 0);
      EXPECT_EQ(filled.Reset(), 0) << "an empty Memory frees nothing";
      void* raw = nullptr;
      ASSERT_EQ(regcache_mem_alloc(cache_, 3 * Page(), 0, &raw), 0);
      m = regcache::Memory(cache_, raw, 3 * Page());
      ASSERT_TRUE(m);
      EXPECT_EQ(m.size(), 3 * Page());
      where = m.data();
      outer = std::move(m);
      EXPECT_FALSE(m);
      EXPECT_EQ(Stats().mem_free_bytes_now, 0u) << "moved, not freed";
    }
    EXPECT_EQ(outer.data(), where);
    EXPECT_EQ(Stats().mem_free_bytes_now, 0u);
  }
  EXPECT_EQ(Stats().mem_free_bytes_now, 3 * Page())
      << "freed by the destructor";
}

TEST(MemPoolCxx, CacheAllocateHitsAndTrimMemoryReturnsIt) {
  CheckingFakeRegistrar fake;
  regcache_config cfg;
  ASSERT_EQ(regcache_config_init(&cfg), 0);
  cfg.monitor = REGCACHE_MONITOR_NONE;
  cfg.max_bytes = 0;
  {
    regcache::Cache cache;
    ASSERT_EQ(regcache::Cache::Create(fake.registrar(), &cfg, &cache), 0)
        << regcache_last_error();
    {
      regcache::Memory mem;
      ASSERT_EQ(cache.Allocate(5000, 0, &mem), 0) << regcache_last_error();
      regcache::Registration reg;
      ASSERT_EQ(
          cache.Get(mem.data(), mem.size(), REGCACHE_ACCESS_REMOTE_WRITE, &reg),
          0);
      EXPECT_EQ(cache.Stats().hits, 1u);
      EXPECT_EQ(cache.Stats().misses, 0u);
    }
    EXPECT_GT(cache.Stats().mem_free_bytes_now, 0u);
    EXPECT_EQ(cache.TrimMemory(), 0);
    EXPECT_EQ(cache.Stats().mem_bytes_now, 0u);
  }
  EXPECT_EQ(fake.live(), 0u);
}

}  // namespace
