// SPDX-License-Identifier: BSD-2-Clause
// Raw ABI tests of the regcache kernel module (/dev/regcache): the shared
// area, MONITOR/UNMONITOR, which memory operations make a range stale (and
// with which reason), the event ring and its overflow, poll(), fork and exit,
// bad input, and a bounded ioctl fuzzer. They need the module loaded, so they
// run in the VM (tests/vm/run-in-vm.sh --module .../regcache.ko -- THIS);
// elsewhere every test that needs the device skips and says why.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "regcache/kmod_uapi.h"

extern "C" unsigned long regcache_kmod_uapi_c_monitor_cmd(void);

namespace {

constexpr const char* kDevice = REGCACHE_KMOD_DEVICE_PATH;

size_t PageSize() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

uint64_t Addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// One context: an fd on /dev/regcache and its shared area, mapped whole.
class Ctx {
 public:
  Ctx() = default;
  Ctx(const Ctx&) = delete;
  Ctx& operator=(const Ctx&) = delete;
  ~Ctx() { Close(); }

  // 0 or -errno.
  int Open() {
    fd_ = open(kDevice, O_RDWR | O_CLOEXEC);
    if (fd_ < 0) return -errno;
    void* first = mmap(nullptr, PageSize(), PROT_READ, MAP_SHARED, fd_, 0);
    if (first == MAP_FAILED) return -errno;
    size_ = static_cast<const regcache_kmod_shared*>(first)->map_size;
    munmap(first, PageSize());
    void* all = mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
    if (all == MAP_FAILED) return -errno;
    base_ = static_cast<const char*>(all);
    return 0;
  }

  void Close() {
    if (base_ != nullptr) munmap(const_cast<char*>(base_), size_);
    base_ = nullptr;
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  int fd() const { return fd_; }
  const char* base() const { return base_; }
  size_t size() const { return size_; }
  const regcache_kmod_shared& hdr() const {
    return *reinterpret_cast<const regcache_kmod_shared*>(base_);
  }
  static uint64_t Load(const __u64* word) {
    return __atomic_load_n(word, __ATOMIC_ACQUIRE);
  }
  const __u64* GenWord(uint32_t slot) const {
    return reinterpret_cast<const __u64*>(base_ + hdr().gen_offset) + slot;
  }
  uint64_t Gen(uint32_t slot) const { return Load(GenWord(slot)); }
  uint64_t Seq() const { return Load(&hdr().inval_seq); }
  uint64_t Head() const { return Load(&hdr().ring_head); }

  int Ioctl(unsigned long cmd, void* arg) const {
    return ioctl(fd_, cmd, arg) == 0 ? 0 : -errno;
  }
  int Monitor(const void* start, size_t length, uint64_t cookie,
              regcache_kmod_range* out) const {
    regcache_kmod_range r{};
    r.start = Addr(start);
    r.length = length;
    r.cookie = cookie;
    int ret = Ioctl(REGCACHE_IOC_MONITOR, &r);
    if (ret == 0 && out != nullptr) *out = r;
    return ret;
  }
  int Unmonitor(uint32_t slot, uint64_t generation) const {
    regcache_kmod_unmonitor u{};
    u.slot = slot;
    u.generation = generation;
    return Ioctl(REGCACHE_IOC_UNMONITOR, &u);
  }
  regcache_kmod_stats Stats() const {
    regcache_kmod_stats st{};
    EXPECT_EQ(0, Ioctl(REGCACHE_IOC_STATS, &st));
    return st;
  }

  // The reader protocol of docs/kmod.md: copy [*tail, head), re-read head,
  // and trust the copies only if the writer cannot have lapped *tail.
  // Returns false (and moves *tail to head) when events were lost.
  bool ReadEvents(uint64_t* tail, std::vector<regcache_kmod_event>* out) const {
    const uint64_t n = hdr().ring_entries;
    const auto* ring =
        reinterpret_cast<const regcache_kmod_event*>(base_ + hdr().ring_offset);
    const uint64_t head = Head();
    std::vector<regcache_kmod_event> copies;
    if (head - *tail < n) {
      for (uint64_t i = *tail; i != head; ++i) {
        const regcache_kmod_event& e = ring[i & (n - 1)];
        regcache_kmod_event c{};
        c.seq = __atomic_load_n(&e.seq, __ATOMIC_RELAXED);
        c.cookie = __atomic_load_n(&e.cookie, __ATOMIC_RELAXED);
        c.generation = __atomic_load_n(&e.generation, __ATOMIC_RELAXED);
        c.slot = __atomic_load_n(&e.slot, __ATOMIC_RELAXED);
        c.reason = __atomic_load_n(&e.reason, __ATOMIC_RELAXED);
        c.flags = __atomic_load_n(&e.flags, __ATOMIC_RELAXED);
        copies.push_back(c);
      }
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    const uint64_t head2 = Head();
    if (head2 - *tail >= n) {
      *tail = head2;
      return false;
    }
    out->insert(out->end(), copies.begin(), copies.end());
    *tail = head;
    return true;
  }

 private:
  int fd_ = -1;
  const char* base_ = nullptr;
  size_t size_ = 0;
};

bool DeviceMissing(std::string* why) {
  if (access(kDevice, F_OK) == 0) return false;
  *why = std::string(kDevice) +
         " is absent: the regcache module is not "
         "loaded (these tests run in the VM: tests/vm/run-in-vm.sh --module "
         "src/kmod_notifier/regcache.ko -- kmod_abi_test)";
  return true;
}

#define SKIP_WITHOUT_DEVICE()                    \
  do {                                           \
    std::string why_skipped;                     \
    if (DeviceMissing(&why_skipped)) {           \
      printf("SKIP: %s\n", why_skipped.c_str()); \
      GTEST_SKIP() << why_skipped;               \
    }                                            \
  } while (0)

// Anonymous read-write private memory, every page touched.
char* MapAnon(size_t pages) {
  void* p = mmap(nullptr, pages * PageSize(), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  for (size_t i = 0; i < pages; ++i) static_cast<char*>(p)[i * PageSize()] = 1;
  return static_cast<char*>(p);
}

const char* ReasonName(uint16_t reason) {
  switch (reason) {
    case REGCACHE_KMOD_REASON_UNMAP:
      return "UNMAP";
    case REGCACHE_KMOD_REASON_CLEAR:
      return "CLEAR";
    case REGCACHE_KMOD_REASON_RELEASE:
      return "RELEASE";
    case REGCACHE_KMOD_REASON_MIGRATE:
      return "MIGRATE";
    case REGCACHE_KMOD_REASON_EXCLUSIVE:
      return "EXCLUSIVE";
    default:
      return "?";
  }
}

long ModuleRefcount() {
  std::ifstream in("/sys/module/regcache/refcnt");
  long value = -1;
  in >> value;
  return value;
}

// The module's refcount once it stops changing: a process an earlier test
// forked may still be releasing its context. Waits up to 2 s.
long SettledModuleRefcount() {
  long value = ModuleRefcount();
  for (int i = 0; i < 100; ++i) {
    usleep(20000);
    const long now = ModuleRefcount();
    if (now == value) break;
    value = now;
  }
  return value;
}

// Waits for a child and returns its exit status, or 1000 + signal.
int WaitChild(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 1000 + WTERMSIG(status);
}

// Maps `pages` fresh pages (see MapAnon) at *buf and monitors them all in
// `ctx`, as *r. Call it under ASSERT_NO_FATAL_FAILURE.
void MapAndMonitor(const Ctx& ctx, size_t pages, uint64_t cookie, char** buf,
                   regcache_kmod_range* r) {
  *buf = MapAnon(pages);
  ASSERT_NE(nullptr, *buf);
  ASSERT_EQ(0, ctx.Monitor(*buf, pages * PageSize(), cookie, r));
}

// Runs `body` in the parent while a fork child lives (the child exits once
// the parent lets it go, after `body`), and expects the child's clean exit.
template <typename Body>
void WhileForkChildLives(Body body) {
  int go[2];
  ASSERT_EQ(0, pipe(go));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    char c;
    close(go[1]);
    _exit(read(go[0], &c, 1) == 0 ? 0 : 1);
  }
  close(go[0]);
  body();
  close(go[1]);
  EXPECT_EQ(0, WaitChild(pid));
}

class KmodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_DEVICE();
    ASSERT_EQ(0, ctx_.Open()) << "open/mmap " << kDevice;
    tail_ = ctx_.Head();
  }

  // Reads new events into seen_; false if the ring overflowed.
  bool Drain() { return ctx_.ReadEvents(&tail_, &seen_); }

  // The newest event seen for this use of the slot, or nullptr.
  const regcache_kmod_event* EventFor(const regcache_kmod_range& r) {
    Drain();
    const regcache_kmod_event* found = nullptr;
    for (const auto& e : seen_)
      if (e.slot == r.slot && e.cookie == r.cookie &&
          e.generation > r.generation)
        found = &e;
    return found;
  }

  void ExpectStale(const regcache_kmod_range& r, uint16_t reason,
                   const char* what) {
    EXPECT_NE(r.generation, ctx_.Gen(r.slot))
        << what << ": generation unchanged";
    const regcache_kmod_event* e = EventFor(r);
    ASSERT_NE(nullptr, e) << what << ": no event for slot " << r.slot;
    EXPECT_EQ(reason, e->reason) << what << ": reason " << ReasonName(e->reason)
                                 << ", expected " << ReasonName(reason);
    EXPECT_EQ(ctx_.Gen(r.slot), e->generation) << what;
  }

