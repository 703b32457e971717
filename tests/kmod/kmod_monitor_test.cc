// SPDX-License-Identifier: BSD-2-Clause
// The kmod monitor (src/regcache/monitor/kmod.cc) against the real module:
// tokens go stale synchronously, the event thread tells the sink which range
// and why, ring overflow falls back to a rescan, fork children restart, and
// the cache's C API caches and invalidates through it. Needs /dev/regcache
// (the VM); without it only MissingDeviceSaysWhy runs.
#include <errno.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "monitor/monitor.h"
#include "regcache/kmod_uapi.h"
#include "regcache/regcache.h"

namespace regcache_internal {
namespace {

bool HaveDevice() { return access(REGCACHE_KMOD_DEVICE_PATH, F_OK) == 0; }

#define SKIP_WITHOUT_DEVICE()                                                \
  do {                                                                       \
    if (!HaveDevice())                                                       \
      GTEST_SKIP() << REGCACHE_KMOD_DEVICE_PATH                              \
                   << " is absent: the regcache module is not loaded "       \
                      "(run in the VM: tests/vm/run-in-vm.sh --module ...)"; \
  } while (0)

size_t Page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
uint64_t Addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

char* MapAnon(size_t pages) {
  void* p = mmap(nullptr, pages * Page(), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  for (size_t i = 0; i < pages; ++i) static_cast<char*>(p)[i * Page()] = 1;
  return static_cast<char*>(p);
}

struct Call {
  uint64_t first, last;
  regcache_inval_reason reason;
};

class RecordingSink : public InvalidationSink {
 public:
  void InvalidateRange(uint64_t first, uint64_t last,
                       regcache_inval_reason reason) override {
    std::lock_guard<std::mutex> l(mu_);
    calls_.push_back({first, last, reason});
    cv_.notify_all();
  }
  // Waits up to 5 s for a call covering exactly [first, last].
  bool WaitFor(uint64_t first, uint64_t last, regcache_inval_reason* reason) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(5), [&] {
      for (const Call& c : calls_)
        if (c.first == first && c.last == last) {
          *reason = c.reason;
          return true;
        }
      return false;
    });
  }
  size_t WaitForCount(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, timeout, [&] { return calls_.size() >= n; });
    return calls_.size();
  }
  std::vector<Call> Calls() {
    std::lock_guard<std::mutex> l(mu_);
    return calls_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Call> calls_;
};

class KmodMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_DEVICE();
    std::string why;
    monitor_ = CreateKmodMonitor(&why);
    ASSERT_NE(nullptr, monitor_) << why;
    ASSERT_EQ(REGCACHE_MONITOR_KMOD, monitor_->kind());
    ASSERT_EQ(0, monitor_->Start(&sink_, &gate_, &why)) << why;
  }
  void TearDown() override {
    if (monitor_) monitor_->Stop();
  }

  RecordingSink sink_;
  std::atomic<uint32_t> gate_{0};
  std::unique_ptr<Monitor> monitor_;
};

TEST(KmodMonitor, MissingDeviceSaysWhy) {
  if (HaveDevice()) GTEST_SKIP() << "/dev/regcache exists here";
  std::string why;
  EXPECT_EQ(nullptr, CreateKmodMonitor(&why));
  EXPECT_EQ(
      "/dev/regcache: No such file or directory (is the regcache module "
      "loaded? see docs/operators.md)",
      why);
}

TEST_F(KmodMonitorTest, TokenGoesStaleWhenMunmapReturnsAndSinkHearsUnmap) {
  char* buf = MapAnon(4);
  ASSERT_NE(nullptr, buf);
  const uint64_t first = Addr(buf), last = first + 4 * Page() - 1;
  WatchToken token;
  ASSERT_EQ(0, monitor_->Watch(first, last, &token));
  EXPECT_EQ(token.expected, token.generation->load());
  ASSERT_EQ(0, munmap(buf, 4 * Page()));
  EXPECT_NE(token.expected, token.generation->load(std::memory_order_acquire));
  regcache_inval_reason reason;
  ASSERT_TRUE(sink_.WaitFor(first, last, &reason));
  EXPECT_EQ(REGCACHE_INVAL_UNMAP, reason);
  EXPECT_EQ(0u, gate_.load()) << "the kmod monitor never needs the gate";
  monitor_->Unwatch(first, last, token);
}

