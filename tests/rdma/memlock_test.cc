// SPDX-License-Identifier: BSD-2-Clause
// RLIMIT_MEMLOCK with real ibv_reg_mr (rxe) through the cache, as a normal
// user with the 64 KiB limit that broke UCX (openucx/ucx issue 8229).
//
// The test runs as root in the VM and forks a child that lowers
// RLIMIT_MEMLOCK (soft and hard) to 64 KiB, drops to uid/gid 65534 with no
// supplementary groups (so no CAP_IPC_LOCK), opens the device itself and
// creates a cache with the default configuration. In the child:
//   - a 32 KiB get works;
//   - gets that together exceed 64 KiB succeed while an unused earlier
//     entry exists, by evicting it (stats.evictions > 0), and the
//     registrations carry a real RDMA WRITE;
//   - a get that cannot fit while everything is in use fails with
//     -ENOMEM/-EAGAIN and regcache_last_error() names RLIMIT_MEMLOCK;
//   - a single get larger than 64 KiB fails the same way, cleanly;
//   - the cache still works afterwards, and nothing leaks (the PD frees).
// The same flow as root without a limit registers everything.
// The child reports through a pipe and its exit status (RunInChild).
#include <errno.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "loopback_rc.h"
#include "rdma_test_util.h"
#include "regcache/regcache.h"
#include "test_util.h"

namespace regcache_rdma_test {
namespace {

using regcache_test::ChildOutcome;
using regcache_test::RunInChild;

constexpr rlim_t kMemlock = 64 * 1024;
constexpr size_t kEntry = 32 * 1024;
constexpr size_t kSmall = 4 * 1024;
constexpr size_t kTooBig = 128 * 1024;
constexpr uid_t kNobody = 65534;

// The effective capability mask from /proc/self/status, or ~0 on error.
uint64_t EffectiveCaps() {
  FILE* f = fopen("/proc/self/status", "r");
  if (f == nullptr) return ~uint64_t{0};
  char line[256];
  unsigned long long caps = ~0ull;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (sscanf(line, "CapEff: %llx", &caps) == 1) break;
  }
  fclose(f);
  return caps;
}

std::string ErrnoName(int negative) {
  switch (-negative) {
    case ENOMEM:
      return "-ENOMEM";
    case EAGAIN:
      return "-EAGAIN";
    case EFAULT:
      return "-EFAULT";
    case EINVAL:
      return "-EINVAL";
    default:
      return std::to_string(negative);
  }
}

// Every check of the flow; the first failure ends it with a message.
class Flow {
 public:
  Flow(const char* who, bool limited) : who_(who), limited_(limited) {}

  std::string Run(regcache_monitor_kind monitor) {
    std::string message;
    if (LoopbackRc::Open(&rc_, &message) != LoopbackRc::OpenResult::kOk)
      return "opening the device as " + who_ + ": " + message;
    regcache_config config;
    if (regcache_config_init(&config) != 0) return regcache_last_error();
    config.monitor = monitor;
    if (limited_ && config.max_bytes != kMemlock) {
      return "the default max_bytes is " + std::to_string(config.max_bytes) +
             ", not the soft RLIMIT_MEMLOCK " + std::to_string(kMemlock);
    }
    if (regcache_registrar_ibverbs(rc_->pd(), &registrar_) != 0)
      return regcache_last_error();
    if (regcache_create(&registrar_, &config, &cache_) != 0)
      return std::string("regcache_create: ") + regcache_last_error();
    std::string result = Steps();
    for (regcache_handle_t* h : held_) regcache_put(cache_, h);
    held_.clear();
    if (regcache_destroy(cache_) != 0 && result.empty())
      result = std::string("regcache_destroy: ") + regcache_last_error();
    cache_ = nullptr;
    if (memory_ != nullptr) munmap(memory_, kMemory);
    const std::string closed = rc_->Close();
    if (result.empty() && !closed.empty()) result = "after destroy: " + closed;
    rc_.reset();
    return result;
  }

 private:
  static constexpr size_t kMemory = 1024 * 1024;

