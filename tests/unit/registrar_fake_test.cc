// SPDX-License-Identifier: BSD-2-Clause
// Tests of regcache_registrar_fake(): keys, argument checks, and the
// "fake-mlock" variant's locking as seen in /proc/self/status VmLck,
// including overlapping registrations and RLIMIT_MEMLOCK without
// CAP_IPC_LOCK (in a forked child).
#include <errno.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "regcache/regcache.h"
#include "test_util.h"

namespace {

using regcache_test::VmLckKiB;

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));
const long kPageKiB = static_cast<long>(kPage / 1024);

// An anonymous private mapping, unmapped on destruction.
class Mapping {
 public:
  explicit Mapping(size_t pages) : length_(pages * kPage) {
    addr_ = static_cast<char*>(mmap(nullptr, length_, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (addr_ == MAP_FAILED) addr_ = nullptr;
  }
  ~Mapping() {
    if (addr_ != nullptr) munmap(addr_, length_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  char* page(size_t i) const { return addr_ + i * kPage; }
  char* addr() const { return addr_; }

 private:
  char* addr_;
  size_t length_;
};

// reg as the cache calls it: the cache fills addr/length/access, then reg.
int Reg(const regcache_registrar& r, void* addr, size_t length, uint32_t access,
        regcache_mr* mr) {
  *mr = regcache_mr{};
  mr->addr = addr;
  mr->length = length;
  mr->access = access;
  return r.reg(r.ctx, addr, length, access, mr);
}

TEST(RegistrarFake, KeysIncreaseAndAreUnique) {
  regcache_registrar r;
  ASSERT_EQ(regcache_registrar_fake(0, &r), 0);
  EXPECT_STREQ(r.name, "fake");
  Mapping m(1);
  ASSERT_NE(m.addr(), nullptr);
  uint64_t previous = 0;
  for (int i = 0; i < 1000; ++i) {
    regcache_mr mr;
    ASSERT_EQ(Reg(r, m.addr(), kPage, REGCACHE_ACCESS_ALL, &mr), 0);
    EXPECT_GT(mr.key, previous);
    EXPECT_EQ(mr.lkey, static_cast<uint32_t>(mr.key));
    EXPECT_EQ(mr.rkey, static_cast<uint32_t>(mr.key));
    EXPECT_EQ(mr.desc, nullptr);
    EXPECT_EQ(mr.backend, nullptr);
    EXPECT_EQ(mr.access, static_cast<uint32_t>(REGCACHE_ACCESS_ALL));
    previous = mr.key;
    EXPECT_EQ(r.dereg(r.ctx, &mr), 0);
  }
}

TEST(RegistrarFake, KeysAreUniqueAcrossThreadsAndVariants) {
  regcache_registrar plain, locking;
  ASSERT_EQ(regcache_registrar_fake(0, &plain), 0);
  ASSERT_EQ(regcache_registrar_fake(1, &locking), 0);
  EXPECT_STREQ(locking.name, "fake-mlock");
  Mapping m(4);
  ASSERT_NE(m.addr(), nullptr);
  std::mutex mu;
  std::set<uint64_t> keys;
  size_t total = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const regcache_registrar& r = (t % 2 == 0) ? plain : locking;
      std::vector<uint64_t> mine;
      for (int i = 0; i < 500; ++i) {
        regcache_mr mr;
        if (Reg(r, m.page(t), kPage, 0, &mr) != 0) break;
        mine.push_back(mr.key);
        if (r.dereg(r.ctx, &mr) != 0) break;
      }
      std::lock_guard<std::mutex> lock(mu);
      keys.insert(mine.begin(), mine.end());
      total += mine.size();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(total, 2000u);
  EXPECT_EQ(keys.size(), total) << "a key was handed out twice";
  EXPECT_EQ(keys.count(0), 0u);
}

TEST(RegistrarFake, RejectsBadArguments) {
  EXPECT_EQ(regcache_registrar_fake(0, nullptr), -EINVAL);
  for (int lock_memory = 0; lock_memory <= 1; ++lock_memory) {
    SCOPED_TRACE(lock_memory ? "fake-mlock" : "fake");
    regcache_registrar r;
    ASSERT_EQ(regcache_registrar_fake(lock_memory, &r), 0);
    Mapping m(1);
    ASSERT_NE(m.addr(), nullptr);
    regcache_mr mr;
    EXPECT_EQ(Reg(r, m.addr(), 0, 0, &mr), -EINVAL) << "length 0";
    EXPECT_EQ(Reg(r, reinterpret_cast<void*>(UINTPTR_MAX - 10), 100, 0, &mr),
              -EINVAL)
        << "range wraps";
    EXPECT_EQ(Reg(r, m.addr(), kPage, 1u << 20, &mr), -EINVAL) << "access bits";
  }
}

class RegistrarFakeMlock : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(regcache_registrar_fake(1, &r_), 0);
    baseline_kib_ = VmLckKiB();
    if (baseline_kib_ < 0) GTEST_SKIP() << "no VmLck in /proc/self/status";
  }
  void TearDown() override {
    if (baseline_kib_ >= 0) {
      EXPECT_EQ(VmLckKiB(), baseline_kib_) << "the test left memory locked";
    }
  }
  long LockedPages() const { return (VmLckKiB() - baseline_kib_) / kPageKiB; }

  regcache_registrar r_;
  long baseline_kib_ = -1;
};

TEST_F(RegistrarFakeMlock, LockedPagesShowInVmLckUntilDereg) {
  Mapping m(64);
  ASSERT_NE(m.addr(), nullptr);
  regcache_mr mr;
  ASSERT_EQ(Reg(r_, m.addr(), 64 * kPage, REGCACHE_ACCESS_LOCAL_WRITE, &mr), 0);
  EXPECT_EQ(LockedPages(), 64);
  EXPECT_EQ(r_.dereg(r_.ctx, &mr), 0);
  EXPECT_EQ(LockedPages(), 0);
}

TEST_F(RegistrarFakeMlock, UnalignedRangeLocksEveryPageItTouches) {
  Mapping m(8);
  ASSERT_NE(m.addr(), nullptr);
  regcache_mr mr;
  // From the middle of page 1 to the middle of page 3: pages 1, 2, 3.
  ASSERT_EQ(Reg(r_, m.page(1) + kPage / 2, 2 * kPage, 0, &mr), 0);
  EXPECT_EQ(LockedPages(), 3);
  EXPECT_EQ(r_.dereg(r_.ctx, &mr), 0);
  EXPECT_EQ(LockedPages(), 0);
}

TEST_F(RegistrarFakeMlock, OverlappingRangesStayLockedUntilTheLastDereg) {
  Mapping m(16);
  ASSERT_NE(m.addr(), nullptr);
  regcache_mr a, b, c;
  ASSERT_EQ(Reg(r_, m.page(0), 8 * kPage, 0, &a), 0);  // pages 0-7
  ASSERT_EQ(Reg(r_, m.page(4), 8 * kPage, 0, &b), 0);  // pages 4-11
  ASSERT_EQ(Reg(r_, m.page(4), 8 * kPage, 0, &c), 0);  // the same again
  EXPECT_EQ(LockedPages(), 12);
  EXPECT_EQ(r_.dereg(r_.ctx, &b), 0);
  EXPECT_EQ(LockedPages(), 12) << "c still covers pages 4-11";
  EXPECT_EQ(r_.dereg(r_.ctx, &a), 0);
  EXPECT_EQ(LockedPages(), 8) << "pages 0-3 unlocked, 4-11 held by c";
  EXPECT_EQ(r_.dereg(r_.ctx, &c), 0);
  EXPECT_EQ(LockedPages(), 0);
}

TEST_F(RegistrarFakeMlock, PagesSharedByUnalignedNeighboursStayLocked) {
  Mapping m(4);
  ASSERT_NE(m.addr(), nullptr);
  regcache_mr a, b;
  // Both touch page 1 without overlapping byte-wise.
  ASSERT_EQ(Reg(r_, m.page(0), kPage + 100, 0, &a), 0);  // pages 0-1
  ASSERT_EQ(Reg(r_, m.page(1) + 200, kPage, 0, &b), 0);  // pages 1-2
  EXPECT_EQ(LockedPages(), 3);
  EXPECT_EQ(r_.dereg(r_.ctx, &a), 0);
  EXPECT_EQ(LockedPages(), 2);
  EXPECT_EQ(r_.dereg(r_.ctx, &b), 0);
}

TEST_F(RegistrarFakeMlock, DeregWithoutRegIsRejected) {
  Mapping m(2);
  ASSERT_NE(m.addr(), nullptr);
  regcache_mr mr;
  ASSERT_EQ(Reg(r_, m.addr(), kPage, 0, &mr), 0);
  EXPECT_EQ(r_.dereg(r_.ctx, &mr), 0);
  EXPECT_EQ(r_.dereg(r_.ctx, &mr), -EINVAL) << "double dereg";
  regcache_mr other = mr;
  other.addr = m.page(1);
  EXPECT_EQ(r_.dereg(r_.ctx, &other), -EINVAL) << "never registered";
}

TEST_F(RegistrarFakeMlock, UnmappedRangeFailsWithEfaultLikeIbvRegMr) {
  void* hole;
  {
    Mapping m(4);
    ASSERT_NE(m.addr(), nullptr);
    hole = m.addr();
  }
  regcache_mr mr;
  EXPECT_EQ(Reg(r_, hole, 4 * kPage, 0, &mr), -EFAULT);
  EXPECT_EQ(LockedPages(), 0);
}

TEST_F(RegistrarFakeMlock, BogusLengthFailsWithEfaultWithoutWalkingIt) {
  // A bogus length must fail like an unmapped range, without walking it
  // page by page under the registrar's lock. The child's alarm turns a hang
  // into a failure; the bound is a hang detector, not a speed claim.
  const auto outcome = regcache_test::RunInChild([this]() -> std::string {
    alarm(120);
    Mapping m(1);
    if (m.addr() == nullptr) return "mmap failed";
    for (int shift : {34, 46}) {
      regcache_mr mr;
      const int rc = Reg(r_, m.addr(), size_t{1} << shift, 0, &mr);
      if (rc != -EFAULT)
        return "length 2^" + std::to_string(shift) + ": " + std::to_string(rc);
    }
    return "";
  });
  EXPECT_TRUE(outcome.passed) << outcome.message;
  EXPECT_EQ(LockedPages(), 0);
}

TEST_F(RegistrarFakeMlock, FailedRegLeavesOtherRegistrationsLocked) {
  Mapping m(8);
  ASSERT_NE(m.addr(), nullptr);
  regcache_mr held, failed;
  ASSERT_EQ(Reg(r_, m.page(0), 4 * kPage, 0, &held), 0);
  // Pages 2-5 mapped, page 6 a hole: mlock locks 2-5 then fails.
  ASSERT_EQ(munmap(m.page(6), kPage), 0);
  EXPECT_EQ(Reg(r_, m.page(2), 5 * kPage, 0, &failed), -EFAULT);
  EXPECT_EQ(LockedPages(), 4) << "pages 0-3 must stay locked, 4-5 unlocked";
  EXPECT_EQ(r_.dereg(r_.ctx, &held), 0);
}

TEST_F(RegistrarFakeMlock, PartlyUnmappedRangeUnlocksWhatRemains) {
  Mapping m(16);
  ASSERT_NE(m.addr(), nullptr);
  regcache_mr mr;
  ASSERT_EQ(Reg(r_, m.addr(), 16 * kPage, 0, &mr), 0);
  EXPECT_EQ(LockedPages(), 16);
  // The application unmaps pages 3 and 9-10 while the registration exists.
  ASSERT_EQ(munmap(m.page(3), kPage), 0);
  ASSERT_EQ(munmap(m.page(9), 2 * kPage), 0);
  EXPECT_EQ(LockedPages(), 13);
  EXPECT_EQ(r_.dereg(r_.ctx, &mr), 0);
  EXPECT_EQ(LockedPages(), 0) << "pages after a hole must be unlocked too";
}

TEST_F(RegistrarFakeMlock, ConcurrentOverlappingRegistrationsBalance) {
  constexpr size_t kPages = 32;
  Mapping m(kPages);
  ASSERT_NE(m.addr(), nullptr);
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(seed + t);
      std::vector<regcache_mr> held;
      for (int i = 0; i < 300; ++i) {
        if (!held.empty() && rng() % 2 == 0) {
          const size_t victim = rng() % held.size();
          if (r_.dereg(r_.ctx, &held[victim]) != 0) failures[t]++;
          held.erase(held.begin() + victim);
          continue;
        }
        const size_t first = rng() % kPages;
        const size_t pages = 1 + rng() % (kPages - first);
        regcache_mr mr;
        if (Reg(r_, m.page(first), pages * kPage, 0, &mr) != 0) {
          failures[t]++;
          continue;
        }
        held.push_back(mr);
      }
      for (auto& mr : held) {
        if (r_.dereg(r_.ctx, &mr) != 0) failures[t]++;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
  EXPECT_EQ(LockedPages(), 0);
}

// Root has CAP_IPC_LOCK, with which mlock() ignores RLIMIT_MEMLOCK; the child
// drops it so the fake fails as ibv_reg_mr would for an ordinary user.
TEST(RegistrarFakeMlockLimit, ExceedingRlimitMemlockGivesEnomemOrEagain) {
  const regcache_test::ChildOutcome outcome = regcache_test::RunInChild([] {
    std::string why;
    if (!regcache_test::DropIpcLockCapability(&why)) {
      return std::string(regcache_test::kChildSkip) + why;
    }
    constexpr size_t kLimit = 64 * 1024;
    if (!regcache_test::SetMemlockSoftLimit(kLimit, &why)) {
      return std::string(regcache_test::kChildSkip) + why;
    }
    if (VmLckKiB() != 0) return std::string("child starts with memory locked");
    Mapping m(1024 * 1024 / kPage);
    if (m.addr() == nullptr) return std::string("mmap failed");

    // The kernel itself must refuse, or the test proves nothing. (A system
    // call: the sanitizers turn libc's mlock() into a no-op.)
    if (syscall(SYS_mlock, m.addr(), 1024 * 1024) == 0) {
      return std::string("mlock(1 MiB) succeeded under a 64 KiB limit");
    }
    if (errno != ENOMEM && errno != EAGAIN) {
      return std::string("mlock failed with ") + strerror(errno);
    }

    regcache_registrar r;
    if (regcache_registrar_fake(1, &r) != 0) return std::string("create");
    regcache_mr big;
    int ret = Reg(r, m.addr(), 1024 * 1024, 0, &big);
    if (ret != -ENOMEM && ret != -EAGAIN) {
      return "reg of 1 MiB returned " + std::to_string(ret) +
             ", want -ENOMEM or -EAGAIN";
    }
    if (VmLckKiB() != 0) return std::string("failed reg left memory locked");

    // Overlapping registrations are charged once: 48 KiB + 48 KiB with
    // 32 KiB in common is 64 KiB of distinct pages, within the limit.
    regcache_mr a, b, c;
    if ((ret = Reg(r, m.addr(), 48 * 1024, 0, &a)) != 0) {
      return "reg of 48 KiB returned " + std::to_string(ret);
    }
    if ((ret = Reg(r, m.addr() + 16 * 1024, 48 * 1024, 0, &b)) != 0) {
      return "overlapping reg within the limit returned " + std::to_string(ret);
    }
    if (VmLckKiB() != 64)
      return "VmLck " + std::to_string(VmLckKiB()) + " != 64";
    // One more page is over the limit.
    ret = Reg(r, m.addr() + 64 * 1024, kPage, 0, &c);
    if (ret != -ENOMEM && ret != -EAGAIN) {
      return "reg past the limit returned " + std::to_string(ret);
    }
    if (r.dereg(r.ctx, &a) != 0 || r.dereg(r.ctx, &b) != 0) {
      return std::string("dereg failed");
    }
    if (VmLckKiB() != 0) return std::string("dereg left memory locked");
    return std::string();
  });
  if (outcome.skipped) GTEST_SKIP() << outcome.message;
  EXPECT_TRUE(outcome.passed) << outcome.message;
}

// A fork while another thread is inside reg/dereg must not hand the child a
// locked mutex (the child would hang on its first reg).
TEST(RegistrarFakeMlockFork, ForkDuringRegDoesNotDeadlockTheChild) {
  regcache_registrar r;
  ASSERT_EQ(regcache_registrar_fake(1, &r), 0);
  Mapping m(64);
  ASSERT_NE(m.addr(), nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      while (!stop.load()) {
        regcache_mr mr;
        if (Reg(r, m.page(t * 8), 48 * kPage, 0, &mr) != 0 ||
            r.dereg(r.ctx, &mr) != 0) {
          failures++;
        }
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    const regcache_test::ChildOutcome outcome = regcache_test::RunInChild([&] {
      alarm(10);  // a deadlock kills the child: reported as a failure
      regcache_mr mr;
      if (Reg(r, m.page(60), kPage, 0, &mr) != 0) return std::string("reg");
      if (r.dereg(r.ctx, &mr) != 0) return std::string("dereg");
      return std::string();
    });
    EXPECT_TRUE(outcome.passed) << "fork " << i << ": " << outcome.message;
  }
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