TEST_F(KmodMonitorTest, MadviseDontneedIsReportedAsRemove) {
  char* buf = MapAnon(2);
  ASSERT_NE(nullptr, buf);
  const uint64_t first = Addr(buf), last = first + 2 * Page() - 1;
  WatchToken token;
  ASSERT_EQ(0, monitor_->Watch(first, last, &token));
  ASSERT_EQ(0, madvise(buf, Page(), MADV_DONTNEED));
  EXPECT_NE(token.expected, token.generation->load());
  regcache_inval_reason reason;
  ASSERT_TRUE(sink_.WaitFor(first, last, &reason));
  EXPECT_EQ(REGCACHE_INVAL_REMOVE, reason);
  monitor_->Unwatch(first, last, token);
  munmap(buf, 2 * Page());
}

// WaitForPending() applies in the calling thread what the kernel published,
// so the sink has heard of a munmap() by the time it returns. HasPending()
// says whether it has anything to apply: true from the munmap() of a
// watched range until someone applied its event, false once
// WaitForPending() did (nothing else invalidates meanwhile).
TEST_F(KmodMonitorTest, WaitForPendingAppliesWhatTheKernelPublished) {
  monitor_->WaitForPending();
  EXPECT_FALSE(monitor_->HasPending());
  for (int i = 0; i < 50; ++i) {
    char* buf = MapAnon(1);
    ASSERT_NE(nullptr, buf);
    const uint64_t first = Addr(buf), last = first + Page() - 1;
    WatchToken token;
    ASSERT_EQ(0, monitor_->Watch(first, last, &token));
    EXPECT_FALSE(monitor_->HasPending()) << "round " << i;
    const size_t before = sink_.Calls().size();
    ASSERT_EQ(0, munmap(buf, Page()));
    // The event thread may have applied it already (its wake-up is
    // deferred, not withheld); then the sink has heard of it.
    const bool pending = monitor_->HasPending();
    EXPECT_TRUE(pending || sink_.Calls().size() == before + 1) << "round " << i;
    monitor_->WaitForPending();
    EXPECT_FALSE(monitor_->HasPending()) << "round " << i;
    std::vector<Call> calls = sink_.Calls();
    ASSERT_EQ(before + 1, calls.size()) << "round " << i;
    EXPECT_EQ(first, calls.back().first);
    EXPECT_EQ(last, calls.back().last);
    monitor_->Unwatch(first, last, token);
  }
}

// Unwatch() of an unchanged range parks the watch: a later Watch() of the
// same range takes it back (same slot and generation: no MONITOR), and the
// range stays watched meanwhile. Once the memory changed, the parked watch
// is never handed out again.
TEST_F(KmodMonitorTest, UnwatchParksAnUnchangedRangeAndWatchTakesItBack) {
  char* buf = MapAnon(1);
  ASSERT_NE(nullptr, buf);
  const uint64_t first = Addr(buf), last = first + Page() - 1;
  WatchToken token;
  ASSERT_EQ(0, monitor_->Watch(first, last, &token));
  monitor_->Unwatch(first, last, token);
  EXPECT_EQ(token.expected, token.generation->load()) << "not parked";
  WatchToken again;
  ASSERT_EQ(0, monitor_->Watch(first, last, &again));
  EXPECT_EQ(token.cookie, again.cookie)
      << "a new MONITOR instead of the parked one";
  EXPECT_EQ(token.expected, again.expected);
  monitor_->Unwatch(first, last, again);

  // Parked, it is still watched: the munmap is seen.
  ASSERT_EQ(0, munmap(buf, Page()));
  EXPECT_NE(token.expected, token.generation->load(std::memory_order_acquire));
  regcache_inval_reason reason;
  EXPECT_TRUE(sink_.WaitFor(first, last, &reason));
  char* remapped = static_cast<char*>(
      mmap(buf, Page(), PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0));
  ASSERT_EQ(buf, remapped);
  WatchToken fresh;
  ASSERT_EQ(0, monitor_->Watch(first, last, &fresh));
  EXPECT_EQ(fresh.expected, fresh.generation->load());
  EXPECT_FALSE(fresh.generation == token.generation &&
               fresh.expected == token.expected)
      << "the stale parked watch was handed out again";
  monitor_->Unwatch(first, last, fresh);
  munmap(buf, Page());
}