  char* At(size_t offset) { return memory_ + offset; }
  void Say(const std::string& line) {
    printf("[%s, %s] %s\n", who_.c_str(),
           regcache_monitor_name(StatsOf(cache_).monitor), line.c_str());
    fflush(stdout);
  }
  int Get(char* p, size_t length, regcache_handle_t** h) {
    return regcache_get(cache_, p, length, kRemoteWriteAccess, h);
  }
  std::string Fail(const std::string& what, int rc) {
    return who_ + ": " + what + " returned " + ErrnoName(rc) + ": " +
           regcache_last_error();
  }
  // An expected failure for want of pinnable memory: -ENOMEM or -EAGAIN
  // and a message naming RLIMIT_MEMLOCK.
  std::string ExpectMemlockFailure(const std::string& what, int rc) {
    if (rc == 0) return who_ + ": " + what + " succeeded under the limit";
    const std::string text = regcache_last_error();
    if (rc != -ENOMEM && rc != -EAGAIN) return Fail(what, rc);
    if (text.find("RLIMIT_MEMLOCK") == std::string::npos)
      return who_ + ": " + what +
             ": the message does not name RLIMIT_MEMLOCK: " + text;
    Say(what + " failed as it should: " + ErrnoName(rc) + ": " + text);
    return "";
  }

  std::string Steps() {
    memory_ = MapAnon(kMemory);
    if (memory_ == nullptr) return "mmap failed";
    memset(memory_, 0, kMemory);
    char* a = At(0);
    char* b = At(128 * 1024);
    char* c = At(256 * 1024);
    char* d = At(384 * 1024);
    char* e = At(512 * 1024);
    regcache_handle_t *ha, *hb, *hc, *hd, *he;

    // A 32 KiB get works; released, it stays cached (unused).
    int rc = Get(a, kEntry, &ha);
    if (rc != 0) return Fail("32 KiB get", rc);
    regcache_put(cache_, ha);
    // Another 32 KiB, held: 64 KiB pinned, the whole limit.
    rc = Get(b, kEntry, &hb);
    if (rc != 0) return Fail("second 32 KiB get (64 KiB pinned in all)", rc);
    held_.push_back(hb);
    // A third cannot fit beside both: the cache must evict the unused one.
    rc = Get(c, kEntry, &hc);
    if (rc != 0) return Fail("third 32 KiB get (needs eviction)", rc);
    held_.push_back(hc);
    struct regcache_stats s = StatsOf(cache_);
    if (limited_) {
      if (s.evictions == 0)
        return who_ +
               ": 96 KiB registered under a 64 KiB limit without "
               "an eviction";
      if (s.pinned_bytes_now != 2 * kEntry)
        return who_ + ": " + std::to_string(s.pinned_bytes_now) +
               " bytes pinned after the eviction, expected 64 KiB";
    } else if (s.evictions != 0) {
      return who_ + ": evicted without a limit";
    }
    Say("three 32 KiB gets under the limit: evictions " +
        std::to_string(s.evictions) + ", pinned now " +
        std::to_string(s.pinned_bytes_now) + " bytes");

    // The registrations are real: RDMA WRITE from B to C.
    FillPattern(b, kEntry, 77);
    std::string error;
    const int status =
        rc_->Write(b, kEntry, regcache_handle_mr(hb)->lkey, Addr(c),
                   regcache_handle_mr(hc)->rkey, &error);
    if (status != IBV_WC_SUCCESS) return who_ + ": RDMA WRITE B -> C: " + error;
    if (MismatchAt(c, kEntry, 77) != -1)
      return who_ + ": the RDMA WRITE did not arrive";

    // Everything in use: one more page cannot be pinned.
    rc = Get(d, kSmall, &hd);
    if (limited_) {
      std::string m = ExpectMemlockFailure("4 KiB get with 64 KiB in use", rc);
      if (!m.empty()) return m;
    } else {
      if (rc != 0) return Fail("4 KiB get", rc);
      regcache_put(cache_, hd);
    }
    for (regcache_handle_t* h : held_) regcache_put(cache_, h);
    held_.clear();

    // A single get above the limit fails even after evicting everything.
    rc = Get(e, kTooBig, &he);
    if (limited_) {
      std::string m = ExpectMemlockFailure("128 KiB get", rc);
      if (!m.empty()) return m;
      s = StatsOf(cache_);
      if (s.in_use_now != 0) return who_ + ": a handle is still counted";
    } else {
      if (rc != 0) return Fail("128 KiB get", rc);
      regcache_put(cache_, he);
    }

    // Still usable afterwards.
    rc = Get(a, kEntry, &ha);
    if (rc != 0) return Fail("32 KiB get after the failures", rc);
    regcache_put(cache_, ha);
    s = StatsOf(cache_);
    Say("done: registrations " + std::to_string(s.registrations) +
        ", registration errors " + std::to_string(s.registration_errors) +
        ", evictions " + std::to_string(s.evictions));
    return "";
  }

