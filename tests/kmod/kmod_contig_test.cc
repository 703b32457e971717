// SPDX-License-Identifier: BSD-2-Clause
// Physically contiguous memory from the regcache module: mmap() of
// /dev/regcache at REGCACHE_MMAP_CONTIG_OFFSET and REGCACHE_IOC_CONTIG_INFO
// (docs/kmod.md, "Contiguous memory"). Shown here, as root in the VM
// (tests/vm/run-in-vm.sh --module .../regcache.ko -- THIS): the frames are
// consecutive (/proc/self/pagemap), the mapping is populated at mmap()
// (no fault on first touch, against a control that faults), zeroed,
// charged to VmLck and refused over RLIMIT_MEMLOCK to an unprivileged user,
// never grown, split, inherited or made private or executable, counted
// back to zero at munmap, close and exit, bounded by the module's limits,
// and registrable: ibv_reg_mr() on rxe0 pins it and an RDMA WRITE lands in
// it. Elsewhere every test skips and says why.
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "loopback_rc.h"
#include "regcache/kmod_uapi.h"
#include "test_util.h"

namespace {

using regcache_rdma_test::LoopbackRc;
using regcache_test::ChildOutcome;
using regcache_test::RunInChild;

constexpr const char* kDevice = REGCACHE_KMOD_DEVICE_PATH;
constexpr const char* kParams = "/sys/module/regcache/parameters/";
constexpr off_t kContig = static_cast<off_t>(REGCACHE_MMAP_CONTIG_OFFSET);
constexpr size_t kMiB = size_t{1} << 20;
constexpr uid_t kNobody = 65534;

size_t Page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

std::string Errno(int err) {
  return std::to_string(err) + " (" + strerror(err) + ")";
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A module parameter, or -1 if it cannot be read.
long Param(const char* name) {
  std::ifstream in(std::string(kParams) + name);
  long value = -1;
  in >> value;
  return in ? value : -1;
}

// Sets a module parameter while it lives and puts the old value back.
class ScopedParam {
 public:
  ScopedParam(const char* name, long value) : name_(name), old_(Param(name)) {
    if (old_ < 0) return;
    std::ofstream out(std::string(kParams) + name_);
    out << value;
    ok_ = static_cast<bool>(out.flush());
  }
  ~ScopedParam() {
    if (old_ < 0) return;
    std::ofstream out(std::string(kParams) + name_);
    out << old_;
  }
  bool ok() const { return ok_; }

 private:
  const char* name_;
  long old_;
  bool ok_ = false;
};

// One open of /dev/regcache, read-write (a writable MAP_SHARED mapping
// needs a file opened for writing).
class Device {
 public:
  Device() = default;
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  ~Device() {
    if (fd_ >= 0) close(fd_);
  }
  int Open(int flags = O_RDWR) {
    fd_ = open(kDevice, flags | O_CLOEXEC);
    return fd_ < 0 ? -errno : 0;
  }
  int fd() const { return fd_; }

  // The contiguous mapping, or nullptr with *err set.
  char* Map(size_t length, int* err, int prot = PROT_READ | PROT_WRITE,
            int flags = MAP_SHARED, off_t offset = kContig) const {
    void* p = mmap(nullptr, length, prot, flags, fd_, offset);
    if (p == MAP_FAILED) {
      *err = errno;
      return nullptr;
    }
    *err = 0;
    return static_cast<char*>(p);
  }

  regcache_kmod_contig_info Info() const {
    regcache_kmod_contig_info info{};
    EXPECT_EQ(0, ioctl(fd_, REGCACHE_IOC_CONTIG_INFO, &info))
        << "REGCACHE_IOC_CONTIG_INFO: " << Errno(errno);
    return info;
  }

 private:
  int fd_ = -1;
};

// The page frame numbers of [p, p + pages pages), 0 for a page that is not
// present. Needs CAP_SYS_ADMIN (the PFNs read as 0 otherwise).
std::vector<uint64_t> Pfns(const void* p, size_t pages) {
  std::vector<uint64_t> entries(pages);
  const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  const off_t at =
      static_cast<off_t>(reinterpret_cast<uintptr_t>(p) / Page() * 8);
  const ssize_t want = static_cast<ssize_t>(pages * 8);
  const ssize_t got = pread(fd, entries.data(), static_cast<size_t>(want), at);
  close(fd);
  if (got != want) return {};
  for (uint64_t& e : entries)
    e = (e >> 63) ? (e & ((uint64_t{1} << 55) - 1)) : 0;  // bit 63: present
  return entries;
}

// Where the frames of [p, p + pages) stop being consecutive: the page index,
// or -1 if they are consecutive (and present) throughout.
long FirstGap(const std::vector<uint64_t>& pfns) {
  if (pfns.empty() || pfns[0] == 0) return 0;
  for (size_t i = 1; i < pfns.size(); ++i)
    if (pfns[i] != pfns[0] + i) return static_cast<long>(i);
  return -1;
}

long MinorFaults() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_minflt;
}

// Writes one byte per page; returns the minor faults that took.
long TouchEveryPage(char* p, size_t length) {
  const long before = MinorFaults();
  for (size_t off = 0; off < length; off += Page())
    *static_cast<volatile char*>(p + off) = 1;
  return MinorFaults() - before;
}

bool AllZero(const char* p, size_t length) {
  for (size_t i = 0; i < length; ++i)
    if (p[i] != 0) return false;
  return true;
}

// For a skip message: how much memory the guest has free, and in which
// blocks (order 0..10 per zone).
std::string MemoryPicture() {
  std::string free_line;
  std::istringstream meminfo(ReadText("/proc/meminfo"));
  for (std::string line; std::getline(meminfo, line);)
    if (line.rfind("MemFree:", 0) == 0) free_line = line;
  return free_line + "; /proc/buddyinfo:\n" + ReadText("/proc/buddyinfo");
}

class Contig : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kDevice, F_OK) != 0)
      GTEST_SKIP() << kDevice
                   << " is absent: the regcache module is not loaded (these "
                      "tests run in the VM: tests/vm/run-in-vm.sh --module "
                      "build/kmod/regcache.ko -- kmod_contig_test)";
    ASSERT_EQ(0, dev_.Open()) << kDevice;
    regcache_kmod_contig_info info{};
    if (ioctl(dev_.fd(), REGCACHE_IOC_CONTIG_INFO, &info) != 0) {
      ASSERT_EQ(ENOTTY, errno) << "REGCACHE_IOC_CONTIG_INFO";
      GTEST_SKIP() << "the loaded module has no contiguous memory "
                      "(REGCACHE_IOC_CONTIG_INFO: ENOTTY)";
    }
    info_ = info;
  }

  // What the whole system has mapped now, once other processes (children
  // of earlier tests) are done: waits up to 2 s for it to stop changing.
  uint64_t SettledTotal() {
    uint64_t total = dev_.Info().total_bytes;
    for (int i = 0; i < 100; ++i) {
      usleep(20000);
      const uint64_t now = dev_.Info().total_bytes;
      if (now == total) break;
      total = now;
    }
    return total;
  }

  // Maps `length` bytes and expects success.
  char* MustMap(size_t length) {
    int err = 0;
    char* p = dev_.Map(length, &err);
    EXPECT_NE(nullptr, p) << "mmap of " << length << " bytes: " << Errno(err);
    return p;
  }

  Device dev_;
  regcache_kmod_contig_info info_{};
};