  void ExpectFresh(const regcache_kmod_range& r, const char* what) {
    EXPECT_EQ(r.generation, ctx_.Gen(r.slot)) << what << ": generation changed";
    const regcache_kmod_event* e = EventFor(r);
    EXPECT_EQ(nullptr, e) << what << ": unexpected " << ReasonName(e->reason)
                          << " event";
  }

  // Monitors the two pages at `buf`, lets `change(buf)` alter them, and
  // expects the range to be stale at once, for `reason`.
  template <typename Change>
  void ExpectStaleAfter(char* buf, uint16_t reason, const char* what,
                        Change change) {
    regcache_kmod_range r{};
    ASSERT_EQ(0, ctx_.Monitor(buf, 2 * PageSize(), 1, &r));
    ASSERT_NO_FATAL_FAILURE(change(buf));
    ExpectStale(r, reason, what);
  }
  // The same on two fresh anonymous pages.
  template <typename Change>
  void ExpectStaleAfter(uint16_t reason, const char* what, Change change) {
    char* buf = MapAnon(2);
    ASSERT_NE(nullptr, buf);
    ExpectStaleAfter(buf, reason, what, change);
    munmap(buf, 2 * PageSize());
  }

  // Monitors two fresh pages, lets `change(buf)` act on them, and expects
  // the range to stay fresh although the notifier was called: it filtered
  // the call out (stats.ignored_calls).
  template <typename Change>
  void ExpectIgnoredAfter(const char* what, Change change) {
    char* buf = nullptr;
    regcache_kmod_range r{};
    ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx_, 2, 1, &buf, &r));
    const uint64_t ignored = ctx_.Stats().ignored_calls;
    ASSERT_NO_FATAL_FAILURE(change(buf));
    ExpectFresh(r, what);
    EXPECT_GT(ctx_.Stats().ignored_calls, ignored);
    munmap(buf, 2 * PageSize());
  }

  Ctx ctx_;
  uint64_t tail_ = 0;
  std::vector<regcache_kmod_event> seen_;
};

// ---------------------------------------------------------------- layout

TEST(KmodUapi, StructLayoutIsFixed) {
  static_assert(sizeof(regcache_kmod_shared) == 192);
  static_assert(sizeof(regcache_kmod_event) == 32);
  static_assert(sizeof(regcache_kmod_range) == 40);
  static_assert(sizeof(regcache_kmod_monitor_batch) == 16);
  static_assert(sizeof(regcache_kmod_unmonitor) == 16);
  static_assert(sizeof(regcache_kmod_ack) == 16);
  static_assert(sizeof(regcache_kmod_stats) == 208);
  EXPECT_EQ(static_cast<unsigned long>(REGCACHE_IOC_MONITOR),
            regcache_kmod_uapi_c_monitor_cmd());
}

// ---------------------------------------------------------------- shared area

TEST_F(KmodTest, SharedAreaCarriesAbiVersionAndGeometry) {
  const regcache_kmod_shared& h = ctx_.hdr();
  EXPECT_EQ(REGCACHE_KMOD_ABI_VERSION, h.abi_version);
  EXPECT_EQ(sizeof(regcache_kmod_shared), h.header_size);
  EXPECT_GE(h.max_ranges, 512u);
  EXPECT_GE(h.ring_entries, 64u);
  EXPECT_EQ(0u, h.ring_entries & (h.ring_entries - 1)) << "not a power of two";
  EXPECT_EQ(PageSize(), h.ring_offset);
  EXPECT_GE(h.gen_offset,
            h.ring_offset + h.ring_entries * sizeof(regcache_kmod_event));
  EXPECT_EQ(0u, h.gen_offset % PageSize());
  EXPECT_GE(h.map_size, h.gen_offset + uint64_t{h.max_ranges} * 8);
  EXPECT_EQ(0u, h.flags);
  // Generation pages are allocated on first touch and read as zero.
  EXPECT_EQ(0u, ctx_.Gen(h.max_ranges - 1));
  EXPECT_EQ(0u, ctx_.Gen(0));
}

TEST_F(KmodTest, SharedAreaCannotBeMappedOrMadeWritable) {
  const int fd = ctx_.fd();
  errno = 0;
  EXPECT_EQ(MAP_FAILED, mmap(nullptr, PageSize(), PROT_READ | PROT_WRITE,
                             MAP_SHARED, fd, 0));
  EXPECT_EQ(EACCES, errno) << "PROT_WRITE";
  errno = 0;
  EXPECT_EQ(MAP_FAILED, mmap(nullptr, PageSize(), PROT_READ | PROT_EXEC,
                             MAP_SHARED, fd, 0));
  EXPECT_EQ(EACCES, errno) << "PROT_EXEC";
  errno = 0;
  EXPECT_EQ(MAP_FAILED,
            mmap(nullptr, PageSize(), PROT_READ, MAP_PRIVATE, fd, 0));
  EXPECT_EQ(EINVAL, errno) << "MAP_PRIVATE";
  errno = 0;
  EXPECT_EQ(MAP_FAILED, mmap(nullptr, ctx_.size() + PageSize(), PROT_READ,
                             MAP_SHARED, fd, 0));
  EXPECT_EQ(EINVAL, errno) << "longer than map_size";
  errno = 0;
  EXPECT_EQ(MAP_FAILED, mmap(nullptr, PageSize(), PROT_READ, MAP_SHARED, fd,
                             static_cast<off_t>(ctx_.size())));
  EXPECT_EQ(EINVAL, errno) << "offset at map_size";

  void* area = const_cast<char*>(ctx_.base());
  errno = 0;
  EXPECT_EQ(-1, mprotect(area, PageSize(), PROT_READ | PROT_WRITE));
  EXPECT_EQ(EACCES, errno) << "mprotect(PROT_WRITE)";
  errno = 0;
  EXPECT_EQ(-1, mprotect(area, PageSize(), PROT_READ | PROT_EXEC));
  EXPECT_EQ(EACCES, errno) << "mprotect(PROT_EXEC)";
  // The area cannot grow either (VM_DONTEXPAND).
  EXPECT_EQ(MAP_FAILED, mremap(area, ctx_.size(), ctx_.size() + PageSize(),
                               MREMAP_MAYMOVE));
  EXPECT_EQ(REGCACHE_KMOD_ABI_VERSION, ctx_.hdr().abi_version);
}

// docs/kmod.md maps the area with open(O_RDONLY) + mmap(PROT_READ,
// MAP_SHARED). The kernel clears VM_SHARED for a shared mapping of a
// read-only file (only VM_MAYSHARE says MAP_SHARED then): a module that
// checked VM_SHARED refused this with EINVAL.
TEST_F(KmodTest, ReadOnlyOpenMapsTheSharedAreaShared) {
  const int fd = open(kDevice, O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << "open(O_RDONLY): " << strerror(errno);
  void* area = mmap(nullptr, PageSize(), PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(MAP_FAILED, area)
      << "mmap(PROT_READ, MAP_SHARED) of an O_RDONLY fd: " << strerror(errno);
  EXPECT_EQ(REGCACHE_KMOD_ABI_VERSION,
            static_cast<const regcache_kmod_shared*>(area)->abi_version);
  // Still MAP_SHARED only, still never writable.
  errno = 0;
  EXPECT_EQ(MAP_FAILED,
            mmap(nullptr, PageSize(), PROT_READ, MAP_PRIVATE, fd, 0));
  EXPECT_EQ(EINVAL, errno) << "MAP_PRIVATE of an O_RDONLY fd";
  errno = 0;
  EXPECT_EQ(-1, mprotect(area, PageSize(), PROT_READ | PROT_WRITE));
  EXPECT_EQ(EACCES, errno) << "mprotect(PROT_WRITE)";
  munmap(area, PageSize());
  close(fd);
}

// The docs promise a fork child never gets the area (VM_DONTCOPY).
// madvise(MADV_DOFORK) would clear that and hand the child a live view of
// the parent's generations; the module refuses it (VM_IO), and a child
// forked after the attempt still has no mapping there.
TEST_F(KmodTest, MadviseDoforkCannotHandTheAreaToAForkChild) {
  void* area = const_cast<char*>(ctx_.base());
  errno = 0;
  EXPECT_EQ(-1, madvise(area, ctx_.size(), MADV_DOFORK))
      << "MADV_DOFORK on the shared area was accepted";
  EXPECT_EQ(EINVAL, errno);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    unsigned char vec;
    _exit(mincore(area, PageSize(), &vec) == -1 && errno == ENOMEM ? 0 : 1);
  }
  EXPECT_EQ(0, WaitChild(pid)) << "the fork child has the parent's area mapped";
}

// ---------------------------------------------------------------- monitor

TEST_F(KmodTest, MonitorReturnsSlotAndItsGeneration) {
  char* buf = nullptr;
  regcache_kmod_range r{};
  ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx_, 2, 77, &buf, &r));
  EXPECT_LT(r.slot, ctx_.hdr().max_ranges);
  EXPECT_EQ(r.generation, ctx_.Gen(r.slot));
  regcache_kmod_stats st = ctx_.Stats();
  EXPECT_EQ(1u, st.ranges_now);
  EXPECT_EQ(1u, st.monitors);

  // UNMONITOR bumps the generation, with no event, and frees the slot.
  const uint64_t head = ctx_.Head();
  ASSERT_EQ(0, ctx_.Unmonitor(r.slot, r.generation));
  EXPECT_GT(ctx_.Gen(r.slot), r.generation);
  EXPECT_EQ(head, ctx_.Head());
  EXPECT_EQ(0u, ctx_.Stats().ranges_now);

  // The slot is reused, and its generation never goes back.
  regcache_kmod_range again{};
  ASSERT_EQ(0, ctx_.Monitor(buf, PageSize(), 78, &again));
  EXPECT_EQ(r.slot, again.slot);
  EXPECT_GT(again.generation, r.generation);
  // The old token no longer names the slot.
  EXPECT_EQ(-ENOENT, ctx_.Unmonitor(r.slot, r.generation));
  EXPECT_EQ(0, ctx_.Unmonitor(again.slot, again.generation));
  munmap(buf, 2 * PageSize());
}

