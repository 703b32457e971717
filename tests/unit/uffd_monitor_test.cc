// SPDX-License-Identifier: BSD-2-Clause
// Tests of the userfaultfd monitor on its own, with a RecordingSink (a fake
// InvalidationSink) in place of the cache: which system calls produce which
// invalidation, that the gate bit is already set when munmap() returns (the
// synchronous-window claim) and cleared by WaitForPending(), that WP-mode
// registration never faults, that the reader keeps releasing munmap() while
// the sink is blocked, fork, and Stop(). Every test that could hang on a
// regression runs the risky call on a thread with a time limit.
//
// Skips (with the reason) when userfaultfd is not available here.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/magic.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "monitor/monitor.h"
#include "monitor/uffd.h"
#include "regcache/regcache.h"
#include "test_util.h"

namespace {

using regcache_internal::CreateNullMonitor;
using regcache_internal::CreateUffdMonitor;
using regcache_internal::GetUffdMonitorCounters;
using regcache_internal::InvalidationSink;
using regcache_internal::kGateEventsPending;
using regcache_internal::kGateForked;
using regcache_internal::kUffdApplyQueueCapacity;
using regcache_internal::Monitor;
using regcache_internal::StaticGeneration;
using regcache_internal::UffdMonitorCounters;
using regcache_internal::WatchToken;
using namespace std::chrono_literals;

const uint64_t kPage = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

uint64_t Addr(const void* p) { return reinterpret_cast<uint64_t>(p); }

// A transparent huge page with 4 KiB pages (x86-64, arm64).
constexpr size_t kThpWindowBytes = size_t{2} << 20;

// A fake sink that records every InvalidateRange() call. Block() makes
// calls wait (as if for a lock) until Unblock(); `waiting_` counts callers
// so a test can tell the applier is stuck inside the sink.
class RecordingSink : public InvalidationSink {
 public:
  struct Call {
    uint64_t first;
    uint64_t last;
    regcache_inval_reason reason;
  };

  RecordingSink() { calls_.reserve(1 << 14); }

  void InvalidateRange(uint64_t first, uint64_t last,
                       regcache_inval_reason reason) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !blocked_ || permits_ > 0; });
    if (blocked_) --permits_;
    --waiting_;
    calls_.push_back({first, last, reason});
    cv_.notify_all();
  }

  void Block() {
    std::lock_guard<std::mutex> lock(mu_);
    blocked_ = true;
  }
  void Unblock() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      blocked_ = false;
    }
    cv_.notify_all();
  }
  // While blocked, lets `n` more calls through.
  void Allow(int n) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      permits_ += n;
    }
    cv_.notify_all();
  }
  // Waits until a call is stuck in Block() and `recorded` calls have been
  // recorded; false after `limit`.
  bool WaitUntilSomeoneWaits(std::chrono::milliseconds limit,
                             size_t recorded = 0) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, limit, [&] {
      return waiting_ > 0 && permits_ == 0 && calls_.size() == recorded;
    });
  }

  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_.size();
  }
  std::vector<Call> Calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.clear();
  }

  // A call from index `since` on with `reason` that overlaps [first, last].
  bool SawSince(size_t since, uint64_t first, uint64_t last,
                regcache_inval_reason reason) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = since; i < calls_.size(); ++i) {
      const Call& c = calls_[i];
      if (c.reason == reason && c.first <= last && first <= c.last) return true;
    }
    return false;
  }
  bool Saw(uint64_t first, uint64_t last, regcache_inval_reason reason) {
    return SawSince(0, first, last, reason);
  }
  // A call with exactly this range and reason.
  bool SawExactly(uint64_t first, uint64_t last, regcache_inval_reason reason) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Call& c : calls_) {
      if (c.reason == reason && c.first == first && c.last == last) return true;
    }
    return false;
  }
  // Any call, of any reason, overlapping [first, last].
  size_t CountOverlapping(uint64_t first, uint64_t last) {
    std::lock_guard<std::mutex> lock(mu_);
    return std::count_if(calls_.begin(), calls_.end(), [&](const Call& c) {
      return c.first <= last && first <= c.last;
    });
  }
  // Every byte of [first, last] is inside some call.
  bool Covers(uint64_t first, uint64_t last) {
    std::vector<Call> calls = Calls();
    std::sort(calls.begin(), calls.end(),
              [](const Call& a, const Call& b) { return a.first < b.first; });
    uint64_t next = first;  // first byte not yet covered
    for (const Call& c : calls) {
      if (c.first > next) break;
      if (c.last >= next) {
        if (c.last >= last) return true;
        next = c.last + 1;
      }
    }
    return false;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool blocked_ = false;
  int permits_ = 0;
  int waiting_ = 0;
  std::vector<Call> calls_;
};

