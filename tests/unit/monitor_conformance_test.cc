// SPDX-License-Identifier: BSD-2-Clause
// One conformance suite, run through the cache against every monitor
// (TEST_P, like kselftest's FIXTURE_VARIANT): each way memory can change
// under a cached registration must make the next get register anew (never
// return the registration of the old pages), and the ways that do not
// change the pages (mprotect, fork in the parent) must not cost a
// registration. A monitor this machine lacks is skipped with the reason
// (on the host: kmod, which needs the module; run `ctest -L vm`).
//
// The registrar is CheckingFakeRegistrar: a registration's serial tells
// whether it was made before or after the change ("stale" = before).
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fake_registrar.h"
#include "gtest/gtest.h"
#include "regcache/regcache.h"

namespace {

using regcache_test::CheckingFakeRegistrar;
constexpr uint32_t kLW = REGCACHE_ACCESS_LOCAL_WRITE;

size_t Page() { return size_t(sysconf(_SC_PAGESIZE)); }

char* MapAnon(size_t bytes, void* at = nullptr, int extra = 0) {
  void* p = mmap(at, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<char*>(p);
}

// Whether ExpectInvalidatedBy writes the pages before it caches them.
enum Fill { kUntouched, kWritten };

class MonitorConformance
    : public ::testing::TestWithParam<regcache_monitor_kind> {
 protected:
  void SetUp() override {
    regcache_config cfg;
    ASSERT_EQ(regcache_config_init(&cfg), 0) << regcache_last_error();
    cfg.monitor = GetParam();
    cfg.max_bytes = 0;
    // The monitors are what is tested: every range is cached, so every
    // change below meets a cached entry. (The adaptive admission would
    // serve a recycled address that never hits uncached;
    // MonitorConformanceAdaptive runs the concurrent tests with it.)
    cfg.admission = admission_;
    reg_ = fake_.registrar();
    int rc = regcache_create(&reg_, &cfg, &cache_);
    if (rc == -ENODEV) GTEST_SKIP() << regcache_last_error();
    ASSERT_EQ(rc, 0) << regcache_last_error();
  }
  void TearDown() override {
    if (cache_ != nullptr) {
      EXPECT_EQ(regcache_destroy(cache_), 0) << regcache_last_error();
    }
    EXPECT_EQ(fake_.violations(), 0u);
  }

  // Gets and puts [p, p+len); returns the registration's serial.
  uint64_t Touch(const void* p, size_t len) {
    regcache_handle_t* h = nullptr;
    int rc = regcache_get(cache_, p, len, kLW, &h);
    EXPECT_EQ(rc, 0) << regcache_last_error();
    if (rc != 0) return 0;
    uint64_t serial =
        CheckingFakeRegistrar::RecordOf(regcache_handle_mr(h))->serial;
    EXPECT_EQ(regcache_put(cache_, h), 0) << regcache_last_error();
    return serial;
  }
  struct regcache_stats Stats() {
    struct regcache_stats s;
    regcache_stats(cache_, &s);
    return s;
  }
  // Asserts that the next get of [p, p+len) is not served by a registration
  // made before `before` (the serial at the time of the change).
  void ExpectFresh(const void* p, size_t len, uint64_t before,
                   const char* what) {
    EXPECT_GT(Touch(p, len), before)
        << what << ": the cache returned a registration of the old pages";
  }

  // Tests that free an address and map it again expect to get the same
  // address back; another thread's mmap can take it first (seen under ASan).
  // MapFreedAgain() notices, and the body runs again with fresh memory.
  template <typename Body>
  void RetryIfAddressTaken(Body body) {
    for (int attempt = 0; attempt < 10; ++attempt) {
      address_taken_ = false;
      body();
      if (!address_taken_ || HasFatalFailure()) return;
    }
    FAIL() << "another mapping took the freed address 10 times in a row";
  }
  // Maps the freed [at, at+len) again, so that a registration of the old
  // pages would cover live memory. False if another mapping took the
  // address: the caller returns, and RetryIfAddressTaken runs it again.
  bool MapFreedAgain(char* at, size_t len) {
    address_taken_ = MapAnon(len, at, MAP_FIXED_NOREPLACE) != at;
    return !address_taken_;
  }

  // What most tests below check: `len` fresh bytes are cached, `change(p)`
  // replaces some of their pages (mapping freed ones again with
  // MapFreedAgain), and the next get of [p, p+len) must register anew.
  // `then(p)` checks more before the bytes are unmapped.
  template <typename Change, typename Then>
  void ExpectInvalidatedBy(const char* what, size_t len, Fill fill,
                           Change change, Then then) {
    RetryIfAddressTaken([&] {
      char* p = MapAnon(len);
      ASSERT_NE(p, nullptr);
      if (fill == kWritten) memset(p, 1, len);
      Touch(p, len);
      const uint64_t before = fake_.last_serial();
      change(p);
      if (HasFatalFailure() || address_taken_) return;
      ExpectFresh(p, len, before, what);
      then(p);
      munmap(p, len);
    });
  }
  template <typename Change>
  void ExpectInvalidatedBy(const char* what, size_t len, Fill fill,
                           Change change) {
    ExpectInvalidatedBy(what, len, fill, change, [](char*) {});
  }

  void ConcurrentRemapOfOwnBuffers();
  void AddressReusedByAnotherThread();

  regcache_admission admission_ = REGCACHE_ADMISSION_ALWAYS;
  CheckingFakeRegistrar fake_;
  regcache_registrar reg_{};
  regcache_t* cache_ = nullptr;
  bool address_taken_ = false;
};

// The concurrent tests again with the default, adaptive admission: gets
// served uncached and cached probes mixed with invalidations.
class MonitorConformanceAdaptive : public MonitorConformance {
 protected:
  MonitorConformanceAdaptive() { admission_ = REGCACHE_ADMISSION_ADAPTIVE; }
};

TEST_P(MonitorConformance, MunmapThenRemapSameAddressInvalidates) {
  const size_t len = 4 * Page();
  ExpectInvalidatedBy(
      "munmap", len, kUntouched,
      [&](char* p) {
        ASSERT_EQ(munmap(p, len), 0);
        MapFreedAgain(p, len);
      },
      [&](char*) {
        EXPECT_GE(Stats().invalidations[REGCACHE_INVAL_UNMAP], 1u);
      });
}

TEST_P(MonitorConformance, RawSyscallMunmapInvalidates) {
  // What malloc/munmap hooks (e.g. UCX's ucm) cannot see.
  const size_t len = 2 * Page();
  ExpectInvalidatedBy("syscall(SYS_munmap)", len, kUntouched, [&](char* p) {
    ASSERT_EQ(syscall(SYS_munmap, p, len), 0);
    MapFreedAgain(p, len);
  });
}

TEST_P(MonitorConformance, PartialMunmapInvalidatesTheWholeEntry) {
  ExpectInvalidatedBy("partial munmap", 8 * Page(), kUntouched, [&](char* p) {
    ASSERT_EQ(munmap(p + 3 * Page(), Page()), 0);
    MapFreedAgain(p + 3 * Page(), Page());
  });
  // A range next to it that was never cached is unaffected: no crash, works.
}

TEST_P(MonitorConformance, MremapMoveInvalidatesTheOldRange) {
  const size_t len = 4 * Page();
  char* target = MapAnon(len);
  ASSERT_NE(target, nullptr);
  ExpectInvalidatedBy("mremap move", len, kUntouched, [&](char* p) {
    void* moved = mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, target);
    ASSERT_EQ(moved, target);
    MapFreedAgain(p, len);
  });
  munmap(target, len);
}

TEST_P(MonitorConformance, MremapShrinkInvalidates) {
  const size_t len = 8 * Page();
  ExpectInvalidatedBy("mremap shrink", len, kUntouched, [&](char* p) {
    ASSERT_EQ(mremap(p, len, 4 * Page(), 0), p);
    MapFreedAgain(p + 4 * Page(), 4 * Page());
  });
}

TEST_P(MonitorConformance, MapFixedOverInvalidates) {
  ExpectInvalidatedBy("MAP_FIXED over", 4 * Page(), kUntouched, [](char* p) {
    ASSERT_EQ(MapAnon(2 * Page(), p + Page(), MAP_FIXED), p + Page());
  });
}

TEST_P(MonitorConformance, MadviseDontneedInvalidates) {
  ExpectInvalidatedBy(
      "madvise(DONTNEED)", 4 * Page(), kWritten,
      [](char* p) { ASSERT_EQ(madvise(p + Page(), Page(), MADV_DONTNEED), 0); },
      [&](char* p) {
        EXPECT_GE(Stats().invalidations[REGCACHE_INVAL_REMOVE], 1u);
        p[Page()] = 2;  // touching after DONTNEED must not hang (uffd WP mode)
      });
}

TEST_P(MonitorConformance, MadviseFreeInvalidates) {
  const size_t len = 4 * Page();
  ExpectInvalidatedBy("madvise(FREE)", len, kWritten, [&](char* p) {
    ASSERT_EQ(madvise(p, len, MADV_FREE), 0);
  });
}

TEST_P(MonitorConformance, BrkShrinkInvalidates) {
  // Grow the heap by a few pages of our own, cache them, shrink it back.
  void* start = sbrk(0);
  const size_t len = 4 * Page();
  char* top = static_cast<char*>(start);
  char* aligned =
      reinterpret_cast<char*>((uintptr_t(top) + Page() - 1) & ~(Page() - 1));
  const size_t grow = size_t(aligned - top) + len;
  ASSERT_NE(sbrk(intptr_t(grow)), reinterpret_cast<void*>(-1));
  memset(aligned, 1, len);
  Touch(aligned, len);
  const uint64_t before = fake_.last_serial();
  ASSERT_NE(sbrk(-intptr_t(grow)), reinterpret_cast<void*>(-1));
  ASSERT_NE(sbrk(intptr_t(grow)), reinterpret_cast<void*>(-1));
  ExpectFresh(aligned, len, before, "brk shrink");
  sbrk(-intptr_t(grow));
}

TEST_P(MonitorConformance, ShmdtInvalidatesOrIsNotCached) {
  RetryIfAddressTaken([&] {
    const size_t len = 4 * Page();
    int id = shmget(IPC_PRIVATE, len, IPC_CREAT | 0600);
    if (id < 0) GTEST_SKIP() << "shmget: " << strerror(errno);
    char* p = static_cast<char*>(shmat(id, nullptr, 0));
    shmctl(id, IPC_RMID, nullptr);
    ASSERT_NE(p, reinterpret_cast<char*>(-1));
    Touch(p, len);
    const uint64_t before = fake_.last_serial();
    ASSERT_EQ(shmdt(p), 0);
    if (!MapFreedAgain(p, len)) return;
    ExpectFresh(p, len, before, "shmdt");
    munmap(p, len);
  });
}

// A temporary file, preferably on a disk filesystem (not tmpfs: a tmpfs
// file is shmem, which userfaultfd can watch). Returns -1 on failure.
int OpenTempFile(bool* on_shmem) {
  const char* dirs[] = {getenv("REGCACHE_TEST_FILE_DIR"), ".", "/var/tmp",
                        "/tmp"};
  int fallback = -1;
  for (const char* dir : dirs) {
    if (dir == nullptr) continue;
    std::string path = std::string(dir) + "/regcache-conformance-XXXXXX";
    int fd = mkstemp(path.data());
    if (fd < 0) continue;
    unlink(path.c_str());
    struct statfs fs;
    const bool shmem = fstatfs(fd, &fs) == 0 && fs.f_type == TMPFS_MAGIC;
    if (!shmem) {
      if (fallback >= 0) close(fallback);
      *on_shmem = false;
      return fd;
    }
    if (fallback < 0)
      fallback = fd;
    else
      close(fd);
  }
  *on_shmem = true;
  return fallback;
}

TEST_P(MonitorConformance, FileBackedMappingIsNeverServedStale) {
  RetryIfAddressTaken([&] {
    bool on_shmem = false;
    int fd = OpenTempFile(&on_shmem);
    ASSERT_GE(fd, 0);
    const size_t len = 4 * Page();
    ASSERT_EQ(ftruncate(fd, off_t(len)), 0);
    char* p = static_cast<char*>(
        mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    ASSERT_NE(p, MAP_FAILED);
    Touch(p, len);
    const uint64_t second = Touch(p, len);
    const struct regcache_stats s = Stats();
    // kmod watches every mapping; uffd cannot watch files on disk filesystems
    // (its blind spot), so the cache registers per use instead: slower, never
    // stale. A tmpfs file is shmem, which uffd watches.
    std::printf(
        "[ %s ] %s file mapping: %s\n", regcache_monitor_name(GetParam()),
        on_shmem ? "tmpfs" : "disk",
        s.uncacheable != 0 ? "not cacheable (registered per use)" : "cached");
    if (GetParam() == REGCACHE_MONITOR_UFFD && !on_shmem) {
      EXPECT_EQ(s.uncacheable, 2u);
    } else {
      EXPECT_EQ(s.hits, 1u);
    }
    const uint64_t before = std::max(second, fake_.last_serial());
    ASSERT_EQ(munmap(p, len), 0);
    if (!MapFreedAgain(p, len)) return;
    ExpectFresh(p, len, before, "munmap of a file mapping");
    munmap(p, len);
    close(fd);
  });
}

TEST_P(MonitorConformance, MprotectDoesNotInvalidate) {
  const size_t len = 4 * Page();
  char* p = MapAnon(len);
  char* fence = MapAnon(Page());
  ASSERT_NE(p, nullptr);
  memset(p, 1, len);
  const uint64_t first = Touch(p, len);
  Touch(fence, Page());
  ASSERT_EQ(mprotect(p, len, PROT_READ), 0);
  ASSERT_EQ(mprotect(p, len, PROT_READ | PROT_WRITE), 0);
  // Events arrive in order: once the fence's unmap is seen, anything
  // mprotect could have caused has been seen too.
  munmap(fence, Page());
  EXPECT_EQ(Touch(p, len), first) << "mprotect evicted a registration";
  EXPECT_EQ(Stats().invalidations[REGCACHE_INVAL_UNMAP] +
                Stats().invalidations[REGCACHE_INVAL_REMOVE] +
                Stats().invalidations[REGCACHE_INVAL_REMAP],
            1u);  // the fence only
  munmap(p, len);
}

TEST_P(MonitorConformance, ForkInTheParentDoesNotInvalidate) {
  const size_t len = 4 * Page();
  char* p = MapAnon(len);
  ASSERT_NE(p, nullptr);
  memset(p, 1, len);
  const uint64_t first = Touch(p, len);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(p[0] == 1 ? 0 : 1);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(Touch(p, len), first) << "fork evicted the parent's registration";
  munmap(p, len);
}

TEST_P(MonitorConformance, ConcurrentRemapOfOwnBuffersNeverReturnsStale) {
  ConcurrentRemapOfOwnBuffers();
}
TEST_P(MonitorConformanceAdaptive,
       ConcurrentRemapOfOwnBuffersNeverReturnsStale) {
  ConcurrentRemapOfOwnBuffers();
}

void MonitorConformance::ConcurrentRemapOfOwnBuffers() {
  // Each thread replaces its own buffer (MAP_FIXED over it, madvise
  // DONTNEED, or unmapping it to a PROT_NONE reservation and mapping it
  // again), many times, while the other threads do the same: events,
  // registrations and reclaims all race. Each thread's addresses are
  // reserved before the threads start and never leave a hole another
  // thread's mmap could take (that cross-thread reuse is uffd's documented
  // window, tested by AddressReusedByAnotherThreadIsNeverStale). Finishing
  // proves no deadlock; the serial check proves no stale entry.
  const int kThreads = 4, kRounds = 400;
  std::vector<char*> reserved(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    reserved[t] = static_cast<char*>(mmap(nullptr, (1 + t) * Page(), PROT_NONE,
                                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(reserved[t], MAP_FAILED);
  }
  std::atomic<int> stale{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const size_t len = (1 + t) * Page();
      char* const p = reserved[t];
      auto map_rw = [&] { return MapAnon(len, p, MAP_FIXED) == p; };
      if (!map_rw()) {
        errors++;
        return;
      }
      for (int i = 0; i < kRounds; ++i) {
        const uint64_t before = fake_.last_serial();
        bool ok = true;
        switch (i % 3) {
          case 0:
            ok = map_rw();
            break;
          case 1:
            ok = madvise(p, len, MADV_DONTNEED) == 0;
            break;
          case 2:  // unmap (to a reservation: no hole), then map again
            ok = mmap(p, len, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == p &&
                 map_rw();
            break;
        }
        if (!ok) {
          errors++;
          return;
        }
        for (int k = 0; k < 2; ++k) {
          regcache_handle_t* h = nullptr;
          if (regcache_get(cache_, p, len, kLW, &h) != 0) {
            errors++;
            break;
          }
          auto* rec = CheckingFakeRegistrar::RecordOf(regcache_handle_mr(h));
          if (rec->serial <= before && stale++ == 0) {
            std::printf(
                "first stale: thread %d round %d (kind %d) get %d: [%p,+%zu) "
                "served by registration %llu [0x%llx,+%zu), serial before "
                "%llu\n",
                t, i, i % 3, k, static_cast<void*>(p), len,
                static_cast<unsigned long long>(rec->serial),
                static_cast<unsigned long long>(rec->addr), rec->length,
                static_cast<unsigned long long>(before));
          }
          regcache_put(cache_, h);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) munmap(reserved[t], (1 + t) * Page());
  EXPECT_EQ(errors.load(), 0) << regcache_last_error();
  EXPECT_EQ(stale.load(), 0);
}

TEST_P(MonitorConformance, AddressReusedByAnotherThreadIsNeverStale) {
  AddressReusedByAnotherThread();
}
TEST_P(MonitorConformanceAdaptive, AddressReusedByAnotherThreadIsNeverStale) {
  AddressReusedByAnotherThread();
}

void MonitorConformance::AddressReusedByAnotherThread() {
  // Thread A unmaps; thread B maps and gets the same address at once. The
  // kernel frees the range, then drops mmap_lock, then queues uffd's UNMAP
  // event and waits for it to be read: B can map and hit in between. Only a
  // synchronous mmu_notifier (kmod) closes that window.
  if (GetParam() == REGCACHE_MONITOR_UFFD) {
    GTEST_SKIP() << "uffd cannot close this window: another thread can map "
                    "the freed address before the UNMAP event is read "
                    "(docs/design.md, 'What uffd cannot see')";
  }
  const int kThreads = 4, kRounds = 300;
  std::atomic<int> stale{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const size_t len = (1 + t) * Page();
      for (int i = 0; i < kRounds; ++i) {
        const uint64_t before = fake_.last_serial();
        char* p = MapAnon(len);
        if (p == nullptr) {
          errors++;
          continue;
        }
        regcache_handle_t* h = nullptr;
        if (regcache_get(cache_, p, len, kLW, &h) != 0) {
          errors++;
          munmap(p, len);
          continue;
        }
        if (CheckingFakeRegistrar::RecordOf(regcache_handle_mr(h))->serial <=
            before)
          stale++;
        regcache_put(cache_, h);
        munmap(p, len);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0) << regcache_last_error();
  EXPECT_EQ(stale.load(), 0);
}

std::string MonitorName(
    const ::testing::TestParamInfo<regcache_monitor_kind>& info) {
  return regcache_monitor_name(info.param);
}

INSTANTIATE_TEST_SUITE_P(Monitors, MonitorConformance,
                         ::testing::Values(REGCACHE_MONITOR_UFFD,
                                           REGCACHE_MONITOR_KMOD),
                         MonitorName);
INSTANTIATE_TEST_SUITE_P(Monitors, MonitorConformanceAdaptive,
                         ::testing::Values(REGCACHE_MONITOR_UFFD,
                                           REGCACHE_MONITOR_KMOD),
                         MonitorName);

}  // namespace