// ------------------------------------------------------------------ info

TEST(ContigUapi, InfoStructLayoutIsFixed) {
  static_assert(sizeof(regcache_kmod_contig_info) == 128);
  static_assert(REGCACHE_MMAP_CONTIG_OFFSET % (64 * 1024) == 0,
                "page aligned for every page size");
  EXPECT_EQ(0x06u, _IOC_NR(REGCACHE_IOC_CONTIG_INFO));
  EXPECT_EQ(unsigned(_IOC_READ), _IOC_DIR(REGCACHE_IOC_CONTIG_INFO));
}

TEST_F(Contig, InfoReportsTheLimitsAndTheLargestBuddyBlock) {
  EXPECT_EQ(Page(), info_.page_size);
  EXPECT_EQ(0u, info_.fd_bytes);
  EXPECT_EQ(0u, info_.fd_mappings);
  EXPECT_EQ(0u, info_.process_bytes);
  EXPECT_EQ(0u, info_.process_mappings);
  EXPECT_EQ(uint64_t(Param("contig_max_per_process_mb")) * kMiB,
            info_.max_process_bytes);
  EXPECT_EQ(uint64_t(Param("contig_max_total_mb")) * kMiB,
            info_.max_total_bytes);
  // x86-64: order 10, 4 MiB, on every kernel of the rig.
  EXPECT_EQ(1024 * Page(), info_.max_buddy_bytes);
  const uint64_t limits =
      std::min<uint64_t>(info_.max_process_bytes, info_.max_total_bytes);
  if (info_.flags & REGCACHE_KMOD_CONTIG_F_LARGE)
    EXPECT_EQ(limits, info_.max_bytes);
  else
    EXPECT_EQ(std::min<uint64_t>(limits, info_.max_buddy_bytes),
              info_.max_bytes);
  printf(
      "contig: max_process %llu MiB, max_total %llu MiB, buddy %llu KiB, "
      "large sizes %s\n",
      (unsigned long long)(info_.max_process_bytes >> 20),
      (unsigned long long)(info_.max_total_bytes >> 20),
      (unsigned long long)(info_.max_buddy_bytes >> 10),
      (info_.flags & REGCACHE_KMOD_CONTIG_F_LARGE) ? "yes" : "no");
}

// The default total limit is a quarter of RAM, worked out at load.
TEST_F(Contig, DefaultTotalLimitIsAQuarterOfRam) {
  std::istringstream meminfo(ReadText("/proc/meminfo"));
  unsigned long long kib = 0;
  for (std::string line; std::getline(meminfo, line);)
    if (sscanf(line.c_str(), "MemTotal: %llu kB", &kib) == 1) break;
  ASSERT_GT(kib, 0u);
  const long quarter = long(kib / 1024 / 4);
  // MemTotal moves a little after load (e.g. freed init memory).
  EXPECT_NEAR(quarter, Param("contig_max_total_mb"), 8)
      << "was the module loaded with contig_max_total_mb=...?";
}

// ------------------------------------------------------------- contiguity