// Runs `fn` on its own thread; WaitFor() tells whether it finished in time.
// The destructor joins, so a caller that timed out must first unblock it.
class TimedRun {
 public:
  explicit TimedRun(std::function<void()> fn)
      : thread_([this, fn = std::move(fn)] {
          fn();
          done_.store(true);
        }) {}
  ~TimedRun() { thread_.join(); }
  bool WaitFor(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done_.load()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Ends the test binary when a hang cannot be undone: failing loudly beats
// hanging CI.
[[noreturn]] void AbortHung(const char* what) {
  fprintf(stderr, "HUNG: %s; aborting the test binary\n", what);
  fflush(stderr);
  abort();
}

char* MapAnon(size_t pages, int prot = PROT_READ | PROT_WRITE,
              int flags = MAP_PRIVATE | MAP_ANONYMOUS) {
  void* p = mmap(nullptr, pages * kPage, prot, flags, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<char*>(p);
}

class UffdMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    monitor_ = CreateUffdMonitor(&why);
    if (!monitor_) GTEST_SKIP() << "userfaultfd unavailable here: " << why;
    ASSERT_EQ(monitor_->kind(), REGCACHE_MONITOR_UFFD);
    ASSERT_EQ(monitor_->Start(&sink_, &gate_, &why), 0) << why;
  }
  void TearDown() override {
    if (monitor_) monitor_->Stop();
  }

  int Watch(const void* p, size_t pages) {
    WatchToken token;
    const int rc =
        monitor_->Watch(Addr(p), Addr(p) + pages * kPage - 1, &token);
    if (rc == 0) {
      EXPECT_EQ(token.generation, StaticGeneration());
      EXPECT_EQ(token.expected, token.generation->load());
    }
    return rc;
  }
  char* MapAndWatch(size_t pages) {
    char* p = MapAnon(pages);
    if (p == nullptr) return nullptr;
    memset(p, 0x5a, pages * kPage);
    if (Watch(p, pages) != 0) {
      munmap(p, pages * kPage);
      return nullptr;
    }
    return p;
  }
  bool Pending() { return (gate_.load() & kGateEventsPending) != 0; }
  UffdMonitorCounters Counters() {
    UffdMonitorCounters c;
    EXPECT_TRUE(GetUffdMonitorCounters(*monitor_, &c));
    return c;
  }

  RecordingSink sink_;
  std::atomic<uint32_t> gate_{0};
  std::unique_ptr<Monitor> monitor_;
};

TEST_F(UffdMonitorTest, StartReturnsWithBothEventThreadsRunning) {
  // Regression: Start() returned while its threads were still starting; a
  // fork at that moment under ASan (whose allocator has no fork handler)
  // left the child's new event threads waiting for ever on a lock the
  // parent's starting thread held. The name is set on entry, so each one
  // is visible as soon as Start() returns.
  EXPECT_EQ(regcache_test::ThreadsNamed("regcache-uffd-r"), 1);
  EXPECT_EQ(regcache_test::ThreadsNamed("regcache-uffd-a"), 1);
  monitor_->Stop();
  EXPECT_EQ(regcache_test::ThreadsNamedOnceGone("regcache-uffd-r"), 0);
  EXPECT_EQ(regcache_test::ThreadsNamedOnceGone("regcache-uffd-a"), 0);
}

TEST_F(UffdMonitorTest, MunmapSetsGateBeforeReturningAndWaitForPendingApplies) {
  char* p = MapAndWatch(4);
  ASSERT_NE(p, nullptr);
  // With the sink blocked nothing can be applied, so the only way the
  // gate can be clear after munmap() returns is a broken protocol.
  sink_.Block();
  ASSERT_EQ(munmap(p, 4 * kPage), 0);
  EXPECT_TRUE(Pending()) << "munmap() returned before the gate was set";
  EXPECT_EQ(sink_.size(), 0u);
  sink_.Unblock();
  monitor_->WaitForPending();
  EXPECT_TRUE(
      sink_.SawExactly(Addr(p), Addr(p) + 4 * kPage - 1, REGCACHE_INVAL_UNMAP));
  EXPECT_FALSE(Pending()) << "WaitForPending() returned with the gate set";
}

// The lines of /proc/self/maps (VMAs) that overlap [first, last], or -1.
int MappingsOverlapping(uint64_t first, uint64_t last) {
  FILE* f = fopen("/proc/self/maps", "re");
  if (f == nullptr) return -1;
  int n = 0;
  unsigned long lo, hi;
  while (fscanf(f, "%lx-%lx%*[^\n]\n", &lo, &hi) == 2) {
    if (lo <= last && hi > first) ++n;
  }
  fclose(f);
  return n;
}

// A 2 MiB-aligned window of anonymous memory inside a larger mapping (one
// VMA), or nullptr.
char* MapHugePageWindow() {
  char* p = MapAnon(3 * (kThpWindowBytes / kPage));
  if (p == nullptr) return nullptr;
  return reinterpret_cast<char*>((Addr(p) + kThpWindowBytes - 1) &
                                 ~uint64_t{kThpWindowBytes - 1});
}

// Watch() registers the 2 MiB window around a range when it can: a VMA
// split inside the window would cost that memory its transparent huge
// pages (design.md, "uffd").
TEST_F(UffdMonitorTest, WatchLeavesTheHugePageWindowAroundTheRangeWhole) {
  char* w = MapHugePageWindow();
  ASSERT_NE(w, nullptr);
  const uint64_t first = Addr(w), last = first + kThpWindowBytes - 1;
  ASSERT_EQ(MappingsOverlapping(first, last), 1);
  char* range = w + 16 * kPage;
  memset(range, 0x5a, 16 * kPage);
  ASSERT_EQ(Watch(range, 16), 0);
  EXPECT_EQ(MappingsOverlapping(first, last), 1)
      << "registering the range split the VMA inside its 2 MiB window";
  ASSERT_EQ(munmap(range, 16 * kPage), 0);
  monitor_->WaitForPending();
  EXPECT_TRUE(sink_.SawExactly(Addr(range), Addr(range) + 16 * kPage - 1,
                               REGCACHE_INVAL_UNMAP));
}

// A window as MapHugePageWindow() makes it, with one page in its middle a
// private mapping of a regular file (which userfaultfd cannot register in
// write-protect mode), or nullptr with errno set.
char* MapHugePageWindowWithAFileMapping() {
  char* w = MapHugePageWindow();
  if (w == nullptr) return nullptr;
  const int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  void* file = mmap(w + kThpWindowBytes / 2, kPage, PROT_READ,
                    MAP_PRIVATE | MAP_FIXED, fd, 0);
  const int err = errno;
  close(fd);
  errno = err;
  return file == MAP_FAILED ? nullptr : w;
}

// Where the window cannot be registered (here a private mapping of a
// regular file inside it), Watch() registers the range alone.
TEST_F(UffdMonitorTest, WatchFallsBackToTheRangeWhenItsWindowHasAFileMapping) {
  char* w = MapHugePageWindowWithAFileMapping();
  ASSERT_NE(w, nullptr) << strerror(errno);
  char* range = w + 16 * kPage;
  memset(range, 0x5a, 16 * kPage);
  ASSERT_EQ(Watch(range, 16), 0) << "the range alone can be registered";
  EXPECT_EQ(Counters().window_refused, 1u);
  ASSERT_EQ(munmap(range, 16 * kPage), 0);
  monitor_->WaitForPending();
  EXPECT_TRUE(sink_.SawExactly(Addr(range), Addr(range) + 16 * kPage - 1,
                               REGCACHE_INVAL_UNMAP));
}

// A refused window is remembered: the next ranges in it are registered
// alone at once, without another failed attempt at the window each.
TEST_F(UffdMonitorTest, ARefusedWindowIsNotTriedAgainForEachRangeInIt) {
  char* w = MapHugePageWindowWithAFileMapping();
  ASSERT_NE(w, nullptr) << strerror(errno);
  char* ranges[] = {w + 16 * kPage, w + 64 * kPage, w + 16 * kPage};
  for (char* range : ranges) {
    memset(range, 0x5a, 16 * kPage);
    ASSERT_EQ(Watch(range, 16), 0);
  }
  EXPECT_EQ(Counters().window_refused, 1u);
  // ... for a while: what was in the way may go, so every few hundred
  // ranges registered alone the window is tried again.
  for (int i = 0; i < 300; ++i) ASSERT_EQ(Watch(ranges[0], 16), 0);
  EXPECT_EQ(Counters().window_refused, 2u);
  for (char* range : {ranges[0], ranges[1]}) {
    ASSERT_EQ(munmap(range, 16 * kPage), 0);
    monitor_->WaitForPending();
    EXPECT_TRUE(sink_.SawExactly(Addr(range), Addr(range) + 16 * kPage - 1,
                                 REGCACHE_INVAL_UNMAP));
  }
}

TEST_F(UffdMonitorTest, GateSetOrAppliedWheneverMunmapReturns) {
  // Natural timing: the applier may or may not have finished by the time
  // munmap() returns; either the gate is set or the invalidation is there.
  for (int i = 0; i < 200; ++i) {
    char* p = MapAndWatch(2);
    ASSERT_NE(p, nullptr);
    const size_t before = sink_.size();
    ASSERT_EQ(munmap(p, 2 * kPage), 0);
    const bool pending = Pending();  // read the gate first, then the sink
    const bool applied = sink_.SawSince(
        before, Addr(p), Addr(p) + 2 * kPage - 1, REGCACHE_INVAL_UNMAP);
    ASSERT_TRUE(pending || applied) << "iteration " << i;
    monitor_->WaitForPending();
    ASSERT_TRUE(sink_.SawSince(before, Addr(p), Addr(p) + 2 * kPage - 1,
                               REGCACHE_INVAL_UNMAP))
        << "iteration " << i;
  }
}

TEST_F(UffdMonitorTest, PartialMunmapInvalidatesOnlyTheUnmappedPages) {
  char* p = MapAndWatch(8);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(munmap(p + 2 * kPage, 2 * kPage), 0);
  monitor_->WaitForPending();
  EXPECT_TRUE(sink_.SawExactly(Addr(p) + 2 * kPage, Addr(p) + 4 * kPage - 1,
                               REGCACHE_INVAL_UNMAP));
  EXPECT_EQ(sink_.CountOverlapping(Addr(p), Addr(p) + 2 * kPage - 1), 0u);
  EXPECT_EQ(
      sink_.CountOverlapping(Addr(p) + 4 * kPage, Addr(p) + 8 * kPage - 1), 0u);
  munmap(p, 2 * kPage);
  munmap(p + 4 * kPage, 4 * kPage);
}

TEST_F(UffdMonitorTest, MremapMoveInvalidatesTheOldRangeWithRemapReason) {
  char* p = MapAndWatch(4);
  ASSERT_NE(p, nullptr);
  char* target = MapAnon(4, PROT_NONE);  // a place to move to
  ASSERT_NE(target, nullptr);
  void* moved =
      mremap(p, 4 * kPage, 4 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, target);
  ASSERT_EQ(moved, static_cast<void*>(target));
  monitor_->WaitForPending();
  EXPECT_TRUE(
      sink_.SawExactly(Addr(p), Addr(p) + 4 * kPage - 1, REGCACHE_INVAL_REMAP));
  munmap(target, 4 * kPage);
}

TEST_F(UffdMonitorTest, MremapGrowThatMovesInvalidatesTheOldRange) {
  char* p = MapAnon(3);
  ASSERT_NE(p, nullptr);
  // A PROT_NONE page right after the range keeps it from growing in place,
  // so the kernel has to move it.
  ASSERT_EQ(mprotect(p + 2 * kPage, kPage, PROT_NONE), 0);
  p[0] = 1;
  ASSERT_EQ(Watch(p, 2), 0);
  void* moved = mremap(p, 2 * kPage, 64 * kPage, MREMAP_MAYMOVE);
  ASSERT_NE(moved, MAP_FAILED);
  ASSERT_NE(moved, static_cast<void*>(p));
  monitor_->WaitForPending();
  EXPECT_TRUE(
      sink_.SawExactly(Addr(p), Addr(p) + 2 * kPage - 1, REGCACHE_INVAL_REMAP));
  munmap(moved, 64 * kPage);
  munmap(p + 2 * kPage, kPage);
}

TEST_F(UffdMonitorTest, MremapOntoAWatchedRangeInvalidatesTheTargetToo) {
  char* source = MapAndWatch(2);
  char* target = MapAndWatch(2);
  ASSERT_NE(source, nullptr);
  ASSERT_NE(target, nullptr);
  ASSERT_EQ(mremap(source, 2 * kPage, 2 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED,
                   target),
            static_cast<void*>(target));
  monitor_->WaitForPending();
  EXPECT_TRUE(sink_.Saw(Addr(source), Addr(source) + 2 * kPage - 1,
                        REGCACHE_INVAL_REMAP));
  EXPECT_TRUE(sink_.Saw(Addr(target), Addr(target) + 2 * kPage - 1,
                        REGCACHE_INVAL_UNMAP))
      << "what was mapped at the target must be invalidated";
  munmap(target, 2 * kPage);
}

TEST_F(UffdMonitorTest, MremapShrinkInvalidatesTheTailWithUnmapReason) {
  char* p = MapAndWatch(8);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(mremap(p, 8 * kPage, 3 * kPage, 0), static_cast<void*>(p));
  monitor_->WaitForPending();
  EXPECT_TRUE(sink_.SawExactly(Addr(p) + 3 * kPage, Addr(p) + 8 * kPage - 1,
                               REGCACHE_INVAL_UNMAP));
  EXPECT_EQ(sink_.CountOverlapping(Addr(p), Addr(p) + 3 * kPage - 1), 0u);
  munmap(p, 3 * kPage);
}

TEST_F(UffdMonitorTest, MadviseDontneedInvalidatesWithRemoveReason) {
  char* p = MapAndWatch(4);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(madvise(p + kPage, 2 * kPage, MADV_DONTNEED), 0);
  monitor_->WaitForPending();
  EXPECT_TRUE(sink_.SawExactly(Addr(p) + kPage, Addr(p) + 3 * kPage - 1,
                               REGCACHE_INVAL_REMOVE));
  munmap(p, 4 * kPage);
}

TEST_F(UffdMonitorTest, MadviseFreeInvalidatesWithRemoveReason) {
  char* p = MapAndWatch(4);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(madvise(p, 4 * kPage, MADV_FREE), 0);
  monitor_->WaitForPending();
  EXPECT_TRUE(sink_.SawExactly(Addr(p), Addr(p) + 4 * kPage - 1,
                               REGCACHE_INVAL_REMOVE));
  munmap(p, 4 * kPage);
}

TEST_F(UffdMonitorTest, MmapFixedOverAWatchedRangeInvalidatesWithUnmapReason) {
  char* p = MapAndWatch(4);
  ASSERT_NE(p, nullptr);
  void* q = mmap(p + kPage, 2 * kPage, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  ASSERT_EQ(q, static_cast<void*>(p + kPage));
  monitor_->WaitForPending();
  EXPECT_TRUE(sink_.SawExactly(Addr(p) + kPage, Addr(p) + 3 * kPage - 1,
                               REGCACHE_INVAL_UNMAP));
  munmap(p, 4 * kPage);
}

TEST_F(UffdMonitorTest, MprotectSendsNothing) {
  char* a = MapAndWatch(4);
  char* fence = MapAndWatch(1);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(fence, nullptr);
  ASSERT_EQ(mprotect(a, 4 * kPage, PROT_READ), 0);
  ASSERT_EQ(mprotect(a + kPage, kPage, PROT_NONE), 0);
  ASSERT_EQ(mprotect(a, 4 * kPage, PROT_READ | PROT_WRITE), 0);
  a[0] = 1;
  // Events arrive in order: once the fence's UNMAP is applied, anything the
  // mprotect() calls had produced would have been applied before it.
  ASSERT_EQ(munmap(fence, kPage), 0);
  monitor_->WaitForPending();
  ASSERT_TRUE(
      sink_.Saw(Addr(fence), Addr(fence) + kPage - 1, REGCACHE_INVAL_UNMAP));
  EXPECT_EQ(sink_.CountOverlapping(Addr(a), Addr(a) + 4 * kPage - 1), 0u);
  munmap(a, 4 * kPage);
}

TEST_F(UffdMonitorTest, TouchingPagesAfterDontneedNeverFaults) {
  // The WP-mode claim: registered, nothing write-protected, so neither the
  // refault of a zapped page nor the first touch of a never-populated one
  // is delivered to us. With MISSING mode the touch would hang.
  char* p = MapAnon(16);
  ASSERT_NE(p, nullptr);
  memset(p, 1, 8 * kPage);  // pages 8..15 never populated
  ASSERT_EQ(Watch(p, 16), 0);
  ASSERT_EQ(madvise(p, 8 * kPage, MADV_DONTNEED), 0);
  monitor_->WaitForPending();
  std::atomic<uint64_t> sum{0};
  {
    TimedRun touch([&] {
      uint64_t s = 0;
      for (size_t i = 0; i < 16; ++i) s += static_cast<uint8_t>(p[i * kPage]);
      for (size_t i = 0; i < 16; ++i) p[i * kPage + 1] = 2;
      sum.store(s);
    });
    if (!touch.WaitFor(10s)) {
      ADD_FAILURE() << "a touch after MADV_DONTNEED hung in a uffd fault";
      monitor_->Stop();  // closing the uffd wakes the faulting thread
    }
  }
  EXPECT_EQ(sum.load(), 0u) << "zapped anonymous pages must read back as zero";
  EXPECT_EQ(Counters().unexpected_faults, 0u);
  munmap(p, 16 * kPage);
}

// An unlinked temporary file of `pages` pages on a disk filesystem (on
// tmpfs it would be shmem, which uffd can watch); -1 if there is none.
int DiskFile(size_t pages) {
  const char* const dirs[] = {getenv("TMPDIR"), "/var/tmp", "/tmp", "."};
  for (const char* dir : dirs) {
    if (dir == nullptr) continue;
    struct statfs fs;
    if (statfs(dir, &fs) != 0 || fs.f_type == TMPFS_MAGIC ||
        fs.f_type == RAMFS_MAGIC || fs.f_type == HUGETLBFS_MAGIC) {
      continue;
    }
    std::string path = std::string(dir) + "/uffd_monitor_test.XXXXXX";
    const int fd = mkstemp(path.data());
    if (fd < 0) continue;
    unlink(path.c_str());
    if (ftruncate(fd, static_cast<off_t>(pages * kPage)) != 0) {
      close(fd);
      continue;
    }
    return fd;
  }
  return -1;
}

TEST_F(UffdMonitorTest, FileBackedMappingIsUnsupported) {
  const int fd = DiskFile(4);
  if (fd < 0) GTEST_SKIP() << "no writable directory on a non-tmpfs filesystem";
  for (int flags : {MAP_SHARED, MAP_PRIVATE}) {
    void* p = mmap(nullptr, 4 * kPage, PROT_READ | PROT_WRITE, flags, fd, 0);
    ASSERT_NE(p, MAP_FAILED);
    EXPECT_EQ(Watch(p, 4), -EOPNOTSUPP)
        << (flags == MAP_SHARED ? "MAP_SHARED" : "MAP_PRIVATE");
    munmap(p, 4 * kPage);
  }
  close(fd);
  EXPECT_EQ(Counters().watch_unsupported, 2u);
}

TEST_F(UffdMonitorTest,
       RangeSpanningAFileMappingIsUnsupportedAndRegistersNothing) {
  const int fd = DiskFile(1);
  if (fd < 0) GTEST_SKIP() << "no writable directory on a non-tmpfs filesystem";
  char* p = MapAnon(3);
  ASSERT_NE(p, nullptr);
  memset(p, 1, 3 * kPage);
  ASSERT_NE(mmap(p + kPage, kPage, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_FIXED, fd, 0),
            MAP_FAILED);
  close(fd);
  EXPECT_EQ(Watch(p, 3), -EOPNOTSUPP);
  // The kernel checks every VMA before registering any: the anonymous
  // pages on either side must not have been registered. The fence lives in
  // a 2 MiB window of its own, so that the window Watch() registers around
  // it cannot hold them.
  char* fence = MapHugePageWindow();
  ASSERT_NE(fence, nullptr);
  ASSERT_EQ(Watch(fence, 1), 0);
  munmap(p, 3 * kPage);
  munmap(fence, kPage);
  monitor_->WaitForPending();
  ASSERT_TRUE(
      sink_.Saw(Addr(fence), Addr(fence) + kPage - 1, REGCACHE_INVAL_UNMAP));
  EXPECT_EQ(sink_.CountOverlapping(Addr(p), Addr(p) + 3 * kPage - 1), 0u);
}

TEST_F(UffdMonitorTest, WatchBeforeStartIsRefused) {
  // With no reader, a registered range's munmap() would sleep for ever.
  std::string why;
  std::unique_ptr<Monitor> idle = CreateUffdMonitor(&why);
  ASSERT_TRUE(idle) << why;
  char* p = MapAnon(1);
  ASSERT_NE(p, nullptr);
  WatchToken token;
  EXPECT_EQ(idle->Watch(Addr(p), Addr(p) + kPage - 1, &token), -EOPNOTSUPP);
  TimedRun unmapper([&] { munmap(p, kPage); });
  if (!unmapper.WaitFor(10s))
    AbortHung("munmap() of a range watched before Start()");
}

TEST_F(UffdMonitorTest, SharedAnonymousMemoryIsWatched) {
  char* p = MapAnon(4, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
  ASSERT_NE(p, nullptr);
  const int rc = Watch(p, 4);
  if (rc == -EOPNOTSUPP) {
    munmap(p, 4 * kPage);
    GTEST_SKIP() << "this kernel has no uffd-wp on shmem (needs Linux >= 5.19)";
  }
  ASSERT_EQ(rc, 0);
  memset(p, 3, 4 * kPage);
  ASSERT_EQ(madvise(p, kPage, MADV_REMOVE), 0);
  ASSERT_EQ(munmap(p + 2 * kPage, 2 * kPage), 0);
  monitor_->WaitForPending();
  EXPECT_TRUE(
      sink_.SawExactly(Addr(p), Addr(p) + kPage - 1, REGCACHE_INVAL_REMOVE));
  EXPECT_TRUE(sink_.SawExactly(Addr(p) + 2 * kPage, Addr(p) + 4 * kPage - 1,
                               REGCACHE_INVAL_UNMAP));
  // Touching the hole MADV_REMOVE punched must not fault to us either.
  {
    TimedRun touch([&] { p[0] = static_cast<char>(p[kPage] + 1); });
    if (!touch.WaitFor(10s)) {
      ADD_FAILURE()
          << "a touch after MADV_REMOVE on shmem hung in a uffd fault";
      monitor_->Stop();  // closing the uffd wakes the faulting thread
    }
  }
  EXPECT_EQ(p[0], 4);
  EXPECT_EQ(Counters().unexpected_faults, 0u);
  munmap(p, 2 * kPage);
}

TEST_F(UffdMonitorTest, MonitorsShareOneUserfaultfdAndEachSeesEveryEvent) {
  // A VMA can be registered with one userfaultfd only, so two caches of one
  // process must share it, or the second would serve every buffer the first
  // watches uncached.
  std::string why;
  std::unique_ptr<Monitor> other = CreateUffdMonitor(&why);
  ASSERT_TRUE(other) << why;
  RecordingSink other_sink;
  std::atomic<uint32_t> other_gate{0};
  ASSERT_EQ(other->Start(&other_sink, &other_gate, &why), 0) << why;
  char* p = MapAnon(2);
  ASSERT_NE(p, nullptr);
  WatchToken token;
  ASSERT_EQ(other->Watch(Addr(p), Addr(p) + 2 * kPage - 1, &token), 0);
  EXPECT_EQ(Watch(p, 2), 0);
  EXPECT_EQ(Counters().watch_busy, 0u);
  ASSERT_EQ(munmap(p, 2 * kPage), 0);
  other->WaitForPending();
  monitor_->WaitForPending();
  EXPECT_TRUE(other_sink.SawExactly(Addr(p), Addr(p) + 2 * kPage - 1,
                                    REGCACHE_INVAL_UNMAP));
  EXPECT_TRUE(
      sink_.SawExactly(Addr(p), Addr(p) + 2 * kPage - 1, REGCACHE_INVAL_UNMAP));

  // One monitor stopping leaves the other watching: the event threads and
  // the uffd stay for the remaining subscriber.
  other->Stop();
  const size_t calls_of_stopped = other_sink.size();
  char* q = MapAndWatch(1);
  ASSERT_NE(q, nullptr);
  TimedRun unmapper([&] { munmap(q, kPage); });
  if (!unmapper.WaitFor(10s))
    AbortHung("munmap() after the other monitor stopped");
  monitor_->WaitForPending();
  EXPECT_TRUE(
      sink_.SawExactly(Addr(q), Addr(q) + kPage - 1, REGCACHE_INVAL_UNMAP));
  EXPECT_EQ(other_sink.size(), calls_of_stopped)
      << "a stopped monitor's sink was called";
}

TEST_F(UffdMonitorTest, ThirtyThirdSubscriberIsRefusedWithAClearError) {
  std::string why;
  std::vector<std::unique_ptr<Monitor>> others;
  std::vector<RecordingSink> sinks(40);
  std::vector<std::atomic<uint32_t>> gates(40);
  int started = 1;  // the fixture's
  int rc = 0;
  for (size_t i = 0; i < sinks.size() && rc == 0; ++i) {
    others.push_back(CreateUffdMonitor(&why));
    ASSERT_TRUE(others.back()) << why;
    rc = others.back()->Start(&sinks[i], &gates[i], &why);
    if (rc == 0) ++started;
  }
  EXPECT_EQ(started, 32);
  EXPECT_EQ(rc, -EMFILE);
  EXPECT_NE(why.find("more than 32 caches"), std::string::npos) << why;
  // The refused one holds nothing; the others still work.
  others.pop_back();
  char* p = MapAndWatch(1);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(munmap(p, kPage), 0);
  monitor_->WaitForPending();
  EXPECT_TRUE(
      sink_.SawExactly(Addr(p), Addr(p) + kPage - 1, REGCACHE_INVAL_UNMAP));
  EXPECT_TRUE(
      sinks[0].SawExactly(Addr(p), Addr(p) + kPage - 1, REGCACHE_INVAL_UNMAP));
  for (auto& m : others) m->Stop();
}

TEST_F(UffdMonitorTest, RangeOwnedByAnotherUserfaultfdIsUnsupported) {
  // Another library's userfaultfd (libfabric's, UCX's) owns the range.
  const int foreign = static_cast<int>(
      syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  if (foreign < 0) GTEST_SKIP() << "a second userfaultfd: " << strerror(errno);
  uffdio_api api{};
  api.api = UFFD_API;
  ASSERT_EQ(ioctl(foreign, UFFDIO_API, &api), 0) << strerror(errno);
  char* p = MapAnon(2);
  ASSERT_NE(p, nullptr);
  memset(p, 1, 2 * kPage);  // present pages: MISSING mode never faults them
  uffdio_register reg{};
  reg.range.start = Addr(p);
  reg.range.len = 2 * kPage;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  ASSERT_EQ(ioctl(foreign, UFFDIO_REGISTER, &reg), 0) << strerror(errno);
  EXPECT_EQ(Watch(p, 2), -EOPNOTSUPP);
  EXPECT_EQ(Counters().watch_busy, 1u);
  close(foreign);  // drops its registration
  EXPECT_EQ(Watch(p, 2), 0);
  ASSERT_EQ(munmap(p, 2 * kPage), 0);
  monitor_->WaitForPending();
  EXPECT_TRUE(
      sink_.Saw(Addr(p), Addr(p) + 2 * kPage - 1, REGCACHE_INVAL_UNMAP));
}

TEST_F(UffdMonitorTest, WatchRejectsRangesThatAreNotPageAligned) {
  char* p = MapAnon(2);
  ASSERT_NE(p, nullptr);
  WatchToken token;
  EXPECT_EQ(monitor_->Watch(Addr(p) + 1, Addr(p) + kPage - 1, &token), -EINVAL);
  EXPECT_EQ(monitor_->Watch(Addr(p), Addr(p) + kPage, &token), -EINVAL);
  EXPECT_EQ(monitor_->Watch(Addr(p) + kPage, Addr(p), &token), -EINVAL);
  munmap(p, 2 * kPage);
}

TEST_F(UffdMonitorTest, ReaderKeepsReleasingMunmapWhileTheSinkIsBlocked) {
  // libfabric #5554: a thread that unmaps registered memory while holding a
  // lock the event thread needs to apply events. Here the sink stands in
  // for that lock: it blocks until this thread, after two munmap() calls,
  // lets it go. A single read-and-apply thread would deadlock.
  char* a = MapAndWatch(1);
  char* b = MapAndWatch(1);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  sink_.Block();
  {
    TimedRun unmapper([&] {
      munmap(a, kPage);
      munmap(b, kPage);
    });
    ASSERT_TRUE(sink_.WaitUntilSomeoneWaits(10s)) << "the applier never ran";
    if (!unmapper.WaitFor(10s))
      AbortHung("munmap() while the sink was blocked");
  }
  EXPECT_TRUE(Pending());
  sink_.Unblock();
  monitor_->WaitForPending();
  EXPECT_TRUE(sink_.Saw(Addr(a), Addr(a) + kPage - 1, REGCACHE_INVAL_UNMAP));
  EXPECT_TRUE(sink_.Saw(Addr(b), Addr(b) + kPage - 1, REGCACHE_INVAL_UNMAP));
  EXPECT_FALSE(Pending());
}

TEST_F(UffdMonitorTest, GateStaysSetWhileALaterEpochIsUnapplied) {
  // The clear-versus-set race: the applier finishes epoch 1 while epoch 2
  // (already read, its munmap() already returned) is still unapplied. The
  // gate must stay set; a clear that does not re-check `seen` would drop it.
  char* a = MapAndWatch(1);
  char* b = MapAndWatch(1);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  sink_.Block();
  ASSERT_EQ(munmap(a, kPage), 0);
  ASSERT_TRUE(sink_.WaitUntilSomeoneWaits(10s, 0))
      << "a's event never reached the sink";
  ASSERT_EQ(munmap(b, kPage), 0);  // epoch 2: read, not applied
  sink_.Allow(1);                  // a's invalidation completes, then A3
  ASSERT_TRUE(sink_.WaitUntilSomeoneWaits(10s, 1))
      << "b's event never reached the sink";
  EXPECT_TRUE(sink_.Saw(Addr(a), Addr(a) + kPage - 1, REGCACHE_INVAL_UNMAP));
  EXPECT_FALSE(sink_.Saw(Addr(b), Addr(b) + kPage - 1, REGCACHE_INVAL_UNMAP));
  EXPECT_TRUE(Pending()) << "gate cleared while b's invalidation was unapplied";
  sink_.Unblock();
  monitor_->WaitForPending();
  EXPECT_TRUE(sink_.Saw(Addr(b), Addr(b) + kPage - 1, REGCACHE_INVAL_UNMAP));
  EXPECT_FALSE(Pending());
}

TEST_F(UffdMonitorTest, FullQueueMergesInvalidationsInsteadOfBlocking) {
  const size_t pages = 2 * kUffdApplyQueueCapacity + 16;
  char* p = MapAndWatch(pages);
  ASSERT_NE(p, nullptr);
  sink_.Block();
  {
    // One event per page; every munmap() must return although nothing can
    // be applied.
    TimedRun unmapper([&] {
      for (size_t i = 0; i < pages; ++i) munmap(p + i * kPage, kPage);
    });
    if (!unmapper.WaitFor(30s)) AbortHung("munmap() with a full apply queue");
  }
  EXPECT_TRUE(Pending());
  sink_.Unblock();
  monitor_->WaitForPending();
  EXPECT_FALSE(Pending());
  EXPECT_TRUE(sink_.Covers(Addr(p), Addr(p) + pages * kPage - 1));
  const UffdMonitorCounters c = Counters();
  EXPECT_EQ(c.unmap_events, pages);
  EXPECT_GT(c.merged_events, 0u);
  EXPECT_LT(sink_.size(), pages) << "nothing was merged";
}

TEST_F(UffdMonitorTest, ConcurrentMunmapsEachSeeTheirInvalidation) {
  constexpr int kThreads = 4;
  constexpr int kIterations = 200;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIterations; ++i) {
        char* p = MapAnon(2);
        if (p == nullptr) {
          failures.fetch_add(1);
          return;
        }
        p[0] = 1;
        WatchToken token;
        if (monitor_->Watch(Addr(p), Addr(p) + 2 * kPage - 1, &token) != 0) {
          failures.fetch_add(1);
          return;
        }
        const size_t before = sink_.size();
        munmap(p, 2 * kPage);
        const bool pending = Pending();
        if (!pending &&
            !sink_.SawSince(before, Addr(p), Addr(p) + 2 * kPage - 1,
                            REGCACHE_INVAL_UNMAP)) {
          failures.fetch_add(1);
        }
        monitor_->WaitForPending();
        if (!sink_.SawSince(before, Addr(p), Addr(p) + 2 * kPage - 1,
                            REGCACHE_INVAL_UNMAP)) {
          failures.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  // At least one event per munmap(). Not exactly: Watch() registers the
  // 2 MiB window around each range, and whatever else the process unmaps
  // in such a window while the test runs is reported too.
  EXPECT_GE(Counters().unmap_events, uint64_t{kThreads} * kIterations);
}

TEST_F(UffdMonitorTest, WaitForPendingReturnsAtOnceWhenIdle) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i) monitor_->WaitForPending();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

TEST_F(UffdMonitorTest, StopWhileIdleReturnsPromptly) {
  const auto start = std::chrono::steady_clock::now();
  monitor_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  monitor_->Stop();            // idempotent
  monitor_->WaitForPending();  // returns at once after Stop()
}

TEST_F(UffdMonitorTest, MunmapAfterStopDoesNotBlock) {
  // Stop() closes the uffd; the kernel then drops every registration, so a
  // later munmap() has nobody to wait for.
  char* p = MapAndWatch(2);
  ASSERT_NE(p, nullptr);
  monitor_->Stop();
  TimedRun unmapper([&] { munmap(p, 2 * kPage); });
  if (!unmapper.WaitFor(10s)) AbortHung("munmap() after Stop()");
}

TEST_F(UffdMonitorTest, ForkChildRestartsAndSeesItsOwnEvents) {
#if defined(REGCACHE_TEST_TSAN)
  GTEST_SKIP() << "ThreadSanitizer cannot follow threads started in the child "
                  "of a multi-threaded fork (it aborts with \"dup thread with "
                  "used id\"); the plain and ASan runs cover this test";
#endif
  char* inherited = MapAndWatch(2);   // unmapped by the child before restart
  char* inherited2 = MapAndWatch(2);  // ... and after restart
  ASSERT_NE(inherited, nullptr);
  ASSERT_NE(inherited2, nullptr);
  monitor_->WaitForPending();  // nothing in flight while forking
  sink_.Clear();
  const regcache_test::ChildOutcome child =
      regcache_test::RunInChild([&]() -> std::string {
        alarm(20);  // a hang kills the child, which the parent reports
        // Mapped before anything is unmapped, so it cannot land on (and its
        // UNMAP overlap) an inherited range's freed addresses; and in a 2 MiB
        // window of its own, so that the window Watch() registers around it
        // holds no inherited range either.
        char* own = MapHugePageWindow();
        if (own == nullptr) return "mmap failed";
        // The inherited ranges lost their registration in the child:
        // unmapping them must neither block nor be reported.
        if (munmap(inherited, 2 * kPage) != 0) return "munmap inherited failed";
        std::string why;
        gate_.fetch_or(kGateForked);  // what the cache's atfork handler does
        if (int rc = monitor_->RestartInChild(&why); rc != 0) {
          return "RestartInChild: " + std::to_string(rc) + " " + why;
        }
        WatchToken token;
        if (int rc =
                monitor_->Watch(Addr(own), Addr(own) + 3 * kPage - 1, &token);
            rc != 0) {
          return "Watch in child: " + std::to_string(rc);
        }
        if (munmap(inherited2, 2 * kPage) != 0)
          return "munmap inherited2 failed";
        sink_.Block();
        if (munmap(own, 3 * kPage) != 0) return "munmap own failed";
        if ((gate_.load() & kGateEventsPending) == 0) {
          return "gate not set when munmap returned in the child";
        }
        sink_.Unblock();
        monitor_->WaitForPending();
        // Events arrive in order, so own's UNMAP is a fence for inherited2.
        if (!sink_.SawExactly(Addr(own), Addr(own) + 3 * kPage - 1,
                              REGCACHE_INVAL_UNMAP)) {
          return "child missed its UNMAP event";
        }
        if (sink_.CountOverlapping(Addr(inherited),
                                   Addr(inherited) + 2 * kPage - 1) +
                sink_.CountOverlapping(Addr(inherited2),
                                       Addr(inherited2) + 2 * kPage - 1) !=
            0) {
          return "child reported an inherited range";
        }
        monitor_->Stop();
        return "";
      });
  if (child.skipped) GTEST_SKIP() << child.message;
  EXPECT_TRUE(child.passed) << child.message;
  // The parent's registrations are intact.
  ASSERT_EQ(munmap(inherited, 2 * kPage), 0);
  ASSERT_EQ(munmap(inherited2, 2 * kPage), 0);
  monitor_->WaitForPending();
  EXPECT_TRUE(sink_.SawExactly(Addr(inherited), Addr(inherited) + 2 * kPage - 1,
                               REGCACHE_INVAL_UNMAP));
  EXPECT_TRUE(sink_.SawExactly(Addr(inherited2),
                               Addr(inherited2) + 2 * kPage - 1,
                               REGCACHE_INVAL_UNMAP));
}

TEST_F(UffdMonitorTest, ForkChildDoesNotKeepTheParentsUffdAliveAfterStop) {
  // Regression: a child that neither execs nor restarts the monitor keeps
  // its inherited copy of the uffd. If it kept it open, the parent's
  // Stop() would not release the context, the parent's VMAs would stay
  // registered with no reader, and the parent's next munmap() would sleep
  // for ever. The monitor's atfork handler closes the copy in the child.
  char* p = MapAndWatch(2);
  ASSERT_NE(p, nullptr);
  monitor_->WaitForPending();
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(pipe_fds[1]);
    char c;
    while (read(pipe_fds[0], &c, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  close(pipe_fds[0]);
  monitor_->Stop();
  bool hung = false;
  {
    TimedRun unmapper([&] { munmap(p, 2 * kPage); });
    if (!unmapper.WaitFor(10s)) {
      hung = true;
      kill(pid, SIGKILL);  // drops the child's reference: wakes munmap()
    }
  }
  EXPECT_FALSE(hung) << "munmap() in the parent waited for a uffd held open "
                        "only by a fork child";
  close(pipe_fds[1]);
  int status = 0;
  waitpid(pid, &status, 0);
}

// ---- Opening the uffd: privilege, fallbacks and messages (in children) ----

// seccomp actions for FilterUserfaultfd().
constexpr uint32_t kAllow = SECCOMP_RET_ALLOW;
constexpr uint32_t Fail(int err) {
  return SECCOMP_RET_ERRNO | (static_cast<uint32_t>(err) & SECCOMP_RET_DATA);
}

// Installs a seccomp filter deciding userfaultfd(2) by its form: with
// UFFD_USER_MODE_ONLY in the flags, or without. Fail(EPERM) for both is a
// container's policy; Fail(EINVAL) for the first and Fail(EPERM) for the
// second is a kernel older than 5.11 with vm.unprivileged_userfaultfd=0.
// For a forked child only: it cannot be undone.
std::string FilterUserfaultfd(uint32_t user_mode_only, uint32_t full_form) {
  sock_filter filter[] = {
      /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_userfaultfd, 0, 4),
      /* 2 */
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
      /* 3 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, UFFD_USER_MODE_ONLY, 0, 1),
      /* 4 */ BPF_STMT(BPF_RET | BPF_K, user_mode_only),
      /* 5 */ BPF_STMT(BPF_RET | BPF_K, full_form),
      /* 6 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{
      static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return std::string("PR_SET_NO_NEW_PRIVS: ") + strerror(errno);
  }
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    return std::string("PR_SET_SECCOMP: ") + strerror(errno);
  }
  return "";
}

// Switches the (child) process to uid/gid nobody; "" on success.
std::string BecomeNobody() {
  if (setresgid(65534, 65534, 65534) != 0 ||
      setresuid(65534, 65534, 65534) != 0) {
    return std::string("cannot become nobody: ") + strerror(errno);
  }
  return "";
}

// Drops CAP_SYS_PTRACE from the calling thread's effective set.
std::string DropPtraceCapability() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return "capget failed";
  data[CAP_SYS_PTRACE / 32].effective &= ~(1u << (CAP_SYS_PTRACE % 32));
  if (syscall(SYS_capset, &header, data) != 0) return "capset failed";
  return "";
}

int ReadSysctl(const char* path) {
  FILE* f = fopen(path, "r");
  if (f == nullptr) return -1;
  int value = -1;
  if (fscanf(f, "%d", &value) != 1) value = -1;
  fclose(f);
  return value;
}

// Watches a fresh page, unmaps it and checks the event arrives.
std::string ExerciseMonitor(Monitor* monitor) {
  RecordingSink sink;
  std::atomic<uint32_t> gate{0};
  std::string why;
  if (monitor->Start(&sink, &gate, &why) != 0) return "Start: " + why;
  char* p = MapAnon(1);
  WatchToken token;
  if (p == nullptr ||
      monitor->Watch(Addr(p), Addr(p) + kPage - 1, &token) != 0) {
    return "Watch failed";
  }
  munmap(p, kPage);
  monitor->WaitForPending();
  monitor->Stop();
  if (!sink.Saw(Addr(p), Addr(p) + kPage - 1, REGCACHE_INVAL_UNMAP)) {
    return "no UNMAP event";
  }
  return "";
}

TEST(UffdMonitorOpen, WorksWithoutCapSysPtraceWhateverTheSysctlSays) {
  // Linux >= 5.11 allows UFFD_USER_MODE_ONLY without privilege even with
  // vm.unprivileged_userfaultfd=0; the full form then needs CAP_SYS_PTRACE.
  const int sysctl = ReadSysctl("/proc/sys/vm/unprivileged_userfaultfd");
  std::string why;
  if (!CreateUffdMonitor(&why))
    GTEST_SKIP() << "userfaultfd unavailable here: " << why;
  const regcache_test::ChildOutcome child =
      regcache_test::RunInChild([&]() -> std::string {
        if (std::string err = DropPtraceCapability(); !err.empty()) return err;
        const long full = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
        const int full_errno = errno;
        if (full >= 0) close(static_cast<int>(full));
        if (sysctl == 0 && !(full < 0 && full_errno == EPERM)) {
          return "full-form userfaultfd(2) did not fail with EPERM although "
                 "vm.unprivileged_userfaultfd=0 and CAP_SYS_PTRACE is dropped";
        }
        std::string child_why;
        std::unique_ptr<Monitor> monitor = CreateUffdMonitor(&child_why);
        if (!monitor)
          return "CreateUffdMonitor without CAP_SYS_PTRACE: " + child_why;
        return ExerciseMonitor(monitor.get());
      });
  if (child.skipped) GTEST_SKIP() << child.message;
  EXPECT_TRUE(child.passed) << child.message;
  RecordProperty("vm.unprivileged_userfaultfd", sysctl);
}

TEST(UffdMonitorOpen, RetriesWithoutUserModeOnlyOnKernelsOlderThan5_11) {
  std::string why;
  if (!CreateUffdMonitor(&why))
    GTEST_SKIP() << "userfaultfd unavailable here: " << why;
  const regcache_test::ChildOutcome child =
      regcache_test::RunInChild([&]() -> std::string {
        // A pre-5.11 kernel rejects the flag; root may use the full form.
        if (std::string err = FilterUserfaultfd(Fail(EINVAL), kAllow);
            !err.empty()) {
          return regcache_test::kChildSkip + err;
        }
        std::string child_why;
        std::unique_ptr<Monitor> monitor = CreateUffdMonitor(&child_why);
        if (!monitor)
          return "no retry without UFFD_USER_MODE_ONLY: " + child_why;
        return ExerciseMonitor(monitor.get());
      });
  if (child.skipped) GTEST_SKIP() << child.message;
  EXPECT_TRUE(child.passed) << child.message;
}

TEST(UffdMonitorOpen, FallsBackToDevUserfaultfdWhenTheSyscallIsRefused) {
  std::string why;
  if (!CreateUffdMonitor(&why))
    GTEST_SKIP() << "userfaultfd unavailable here: " << why;
  if (access("/dev/userfaultfd", R_OK | W_OK) != 0) {
    GTEST_SKIP()
        << "/dev/userfaultfd is not usable here (Linux < 6.1 or permissions)";
  }
  const regcache_test::ChildOutcome child =
      regcache_test::RunInChild([&]() -> std::string {
        if (std::string err = FilterUserfaultfd(Fail(EPERM), Fail(EPERM));
            !err.empty()) {
          return regcache_test::kChildSkip + err;
        }
        if (syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY) >= 0 ||
            errno != EPERM) {
          return "the seccomp filter did not take";
        }
        std::string child_why;
        std::unique_ptr<Monitor> monitor = CreateUffdMonitor(&child_why);
        if (!monitor) return "no fallback to /dev/userfaultfd: " + child_why;
        return ExerciseMonitor(monitor.get());
      });
  if (child.skipped) GTEST_SKIP() << child.message;
  EXPECT_TRUE(child.passed) << child.message;
}

// Runs CreateUffdMonitor() as nobody under FilterUserfaultfd(user_mode_only,
// full_form) and checks that the failure message contains every `needle`.
void ExpectRefusalMessage(uint32_t user_mode_only, uint32_t full_form,
                          std::vector<std::string> needles) {
  struct stat st;
  if (stat("/dev/userfaultfd", &st) == 0 && (st.st_mode & S_IROTH) &&
      (st.st_mode & S_IWOTH)) {
    GTEST_SKIP() << "/dev/userfaultfd is world-accessible here";
  }
  if (getuid() != 0)
    GTEST_SKIP() << "needs root to switch to an unprivileged uid";
  const regcache_test::ChildOutcome child =
      regcache_test::RunInChild([&]() -> std::string {
        if (std::string err = FilterUserfaultfd(user_mode_only, full_form);
            !err.empty()) {
          return regcache_test::kChildSkip + err;
        }
        if (std::string err = BecomeNobody(); !err.empty()) {
          return regcache_test::kChildSkip + err;
        }
        std::string why;
        if (CreateUffdMonitor(&why))
          return "created a monitor although everything was refused";
        for (const std::string& needle : needles) {
          if (why.find(needle) == std::string::npos) {
            return "the message lacks \"" + needle + "\": " + why;
          }
        }
        return "";
      });
  if (child.skipped) GTEST_SKIP() << child.message;
  EXPECT_TRUE(child.passed) << child.message;
}

TEST(UffdMonitorOpen, SaysHowToFixTheSysctlRefusalOfOldKernels) {
  ExpectRefusalMessage(
      Fail(EINVAL), Fail(EPERM),
      {"vm.unprivileged_userfaultfd=1", "/dev/userfaultfd", "CAP_SYS_PTRACE"});
}

TEST(UffdMonitorOpen, SaysHowToFixAPolicyRefusal) {
  ExpectRefusalMessage(Fail(EPERM), Fail(EPERM),
                       {"seccomp", "/dev/userfaultfd"});
}

TEST(UffdMonitorOpen, NamesSeccompWhenTheSyscallIsBlocked) {
  const regcache_test::ChildOutcome child =
      regcache_test::RunInChild([&]() -> std::string {
        if (std::string err = FilterUserfaultfd(Fail(ENOSYS), Fail(ENOSYS));
            !err.empty()) {
          return regcache_test::kChildSkip + err;
        }
        std::string why;
        if (CreateUffdMonitor(&why))
          return "created a monitor although the syscall is blocked";
        if (why.find("seccomp") == std::string::npos)
          return "no mention of seccomp: " + why;
        return "";
      });
  if (child.skipped) GTEST_SKIP() << child.message;
  EXPECT_TRUE(child.passed) << child.message;
}

TEST(NullMonitor, WatchesEverythingAndReportsNothing) {
  std::unique_ptr<Monitor> monitor = CreateNullMonitor();
  ASSERT_TRUE(monitor);
  EXPECT_EQ(monitor->kind(), REGCACHE_MONITOR_NONE);
  RecordingSink sink;
  std::atomic<uint32_t> gate{0};
  std::string why;
  ASSERT_EQ(monitor->Start(&sink, &gate, &why), 0);
  char* p = MapAnon(1);
  ASSERT_NE(p, nullptr);
  WatchToken token;
  ASSERT_EQ(monitor->Watch(Addr(p), Addr(p) + kPage - 1, &token), 0);
  EXPECT_EQ(token.generation, StaticGeneration());
  EXPECT_EQ(token.expected, StaticGeneration()->load());
  munmap(p, kPage);
  monitor->WaitForPending();
  EXPECT_EQ(sink.size(), 0u);
  EXPECT_EQ(gate.load(), 0u);
  EXPECT_EQ(monitor->RestartInChild(&why), 0);
  monitor->Stop();
}

}  // namespace