TEST_F(KmodTest, MonitorOfUnmappedMemoryIsAllowed) {
  char* buf = MapAnon(1);
  ASSERT_NE(nullptr, buf);
  ASSERT_EQ(0, munmap(buf, PageSize()));
  regcache_kmod_range r{};
  ASSERT_EQ(0, ctx_.Monitor(buf, PageSize(), 1, &r));
  ExpectFresh(r, "monitor of a hole");
  EXPECT_EQ(0, ctx_.Unmonitor(r.slot, r.generation));
}

// ---------------------------------------------------------------- invalidation

TEST_F(KmodTest, MunmapMakesRangeStaleBeforeItReturns) {
  char* buf = nullptr;
  regcache_kmod_range r{};
  ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx_, 4, 0xc0ffee, &buf, &r));
  const uint64_t seq = ctx_.Seq();
  ASSERT_EQ(0, munmap(buf, 4 * PageSize()));
  // No waiting: the notifier ran inside munmap().
  EXPECT_GT(ctx_.Seq(), seq);
  ExpectStale(r, REGCACHE_KMOD_REASON_UNMAP, "munmap");
  regcache_kmod_stats st = ctx_.Stats();
  EXPECT_EQ(1u, st.invalidated[REGCACHE_KMOD_REASON_UNMAP]);
  // Stale ranges keep their slot until UNMONITOR.
  EXPECT_EQ(1u, st.ranges_now);
  EXPECT_EQ(0, ctx_.Unmonitor(r.slot, r.generation));
}

TEST_F(KmodTest, StaleRangeReportsOnce) {
  char* buf = nullptr;
  regcache_kmod_range r{};
  ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx_, 2, 5, &buf, &r));
  ASSERT_EQ(0, madvise(buf, PageSize(), MADV_DONTNEED));
  const uint64_t gen = ctx_.Gen(r.slot);
  const uint64_t head = ctx_.Head();
  ASSERT_EQ(0, munmap(buf, 2 * PageSize()));
  EXPECT_EQ(gen, ctx_.Gen(r.slot));
  EXPECT_EQ(head, ctx_.Head());
  EXPECT_EQ(0, ctx_.Unmonitor(r.slot, r.generation));
}

TEST_F(KmodTest, PartialMunmapInvalidatesOnlyOverlappingRanges) {
  char* buf = MapAnon(4);
  ASSERT_NE(nullptr, buf);
  const size_t pg = PageSize();
  regcache_kmod_range all{}, first{}, third{}, last{};
  ASSERT_EQ(0, ctx_.Monitor(buf, 4 * pg, 1, &all));
  ASSERT_EQ(0, ctx_.Monitor(buf, pg, 2, &first));
  ASSERT_EQ(0, ctx_.Monitor(buf + 2 * pg, pg, 3, &third));
  ASSERT_EQ(0, ctx_.Monitor(buf + 3 * pg, pg, 4, &last));
  ASSERT_EQ(0, munmap(buf + 2 * pg, pg));
  ExpectStale(all, REGCACHE_KMOD_REASON_UNMAP, "range spanning the hole");
  ExpectStale(third, REGCACHE_KMOD_REASON_UNMAP, "range equal to the hole");
  ExpectFresh(first, "range before the hole");
  ExpectFresh(last, "range after the hole");
  munmap(buf, 4 * pg);
}

TEST_F(KmodTest, MremapMoveInvalidatesTheOldRange) {
  const size_t pg = PageSize();
  char* buf = nullptr;
  char* target = nullptr;
  regcache_kmod_range r{}, dst{};
  ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx_, 2, 1, &buf, &r));
  ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx_, 2, 2, &target, &dst));
  void* moved =
      mremap(buf, 2 * pg, 2 * pg, MREMAP_MAYMOVE | MREMAP_FIXED, target);
  ASSERT_EQ(static_cast<void*>(target), moved);
  ExpectStale(r, REGCACHE_KMOD_REASON_UNMAP, "mremap source");
  ExpectStale(dst, REGCACHE_KMOD_REASON_UNMAP, "mremap target replaced");
  munmap(target, 2 * pg);
}

TEST_F(KmodTest, MremapShrinkInvalidatesTheTail) {
  const size_t pg = PageSize();
  char* buf = MapAnon(4);
  ASSERT_NE(nullptr, buf);
  regcache_kmod_range head{}, tail{};
  ASSERT_EQ(0, ctx_.Monitor(buf, 2 * pg, 1, &head));
  ASSERT_EQ(0, ctx_.Monitor(buf + 3 * pg, pg, 2, &tail));
  ASSERT_EQ(static_cast<void*>(buf), mremap(buf, 4 * pg, 2 * pg, 0));
  ExpectStale(tail, REGCACHE_KMOD_REASON_UNMAP, "mremap shrink tail");
  ExpectFresh(head, "mremap shrink head");
  munmap(buf, 2 * pg);
}

TEST_F(KmodTest, MapFixedOverInvalidates) {
  ExpectStaleAfter(REGCACHE_KMOD_REASON_UNMAP, "MAP_FIXED over", [](char* buf) {
    void* p = mmap(buf, PageSize(), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    ASSERT_EQ(static_cast<void*>(buf), p);
  });
}

TEST_F(KmodTest, MadviseDontneedInvalidatesWithClear) {
  ExpectStaleAfter(REGCACHE_KMOD_REASON_CLEAR, "MADV_DONTNEED", [](char* buf) {
    ASSERT_EQ(0, madvise(buf + PageSize(), PageSize(), MADV_DONTNEED));
  });
}

// 6.1's madvise_free_single_vma() calls the notifier (MMU_NOTIFY_CLEAR) for
// the whole range at once, although the pages are only freed lazily: the
// invalidation is synchronous, which is what a cache needs (the pages may be
// gone at any later moment).
TEST_F(KmodTest, MadviseFreeInvalidatesWithClearAtOnce) {
  ExpectStaleAfter(REGCACHE_KMOD_REASON_CLEAR, "MADV_FREE", [](char* buf) {
    ASSERT_EQ(0, madvise(buf, PageSize(), MADV_FREE));
  });
}

TEST_F(KmodTest, MadviseRemoveOnSharedMemoryInvalidates) {
  const size_t pg = PageSize();
  int mfd = static_cast<int>(syscall(SYS_memfd_create, "kmod_abi_test", 0));
  ASSERT_GE(mfd, 0);
  ASSERT_EQ(0, ftruncate(mfd, static_cast<off_t>(2 * pg)));
  char* buf = static_cast<char*>(
      mmap(nullptr, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0));
  ASSERT_NE(MAP_FAILED, static_cast<void*>(buf));
  buf[0] = buf[pg] = 1;
  ExpectStaleAfter(buf, REGCACHE_KMOD_REASON_CLEAR, "MADV_REMOVE", [](char* p) {
    ASSERT_EQ(0, madvise(p, PageSize(), MADV_REMOVE));
  });
  munmap(buf, 2 * pg);
  close(mfd);
}

TEST_F(KmodTest, ShmdtInvalidates) {
  const size_t pg = PageSize();
  int id = shmget(IPC_PRIVATE, 2 * pg, IPC_CREAT | 0600);
  ASSERT_GE(id, 0) << strerror(errno);
  char* buf = static_cast<char*>(shmat(id, nullptr, 0));
  shmctl(id, IPC_RMID, nullptr);
  ASSERT_NE(reinterpret_cast<char*>(-1), buf);
  buf[0] = buf[pg] = 1;
  ExpectStaleAfter(buf, REGCACHE_KMOD_REASON_UNMAP, "shmdt",
                   [](char* p) { ASSERT_EQ(0, shmdt(p)); });
}

// brk() moves under malloc's feet, so the child does it with no malloc
// between growing and shrinking, and reports through its exit status.
TEST_F(KmodTest, BrkShrinkInvalidates) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Ctx child;
    if (child.Open() != 0) _exit(10);
    const size_t pg = PageSize();
    char* cur = static_cast<char*>(sbrk(0));
    char* start = reinterpret_cast<char*>((Addr(cur) + pg - 1) & ~(pg - 1));
    const size_t grow = static_cast<size_t>(start - cur) + 4 * pg;
    if (sbrk(static_cast<intptr_t>(grow)) == reinterpret_cast<void*>(-1))
      _exit(11);
    for (int i = 0; i < 4; ++i) start[i * pg] = 1;
    regcache_kmod_range r{};
    if (child.Monitor(start + 2 * pg, 2 * pg, 9, &r) != 0) _exit(12);
    const uint64_t head = child.Head();
    if (sbrk(-static_cast<intptr_t>(2 * pg)) == reinterpret_cast<void*>(-1))
      _exit(13);
    if (child.Gen(r.slot) == r.generation) _exit(14);
    if (child.Head() != head + 1) _exit(15);
    const auto* ring = reinterpret_cast<const regcache_kmod_event*>(
        child.base() + child.hdr().ring_offset);
    const regcache_kmod_event& e = ring[head & (child.hdr().ring_entries - 1)];
    if (e.slot != r.slot || e.reason != REGCACHE_KMOD_REASON_UNMAP) _exit(16);
    sbrk(-static_cast<intptr_t>(grow - 2 * pg));
    _exit(0);
  }
  EXPECT_EQ(0, WaitChild(pid))
      << "10 open, 11 sbrk grow, 12 monitor, 13 sbrk shrink, 14 generation "
         "unchanged, 15 no event, 16 wrong event";
}