TEST_F(Contig, FourMiBMappingIsPhysicallyContiguousAndZeroed) {
  const size_t length = 4 * kMiB;
  char* p = MustMap(length);
  ASSERT_NE(nullptr, p);
  const std::vector<uint64_t> pfns = Pfns(p, length / Page());
  ASSERT_FALSE(pfns.empty()) << "/proc/self/pagemap";
  if (pfns[0] == 0 && geteuid() != 0)
    GTEST_SKIP() << "pagemap shows PFNs only to CAP_SYS_ADMIN (run as root)";
  EXPECT_EQ(-1, FirstGap(pfns))
      << "frames not consecutive at page " << FirstGap(pfns);
  EXPECT_TRUE(AllZero(p, length));
  const regcache_kmod_contig_info info = dev_.Info();
  EXPECT_EQ(length, info.fd_bytes);
  EXPECT_EQ(1u, info.fd_mappings);
  EXPECT_EQ(length, info.process_bytes);
  EXPECT_EQ(1u, info.process_mappings);
  EXPECT_GE(info.total_bytes, length);
  printf("4 MiB at pfn 0x%llx\n", (unsigned long long)pfns[0]);
  ASSERT_EQ(0, munmap(p, length));
  EXPECT_EQ(0u, dev_.Info().fd_bytes);
}

// Beyond the largest buddy block (4 MiB): the range allocator.
TEST_F(Contig, SixtyFourMiBMappingIsPhysicallyContiguous) {
  const size_t length = 64 * kMiB;
  if (!(info_.flags & REGCACHE_KMOD_CONTIG_F_LARGE))
    GTEST_SKIP() << "this kernel exports no contiguous range allocator to "
                    "modules (neither alloc_contig_pages nor "
                    "alloc_contig_range): only sizes up to "
                 << (info_.max_buddy_bytes >> 10) << " KiB";
  if (info_.max_bytes < length)
    GTEST_SKIP() << "the module's limits allow at most "
                 << (info_.max_bytes >> 20) << " MiB";
  int err = 0;
  char* p = dev_.Map(length, &err);
  if (p == nullptr && err == ENOMEM)
    GTEST_SKIP() << "no 64 MiB of contiguous memory in this guest (mmap: "
                 << Errno(err) << "); " << MemoryPicture();
  ASSERT_NE(nullptr, p) << Errno(err);
  const std::vector<uint64_t> pfns = Pfns(p, length / Page());
  ASSERT_FALSE(pfns.empty()) << "/proc/self/pagemap";
  EXPECT_EQ(-1, FirstGap(pfns))
      << "frames not consecutive at page " << FirstGap(pfns);
  EXPECT_TRUE(AllZero(p, length));
  EXPECT_EQ(0, TouchEveryPage(p, length)) << "minor faults";
  EXPECT_EQ(length, dev_.Info().fd_bytes);
  printf("64 MiB at pfn 0x%llx\n", (unsigned long long)pfns[0]);
  ASSERT_EQ(0, munmap(p, length));
  EXPECT_EQ(0u, dev_.Info().fd_bytes);
}

// Sizes that are no power of two: the buddy block's tail goes back, the
// range allocator takes the exact size.
TEST_F(Contig, OddSizesAreContiguousAndCountedExactly) {
  std::vector<size_t> sizes = {Page(), 3 * Page(), 1000 * Page()};
  if ((info_.flags & REGCACHE_KMOD_CONTIG_F_LARGE) &&
      info_.max_bytes >= 5 * kMiB + Page())
    sizes.push_back(5 * kMiB + Page());
  for (size_t length : sizes) {
    int err = 0;
    char* p = dev_.Map(length, &err);
    if (p == nullptr && err == ENOMEM && length > info_.max_buddy_bytes) {
      printf("%zu bytes: ENOMEM (no such range free now)\n", length);
      continue;
    }
    ASSERT_NE(nullptr, p) << length << " bytes: " << Errno(err);
    EXPECT_EQ(-1, FirstGap(Pfns(p, length / Page()))) << length << " bytes";
    EXPECT_EQ(length, dev_.Info().fd_bytes) << length << " bytes";
    ASSERT_EQ(0, munmap(p, length));
  }
  EXPECT_EQ(0u, dev_.Info().fd_bytes);
}

// ------------------------------------------------------------- populated

TEST_F(Contig, TouchingTheMappingTakesNoPageFault) {
  const size_t length = 4 * kMiB;
  char* p = MustMap(length);
  ASSERT_NE(nullptr, p);
  EXPECT_EQ(0, TouchEveryPage(p, length));
  ASSERT_EQ(0, munmap(p, length));
}

// The control: the same touch of ordinary shared memory faults once a page.
TEST_F(Contig, ControlAnonymousSharedMemoryFaultsOnFirstTouch) {
  const size_t length = 4 * kMiB;
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(MAP_FAILED, p);
  EXPECT_GE(TouchEveryPage(static_cast<char*>(p), length),
            long(length / Page()));
  munmap(p, length);
}

TEST_F(Contig, NewMappingIsZeroedAfterTheSameMemoryWasUsed) {
  const size_t length = 4 * kMiB;
  for (int round = 0; round < 4; ++round) {
    char* p = MustMap(length);
    ASSERT_NE(nullptr, p);
    ASSERT_TRUE(AllZero(p, length)) << "round " << round;
    memset(p, 0xa5, length);
    ASSERT_EQ(0, munmap(p, length));
  }
}

// MADV_DONTNEED drops the page table entries; the next touch maps the same
// pages again, with their data (a shared mapping keeps its contents).
TEST_F(Contig, MadviseDontneedKeepsThePagesAndTheirData) {
  const size_t length = 16 * Page();
  char* p = MustMap(length);
  ASSERT_NE(nullptr, p);
  const std::vector<uint64_t> before = Pfns(p, 16);
  memset(p, 0x5a, length);
  ASSERT_EQ(0, madvise(p, length, MADV_DONTNEED)) << Errno(errno);
  EXPECT_EQ(0u, Pfns(p, 16)[3]) << "page 3 still mapped after DONTNEED";
  EXPECT_EQ(0x5a, p[3 * Page() + 7]);
  for (size_t i = 0; i < length; i += Page()) (void)*(volatile char*)(p + i);
  EXPECT_EQ(before, Pfns(p, 16));
  ASSERT_EQ(0, munmap(p, length));
}