  std::string who_;
  bool limited_;
  std::unique_ptr<LoopbackRc> rc_;
  regcache_registrar registrar_{};
  regcache_t* cache_ = nullptr;
  char* memory_ = nullptr;
  std::vector<regcache_handle_t*> held_;
};

class Memlock : public ::testing::TestWithParam<regcache_monitor_kind> {
 protected:
  void SetUp() override {
    std::string why;
    if (!LoopbackRc::AnyDevice(&why)) GTEST_SKIP() << why;
    if (geteuid() != 0)
      GTEST_SKIP() << "needs root to switch to uid " << kNobody
                   << " (the VM runs the tests as root)";
    // The verbs device must be usable by the unprivileged child, as
    // rdma-core's udev rules make it on a real system.
    for (int i = 0; i < 8; ++i) {
      const std::string path = "/dev/infiniband/uverbs" + std::to_string(i);
      struct stat st;
      if (stat(path.c_str(), &st) != 0) continue;
      if ((st.st_mode & 0006) != 0006) {
        ASSERT_EQ(chmod(path.c_str(), 0666), 0)
            << path << ": " << strerror(errno);
        printf("made %s mode 0666 (was %04o)\n", path.c_str(),
               unsigned(st.st_mode & 07777));
      }
    }
    if (GetParam() == REGCACHE_MONITOR_KMOD) {
      struct stat st;
      if (stat("/dev/regcache", &st) != 0)
        GTEST_SKIP() << "/dev/regcache is absent: the regcache module is not "
                        "loaded (tests/vm/run-in-vm.sh --module ...)";
      if ((st.st_mode & 0006) != 0006) {
        ASSERT_EQ(chmod("/dev/regcache", 0666), 0) << strerror(errno);
      }
    }
  }
};

TEST_P(Memlock, UnprivilegedUserWith64KiBLimitEvictsThenFailsCleanly) {
  const regcache_monitor_kind monitor = GetParam();
  const ChildOutcome outcome = RunInChild([monitor]() -> std::string {
    alarm(240);
    rlimit limit{kMemlock, kMemlock};
    if (setrlimit(RLIMIT_MEMLOCK, &limit) != 0)
      return std::string("setrlimit: ") + strerror(errno);
    if (setgroups(0, nullptr) != 0)
      return std::string("setgroups: ") + strerror(errno);
    if (setgid(kNobody) != 0) return std::string("setgid: ") + strerror(errno);
    if (setuid(kNobody) != 0) return std::string("setuid: ") + strerror(errno);
    if (geteuid() != kNobody || getegid() != kNobody)
      return "still not uid/gid 65534";
    if (EffectiveCaps() != 0) return "capabilities left after setuid";
    return Flow("uid 65534, memlock 64 KiB", /*limited=*/true).Run(monitor);
  });
  if (outcome.skipped) GTEST_SKIP() << outcome.message;
  EXPECT_TRUE(outcome.passed) << outcome.message;
}

TEST_P(Memlock, RootWithoutLimitRegistersEverything) {
  const regcache_monitor_kind monitor = GetParam();
  const ChildOutcome outcome = RunInChild([monitor]() -> std::string {
    alarm(240);
    rlimit limit{RLIM_INFINITY, RLIM_INFINITY};
    if (setrlimit(RLIMIT_MEMLOCK, &limit) != 0)
      return std::string("setrlimit(unlimited): ") + strerror(errno);
    return Flow("root, memlock unlimited", /*limited=*/false).Run(monitor);
  });
  if (outcome.skipped) GTEST_SKIP() << outcome.message;
  EXPECT_TRUE(outcome.passed) << outcome.message;
}

std::string MonitorParamName(
    const ::testing::TestParamInfo<regcache_monitor_kind>& info) {
  return regcache_monitor_name(info.param);
}

INSTANTIATE_TEST_SUITE_P(Monitors, Memlock,
                         ::testing::Values(REGCACHE_MONITOR_KMOD,
                                           REGCACHE_MONITOR_UFFD),
                         MonitorParamName);

}  // namespace
}  // namespace regcache_rdma_test