TEST_F(KmodTest, MprotectDoesNotInvalidate) {
  // The notifier is called (MMU_NOTIFY_PROTECTION_VMA) and filters it.
  ExpectIgnoredAfter("mprotect", [](char* buf) {
    const size_t pg = PageSize();
    ASSERT_EQ(0, mprotect(buf, pg, PROT_READ));
    ASSERT_EQ(0, mprotect(buf, 2 * pg, PROT_NONE));
    ASSERT_EQ(0, mprotect(buf, 2 * pg, PROT_READ | PROT_WRITE));
    buf[0] = 2;
  });
}

// fork() write-protects the parent's private pages (MMU_NOTIFY_PROTECTION_PAGE
// in copy_page_range()): the pages stay, so nothing is stale.
TEST_F(KmodTest, ForkWithoutWriteDoesNotInvalidate) {
  ExpectIgnoredAfter("fork", [](char*) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(0);
    EXPECT_EQ(0, WaitChild(pid));
    // (A write now, with the child gone, may still copy the page: 6.1 reuses
    // it only if nothing else holds a reference, e.g. a per-CPU LRU batch.)
  });
}

// While the child lives, the parent's write to an UNPINNED private page
// copies it (wp_page_copy(), MMU_NOTIFY_CLEAR): the parent's page really
// changed, so the range is stale. Registered (FOLL_PIN) pages are copied to
// the child at fork instead; see ParentWriteAfterForkKeepsPinnedPage.
TEST_F(KmodTest, ParentWriteAfterForkCopiesUnpinnedPage) {
  char* buf = nullptr;
  regcache_kmod_range r{};
  ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx_, 2, 1, &buf, &r));
  WhileForkChildLives([&] {
    buf[0] = 4;
    ExpectStale(r, REGCACHE_KMOD_REASON_CLEAR, "COW write in the parent");
  });
  munmap(buf, 2 * PageSize());
}

// Pins the buffer with a real ibv_reg_mr on the first RDMA device (rxe0 in
// the VM). 6.1 copies pinned anonymous pages into the child at fork
// (page_needs_cow_for_dma), so the parent keeps its page and its registration
// stays valid: no invalidation.
TEST_F(KmodTest, ParentWriteAfterForkKeepsPinnedPage) {
  int num = 0;
  ibv_device** list = ibv_get_device_list(&num);
  if (list == nullptr || num == 0) {
    if (list != nullptr) ibv_free_device_list(list);
    GTEST_SKIP() << "no RDMA device (the VM rig creates rxe0)";
  }
  ibv_context* dev = ibv_open_device(list[0]);
  ibv_free_device_list(list);
  ASSERT_NE(nullptr, dev);
  ibv_pd* pd = ibv_alloc_pd(dev);
  ASSERT_NE(nullptr, pd);
  const size_t pg = PageSize();
  char* buf = nullptr;
  regcache_kmod_range r{};
  ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx_, 2, 1, &buf, &r));
  ibv_mr* mr =
      ibv_reg_mr(pd, buf, 2 * pg, static_cast<int>(IBV_ACCESS_LOCAL_WRITE));
  ASSERT_NE(nullptr, mr) << strerror(errno);
  ExpectFresh(r, "ibv_reg_mr");

  WhileForkChildLives([&] {
    buf[0] = 5;
    buf[pg] = 5;
    ExpectFresh(r, "write to pinned pages after fork");
  });

  EXPECT_EQ(0, ibv_dereg_mr(mr));
  ibv_dealloc_pd(pd);
  ibv_close_device(dev);
  munmap(buf, 2 * pg);
}

// ---------------------------------------------------------------- the ring

TEST_F(KmodTest, RingOverflowKeepsGenerationsAuthoritative) {
  const uint32_t n = ctx_.hdr().ring_entries + 100;
  const size_t pg = PageSize();
  char* buf = static_cast<char*>(mmap(nullptr, n * pg, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(MAP_FAILED, static_cast<void*>(buf));
  std::vector<regcache_kmod_range> ranges(n);
  for (uint32_t done = 0; done < n;) {
    const uint32_t count =
        std::min<uint32_t>(REGCACHE_KMOD_BATCH_MAX, n - done);
    for (uint32_t i = 0; i < count; ++i) {
      regcache_kmod_range& r = ranges[done + i];
      r = {};
      r.start = Addr(buf + (done + i) * pg);
      r.length = pg;
      r.cookie = done + i;
    }
    regcache_kmod_monitor_batch b{};
    b.ranges = Addr(&ranges[done]);
    b.count = count;
    ASSERT_EQ(0, ctx_.Ioctl(REGCACHE_IOC_MONITOR_BATCH, &b));
    done += count;
  }
  EXPECT_EQ(n, ctx_.Stats().ranges_now);
  const uint64_t seq = ctx_.Seq();
  ASSERT_EQ(0, munmap(buf, n * pg));
  EXPECT_EQ(seq + 1, ctx_.Seq()) << "one munmap, one sequence bump";

  std::vector<regcache_kmod_event> events;
  uint64_t tail = tail_;
  EXPECT_FALSE(ctx_.ReadEvents(&tail, &events)) << "overflow not detected";
  EXPECT_EQ(ctx_.Head(), tail);
  EXPECT_EQ(tail_ + n, ctx_.Head());
  // The rescan: every generation moved.
  for (const regcache_kmod_range& r : ranges)
    ASSERT_NE(r.generation, ctx_.Gen(r.slot)) << "slot " << r.slot;
  regcache_kmod_stats st = ctx_.Stats();
  EXPECT_GE(st.ring_overflows, 100u);
  EXPECT_EQ(n, st.invalidated[REGCACHE_KMOD_REASON_UNMAP]);
  for (const regcache_kmod_range& r : ranges)
    ASSERT_EQ(0, ctx_.Unmonitor(r.slot, r.generation));
  EXPECT_EQ(0u, ctx_.Stats().ranges_now);
}

TEST_F(KmodTest, PollIsReadableUntilEventsAreAcknowledged) {
  pollfd pfd{ctx_.fd(), POLLIN, 0};
  regcache_kmod_ack ack{};
  ack.tail = ctx_.Head();
  ASSERT_EQ(0, ctx_.Ioctl(REGCACHE_IOC_ACK_EVENTS, &ack));
  EXPECT_EQ(0, poll(&pfd, 1, 0));

  char* buf = nullptr;
  regcache_kmod_range r{};
  ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx_, 1, 1, &buf, &r));
  EXPECT_EQ(0, poll(&pfd, 1, 0)) << "MONITOR is not an event";

  // A poller blocked in another thread is woken by the munmap.
  std::atomic<int> polled{-1};
  std::thread waiter([&] {
    pollfd p{ctx_.fd(), POLLIN, 0};
    polled = poll(&p, 1, 10000) == 1 && (p.revents & POLLIN) ? 1 : 0;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(0, munmap(buf, PageSize()));
  waiter.join();
  EXPECT_EQ(1, polled.load());
  pfd.revents = 0;
  EXPECT_EQ(1, poll(&pfd, 1, 0));
  EXPECT_TRUE(pfd.revents & POLLIN);

  ack.tail = ctx_.Head();
  ASSERT_EQ(0, ctx_.Ioctl(REGCACHE_IOC_ACK_EVENTS, &ack));
  EXPECT_EQ(ack.tail, ack.head);
  EXPECT_EQ(0, poll(&pfd, 1, 0));
  // A tail beyond the head is clamped.
  ack.tail = ctx_.Head() + 1000;
  ASSERT_EQ(0, ctx_.Ioctl(REGCACHE_IOC_ACK_EVENTS, &ack));
  EXPECT_EQ(0, poll(&pfd, 1, 0));
  EXPECT_EQ(0, ctx_.Unmonitor(r.slot, r.generation));
}

// ---------------------------------------------------------- deferred wake-up

constexpr const char* kWakeDelayParam =
    "/sys/module/regcache/parameters/wake_delay_us";

// The value of wake_delay_us, or -1 if the module has no such parameter.
long WakeDelayUs() {
  std::ifstream in(kWakeDelayParam);
  long value = -1;
  in >> value;
  return in ? value : -1;
}

// Sets wake_delay_us for the contexts opened while it lives (it is read at
// open), and puts the old value back. ok() is false if it could not be set.
class WakeDelayParam {
 public:
  explicit WakeDelayParam(long us) : old_(WakeDelayUs()) {
    if (old_ < 0) return;
    std::ofstream out(kWakeDelayParam);
    out << us;
    ok_ = static_cast<bool>(out.flush());
  }
  ~WakeDelayParam() {
    if (old_ < 0) return;
    std::ofstream out(kWakeDelayParam);
    out << old_;
  }
  bool ok() const { return ok_; }

 private:
  long old_;
  bool ok_ = false;
};

// A thread blocked in poll(fd, POLLIN) from construction; Wait() returns
// when it woke, or a negative duration if it did not see POLLIN.
class PollWaiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit PollWaiter(int fd)
      : thread_([this, fd] {
          pollfd p{fd, POLLIN, 0};
          ready_ = poll(&p, 1, 30000) == 1 && (p.revents & POLLIN);
          woke_ = Clock::now();
        }) {
    // Long enough under TCG for the thread to be asleep in poll().
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ~PollWaiter() {
    if (thread_.joinable()) thread_.join();
  }
  // Time from `since` to the wake-up.
  std::chrono::microseconds Wait(Clock::time_point since) {
    thread_.join();
    if (!ready_) return std::chrono::microseconds(-1);
    return std::chrono::duration_cast<std::chrono::microseconds>(woke_ - since);
  }

 private:
  bool ready_ = false;
  Clock::time_point woke_;
  std::thread thread_;
};

// Unmaps [buf, buf+len) while a thread is blocked in poll() on `ctx`, runs
// `at_return` as soon as munmap() returned, and sets *woke_after to how long
// after the munmap() the poller woke. Call it under ASSERT_NO_FATAL_FAILURE.
template <typename AtReturn>
void UnmapWhilePolling(const Ctx& ctx, char* buf, size_t len,
                       std::chrono::microseconds* woke_after,
                       AtReturn at_return) {
  PollWaiter waiter(ctx.fd());
  const auto unmapped = PollWaiter::Clock::now();
  ASSERT_EQ(0, munmap(buf, len));
  at_return();
  *woke_after = waiter.Wait(unmapped);
  ASSERT_GE(woke_after->count(), 0) << "poll() did not report POLLIN";
}

// UnmapWhilePolling on one page monitored in a context opened here, so with
// the wake_delay_us in force now; `at_return` gets the context and range.
template <typename AtReturn>
void UnmapOnePageOfANewContext(std::chrono::microseconds* woke_after,
                               AtReturn at_return) {
  Ctx ctx;
  ASSERT_EQ(0, ctx.Open());
  char* buf = nullptr;
  regcache_kmod_range r{};
  ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx, 1, 1, &buf, &r));
  ASSERT_NO_FATAL_FAILURE(UnmapWhilePolling(ctx, buf, PageSize(), woke_after,
                                            [&] { at_return(ctx, r); }));
  EXPECT_EQ(0, ctx.Unmonitor(r.slot, r.generation));
}
void UnmapOnePageOfANewContext(std::chrono::microseconds* woke_after) {
  UnmapOnePageOfANewContext(woke_after,
                            [](const Ctx&, const regcache_kmod_range&) {});
}