// ---------------------------------------------------------------- memlock

TEST_F(Contig, ChargedToVmLckUntilMunmap) {
  const long before = regcache_test::VmLckKiB();
  ASSERT_GE(before, 0);
  const size_t length = 4 * kMiB;
  char* p = MustMap(length);
  ASSERT_NE(nullptr, p);
  EXPECT_EQ(before + long(length / 1024), regcache_test::VmLckKiB());
  ASSERT_EQ(0, munmap(p, length));
  EXPECT_EQ(before, regcache_test::VmLckKiB());
}

// In a child as uid 65534 (no capabilities) with RLIMIT_MEMLOCK `limit`:
// maps `length` bytes from a fresh open, expecting `expected_errno` (0:
// success, charged to VmLck and uncharged at munmap). Returns "" or what
// went wrong.
std::string MapAsNobody(rlim_t limit, size_t length, int expected_errno) {
  const ChildOutcome outcome = RunInChild([&]() -> std::string {
    alarm(60);
    rlimit rl{limit, limit};
    if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
      return std::string("setrlimit: ") + strerror(errno);
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 ||
        setuid(kNobody) != 0)
      return std::string("dropping to uid 65534: ") + strerror(errno);
    Device dev;
    if (dev.Open() != 0)
      return std::string("open ") + kDevice +
             " as uid 65534: " + strerror(errno) + " (the rig makes it 0666)";
    const long lck = regcache_test::VmLckKiB();
    int err = 0;
    char* p = dev.Map(length, &err);
    if (err != expected_errno)
      return "mmap of " + std::to_string(length) + " bytes with memlock " +
             std::to_string(limit) + ": errno " + Errno(err) + ", expected " +
             Errno(expected_errno);
    if (p == nullptr)
      return regcache_test::VmLckKiB() == lck ? "" : "VmLck changed";
    if (regcache_test::VmLckKiB() != lck + long(length / 1024))
      return "VmLck " + std::to_string(regcache_test::VmLckKiB()) +
             " KiB, expected " + std::to_string(lck + length / 1024);
    p[0] = 1;
    if (munmap(p, length) != 0) return "munmap failed";
    return regcache_test::VmLckKiB() == lck ? "" : "VmLck not uncharged";
  });
  if (outcome.skipped) return "skipped: " + outcome.message;
  return outcome.passed ? "" : outcome.message;
}

TEST_F(Contig, UnprivilegedUserIsHeldToRlimitMemlock) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch to uid 65534";
  // Within the limit: fine, and charged.
  EXPECT_EQ("", MapAsNobody(64 * 1024, 32 * 1024, 0));
  EXPECT_EQ("", MapAsNobody(64 * 1024, 64 * 1024, 0));
  // Over it: EAGAIN (as mmap(MAP_LOCKED) says), nothing charged.
  EXPECT_EQ("", MapAsNobody(64 * 1024, 64 * 1024 + Page(), EAGAIN));
  EXPECT_EQ("", MapAsNobody(64 * 1024, 4 * kMiB, EAGAIN));
  // A limit of 0: EPERM (as mlock() says).
  EXPECT_EQ("", MapAsNobody(0, Page(), EPERM));
}

// CAP_IPC_LOCK lifts the limit, as for mlock(); the memory is charged all
// the same.
TEST_F(Contig, CapIpcLockIgnoresRlimitMemlockButIsCharged) {
  const ChildOutcome outcome = RunInChild([]() -> std::string {
    rlimit rl{4096, 4096};
    if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
      return std::string("setrlimit: ") + strerror(errno);
    Device dev;
    if (dev.Open() != 0) return std::string("open: ") + strerror(errno);
    const long lck = regcache_test::VmLckKiB();
    int err = 0;
    char* p = dev.Map(kMiB, &err);
    if (p == nullptr)
      return "mmap of 1 MiB with CAP_IPC_LOCK and memlock 4 KiB: " + Errno(err);
    if (regcache_test::VmLckKiB() != lck + 1024) return "not charged";
    std::string why;
    if (!regcache_test::DropIpcLockCapability(&why)) return why;
    p = dev.Map(kMiB, &err);
    if (p != nullptr || err != EAGAIN)
      return "without CAP_IPC_LOCK: " + Errno(err) + ", expected EAGAIN";
    return "";
  });
  if (outcome.skipped) GTEST_SKIP() << outcome.message;
  EXPECT_TRUE(outcome.passed) << outcome.message;
}

// Concurrent munmap()s uncharge under mmap_lock held for reading; the
// module serialises them (page_table_lock), so VmLck comes out exact.
TEST_F(Contig, ConcurrentMapAndUnmapKeepVmLckExact) {
  const long before = regcache_test::VmLckKiB();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 150; ++i) {
        const size_t length = Page() * (1 + (i + t) % 16);
        int err = 0;
        char* p = dev_.Map(length, &err);
        if (p == nullptr) {
          failures++;
          continue;
        }
        p[0] = 1;
        if (munmap(p, length) != 0) failures++;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(0, failures.load());
  EXPECT_EQ(before, regcache_test::VmLckKiB());
  const regcache_kmod_contig_info info = dev_.Info();
  EXPECT_EQ(0u, info.fd_bytes);
  EXPECT_EQ(0u, info.fd_mappings);
}