// The parked watches are bounded: of many unwatched ranges, all but at most
// 64 are UNMONITORed (which moves their slot's generation on, so an old
// token never matches again).
TEST_F(KmodMonitorTest, AtMostSixtyFourWatchesStayParked) {
  const size_t n = 200;
  char* buf = MapAnon(n);
  ASSERT_NE(nullptr, buf);
  std::vector<WatchToken> tokens(n);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t first = Addr(buf + i * Page());
    ASSERT_EQ(0, monitor_->Watch(first, first + Page() - 1, &tokens[i]));
  }
  for (size_t i = 0; i < n; ++i) {
    const uint64_t first = Addr(buf + i * Page());
    monitor_->Unwatch(first, first + Page() - 1, tokens[i]);
  }
  size_t parked = 0;
  for (const WatchToken& t : tokens)
    parked += t.generation->load() == t.expected;
  EXPECT_GE(parked, 1u);
  EXPECT_LE(parked, 64u);
  munmap(buf, n * Page());
}

TEST_F(KmodMonitorTest, WatchRejectsUnalignedRanges) {
  WatchToken token;
  EXPECT_EQ(-EINVAL, monitor_->Watch(Page() + 1, 2 * Page() - 1, &token));
  EXPECT_EQ(-EINVAL, monitor_->Watch(Page(), 2 * Page(), &token));
  EXPECT_EQ(-EINVAL, monitor_->Watch(2 * Page(), Page() - 1, &token));
}

// More stale ranges at once than the ring holds: the event thread rescans
// the generations and still reports every range.
TEST_F(KmodMonitorTest, RingOverflowStillReportsEveryRange) {
  const size_t n = 4096 + 300;  // above the default ring of 2048 as well
  char* buf =
      static_cast<char*>(mmap(nullptr, n * Page(), PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(MAP_FAILED, static_cast<void*>(buf));
  std::vector<WatchToken> tokens(n);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t first = Addr(buf + i * Page());
    ASSERT_EQ(0, monitor_->Watch(first, first + Page() - 1, &tokens[i])) << i;
  }
  ASSERT_EQ(0, munmap(buf, n * Page()));
  for (const WatchToken& t : tokens)
    ASSERT_NE(t.expected, t.generation->load());
  sink_.WaitForCount(n, std::chrono::seconds(20));
  std::set<uint64_t> firsts;
  for (const Call& c : sink_.Calls()) firsts.insert(c.first);
  EXPECT_EQ(n, firsts.size());
  for (size_t i = 0; i < n; ++i) {
    const uint64_t first = Addr(buf + i * Page());
    monitor_->Unwatch(first, first + Page() - 1, tokens[i]);
  }
}

TEST_F(KmodMonitorTest, ForkChildRestartsWithItsOwnContext) {
  char* buf = MapAnon(2);
  ASSERT_NE(nullptr, buf);
  const uint64_t first = Addr(buf), last = first + 2 * Page() - 1;
  WatchToken token;
  ASSERT_EQ(0, monitor_->Watch(first, last, &token));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    WatchToken child;
    // Before the restart the inherited context is the parent's.
    if (monitor_->Watch(first, last, &child) != -EOPNOTSUPP) _exit(40);
    std::string why;
    if (monitor_->RestartInChild(&why) != 0) _exit(41);
    if (monitor_->Watch(first, last, &child) != 0) _exit(42);
    if (munmap(buf, 2 * Page()) != 0) _exit(43);
    if (child.generation->load() == child.expected) _exit(44);
    regcache_inval_reason reason;
    if (!sink_.WaitFor(first, last, &reason)) _exit(45);
    // The parent's token means nothing here and must not touch anything.
    monitor_->Unwatch(first, last, token);
    monitor_->Stop();
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(0, WEXITSTATUS(status))
      << "40 watch before restart, 41 restart, 42 watch, 43 munmap, "
         "44 not stale, 45 no event";
  // The child's munmap was of its own copy: the parent's token is fresh.
  EXPECT_EQ(token.expected, token.generation->load());
  monitor_->Unwatch(first, last, token);
  munmap(buf, 2 * Page());
}

// Regression: the monitor's mutex, held at fork() by another thread (here
// one that watches and unmaps without a pause, so it is inside Watch() or
// Unwatch() much of the time), stayed locked in the child, whose restart
// then waited for ever. Each child restarts under an alarm; a hung child is
// killed by it and fails the test.
TEST_F(KmodMonitorTest, ForkWhileAnotherThreadWatchesNeverHangsTheChild) {
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      char* buf = MapAnon(1);
      if (buf == nullptr) continue;
      WatchToken token;
      const uint64_t first = Addr(buf), last = first + Page() - 1;
      const bool watched = monitor_->Watch(first, last, &token) == 0;
      munmap(buf, Page());
      if (watched) monitor_->Unwatch(first, last, token);
    }
  });
  int hung = 0, failed = 0;
  for (int i = 0; i < 200; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(5);
      std::string why;
      _exit(monitor_->RestartInChild(&why) == 0 ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(pid, waitpid(pid, &status, 0));
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
      ++hung;
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      ++failed;
  }
  stop = true;
  churn.join();
  EXPECT_EQ(hung, 0) << "children that never finished RestartInChild()";
  EXPECT_EQ(failed, 0);
}