// The claim of docs/kmod.md: munmap() bumps the generation before it
// returns; the thread in poll() is woken at most wake_delay_us (rounded up
// to a jiffy, 4 ms at HZ=250) later, plus scheduling.
TEST_F(KmodTest, MunmapBumpsGenerationAtOnceAndWakesPollWithinTheDelay) {
  const long delay_us = WakeDelayUs();
  if (delay_us < 0) GTEST_SKIP() << kWakeDelayParam << " is missing";
  regcache_kmod_ack ack{};
  ack.tail = ctx_.Head();
  ASSERT_EQ(0, ctx_.Ioctl(REGCACHE_IOC_ACK_EVENTS, &ack));
  char* buf = nullptr;
  regcache_kmod_range r{};
  ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx_, 2, 7, &buf, &r));

  std::chrono::microseconds woke_after{};
  ASSERT_NO_FATAL_FAILURE(
      UnmapWhilePolling(ctx_, buf, 2 * PageSize(), &woke_after, [&] {
        // Read before anything else can run: the notifier did this
        // synchronously.
        EXPECT_EQ(r.generation + 1, ctx_.Gen(r.slot))
            << "the generation must be bumped by the time munmap() returns";
        EXPECT_EQ(ack.tail + 1, ctx_.Head());
      }));
  // 4 ms is one jiffy at HZ=250; 2 s covers a late tick and scheduling
  // under TCG on a busy host (a 1 s timer was seen firing 1.35 s late).
  const long limit_us = delay_us + 4000 + 2000000;
  EXPECT_LE(woke_after.count(), limit_us)
      << "wake_delay_us=" << delay_us << ": poll() woke " << woke_after.count()
      << " us after munmap()";
  printf("wake_delay_us=%ld: poll() woke %lld us after munmap()\n", delay_us,
         static_cast<long long>(woke_after.count()));
  EXPECT_EQ(0, ctx_.Unmonitor(r.slot, r.generation));
}

// With a long delay (1 s) the deferral is visible: one event wakes the
// poller no sooner than about a second later, while the generation moved at
// once. Uses the wake_delay_us parameter (root in the VM).
TEST_F(KmodTest, WakeupWaitsForTheDelayButGenerationDoesNot) {
  WakeDelayParam param(1000000);
  if (!param.ok()) GTEST_SKIP() << kWakeDelayParam << " is not writable here";
  std::chrono::microseconds woke_after{};
  ASSERT_NO_FATAL_FAILURE(UnmapOnePageOfANewContext(
      &woke_after, [](const Ctx& slow, const regcache_kmod_range& r) {
        EXPECT_EQ(r.generation + 1, slow.Gen(r.slot));
        EXPECT_EQ(1u, slow.Head());
        // Without blocking, poll() already says readable: only sleepers wait.
        pollfd pfd{slow.fd(), POLLIN, 0};
        EXPECT_EQ(1, poll(&pfd, 1, 0));
      }));
  EXPECT_GE(woke_after.count(), 900000) << "woken before the 1 s delay";
  // Loose: under TCG on a busy host the guest's timer ticks run late
  // (2.4 s seen); the tight bound is the default-delay test above.
  EXPECT_LE(woke_after.count(), 10000000) << "woken long after the delay";
}

// A burst that leaves more than half of the ring unacknowledged wakes the
// reader at once, whatever the delay, so the ring does not overflow for
// want of a reader.
TEST_F(KmodTest, BurstFillingHalfTheRingWakesAtOnce) {
  WakeDelayParam param(1000000);
  if (!param.ok()) GTEST_SKIP() << kWakeDelayParam << " is not writable here";
  Ctx slow;
  ASSERT_EQ(0, slow.Open());
  const size_t pg = PageSize();
  const uint32_t n = slow.hdr().ring_entries / 2 + 1;
  char* buf = MapAnon(n);
  ASSERT_NE(nullptr, buf);
  std::vector<regcache_kmod_range> ranges(n);
  for (uint32_t i = 0; i < n; ++i)
    ASSERT_EQ(0, slow.Monitor(buf + i * pg, pg, i, &ranges[i])) << i;

  std::chrono::microseconds woke_after{};
  ASSERT_NO_FATAL_FAILURE(UnmapWhilePolling(
      slow, buf, n * pg, &woke_after, [&] { EXPECT_EQ(n, slow.Head()); }));
  EXPECT_LT(woke_after.count(), 500000)
      << n << " unread events of " << slow.hdr().ring_entries
      << " should wake the reader without waiting for the 1 s delay";
  EXPECT_EQ(0u, slow.Stats().ring_overflows);
  for (const regcache_kmod_range& r : ranges)
    ASSERT_EQ(0, slow.Unmonitor(r.slot, r.generation));
}

// wake_delay_us=0 restores the immediate wake-up.
TEST_F(KmodTest, ZeroWakeDelayWakesAtOnce) {
  WakeDelayParam param(0);
  if (!param.ok()) GTEST_SKIP() << kWakeDelayParam << " is not writable here";
  std::chrono::microseconds woke_after{};
  ASSERT_NO_FATAL_FAILURE(UnmapOnePageOfANewContext(&woke_after));
  EXPECT_LT(woke_after.count(), 500000);
}

// Closing a context whose wake-up is still pending (1 s) must neither wait
// for it nor let it run on the freed context (the VM rig's dmesg check and
// rmmod catch a use after free or a stuck timer).
TEST_F(KmodTest, CloseWithAPendingWakeupIsClean) {
  WakeDelayParam param(1000000);
  if (!param.ok()) GTEST_SKIP() << kWakeDelayParam << " is not writable here";
  for (int round = 0; round < 20; ++round) {
    Ctx c;
    ASSERT_EQ(0, c.Open());
    char* buf = MapAnon(1);
    ASSERT_NE(nullptr, buf);
    ASSERT_EQ(0, c.Monitor(buf, PageSize(), 1, nullptr));
    ASSERT_EQ(0, munmap(buf, PageSize()));
    const auto start = std::chrono::steady_clock::now();
    c.Close();
    EXPECT_LT(std::chrono::steady_clock::now() - start,
              std::chrono::milliseconds(500))
        << "close waited for the pending wake-up";
  }
}