// ---------------------------------------------------- what is refused

TEST_F(Contig, PrivateExecutableAndBadOffsetsAreRefused) {
  int err = 0;
  EXPECT_EQ(nullptr,
            dev_.Map(Page(), &err, PROT_READ | PROT_WRITE, MAP_PRIVATE));
  EXPECT_EQ(EINVAL, err) << "MAP_PRIVATE";
  EXPECT_EQ(nullptr, dev_.Map(Page(), &err, PROT_READ, MAP_PRIVATE));
  EXPECT_EQ(EINVAL, err) << "MAP_PRIVATE, PROT_READ";
  EXPECT_EQ(nullptr, dev_.Map(Page(), &err, PROT_READ | PROT_EXEC));
  EXPECT_EQ(EINVAL, err) << "PROT_EXEC";
  EXPECT_EQ(nullptr, dev_.Map(Page(), &err, PROT_READ | PROT_WRITE, MAP_SHARED,
                              kContig + off_t(Page())));
  EXPECT_EQ(EINVAL, err) << "the offset one page on";
  // Below the contiguous offset is the shared area's range, and its rules:
  // read-only (EACCES), and nothing beyond map_size (EINVAL).
  EXPECT_EQ(nullptr, dev_.Map(Page(), &err, PROT_READ | PROT_WRITE, MAP_SHARED,
                              kContig - off_t(Page())));
  EXPECT_EQ(EACCES, err) << "writable, the offset one page below";
  EXPECT_EQ(nullptr, dev_.Map(Page(), &err, PROT_READ, MAP_SHARED,
                              kContig - off_t(Page())));
  EXPECT_EQ(EINVAL, err) << "read-only, the offset one page below";
  EXPECT_EQ(nullptr, dev_.Map(0, &err));
  EXPECT_EQ(EINVAL, err) << "length 0";
  EXPECT_EQ(0u, dev_.Info().fd_mappings);

  // Never executable later either.
  char* p = MustMap(Page());
  ASSERT_NE(nullptr, p);
  errno = 0;
  EXPECT_EQ(-1, mprotect(p, Page(), PROT_READ | PROT_EXEC));
  EXPECT_EQ(EACCES, errno) << "mprotect(PROT_EXEC)";
  EXPECT_EQ(0, mprotect(p, Page(), PROT_READ)) << "read-only is fine";
  EXPECT_EQ(0, mprotect(p, Page(), PROT_READ | PROT_WRITE));
  ASSERT_EQ(0, munmap(p, Page()));
}

// A writable shared mapping needs a file opened for writing; read-only
// contiguous memory from an O_RDONLY open is allowed.
TEST_F(Contig, ReadOnlyOpenMapsReadOnly) {
  Device ro;
  ASSERT_EQ(0, ro.Open(O_RDONLY));
  int err = 0;
  EXPECT_EQ(nullptr, ro.Map(Page(), &err));
  EXPECT_EQ(EACCES, err) << "PROT_WRITE, MAP_SHARED on an O_RDONLY fd";
  char* p = ro.Map(2 * Page(), &err, PROT_READ);
  ASSERT_NE(nullptr, p) << Errno(err);
  EXPECT_TRUE(AllZero(p, 2 * Page()));
  errno = 0;
  EXPECT_EQ(-1, mprotect(p, 2 * Page(), PROT_READ | PROT_WRITE));
  EXPECT_EQ(EACCES, errno);
  ASSERT_EQ(0, munmap(p, 2 * Page()));
}

// mmap() rounds every length up to whole pages before the module sees it:
// a length that is no page multiple gets the pages that cover it.
TEST_F(Contig, LengthIsRoundedUpToWholePagesAsByEveryMmap) {
  char* p = MustMap(Page() + 1);
  ASSERT_NE(nullptr, p);
  EXPECT_EQ(2 * Page(), dev_.Info().fd_bytes);
  p[2 * Page() - 1] = 1;
  ASSERT_EQ(0, munmap(p, Page() + 1));
  EXPECT_EQ(0u, dev_.Info().fd_bytes);
}

TEST_F(Contig, MremapCannotGrowOrShrinkItButMayMoveIt) {
  const size_t length = 8 * Page();
  char* p = MustMap(length);
  ASSERT_NE(nullptr, p);
  p[0] = 42;
  const long lck = regcache_test::VmLckKiB();
  errno = 0;
  EXPECT_EQ(MAP_FAILED, mremap(p, length, 2 * length, MREMAP_MAYMOVE));
  EXPECT_EQ(EFAULT, errno) << "grow (VM_DONTEXPAND)";
  errno = 0;
  EXPECT_EQ(MAP_FAILED, mremap(p, length, 2 * length, 0));
  EXPECT_EQ(EFAULT, errno) << "grow in place";
  errno = 0;
  EXPECT_EQ(MAP_FAILED, mremap(p, length, length / 2, 0));
  EXPECT_EQ(EINVAL, errno) << "shrink (no split)";
  errno = 0;
  EXPECT_EQ(MAP_FAILED, mremap(p, 0, length, MREMAP_MAYMOVE));
  EXPECT_EQ(EFAULT, errno) << "duplicate (old length 0)";

  const std::vector<uint64_t> pfns = Pfns(p, 8);
  void* moved =
      mremap(p, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, p + 64 * kMiB);
  ASSERT_NE(MAP_FAILED, moved) << "move: " << Errno(errno);
  char* q = static_cast<char*>(moved);
  EXPECT_EQ(42, q[0]);
  EXPECT_EQ(pfns, Pfns(q, 8)) << "the same frames, moved";
  EXPECT_EQ(lck, regcache_test::VmLckKiB()) << "charged once, still";
  EXPECT_EQ(length, dev_.Info().fd_bytes);
  ASSERT_EQ(0, munmap(q, length));
  EXPECT_EQ(lck - long(length / 1024), regcache_test::VmLckKiB());
  EXPECT_EQ(0u, dev_.Info().fd_bytes);
}