TEST_F(KmodMonitorTest, StopIsIdempotentAndATokenStaysReadableAfterStop) {
  char* buf = MapAnon(1);
  ASSERT_NE(nullptr, buf);
  WatchToken token;
  ASSERT_EQ(0, monitor_->Watch(Addr(buf), Addr(buf) + Page() - 1, &token));
  monitor_->WaitForPending();
  monitor_->Stop();
  monitor_->Stop();
  // The cache's reaper may be inside Unwatch(), past its fd check, when
  // another thread stops the monitor: a token's generation word must stay
  // readable until the monitor is destroyed.
  EXPECT_EQ(token.expected, token.generation->load(std::memory_order_acquire));
  monitor_->Unwatch(Addr(buf), Addr(buf) + Page() - 1, token);
  munmap(buf, Page());
}

// The cache through its C API with the kmod monitor and the fake registrar:
// a munmap drops the cached registration, so memory mapped again at the
// same address is registered afresh.
TEST(KmodCache, MunmapDropsCachedRegistration) {
  SKIP_WITHOUT_DEVICE();
  regcache_registrar registrar;
  ASSERT_EQ(0, regcache_registrar_fake(0, &registrar));
  regcache_config config;
  ASSERT_EQ(0, regcache_config_init(&config));
  config.monitor = REGCACHE_MONITOR_KMOD;
  regcache_t* cache = nullptr;
  ASSERT_EQ(0, regcache_create(&registrar, &config, &cache))
      << regcache_last_error();

  char* buf = MapAnon(4);
  ASSERT_NE(nullptr, buf);
  regcache_handle_t* h = nullptr;
  ASSERT_EQ(
      0, regcache_get(cache, buf, 4 * Page(), REGCACHE_ACCESS_LOCAL_WRITE, &h));
  ASSERT_EQ(0, regcache_put(cache, h));
  ASSERT_EQ(
      0, regcache_get(cache, buf, 4 * Page(), REGCACHE_ACCESS_LOCAL_WRITE, &h));
  ASSERT_EQ(0, regcache_put(cache, h));
  struct regcache_stats st;
  ASSERT_EQ(0, regcache_stats(cache, &st));
  EXPECT_EQ(REGCACHE_MONITOR_KMOD, st.monitor);
  EXPECT_EQ(1u, st.registrations);
  EXPECT_EQ(1u, st.hits);

  ASSERT_EQ(0, munmap(buf, 4 * Page()));
  char* again = static_cast<char*>(
      mmap(buf, 4 * Page(), PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0));
  ASSERT_EQ(buf, again);
  ASSERT_EQ(
      0, regcache_get(cache, buf, 4 * Page(), REGCACHE_ACCESS_LOCAL_WRITE, &h));
  ASSERT_EQ(0, regcache_put(cache, h));
  ASSERT_EQ(0, regcache_stats(cache, &st));
  // 2, or 3 when the event thread's report lands during that miss and the
  // cache retries it (until the cache calls WaitForPending() first).
  EXPECT_GE(st.registrations, 2u) << "a stale registration was served";
  EXPECT_LE(st.registrations, 3u);
  // The event thread's report arrives asynchronously (the generation word
  // already kept the stale entry from being served).
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (st.invalidations[REGCACHE_INVAL_UNMAP] == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    usleep(10000);
    ASSERT_EQ(0, regcache_stats(cache, &st));
  }
  // 1 or 2: an event delivered after the new entry was cached drops that
  // one too (the sink speaks in ranges): a re-registration, never a stale hit.
  EXPECT_GE(st.invalidations[REGCACHE_INVAL_UNMAP], 1u);
  EXPECT_EQ(0, regcache_destroy(cache));
  munmap(buf, 4 * Page());
}

}  // namespace
}  // namespace regcache_internal