// ---------------------------------------------------------------- lifetime

TEST_F(KmodTest, ForkChildGetsEpermAndCanOpenItsOwn) {
  char* buf = nullptr;
  regcache_kmod_range r{};
  ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx_, 1, 1, &buf, &r));
  const int inherited = ctx_.fd();
  const void* parent_area = ctx_.base();
  const int flags = fcntl(inherited, F_GETFD);
  ASSERT_EQ(0, fcntl(inherited, F_SETFD, flags & ~FD_CLOEXEC));

  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    regcache_kmod_range cr{};
    cr.start = Addr(buf);
    cr.length = PageSize();
    if (ioctl(inherited, REGCACHE_IOC_MONITOR, &cr) != -1 || errno != EPERM)
      _exit(20);
    regcache_kmod_stats st;
    if (ioctl(inherited, REGCACHE_IOC_STATS, &st) != -1 || errno != EPERM)
      _exit(21);
    regcache_kmod_unmonitor u{};
    u.slot = r.slot;
    u.generation = r.generation;
    if (ioctl(inherited, REGCACHE_IOC_UNMONITOR, &u) != -1 || errno != EPERM)
      _exit(22);
    if (mmap(nullptr, PageSize(), PROT_READ, MAP_SHARED, inherited, 0) !=
            MAP_FAILED ||
        errno != EPERM)
      _exit(23);
    // VM_DONTCOPY: the parent's mapping is not in the child.
    unsigned char vec;
    if (mincore(const_cast<void*>(parent_area), PageSize(), &vec) != -1 ||
        errno != ENOMEM)
      _exit(24);
    pollfd pfd{inherited, POLLIN, 0};
    if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLERR)) _exit(25);
    // The child's own context works, for the child's own memory.
    Ctx own;
    if (own.Open() != 0) _exit(26);
    regcache_kmod_range mine{};
    if (own.Monitor(buf, PageSize(), 2, &mine) != 0) _exit(27);
    if (munmap(buf, PageSize()) != 0) _exit(28);
    if (own.Gen(mine.slot) == mine.generation) _exit(29);
    close(inherited);
    _exit(0);
  }
  EXPECT_EQ(0, WaitChild(pid))
      << "20-23 inherited fd not refused with EPERM, 24 mapping inherited, "
         "25 poll, 26-29 child's own context";
  // The child's munmap was of the child's memory: the parent's is intact.
  ExpectFresh(r, "child's munmap");
  EXPECT_EQ(0, ctx_.Unmonitor(r.slot, r.generation));
  munmap(buf, PageSize());
}

TEST_F(KmodTest, ExitFreesEverything) {
  const long before = SettledModuleRefcount();
  ASSERT_GT(before, 0) << "/sys/module/regcache/refcnt";
  for (int round = 0; round < 3; ++round) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      Ctx child;
      if (child.Open() != 0) _exit(30);
      char* buf = MapAnon(64);
      if (buf == nullptr) _exit(31);
      for (int i = 0; i < 64; ++i)
        if (child.Monitor(buf + i * PageSize(), PageSize(), i, nullptr) != 0)
          _exit(32);
      // A second context with a mapping but no ranges.
      Ctx other;
      if (other.Open() != 0) _exit(33);
      _exit(0);  // no close, no munmap: exit must clean up
    }
    ASSERT_EQ(0, WaitChild(pid));
  }
  EXPECT_EQ(before, ModuleRefcount());
}

// The opener exits (its notifier's release runs) while a fork child still
// holds the fd; the child's close then tears the context down on a dead mm.
TEST_F(KmodTest, ContextOutlivesItsProcessInAForkChild) {
  const long before = SettledModuleRefcount();
  int report[2];
  ASSERT_EQ(0, pipe(report));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(report[0]);
    Ctx opener;
    if (opener.Open() != 0) _exit(50);
    char* buf = MapAnon(8);
    for (int i = 0; i < 8; ++i)
      if (opener.Monitor(buf + i * PageSize(), PageSize(), i, nullptr) != 0)
        _exit(51);
    int opener_gone[2];
    if (pipe(opener_gone) != 0) _exit(52);
    const int fd = opener.fd();
    fcntl(fd, F_SETFD, 0);
    pid_t grandchild = fork();
    if (grandchild < 0) _exit(53);
    if (grandchild == 0) {
      close(opener_gone[1]);
      char c;
      // EOF once the opener exited (its exit_mmap ran before its files closed).
      unsigned char code = read(opener_gone[0], &c, 1) == 0 ? 0 : 60;
      regcache_kmod_stats st;
      if (code == 0 &&
          (ioctl(fd, REGCACHE_IOC_STATS, &st) != -1 || errno != EPERM))
        code = 61;
      pollfd pfd{fd, POLLIN, 0};
      if (code == 0 && (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLERR)))
        code = 62;
      if (code == 0 && close(fd) != 0) code = 63;
      if (write(report[1], &code, 1) != 1) _exit(64);
      _exit(0);
    }
    _exit(0);  // the opener: exits with ranges monitored and the area mapped
  }
  close(report[1]);
  EXPECT_EQ(0, WaitChild(pid));
  unsigned char code = 255;
  ASSERT_EQ(1, read(report[0], &code, 1));
  close(report[0]);
  EXPECT_EQ(0, code)
      << "60 opener not gone, 61 ioctl not EPERM, 62 poll, 63 close";
  // The grandchild's exit is not awaited by anyone here: give it a moment.
  for (int i = 0; i < 200 && ModuleRefcount() != before; ++i) usleep(10000);
  EXPECT_EQ(before, ModuleRefcount());
}