TEST_F(Contig, PartsCannotBeUnmappedOrReprotected) {
  const size_t length = 4 * Page();
  char* p = MustMap(length);
  ASSERT_NE(nullptr, p);
  errno = 0;
  EXPECT_EQ(-1, munmap(p, Page()));
  EXPECT_EQ(EINVAL, errno) << "munmap of the first page";
  errno = 0;
  EXPECT_EQ(-1, munmap(p + Page(), Page()));
  EXPECT_EQ(EINVAL, errno) << "munmap of a middle page";
  errno = 0;
  EXPECT_EQ(-1, mprotect(p, Page(), PROT_READ));
  EXPECT_EQ(EINVAL, errno) << "mprotect of a part";
  p[length - 1] = 1;
  EXPECT_EQ(length, dev_.Info().fd_bytes);
  ASSERT_EQ(0, munmap(p, length));
}

// ------------------------------------------------------------------- fork

TEST_F(Contig, ForkChildDoesNotGetTheMappingAndParentKeepsIt) {
  const size_t length = 8 * Page();
  char* p = MustMap(length);
  ASSERT_NE(nullptr, p);
  memset(p, 0x3c, length);
  const int fd = dev_.fd();  // the child inherits it (fork, no exec)
  const ChildOutcome outcome = RunInChild([&]() -> std::string {
    unsigned char vec[8];
    if (mincore(p, length, vec) != -1 || errno != ENOMEM)
      return "the child has the parent's contiguous mapping";
    regcache_kmod_contig_info info{};
    if (ioctl(fd, REGCACHE_IOC_CONTIG_INFO, &info) != -1 || errno != EPERM)
      return "CONTIG_INFO on the inherited fd: not EPERM";
    if (mmap(nullptr, Page(), PROT_READ | PROT_WRITE, MAP_SHARED, fd,
             kContig) != MAP_FAILED ||
        errno != EPERM)
      return "mmap of the inherited fd: not EPERM";
    Device own;
    if (own.Open() != 0) return "open in the child";
    int err = 0;
    char* mine = own.Map(length, &err);
    if (mine == nullptr) return "the child's own mapping: " + Errno(err);
    if (!AllZero(mine, length)) return "the child's own mapping not zeroed";
    return "";  // exits with it mapped
  });
  EXPECT_TRUE(outcome.passed) << outcome.message;
  for (size_t i = 0; i < length; ++i)
    ASSERT_EQ(0x3c, static_cast<unsigned char>(p[i])) << "offset " << i;
  const regcache_kmod_contig_info info = dev_.Info();
  EXPECT_EQ(length, info.fd_bytes);
  EXPECT_EQ(length, info.process_bytes);
  ASSERT_EQ(0, munmap(p, length));
}

// madvise(MADV_DOFORK) clears VM_DONTCOPY. 7.x refuses it on this mapping
// (VM_SPECIAL); 6.1 and 6.12 accept it, and the child then shares the same
// pages (a MAP_SHARED mapping), uncharged to it; the memory lives until the
// last of the two unmaps it.
TEST_F(Contig, MadviseDoforkSharesThePagesWhereTheKernelAllowsIt) {
  const uint64_t total_before = SettledTotal();
  const size_t length = 4 * Page();
  char* p = MustMap(length);
  ASSERT_NE(nullptr, p);
  p[0] = 7;
  if (madvise(p, length, MADV_DOFORK) != 0) {
    EXPECT_EQ(EINVAL, errno);
    printf("MADV_DOFORK refused (EINVAL) on this kernel\n");
    const ChildOutcome outcome = RunInChild([&]() -> std::string {
      unsigned char vec[4];
      return mincore(p, length, vec) == -1 && errno == ENOMEM
                 ? ""
                 : "the child has the mapping";
    });
    EXPECT_TRUE(outcome.passed) << outcome.message;
    ASSERT_EQ(0, munmap(p, length));
    return;
  }
  printf("MADV_DOFORK accepted on this kernel: the child shares the pages\n");
  int to_child[2], to_parent[2];
  ASSERT_EQ(0, pipe(to_child));
  ASSERT_EQ(0, pipe(to_parent));
  const long parent_lck = regcache_test::VmLckKiB();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    char c = 0;
    int code = 0;
    if (p[0] != 7) code = 1;
    if (regcache_test::VmLckKiB() != 0) code = 2;  // mlock is not inherited
    p[1] = 8;                                      // seen by the parent
    if (write(to_parent[1], &c, 1) != 1) code = 3;
    if (read(to_child[0], &c, 1) != 1) code = 4;  // parent has unmapped
    if (p[2] != 9) code = 5;                      // written before that
    _exit(code);
  }
  char c = 0;
  ASSERT_EQ(1, read(to_parent[0], &c, 1));
  EXPECT_EQ(8, p[1]) << "the child's write, through the shared pages";
  p[2] = 9;
  ASSERT_EQ(0, munmap(p, length));
  EXPECT_EQ(parent_lck - long(length / 1024), regcache_test::VmLckKiB());
  EXPECT_EQ(length, dev_.Info().fd_bytes) << "still mapped by the child";
  ASSERT_EQ(1, write(to_child[1], &c, 1));
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "child status " << status;
  EXPECT_EQ(0u, dev_.Info().fd_bytes);
  EXPECT_EQ(total_before, SettledTotal());
  for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]})
    close(fd);
}

// --------------------------------------------------- back to zero, limits

TEST_F(Contig, MunmapCloseAndExitBringTheCountersBackToZero) {
  const uint64_t total_before = SettledTotal();
  // A process that exits with three mappings and its fd open.
  const ChildOutcome outcome = RunInChild([]() -> std::string {
    Device dev;
    if (dev.Open() != 0) return "open";
    int err = 0;
    for (size_t pages : {1, 16, 1024})
      if (dev.Map(pages * Page(), &err) == nullptr) return Errno(err);
    if (dev.Info().fd_mappings != 3) return "not 3 mappings";
    return "";
  });
  EXPECT_TRUE(outcome.passed) << outcome.message;
  EXPECT_EQ(total_before, SettledTotal()) << "after exit";

  // close() with the mapping alive: the mapping holds the file.
  const int other = open(kDevice, O_RDWR | O_CLOEXEC);
  ASSERT_GE(other, 0);
  void* p = mmap(nullptr, 4 * Page(), PROT_READ | PROT_WRITE, MAP_SHARED, other,
                 kContig);
  ASSERT_NE(MAP_FAILED, p) << Errno(errno);
  EXPECT_EQ(4 * Page(), dev_.Info().process_bytes)
      << "another fd of this process";
  ASSERT_EQ(0, close(other));
  static_cast<char*>(p)[0] = 1;
  EXPECT_EQ(4 * Page(), dev_.Info().process_bytes) << "after close";
  EXPECT_EQ(total_before + 4 * Page(), dev_.Info().total_bytes);
  ASSERT_EQ(0, munmap(p, 4 * Page()));
  const regcache_kmod_contig_info info = dev_.Info();
  EXPECT_EQ(0u, info.process_bytes);
  EXPECT_EQ(0u, info.process_mappings);
  EXPECT_EQ(total_before, info.total_bytes);
}

TEST_F(Contig, OverTheProcessLimitGivesEnomem) {
  ScopedParam limit("contig_max_per_process_mb", 8);
  ASSERT_TRUE(limit.ok());
  int err = 0;
  EXPECT_EQ(nullptr, dev_.Map(8 * kMiB + Page(), &err));
  EXPECT_EQ(ENOMEM, err) << "one mapping over the limit";
  char* a = MustMap(4 * kMiB);
  ASSERT_NE(nullptr, a);
  Device other;  // the limit is per process, not per fd
  ASSERT_EQ(0, other.Open());
  char* b = other.Map(4 * kMiB, &err);
  ASSERT_NE(nullptr, b) << Errno(err);
  EXPECT_EQ(nullptr, other.Map(Page(), &err));
  EXPECT_EQ(ENOMEM, err) << "a third, from another fd";
  EXPECT_EQ(8 * kMiB, dev_.Info().process_bytes);
  EXPECT_EQ(8 * kMiB, dev_.Info().max_process_bytes);
  ASSERT_EQ(0, munmap(b, 4 * kMiB));
  char* c = other.Map(4 * kMiB, &err);
  EXPECT_NE(nullptr, c) << "room again after munmap: " << Errno(err);
  if (c != nullptr) munmap(c, 4 * kMiB);
  ASSERT_EQ(0, munmap(a, 4 * kMiB));
}

TEST_F(Contig, OverTheTotalLimitGivesEnomemToEveryProcess) {
  const uint64_t total = SettledTotal();
  ScopedParam limit("contig_max_total_mb", long((total + kMiB - 1) >> 20) + 4);
  ASSERT_TRUE(limit.ok());
  int err = 0;
  char* a = MustMap(4 * kMiB);
  ASSERT_NE(nullptr, a);
  EXPECT_EQ(nullptr, dev_.Map(kMiB, &err));
  EXPECT_EQ(ENOMEM, err);
  const ChildOutcome outcome = RunInChild([]() -> std::string {
    Device dev;
    if (dev.Open() != 0) return "open";
    int err = 0;
    if (dev.Map(kMiB, &err) != nullptr || err != ENOMEM)
      return "another process: " + Errno(err) + ", expected ENOMEM";
    return "";
  });
  EXPECT_TRUE(outcome.passed) << outcome.message;
  ASSERT_EQ(0, munmap(a, 4 * kMiB));
}

TEST_F(Contig, ZeroLimitsTurnItOff) {
  {
    ScopedParam off("contig_max_per_process_mb", 0);
    ASSERT_TRUE(off.ok());
    int err = 0;
    EXPECT_EQ(nullptr, dev_.Map(Page(), &err));
    EXPECT_EQ(ENOMEM, err);
    EXPECT_EQ(0u, dev_.Info().max_bytes);
  }
  ScopedParam off("contig_max_total_mb", 0);
  ASSERT_TRUE(off.ok());
  int err = 0;
  EXPECT_EQ(nullptr, dev_.Map(Page(), &err));
  EXPECT_EQ(ENOMEM, err);
}