TEST_F(KmodTest, CloseFreesEverything) {
  const long before = SettledModuleRefcount();
  {
    Ctx other;
    ASSERT_EQ(0, other.Open());
    EXPECT_EQ(before + 1, ModuleRefcount());
    char* buf = MapAnon(8);
    ASSERT_NE(nullptr, buf);
    for (int i = 0; i < 8; ++i)
      ASSERT_EQ(0, other.Monitor(buf + i * PageSize(), PageSize(), i, nullptr));
    munmap(buf, 8 * PageSize());
  }
  EXPECT_EQ(before, ModuleRefcount());
  // The mapping keeps the context alive after close(); munmap ends it.
  int fd = open(kDevice, O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  void* area = mmap(nullptr, PageSize(), PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(MAP_FAILED, area);
  close(fd);
  EXPECT_EQ(before + 1, ModuleRefcount());
  EXPECT_EQ(static_cast<uint32_t>(REGCACHE_KMOD_ABI_VERSION),
            static_cast<const regcache_kmod_shared*>(area)->abi_version);
  munmap(area, PageSize());
  EXPECT_EQ(before, ModuleRefcount());
}

// ---------------------------------------------------------------- bad input

TEST_F(KmodTest, MonitorRejectsBadRanges) {
  char* buf = MapAnon(2);
  ASSERT_NE(nullptr, buf);
  const uint64_t pg = PageSize();
  struct Case {
    const char* what;
    uint64_t start, length;
    uint32_t flags;
  } cases[] = {
      {"zero length", Addr(buf), 0, 0},
      {"start + length overflows", ~uint64_t{0} & ~(pg - 1), 2 * pg, 0},
      {"ends at 2^64", ~uint64_t{0} & ~(pg - 1), pg, 0},
      {"kernel address", 0xffff888000000000ull, pg, 0},
      {"beyond TASK_SIZE", uint64_t{1} << 56, pg, 0},
      {"unaligned start", Addr(buf) + 1, pg, 0},
      {"unaligned length", Addr(buf), 100, 0},
      {"huge length", Addr(buf), ~uint64_t{0} & ~(pg - 1), 0},
      {"unknown flags", Addr(buf), pg, 1},
      {"unknown high flag", Addr(buf), pg, 0x80000000u},
  };
  for (const Case& c : cases) {
    regcache_kmod_range r{};
    r.start = c.start;
    r.length = c.length;
    r.flags = c.flags;
    EXPECT_EQ(-EINVAL, ctx_.Ioctl(REGCACHE_IOC_MONITOR, &r)) << c.what;
  }
  EXPECT_EQ(0u, ctx_.Stats().ranges_now);
  munmap(buf, 2 * pg);
}

TEST_F(KmodTest, IoctlsRejectBadPointersAndCommands) {
  void* kernel = reinterpret_cast<void*>(0xffffffff81000000ull);
  void* unmapped = MapAnon(1);
  ASSERT_NE(nullptr, unmapped);
  munmap(unmapped, PageSize());
  for (unsigned long cmd :
       {REGCACHE_IOC_MONITOR, REGCACHE_IOC_MONITOR_BATCH,
        REGCACHE_IOC_UNMONITOR, REGCACHE_IOC_STATS, REGCACHE_IOC_ACK_EVENTS}) {
    EXPECT_EQ(-EFAULT, ctx_.Ioctl(cmd, nullptr)) << std::hex << cmd;
    EXPECT_EQ(-EFAULT, ctx_.Ioctl(cmd, reinterpret_cast<void*>(1)))
        << std::hex << cmd;
    EXPECT_EQ(-EFAULT, ctx_.Ioctl(cmd, kernel)) << std::hex << cmd;
    EXPECT_EQ(-EFAULT, ctx_.Ioctl(cmd, unmapped)) << std::hex << cmd;
  }
  char scratch[512] = {};
  const unsigned long bad_cmds[] = {
      _IOWR(REGCACHE_KMOD_IOC_MAGIC, 0x00, regcache_kmod_range),
      _IOWR(REGCACHE_KMOD_IOC_MAGIC, 0x06, regcache_kmod_range),
      _IOWR(REGCACHE_KMOD_IOC_MAGIC, 0xff, regcache_kmod_range),
      // Right number, wrong size or direction.
      _IOC(_IOC_READ | _IOC_WRITE, REGCACHE_KMOD_IOC_MAGIC, 0x01,
           sizeof(regcache_kmod_range) - 8),
      _IOC(_IOC_READ | _IOC_WRITE, REGCACHE_KMOD_IOC_MAGIC, 0x01,
           sizeof(regcache_kmod_range) + 8),
      _IOW(REGCACHE_KMOD_IOC_MAGIC, 0x01, regcache_kmod_range),
      _IO(REGCACHE_KMOD_IOC_MAGIC, 0x01),
      _IOWR(REGCACHE_KMOD_IOC_MAGIC, 0x04, regcache_kmod_stats),
      _IOR(REGCACHE_KMOD_IOC_MAGIC, 0x03, regcache_kmod_unmonitor),
      _IOWR('R', 0x01, regcache_kmod_range),
  };
  for (unsigned long cmd : bad_cmds)
    EXPECT_EQ(-ENOTTY, ctx_.Ioctl(cmd, scratch)) << std::hex << cmd;
}

TEST_F(KmodTest, MonitorBatchRejectsBadInputAllOrNothing) {
  const size_t pg = PageSize();
  char* buf = MapAnon(4);
  ASSERT_NE(nullptr, buf);
  std::vector<regcache_kmod_range> ranges(4);
  for (int i = 0; i < 4; ++i) {
    ranges[i] = {};
    ranges[i].start = Addr(buf + i * pg);
    ranges[i].length = pg;
  }
  regcache_kmod_monitor_batch b{};
  b.ranges = Addr(ranges.data());
  b.count = 0;
  EXPECT_EQ(-EINVAL, ctx_.Ioctl(REGCACHE_IOC_MONITOR_BATCH, &b)) << "count 0";
  b.count = REGCACHE_KMOD_BATCH_MAX + 1;
  EXPECT_EQ(-E2BIG, ctx_.Ioctl(REGCACHE_IOC_MONITOR_BATCH, &b))
      << "count max+1";
  b.count = 0xffffffffu;
  EXPECT_EQ(-E2BIG, ctx_.Ioctl(REGCACHE_IOC_MONITOR_BATCH, &b))
      << "count 2^32-1";
  b.count = 4;
  b.flags = 1;
  EXPECT_EQ(-EINVAL, ctx_.Ioctl(REGCACHE_IOC_MONITOR_BATCH, &b)) << "flags";
  b.flags = 0;
  b.ranges = 0;
  EXPECT_EQ(-EFAULT, ctx_.Ioctl(REGCACHE_IOC_MONITOR_BATCH, &b))
      << "NULL ranges";
  b.ranges = 0xffff888000000000ull;
  EXPECT_EQ(-EFAULT, ctx_.Ioctl(REGCACHE_IOC_MONITOR_BATCH, &b))
      << "kernel ranges";

  // The array runs into an unmapped page.
  char* two = MapAnon(2);
  ASSERT_NE(nullptr, two);
  munmap(two + pg, pg);
  auto* edge = reinterpret_cast<regcache_kmod_range*>(two + pg) - 2;
  memcpy(edge, ranges.data(), 2 * sizeof(regcache_kmod_range));
  b.ranges = Addr(edge);
  b.count = 3;
  EXPECT_EQ(-EFAULT, ctx_.Ioctl(REGCACHE_IOC_MONITOR_BATCH, &b))
      << "array crosses a hole";

  // One bad element: nothing is monitored.
  ranges[2].length = 0;
  b.ranges = Addr(ranges.data());
  b.count = 4;
  EXPECT_EQ(-EINVAL, ctx_.Ioctl(REGCACHE_IOC_MONITOR_BATCH, &b))
      << "bad element";
  EXPECT_EQ(0u, ctx_.Stats().ranges_now);

  // The results cannot be written back (read-only array): rolled back.
  ranges[2].length = pg;
  char* ro = MapAnon(1);
  ASSERT_NE(nullptr, ro);
  memcpy(ro, ranges.data(), 4 * sizeof(regcache_kmod_range));
  ASSERT_EQ(0, mprotect(ro, pg, PROT_READ));
  b.ranges = Addr(ro);
  EXPECT_EQ(-EFAULT, ctx_.Ioctl(REGCACHE_IOC_MONITOR_BATCH, &b))
      << "read-only array";
  regcache_kmod_stats st = ctx_.Stats();
  EXPECT_EQ(0u, st.ranges_now);
  EXPECT_EQ(st.monitors, st.unmonitors);
  // Same for a single MONITOR whose argument is read-only.
  EXPECT_EQ(-EFAULT, ctx_.Ioctl(REGCACHE_IOC_MONITOR, ro))
      << "read-only MONITOR arg";
  EXPECT_EQ(0u, ctx_.Stats().ranges_now);

  // And the good batch works, slots all different.
  b.ranges = Addr(ranges.data());
  ASSERT_EQ(0, ctx_.Ioctl(REGCACHE_IOC_MONITOR_BATCH, &b));
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < i; ++j) EXPECT_NE(ranges[i].slot, ranges[j].slot);
  ASSERT_EQ(0, munmap(buf, 4 * pg));
  for (const auto& r : ranges) {
    ExpectStale(r, REGCACHE_KMOD_REASON_UNMAP, "batch range");
    EXPECT_EQ(0, ctx_.Unmonitor(r.slot, r.generation));
  }
  munmap(two, pg);
  munmap(ro, pg);
}

TEST_F(KmodTest, UnmonitorRejectsSlotsThatAreNotOurs) {
  char* buf = nullptr;
  regcache_kmod_range r{};
  ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx_, 1, 1, &buf, &r));
  const uint32_t max = ctx_.hdr().max_ranges;
  EXPECT_EQ(-EINVAL, ctx_.Unmonitor(max, 0)) << "slot == max_ranges";
  EXPECT_EQ(-EINVAL, ctx_.Unmonitor(0xffffffffu, 0)) << "slot 2^32-1";
  EXPECT_EQ(-ENOENT, ctx_.Unmonitor(max - 1, 0)) << "free slot";
  EXPECT_EQ(-ENOENT, ctx_.Unmonitor(r.slot, r.generation + 1))
      << "wrong generation";
  regcache_kmod_unmonitor u{};
  u.slot = r.slot;
  u.generation = r.generation;
  u.flags = 1;
  EXPECT_EQ(-EINVAL, ctx_.Ioctl(REGCACHE_IOC_UNMONITOR, &u)) << "flags";

  // Another context (same process) cannot touch our slot: slots are per
  // context, and its slot r.slot is free.
  Ctx other;
  ASSERT_EQ(0, other.Open());
  EXPECT_EQ(-ENOENT, other.Unmonitor(r.slot, r.generation));
  ExpectFresh(r, "other context's UNMONITOR");

  EXPECT_EQ(0, ctx_.Unmonitor(r.slot, r.generation));
  EXPECT_EQ(-ENOENT, ctx_.Unmonitor(r.slot, r.generation)) << "twice";
  munmap(buf, PageSize());
}

// Uses the max_ranges parameter (root in the VM) to reach the limit quickly.
TEST_F(KmodTest, SlotLimitGivesEnospc) {
  const char* param = "/sys/module/regcache/parameters/max_ranges";
  std::string old;
  {
    std::ifstream in(param);
    in >> old;
  }
  {
    std::ofstream out(param);
    out << 512;
    if (!out.flush()) GTEST_SKIP() << param << " is not writable here";
  }
  Ctx small;
  const int opened = small.Open();
  {
    std::ofstream out(param);
    out << old;
  }
  ASSERT_EQ(0, opened);
  ASSERT_EQ(512u, small.hdr().max_ranges);
  char* buf = MapAnon(1);
  ASSERT_NE(nullptr, buf);
  for (int i = 0; i < 512; ++i)
    ASSERT_EQ(0, small.Monitor(buf, PageSize(), i, nullptr)) << i;
  EXPECT_EQ(-ENOSPC, small.Monitor(buf, PageSize(), 512, nullptr));
  EXPECT_EQ(512u, small.Stats().ranges_now);
  munmap(buf, PageSize());
}

// ---------------------------------------------------------------- fuzz, stress

// Random ioctls on the device: every call must return 0 or a documented
// errno, and the context must still work afterwards. Commands are drawn from
// this driver's magic (random numbers, sizes and directions) and the real
// commands with random arguments; arbitrary 32-bit commands are not used,
// because the VFS answers some (FIONBIO, FIFREEZE...) for every file.
TEST_F(KmodTest, FuzzedIoctlsFailCleanly) {
  uint64_t seed = std::chrono::steady_clock::now().time_since_epoch().count();
  if (const char* s = getenv("REGCACHE_FUZZ_SEED"))
    seed = strtoull(s, nullptr, 0);
  printf("fuzz seed %llu (REGCACHE_FUZZ_SEED to repeat)\n",
         static_cast<unsigned long long>(seed));
  fflush(stdout);
  std::mt19937_64 rng(seed);
  const size_t pg = PageSize();
  const size_t scratch_pages = 4;
  char* scratch = MapAnon(scratch_pages);
  char* target = MapAnon(16);  // what random ranges mostly point at
  char* ro = MapAnon(1);
  ASSERT_NE(nullptr, scratch);
  ASSERT_NE(nullptr, target);
  ASSERT_NE(nullptr, ro);
  mprotect(ro, pg, PROT_READ);

  const unsigned long real[] = {
      REGCACHE_IOC_MONITOR, REGCACHE_IOC_MONITOR_BATCH, REGCACHE_IOC_UNMONITOR,
      REGCACHE_IOC_STATS, REGCACHE_IOC_ACK_EVENTS};
  auto random_u64 = [&]() -> uint64_t {
    switch (rng() % 6) {
      case 0:
        return 0;
      case 1:
        return rng();
      case 2:
        return Addr(target) + (rng() % 16) * pg;
      case 3:
        return (rng() % 8) * pg;
      case 4:
        return rng() % 1024;
      default:
        return ~uint64_t{0} - (rng() % 4096);
    }
  };
  auto random_arg = [&]() -> void* {
    switch (rng() % 8) {
      case 0:
        return nullptr;
      case 1:
        return reinterpret_cast<void*>(0xffff888000000000ull + (rng() % 4096));
      case 2:
        return ro;
      case 3:
        return reinterpret_cast<void*>(rng() & 0x00007fffffffffffull);
      default:
        return scratch + (rng() % (scratch_pages * pg - 512));
    }
  };

  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int calls = 0, successes = 0;
  for (; calls < 20000 && std::chrono::steady_clock::now() < deadline;
       ++calls) {
    // Fill the scratch area with plausible and implausible fields.
    auto* words = reinterpret_cast<uint64_t*>(scratch);
    for (size_t i = 0; i < scratch_pages * pg / 8; i += 1 + rng() % 64)
      words[i] = random_u64();
    if (rng() % 4 == 0) {  // a well-formed batch header now and then
      auto* b = reinterpret_cast<regcache_kmod_monitor_batch*>(scratch);
      b->ranges = Addr(scratch + 64);
      b->count = static_cast<uint32_t>(rng() % 8);
      b->flags = rng() % 16 == 0 ? 1 : 0;
    }
    unsigned long cmd;
    switch (rng() % 3) {
      case 0:
        cmd = real[rng() % 5];
        break;
      case 1:
        cmd = _IOC(rng() % 4, REGCACHE_KMOD_IOC_MAGIC, rng() % 16, rng() % 256);
        break;
      default:
        cmd = real[rng() % 5] ^ (1ul << (rng() % 32));
        break;
    }
    int ret = ctx_.Ioctl(cmd, random_arg());
    if (ret == 0) {
      ++successes;
      continue;
    }
    ASSERT_TRUE(ret == -EINVAL || ret == -EFAULT || ret == -ENOTTY ||
                ret == -E2BIG || ret == -ENOENT || ret == -ENOSPC ||
                ret == -ENOMEM)
        << "call " << calls << " cmd " << std::hex << cmd << " returned "
        << std::dec << ret << " (seed " << seed << ")";
  }
  printf("fuzz: %d calls, %d succeeded\n", calls, successes);

  // Random mmap()s of the device: refused or read-only.
  for (int i = 0; i < 200; ++i) {
    const size_t len = (1 + rng() % 8) * pg;
    const int prot = static_cast<int>(rng() % 8);
    const int flags = rng() % 2 ? MAP_SHARED : MAP_PRIVATE;
    const off_t off = static_cast<off_t>((rng() % (ctx_.size() / pg + 4)) * pg);
    void* p = mmap(nullptr, len, prot, flags, ctx_.fd(), off);
    if (p != MAP_FAILED) {
      EXPECT_FALSE(prot & (PROT_WRITE | PROT_EXEC));
      EXPECT_EQ(MAP_SHARED, flags);
      if (prot & PROT_READ) {
        volatile char c = static_cast<const char*>(p)[0];
        (void)c;
      }
      munmap(p, len);
    }
  }

  // The context still works.
  char* buf = nullptr;
  regcache_kmod_range r{};
  ASSERT_NO_FATAL_FAILURE(MapAndMonitor(ctx_, 1, 0x5eed, &buf, &r));
  ASSERT_EQ(0, munmap(buf, pg));
  EXPECT_NE(r.generation, ctx_.Gen(r.slot));
  ASSERT_EQ(0, munmap(target, 16 * pg));
  munmap(scratch, scratch_pages * pg);
  munmap(ro, pg);
}

// The guarantee under concurrency: whenever munmap() or madvise() returns,
// a range monitored before the call is already stale, while other threads
// MONITOR, UNMONITOR and invalidate at the same time.
TEST_F(KmodTest, ConcurrentMonitorAndInvalidateKeepTheGuarantee) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(3);
  std::atomic<int> failures{0};
  std::atomic<long> rounds{0};
  auto worker = [&](int id) {
    const size_t pg = PageSize();
    while (std::chrono::steady_clock::now() < deadline) {
      char* buf = MapAnon(4);
      if (buf == nullptr) {
        ++failures;
        return;
      }
      regcache_kmod_range r{};
      if (ctx_.Monitor(buf + pg, 2 * pg, id, &r) != 0) {
        ++failures;
        return;
      }
      if (id % 2) {
        madvise(buf + 2 * pg, pg, MADV_DONTNEED);
      } else {
        munmap(buf, 4 * pg);
        buf = nullptr;
      }
      if (ctx_.Gen(r.slot) == r.generation) ++failures;
      if (ctx_.Unmonitor(r.slot, r.generation) != 0) ++failures;
      if (buf != nullptr) munmap(buf, 4 * pg);
      ++rounds;
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back(worker, i);
  for (auto& t : threads) t.join();
  printf("%ld rounds\n", rounds.load());
  EXPECT_EQ(0, failures.load());
  EXPECT_GT(rounds.load(), 10);
  EXPECT_EQ(0u, ctx_.Stats().ranges_now);
}

// MONITORs racing madvise(DONTNEED) of populated memory: every range whose
// MONITOR returned before a madvise() started is stale once that madvise()
// returned. Ranges inserted while a madvise() was between its notifier's
// start and end are caught at the end (stats.late), exercised here.
TEST_F(KmodTest, MonitorRacingMadviseIsCaughtByTheEnd) {
  const size_t pg = PageSize();
  const size_t pages = 1024;  // 4 MiB: zapping it takes a while in the VM
  char* region = MapAnon(pages);
  ASSERT_NE(nullptr, region);
  madvise(region, pages * pg, MADV_NOHUGEPAGE);  // 4 KiB PTEs: a longer zap
  std::atomic<uint64_t> started{0}, done{0};
  std::atomic<bool> stop{false};
  std::thread zapper([&] {
    while (!stop.load()) {
      memset(region, 1, pages * pg);
      started.fetch_add(1);
      madvise(region, pages * pg, MADV_DONTNEED);
      done.fetch_add(1);
    }
  });
  std::mt19937 rng(1234);
  int failures = 0, rounds = 0;
  struct Pending {
    regcache_kmod_range r;
    uint64_t started;  // madvise calls started when MONITOR returned
  };
  std::vector<Pending> pending;
  auto settle = [&](bool all) {
    for (size_t i = 0; i < pending.size();) {
      const Pending& p = pending[i];
      if (done.load() < p.started + 1) {
        if (!all) {
          ++i;
          continue;
        }
        std::this_thread::yield();
        continue;
      }
      if (ctx_.Gen(p.r.slot) == p.r.generation) ++failures;
      EXPECT_EQ(0, ctx_.Unmonitor(p.r.slot, p.r.generation));
      pending[i] = pending.back();
      pending.pop_back();
    }
  };
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (std::chrono::steady_clock::now() < deadline) {
    regcache_kmod_range r{};
    const size_t first = rng() % (pages - 4);
    ASSERT_EQ(0, ctx_.Monitor(region + first * pg, 4 * pg, rounds, &r));
    pending.push_back({r, started.load()});
    ++rounds;
    settle(pending.size() >= 512);
  }
  settle(true);
  stop = true;
  zapper.join();
  const regcache_kmod_stats st = ctx_.Stats();
  printf("%d rounds, %llu found at invalidate_range_end\n", rounds,
         static_cast<unsigned long long>(st.late));
  EXPECT_EQ(0, failures);
  EXPECT_GT(rounds, 10);
  munmap(region, pages * pg);
}

}  // namespace