// More than the machine has: ENOMEM, not a long search or an OOM kill.
TEST_F(Contig, MoreThanRamGivesEnomem) {
  ScopedParam p("contig_max_per_process_mb", 1 << 20);
  ScopedParam t("contig_max_total_mb", 1 << 20);
  ASSERT_TRUE(p.ok() && t.ok());
  int err = 0;
  EXPECT_EQ(nullptr, dev_.Map(size_t{64} << 30, &err));
  EXPECT_EQ(ENOMEM, err);
  EXPECT_EQ(0u, dev_.Info().fd_bytes);
}

// Random lengths, protections, flags and offsets near the contiguous one:
// only the documented errors, and what maps is shared and not executable.
TEST_F(Contig, RandomMmapsFailCleanly) {
  uint64_t seed = uint64_t(time(nullptr));
  if (const char* s = getenv("REGCACHE_FUZZ_SEED"))
    seed = strtoull(s, nullptr, 0);
  printf("fuzz seed %llu (REGCACHE_FUZZ_SEED to repeat)\n",
         (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 300; ++i) {
    const size_t length =
        (rng() % 4 == 0) ? (rng() % (8 * kMiB)) : (1 + rng() % 64) * Page();
    const int prot = int(rng() % 8);
    const int flags = rng() % 3 == 0 ? MAP_PRIVATE : MAP_SHARED;
    const off_t offset =
        rng() % 4 == 0 ? kContig + off_t((rng() % 4) * Page()) : kContig;
    int err = 0;
    char* p = dev_.Map(length, &err, prot, flags, offset);
    if (p == nullptr) {
      EXPECT_TRUE(err == EINVAL || err == ENOMEM || err == EACCES)
          << "length " << length << " prot " << prot << " flags " << flags
          << " offset " << offset << ": " << Errno(err) << " (seed " << seed
          << ")";
      continue;
    }
    EXPECT_EQ(MAP_SHARED, flags);
    EXPECT_FALSE(prot & PROT_EXEC);
    EXPECT_EQ(kContig, offset);
    if (prot & PROT_READ) (void)*(volatile char*)p;
    munmap(p, length);
  }
  EXPECT_EQ(0u, dev_.Info().fd_bytes);
}

// ---------------------------------------------------------------- RDMA

// ibv_reg_mr() pins contiguous memory like any other (pin_user_pages works
// on it: no VM_IO/VM_PFNMAP), and an RDMA WRITE through the registration
// lands in it. Unmapped while registered, its pages stay pinned (the module
// stops counting them) and take writes until the MR goes.
TEST_F(Contig, IbvRegMrPinsItAndAnRdmaWriteLandsInIt) {
  std::string why;
  if (!LoopbackRc::AnyDevice(&why)) GTEST_SKIP() << why;
  std::unique_ptr<LoopbackRc> rc;
  REGCACHE_OPEN_LOOPBACK_OR_SKIP(rc);
  const int access =
      IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

  std::vector<size_t> sizes = {4 * kMiB};
  if ((info_.flags & REGCACHE_KMOD_CONTIG_F_LARGE) &&
      info_.max_bytes >= 64 * kMiB)
    sizes.push_back(64 * kMiB);
  const size_t chunk = 64 * 1024;
  std::vector<char> src_buf(chunk);
  ibv_mr* src = ibv_reg_mr(rc->pd(), src_buf.data(), chunk, access);
  ASSERT_NE(nullptr, src) << "ibv_reg_mr(source): " << Errno(errno);

  for (size_t length : sizes) {
    SCOPED_TRACE(std::to_string(length >> 20) + " MiB");
    int err = 0;
    char* p = dev_.Map(length, &err);
    if (p == nullptr && err == ENOMEM && length > info_.max_buddy_bytes) {
      printf("%zu MiB: ENOMEM, not registered\n", length >> 20);
      continue;
    }
    ASSERT_NE(nullptr, p) << Errno(err);
    ibv_mr* mr = ibv_reg_mr(rc->pd(), p, length, access);
    ASSERT_NE(nullptr, mr) << "ibv_reg_mr of the contiguous mapping: "
                           << Errno(errno);
    // Writes at the start, across the middle and at the end.
    for (size_t off : {size_t{0}, length / 2 - chunk / 2, length - chunk}) {
      for (size_t i = 0; i < chunk; ++i) src_buf[i] = char(off + i * 7 + 1);
      std::string error;
      const int status =
          rc->Write(src_buf.data(), chunk, src->lkey,
                    reinterpret_cast<uintptr_t>(p + off), mr->rkey, &error);
      ASSERT_EQ(IBV_WC_SUCCESS, status)
          << LoopbackRc::StatusText(status) << " " << error;
      EXPECT_EQ(0, memcmp(p + off, src_buf.data(), chunk))
          << "the WRITE at offset " << off << " did not land";
    }

    // Unmapped while registered: the counters drop, the pages stay pinned
    // and a WRITE through the old rkey still completes into them.
    ASSERT_EQ(0, munmap(p, length));
    EXPECT_EQ(0u, dev_.Info().fd_bytes);
    std::string error;
    const int status =
        rc->Write(src_buf.data(), chunk, src->lkey,
                  reinterpret_cast<uintptr_t>(p), mr->rkey, &error);
    EXPECT_EQ(IBV_WC_SUCCESS, status)
        << "WRITE into the pinned pages after munmap: "
        << LoopbackRc::StatusText(status) << " " << error;
    EXPECT_EQ(0, ibv_dereg_mr(mr));
  }
  EXPECT_EQ(0, ibv_dereg_mr(src));
  EXPECT_EQ("", rc->Close());
}

}  // namespace
