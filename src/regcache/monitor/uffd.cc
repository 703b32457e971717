// SPDX-License-Identifier: BSD-2-Clause
// The userfaultfd monitor: learns about munmap/mremap/madvise on cached
// memory from userfaultfd's non-cooperative events and hands them to the
// cache as invalidations. The main function exported is CreateUffdMonitor();
// the protocol that keeps a thread returning from munmap() from hitting a
// stale entry is described at "The stale window" below.
//
// How it watches: Watch() registers the range (with the 2 MiB window around
// it when it can, see Watch()) with UFFDIO_REGISTER_MODE_WP
// and the uffd is set up (UFFDIO_API) for UFFD_FEATURE_EVENT_UNMAP, _REMOVE
// and _REMAP. Write-protect mode, not MISSING: with MISSING, the first touch
// of a page after madvise(MADV_DONTNEED) would sleep until we resolved the
// fault. We never write-protect a page, so WP mode never produces a fault --
// yet the kernel still sends the non-cooperative events for every VMA
// registered in any mode. (uffd_monitor_test checks both claims.) Not
// EVENT_FORK either: without it a fork child's VMAs simply lose their
// registration, which is what we want (the cache starts afresh in the child,
// RestartInChild()).
//
// What the kernel sends, as verified on Linux 6.18 (see uffd_monitor_test):
//   munmap, brk shrink, mmap(MAP_FIXED) over a range,
//   mremap shrink (the tail)               -> UNMAP  -> REGCACHE_INVAL_UNMAP
//   madvise(MADV_DONTNEED, _FREE, _REMOVE,
//           _DONTNEED_LOCKED)              -> REMOVE -> REGCACHE_INVAL_REMOVE
//   mremap move/grow-move, MREMAP_DONTUNMAP -> REMAP {from, to, len}
//                                             -> REGCACHE_INVAL_REMAP on from
//       (a move is followed by an UNMAP of the old range as well)
//   mprotect, MADV_COLD/PAGEOUT             -> nothing (the mapping stays)
//
// What it cannot watch (Watch() returns -EOPNOTSUPP and the cache serves the
// request with an uncached registration: registered for that use and
// deregistered at its last put):
//   - file-backed mappings, MAP_SHARED or MAP_PRIVATE, of regular files
//     (the kernel allows uffd only on anonymous memory, shmem/tmpfs/memfd
//     and hugetlbfs; WP mode on shmem/hugetlbfs needs Linux >= 5.19 with
//     PTE markers), and VM_IO/VM_PFNMAP device mappings;
//   - hugetlbfs ranges not aligned to the huge page size;
//   - ranges already registered with another userfaultfd (EBUSY): another
//     library's monitor (libfabric, UCX). The caches of one process share
//     one uffd (UffdHub below), so they never meet EBUSY among themselves;
//   - any range after the kernel refuses to split a VMA (ENOMEM, e.g.
//     vm.max_map_count reached).
// What it watches but does not see:
//   - changes made through another mm: a shmem/memfd region mapped here and
//     truncated, hole-punched (fallocate) or madvise(REMOVE)d by another
//     process, or by ftruncate()/fallocate() in this one, sends no event
//     (only this mm's VMA operations do). Such memory is cached at the
//     application's risk, as with any userspace monitor.
//   - anything in a fork child: the child's VMAs lose the registration;
//     RestartInChild() opens a fresh uffd and ranges are registered again
//     as the cache registers them again.
// And one window it cannot close (see "What remains open" below).
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/thread_annotations.h"
#include "monitor/fds.h"
#include "monitor/monitor.h"
#include "monitor/uffd.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1  // Linux 5.11
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)  // /dev/userfaultfd, Linux 6.1
#endif

namespace regcache_internal {
namespace {

// ---------------------------------------------------------------------------
// The stale window
//
// munmap() of a registered range unmaps, drops mmap_lock, queues an UNMAP
// event and sleeps until some read() on the uffd has copied that event out.
// A read is the whole acknowledgement: the kernel does not wait for us to
// act on the event. So when munmap() returns the event has been read but the
// cache may not have invalidated anything yet, and the same thread's next
// regcache_get() (say, on memory mmap() just handed back at that address)
// could hit the stale entry. The monitor closes that window with the cache's
// gate bit kGateEventsPending (P) and two sequence numbers, all changed
// under EventState::mu:
//
//   seen      reader wake-ups ("epochs") begun: bumped before reading
//   read_done last epoch whose events are all in the queue
//   applied   last epoch whose events the sink has applied
//
// Reader thread, each time poll() says the uffd is readable:
//   R1  lock mu; seen += 1; gate |= P; unlock
//   R2  read() until EAGAIN; queue each invalidation (under mu)
//   R3  lock mu; read_done = this epoch; unlock; wake the applier
// Applier thread:
//   A1  lock mu; take the queue and target = read_done; unlock
//   A2  sink->InvalidateRange() for each (takes the cache mutex)
//   A3  lock mu; applied = target; if (applied == seen) gate &= ~P; unlock;
//       wake WaitForPending() callers
// WaitForPending(): lock mu; target = seen; sleep until applied >= target.
//
// T munmaps a cached range X and then gets X again:
//
//   T (application)            reader                   applier
//   munmap(X): sleeps          poll(): readable
//                              R1: seen = 5, gate |= P
//                              R2: read() -> UNMAP X
//   munmap(X) returns <------- (the read woke T)
//   get(X): gate has P                                  A1: target = 5
//     -> slow path                                      A2: invalidate X
//     WaitForPending():                                     (cache mutex)
//       target = 5, sleeps                              A3: applied = 5,
//                                                           gate &= ~P,
//       wakes  <--------------------------------------      notify
//     looks X up: miss
//
// Why it holds. R1 happens before the read() that releases T, so when T runs
// again the gate either still has P or A3 has cleared it; A3 clears P only
// when applied == seen, i.e. after A2 applied every event read in every
// epoch begun so far, T's included. P is set (R1) and cleared (A3) in
// critical sections of the same mutex, and the clear re-checks seen inside
// its own critical section: an R1 that comes after the clear sets P again
// before its read() can release anybody, and an R1 that comes before it
// makes applied != seen so the clear does not happen. (Without the mutex, a
// clear that tested applied == seen and then cleared could wipe the bit a
// concurrent R1 had just set, opening the window again.) T's
// WaitForPending() samples seen after its munmap() returned, hence after R1
// of the epoch that read T's event, so waiting for applied >= that sample
// waits for T's invalidation. Threads that find P set for an event they did
// not cause merely wait one apply.
//
// Memory ordering: the gate is changed with seq_cst read-modify-writes; the
// hit path reads it with acquire. The sink's writes (under the cache mutex)
// are sequenced before A3's clear, so a thread that reads the gate clear
// also sees the invalidation. The read() system call orders R1 before T's
// return from munmap().
//
// What remains open. Another thread U that maps memory at X after the kernel
// finished unmapping X but before the reader read the event (T still asleep
// in munmap) finds P clear and can hit the stale entry. U raced with T's
// munmap(), so no userspace monitor can order the two; the kernel-module
// monitor, which invalidates from inside the unmap, has no such window.
// The usual way to meet it -- glibc in U reusing an address that free() in T
// is still unmapping -- needs the reader to be descheduled exactly then.
//
// Why a reader AND an applier, not one event thread. munmap() is released by
// our read(), never by our apply. If one thread did both, a thread that
// munmaps registered memory while holding a lock the sink needs (the cache
// mutex; or glibc trimming the heap inside free() called under it, as in
// libfabric issues #5554 and #10879) would wait for the read, the read would
// wait behind the apply, and the apply for that lock: deadlock. Here the
// reader waits for nothing but `mu`, which nobody holds across anything that
// can block, so every munmap() is released promptly whatever the applier is
// waiting for. The queue between them is bounded and preallocated: when it
// is full the reader merges further invalidations into one range covering
// them all (over-invalidation is only a performance cost). Neither thread
// allocates, frees, unmaps or deregisters anything while it runs, so neither
// can block on itself through an event of its own making; what glibc
// releases when they exit is StopThreads()'s business.
//
// Why Unwatch() does not UFFDIO_UNREGISTER. A registration belongs to VMAs,
// not to cache entries: entries may overlap (two entries covering one page),
// so unregistering one entry's range could silence events another entry
// still needs, unless we kept a reference count per page (allocation, a lock
// and a syscall on every eviction). Unregistering also splits VMAs and costs
// a syscall with mmap_lock held for writing. A stale registration only costs
// an event round trip (a context switch for the unmapping thread) on a later
// munmap/madvise of that memory, and it disappears with the VMA. Stop()
// closes the uffd, which drops every registration at once.
// ---------------------------------------------------------------------------

constexpr size_t kReadBatch = 64;  // uffd_msg per read(); 2 KiB of stack
// What Watch() registers around a range when it can: the size of a
// transparent huge page with 4 KiB pages (x86-64, arm64).
constexpr uint64_t kThpWindow = uint64_t{2} << 20;

// The 2 MiB windows whose registration the kernel refused lately (a file
// mapping or another uffd's range in them), so that Watch() registers the
// range alone there at once instead of paying a failed UFFDIO_REGISTER
// first on every miss. Direct-mapped by window number: a slot holds the
// window's number + 1 (0: empty) above kSkipBits bits that count the ranges
// registered alone since; after 2^kSkipBits of them the window is tried
// again, since whatever was in the way may be gone. Thread-safe and
// lock-free: a race costs at most one more failed ioctl, or one window not
// tried, never a wrong registration.
class RefusedWindows {
 public:
  // Whether Watch() should try the window at `window_first`; counts a skip.
  bool ShouldTry(uint64_t window_first) {
    std::atomic<uint64_t>& slot = SlotOf(window_first);
    const uint64_t v = slot.load(std::memory_order_relaxed);
    if ((v >> kSkipBits) != Tag(window_first)) return true;
    const uint64_t skips = v & kSkipMask;
    if (skips == kSkipMask) {
      slot.store(0, std::memory_order_relaxed);  // retry now, forget it
      return true;
    }
    slot.store(v + 1, std::memory_order_relaxed);
    return false;
  }
  void Refused(uint64_t window_first) {
    SlotOf(window_first)
        .store(Tag(window_first) << kSkipBits, std::memory_order_relaxed);
  }

 private:
  static constexpr int kSkipBits = 8;
  static constexpr uint64_t kSkipMask = (uint64_t{1} << kSkipBits) - 1;
  static constexpr size_t kSlots = 64;
  static uint64_t Tag(uint64_t window_first) {
    return window_first / kThpWindow + 1;
  }
  std::atomic<uint64_t>& SlotOf(uint64_t window_first) {
    return slots_[(window_first / kThpWindow) % kSlots];
  }
  std::array<std::atomic<uint64_t>, kSlots> slots_{};
};

// The uffd and the wake eventfd live in a MonitorFds pair that every fork
// child closes at once (fds.h says why: a child keeping the parent's
// uffd makes the parent's later munmap() of watched memory sleep for ever).

std::string ErrnoText(int err) { return std::string(strerror(err)); }

// Opens a userfaultfd: the syscall in user-mode-only form (allowed without
// privilege since 5.11), then in full form (older kernels reject the flag),
// then /dev/userfaultfd (6.1+, controlled by file permissions). Returns the
// fd or -errno with *why saying what failed and how to fix it.
int OpenUserfaultfd(std::string* why) {
  const int flags = O_CLOEXEC | O_NONBLOCK;
  int fd =
      static_cast<int>(syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY));
  if (fd >= 0) return fd;
  int err = errno;
  // EPERM for the user-mode-only form, which needs no privilege, means a
  // seccomp filter or an LSM refused; for the full form, the sysctl.
  const bool policy_refused = err == EPERM;
  if (err == EINVAL) {  // kernel < 5.11: no UFFD_USER_MODE_ONLY
    fd = static_cast<int>(syscall(SYS_userfaultfd, flags));
    if (fd >= 0) return fd;
    err = errno;
  }
  if (err == ENOSYS) {
    *why =
        "userfaultfd(2) is not available (ENOSYS): the kernel lacks "
        "CONFIG_USERFAULTFD or a seccomp filter blocks it (Docker's default "
        "profile does; allow the userfaultfd syscall in the profile)";
    return -ENOSYS;
  }
  if (err != EPERM) {
    *why = "userfaultfd(2) failed: " + ErrnoText(err);
    return -err;
  }
  const std::string refusal =
      policy_refused
          ? "userfaultfd(2) refused (EPERM) even in its user-mode-only form, "
            "which needs no privilege: a seccomp filter or LSM policy denies it"
          : "userfaultfd(2) refused (EPERM: vm.unprivileged_userfaultfd=0 and "
            "the process lacks CAP_SYS_PTRACE)";
  const std::string fix =
      policy_refused
          ? "Fix: allow userfaultfd in the seccomp/LSM policy, or give this "
            "user read/write access to /dev/userfaultfd (Linux >= 6.1; e.g. "
            "a udev rule setting its group and mode 0660)"
          : "Fix: `sysctl -w vm.unprivileged_userfaultfd=1`, or give this "
            "user read/write access to /dev/userfaultfd (Linux >= 6.1; e.g. "
            "a udev rule setting its group and mode 0660), or run with "
            "CAP_SYS_PTRACE";
  // /dev/userfaultfd is governed by its file permissions only.
  const int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev < 0) {
    *why = refusal + ", and /dev/userfaultfd cannot be opened (" +
           ErrnoText(errno) + "). " + fix;
    return -EPERM;
  }
  fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags | UFFD_USER_MODE_ONLY);
  if (fd < 0 && errno == EINVAL) fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
  const int dev_err = errno;
  close(dev);
  if (fd >= 0) return fd;
  *why = refusal + ", and USERFAULTFD_IOC_NEW on /dev/userfaultfd failed (" +
         ErrnoText(dev_err) + "). " + fix;
  return -dev_err;
}

// Checks that WP-mode registration works here (it needs
// CONFIG_HAVE_ARCH_USERFAULTFD_WP: x86_64 since 5.7, other architectures
// later) by registering and unregistering one anonymous page. The page is
// unregistered before it is unmapped, so the munmap() sends no event (there
// is no reader yet: an event would block this thread for good).
int ProbeWriteProtectMode(int uffd, std::string* why) {
  const long page = sysconf(_SC_PAGESIZE);
  void* p = mmap(nullptr, static_cast<size_t>(page), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    *why = "mmap of a probe page failed: " + ErrnoText(errno);
    return -errno;
  }
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uint64_t>(p);
  reg.range.len = static_cast<uint64_t>(page);
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
    const int err = errno;
    munmap(p, static_cast<size_t>(page));  // never registered: no event
    *why = "UFFDIO_REGISTER_MODE_WP on anonymous memory failed (" +
           ErrnoText(err) +
           "): this kernel or architecture lacks userfaultfd write-protect "
           "support (x86_64 needs Linux >= 5.7)";
    return -EOPNOTSUPP;
  }
  uffdio_range range{reg.range.start, reg.range.len};
  if (ioctl(uffd, UFFDIO_UNREGISTER, &range) != 0) {
    // Unmapping it now would block on an event nobody reads; leak one page.
    return 0;
  }
  munmap(p, static_cast<size_t>(page));
  return 0;
}

// A userfaultfd with the API handshake done and WP mode checked, or -errno.
int OpenConfiguredUffd(std::string* why) {
  const int fd = OpenUserfaultfd(why);
  if (fd < 0) return fd;
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE |
                 UFFD_FEATURE_EVENT_REMAP;
  if (ioctl(fd, UFFDIO_API, &api) != 0) {
    const int err = errno;
    close(fd);
    *why = "UFFDIO_API with EVENT_UNMAP|EVENT_REMOVE|EVENT_REMAP failed (" +
           ErrnoText(err) + "): the kernel is too old (needs Linux >= 4.11)";
    return -(err == EINVAL ? EOPNOTSUPP : err);
  }
  const int rc = ProbeWriteProtectMode(fd, why);
  if (rc != 0) {
    close(fd);
    return rc;
  }
  return fd;
}

// The hub's two descriptors: a configured userfaultfd and the eventfd that
// stops its reader. 0, or -errno with *why set and nothing left open.
int OpenHubFds(int* uffd, int* wake, std::string* why) {
  *uffd = OpenConfiguredUffd(why);
  if (*uffd < 0) return *uffd;
  *wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (*wake < 0) {
    const int err = errno;
    close(*uffd);
    *why = "eventfd: " + ErrnoText(err);
    return -err;
  }
  return 0;
}

// Writes a message to stderr without allocating (the event threads must
// not call malloc).
void ReportFromEventThread(const char* what, int err) {
  char buf[160];  // errno as a number: strerror() may allocate
  const int n =
      snprintf(buf, sizeof(buf),
               "regcache: uffd monitor: %s failed, errno %d\n", what, err);
  if (n > 0) {
    ssize_t unused =
        write(STDERR_FILENO, buf, std::min<size_t>(n, sizeof(buf) - 1));
    (void)unused;
  }
}

void SleepBriefly() {
  timespec ts{0, 1000 * 1000};  // 1 ms
  nanosleep(&ts, nullptr);
}

struct QueuedInvalidation {
  uint64_t first;
  uint64_t last;
  regcache_inval_reason reason;
};

// Everything the two event threads share. A fork child abandons the parent's
// EventState (its mutex may be held by a thread that does not exist in the
// child, and its condition variables may count waiters that never return)
// and starts a new one; abandoned ones are kept reachable, never destroyed.
struct EventState {
  Mutex mu;
  std::condition_variable work_cv;  // applier: read_done > applied || stopping
  std::condition_variable done_cv;  // WaitForPending: applied moved on

  // Epochs (see "The stale window"). INVARIANT: applied <= read_done <= seen.
  uint64_t seen RC_GUARDED_BY(mu) = 0;
  uint64_t read_done RC_GUARDED_BY(mu) = 0;
  uint64_t applied RC_GUARDED_BY(mu) = 0;
  bool stopping RC_GUARDED_BY(mu) = false;  // applier: drain, then exit
  // The reader has left its loop and never touches the uffd again.
  bool reader_done RC_GUARDED_BY(mu) = false;
  std::condition_variable reader_done_cv;
  bool threads_gone RC_GUARDED_BY(mu) = false;  // nobody will apply anything

  // Read but not yet applied. INVARIANT: queued <= kUffdApplyQueueCapacity;
  // `merged` is meaningful only when has_merged.
  std::array<QueuedInvalidation, kUffdApplyQueueCapacity> queue
      RC_GUARDED_BY(mu);
  size_t queued RC_GUARDED_BY(mu) = 0;
  bool has_merged RC_GUARDED_BY(mu) = false;
  QueuedInvalidation merged RC_GUARDED_BY(mu) = {};

  // Held by the applier while it calls the subscribers' sinks (A2), and by
  // Unsubscribe() so that a sink is never called after it left. Lock order:
  // subs_mu -> the cache mutex (inside a sink) ; never taken by the reader.
  Mutex subs_mu;

  std::thread reader;
  std::thread applier;
  EventState* abandoned_next = nullptr;  // graveyard link
};

std::atomic<EventState*> g_abandoned_states{nullptr};

void Abandon(EventState* state) {
  EventState* head = g_abandoned_states.load();
  do {
    state->abandoned_next = head;
  } while (!g_abandoned_states.compare_exchange_weak(head, state));
}

// condition_variable::wait for a Mutex the caller holds through MutexLock.
void WaitLocked(std::condition_variable* cv, Mutex* mu) RC_REQUIRES(*mu) {
  std::unique_lock<std::mutex> lock(mu->native(), std::adopt_lock);
  cv->wait(lock);
  lock.release();  // still held; the caller's MutexLock unlocks it
}

// One per process: the userfaultfd, its two event threads, and the caches
// subscribed to its events. Sharing matters: a VMA can be registered with
// one userfaultfd only (EBUSY), so a cache per uffd would leave every buffer
// that two caches share (two NICs, two domains, a library and an MPI) to the
// first cache's monitor and serve it uncached in the second. Every event
// goes to every subscriber; each cache drops only what it holds.
class UffdHub {
 public:
  static constexpr int kMaxSubscribers = 32;

  UffdHub(int uffd, int wake_fd)
      : page_size_(static_cast<uint64_t>(sysconf(_SC_PAGESIZE))),
        owner_pid_(PrepareCurrentPid()),
        state_(std::make_unique<EventState>()) {
    slot_ = AcquireForkClosedFds();
    fds_ = slot_ != nullptr ? slot_ : &own_fds_;
    fds_->primary.store(uffd);
    fds_->wake.store(wake_fd);
  }

  ~UffdHub() { Stop(); }

  // Adds a cache; the first one starts the event threads. Serialised with
  // Unsubscribe/RestartInChild/Stop by the caller (g_hub_mu).
  int Subscribe(InvalidationSink* sink, std::atomic<uint32_t>* gate,
                std::string* why) {
    if (stopped_) {
      *why = "uffd monitor stopped";
      return -EINVAL;
    }
    if (CurrentPid() != owner_pid()) {  // a fork child: make the hub ours first
      const int rc = RestartInChild(why);
      if (rc != 0) return rc;
    }
    EventState* st = state_.get();
    int index = -1;
    for (int i = 0; i < kMaxSubscribers && index < 0; ++i) {
      if (gates_[i] == nullptr) index = i;
    }
    if (index < 0) {
      *why = "more than " + std::to_string(kMaxSubscribers) +
             " caches share the userfaultfd monitor";
      return -EMFILE;
    }
    {
      MutexLock subs(&st->subs_mu);
      MutexLock l(&st->mu);
      sinks_[index] = sink;
      gates_[index] = gate;
    }
    if (!started_) {
      const int rc = StartThreads(why);
      if (rc != 0) {
        RemoveSubscriber(index);
        return rc;
      }
      started_ = true;
    }
    return 0;
  }

  // Removes a cache: once this returns its sink is never called again.
  // (Who still uses the hub is counted by g_hub_users, not here.)
  void Unsubscribe(InvalidationSink* sink) {
    for (int i = 0; i < kMaxSubscribers; ++i) {
      if (sinks_[i] == sink) RemoveSubscriber(i);
    }
  }

  pid_t owner_pid() const { return owner_pid_.load(std::memory_order_relaxed); }
  // True when this process is a fork child that has restarted the hub.
  bool restarted_here() const {
    return restarted_.load() && owner_pid() == CurrentPid();
  }

  static bool Register(int uffd, uint64_t first, uint64_t last) {
    uffdio_register reg{};
    reg.range.start = first;
    reg.range.len = last - first + 1;
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    return ioctl(uffd, UFFDIO_REGISTER, &reg) == 0;
  }

  int Watch(uint64_t first, uint64_t last, WatchToken* token) {
    if (first > last || (first & (page_size_ - 1)) != 0 ||
        ((last + 1) & (page_size_ - 1)) != 0) {
      return -EINVAL;
    }
    const int uffd = fds_->primary.load(std::memory_order_acquire);
    // Without a reader (not started, or stopped) a registered range's next
    // munmap() would sleep for ever. In a fork child before RestartInChild()
    // the inherited uffd (if the atfork handler did not close it) belongs to
    // the parent's mm: registering through it would register the PARENT's
    // VMAs.
    if (!started_ || uffd < 0 ||
        CurrentPid() != owner_pid_.load(std::memory_order_relaxed)) {
      watch_unsupported_.fetch_add(1, std::memory_order_relaxed);
      return -EOPNOTSUPP;
    }
    // The 2 MiB-aligned window around the range if the kernel accepts it
    // (every VMA in it can be registered), else the range alone. A
    // registration splits VMAs at its ends, and anonymous memory whose
    // 2 MiB window is split can no longer be backed by a transparent huge
    // page: registering exactly the buffer cost it its huge pages (more TLB
    // misses on every access, dearer pinning). Registrations are never
    // removed (see "Why Unwatch() does not UFFDIO_UNREGISTER"), so a larger
    // one only means that a munmap() near a cached range also waits for
    // the reader -- and that the window may hold memory the event threads
    // themselves release, which is why StopThreads() closes the uffd
    // before it joins them.
    // A window the kernel refused is remembered (RefusedWindows), so that
    // the misses there do not each pay a failed ioctl before the real one.
    const uint64_t window_first = first & ~(kThpWindow - 1);
    const uint64_t window_last = last | (kThpWindow - 1);
    bool registered = false;
    if (window_first == first && window_last == last) {
      registered = Register(uffd, first, last);  // the range is its window
    } else {
      if (refused_windows_.ShouldTry(window_first)) {
        registered = Register(uffd, window_first, window_last);
        if (!registered) {
          window_refused_.fetch_add(1, std::memory_order_relaxed);
          refused_windows_.Refused(window_first);
        }
      }
      if (!registered) registered = Register(uffd, first, last);
    }
    if (!registered) {
      // The kernel checks every VMA in the range before changing any, so a
      // failure normally registers nothing. If a VMA split fails part way
      // (ENOMEM), a prefix stays registered: harmless, see Unwatch().
      //   EINVAL  unsupported VMA (regular file, VM_IO/PFNMAP, misaligned
      //           hugetlb), or nothing mapped at all in the range
      //   EPERM   a shared mapping of a file opened read-only (!VM_MAYWRITE)
      //   EBUSY   registered with another userfaultfd
      //   ENOMEM  VMA split failed (e.g. vm.max_map_count)
      const int err = errno;
      watch_unsupported_.fetch_add(1, std::memory_order_relaxed);
      if (err == EBUSY) watch_busy_.fetch_add(1, std::memory_order_relaxed);
      return -EOPNOTSUPP;
    }
    token->generation = StaticGeneration();
    token->expected = token->generation->load(std::memory_order_relaxed);
    token->cookie = 0;
    return 0;
  }

  void WaitForPending() {
    if (!started_ ||
        CurrentPid() != owner_pid_.load(std::memory_order_relaxed)) {
      return;  // nothing runs to apply events (or a child not yet restarted)
    }
    EventState* st = state_.get();
    MutexLock lock(&st->mu);
    const uint64_t target = st->seen;
    while (st->applied < target && !st->threads_gone) {
      WaitLocked(&st->done_cv, &st->mu);
    }
  }

  // The cache calls this with its mutex held. That is safe here although
  // it allocates and munmaps (the WP probe page): the new uffd has no
  // registration yet, and the child's VMAs lost the parent's, so no
  // munmap() in the child can wait for an event.
  // Every cache of a fork child calls this; the first one restarts the hub
  // for all of them, the others find it done.
  int RestartInChild(std::string* why) {
    if (CurrentPid() == owner_pid_.load(std::memory_order_relaxed)) {
      if (restarted_.load()) return 0;
      *why = "RestartInChild() called in the process that created the monitor";
      return -EINVAL;
    }
    if (stopped_) {
      *why = "uffd monitor was stopped";
      return -EINVAL;
    }
    // Only the forking thread exists here. The std::thread objects name
    // threads of the parent: joining them would wait for ever (or fail),
    // destroying them would std::terminate(). Abandon them with their state.
    Abandon(state_.release());
    state_ = std::make_unique<EventState>();
    // Whatever the atfork handler did not close (a monitor without a fork
    // slot). The old descriptors refer to the parent's context.
    CloseExchanged(&fds_->primary);
    CloseExchanged(&fds_->wake);
    owner_pid_.store(CurrentPid(), std::memory_order_relaxed);
    restarted_.store(true);
    // The parent may have forked between R1 and A3: no applier here will
    // ever clear that P.
    ClearGates();
    int uffd, wake;
    const int rc = OpenHubFds(&uffd, &wake, why);
    if (rc != 0) return rc;
    fds_->primary.store(uffd, std::memory_order_release);
    fds_->wake.store(wake, std::memory_order_release);
    if (!started_) return 0;
    return StartThreads(why);
  }

  // Joins the applier, which may be waiting for the cache mutex inside the
  // sink: call it without that mutex held (libfabric #7003 is this join
  // deadlock). Events read but not applied by then are still applied;
  // events after the reader stopped are never read, and the munmap() calls
  // that raised them return when the uffd is closed below.
  void Stop() {
    if (stopped_) return;
    stopped_ = true;
    EventState* st = state_.get();
    if (CurrentPid() != owner_pid_.load(std::memory_order_relaxed)) {
      // A fork child that never restarted: the threads do not exist.
      Abandon(state_.release());
      state_ = std::make_unique<EventState>();
      st = state_.get();
    } else {
      StopThreads(st, /*release_uffd=*/true);
    }
    {
      MutexLock lock(&st->mu);
      st->threads_gone = true;
      st->applied = st->seen;
    }
    st->done_cv.notify_all();
    ClearGates();
    // Closing the last reference to the uffd releases the context: the
    // kernel unregisters every VMA and wakes anybody asleep in munmap().
    CloseExchanged(&fds_->primary);
    CloseExchanged(&fds_->wake);
    if (slot_ != nullptr) {
      ReleaseForkClosedFds(slot_);
      slot_ = nullptr;
      fds_ = &own_fds_;
    }
  }

  void ReadCounters(UffdMonitorCounters* out) const {
    out->unmap_events = unmap_events_.load(std::memory_order_relaxed);
    out->remove_events = remove_events_.load(std::memory_order_relaxed);
    out->remap_events = remap_events_.load(std::memory_order_relaxed);
    out->unexpected_faults = unexpected_faults_.load(std::memory_order_relaxed);
    out->unknown_events = unknown_events_.load(std::memory_order_relaxed);
    out->merged_events = merged_events_.load(std::memory_order_relaxed);
    out->wakeups = wakeups_.load(std::memory_order_relaxed);
    out->watch_unsupported = watch_unsupported_.load(std::memory_order_relaxed);
    out->watch_busy = watch_busy_.load(std::memory_order_relaxed);
    out->window_refused = window_refused_.load(std::memory_order_relaxed);
  }

 private:
  void RemoveSubscriber(int index) RC_NO_TSA {
    if (CurrentPid() != owner_pid()) {
      // A fork child before the restart: the inherited mutexes may be held
      // by threads that do not exist here, and no event thread runs.
      sinks_[index] = nullptr;
      gates_[index] = nullptr;
      return;
    }
    EventState* st = state_.get();
    MutexLock subs(&st->subs_mu);  // waits for an A2 that may be calling it
    MutexLock l(&st->mu);
    sinks_[index] = nullptr;
    gates_[index] = nullptr;
  }

  // Sets (R1) or clears (A3, restart, stop) kGateEventsPending in every
  // subscriber's gate. Called with `mu` of the current state held, which is
  // what keeps a clear from wiping a concurrent R1's set.
  void SetGatesLocked(bool pending) {
    for (std::atomic<uint32_t>* gate : gates_) {
      if (gate == nullptr) continue;
      if (pending)
        gate->fetch_or(kGateEventsPending);
      else
        gate->fetch_and(~kGateEventsPending);
    }
  }

  void ClearGates() {
    MutexLock l(&state_->mu);
    SetGatesLocked(false);
  }

  int StartThreads(std::string* why) {
    EventState* st = state_.get();
    const int uffd = fds_->primary.load();
    const int wake = fds_->wake.load();
    int rc = StartEventThread(
        "regcache-uffd-r",
        [this, st, uffd, wake] { ReaderLoop(st, uffd, wake); }, &st->reader,
        why);
    if (rc == 0) {
      rc = StartEventThread(
          "regcache-uffd-a", [this, st] { ApplierLoop(st); }, &st->applier,
          why);
    }
    if (rc != 0) StopThreads(st, /*release_uffd=*/false);
    return rc;
  }

  // `release_uffd`: close the uffd as soon as the reader has left its loop,
  // before joining either thread. From then on nobody reads events, and any
  // thread still to cause one -- these two as they exit (glibc releases a
  // thread's stack with madvise(MADV_DONTNEED), frees its thread-local
  // storage), or one in the application -- would sleep until the close
  // releases the context; a join before the close could wait for ever.
  // Watch() registers whole 2 MiB windows, which may hold such memory.
  void StopThreads(EventState* st, bool release_uffd) {
    if (st->reader.joinable()) {
      const uint64_t one = 1;
      ssize_t unused = write(fds_->wake.load(), &one, sizeof(one));
      (void)unused;
      if (release_uffd) {
        {
          MutexLock lock(&st->mu);
          while (!st->reader_done) WaitLocked(&st->reader_done_cv, &st->mu);
        }
        CloseExchanged(&fds_->primary);
      }
      st->reader.join();
    }
    if (st->applier.joinable()) {
      {
        MutexLock lock(&st->mu);
        st->stopping = true;
      }
      st->work_cv.notify_all();
      st->applier.join();  // after it applied what the reader had read
    }
  }

  // Turns one message into at most one queued invalidation; resolves the
  // (never expected) page fault so that the faulting thread cannot hang.
  bool Translate(int uffd, const uffd_msg& msg, QueuedInvalidation* out) {
    switch (msg.event) {
      case UFFD_EVENT_UNMAP:
      case UFFD_EVENT_REMOVE: {
        const bool unmap = msg.event == UFFD_EVENT_UNMAP;
        (unmap ? unmap_events_ : remove_events_)
            .fetch_add(1, std::memory_order_relaxed);
        if (msg.arg.remove.end <= msg.arg.remove.start) return false;
        *out = {msg.arg.remove.start, msg.arg.remove.end - 1,
                unmap ? REGCACHE_INVAL_UNMAP : REGCACHE_INVAL_REMOVE};
        return true;
      }
      case UFFD_EVENT_REMAP:
        remap_events_.fetch_add(1, std::memory_order_relaxed);
        if (msg.arg.remap.len == 0) return false;
        // The pages left `from`. Whatever was cached at `to` was unmapped
        // first (MREMAP_FIXED), which sends its own UNMAP event.
        *out = {msg.arg.remap.from, msg.arg.remap.from + msg.arg.remap.len - 1,
                REGCACHE_INVAL_REMAP};
        return true;
      case UFFD_EVENT_PAGEFAULT: {
        // WP mode with nothing write-protected never faults. If a fault
        // arrives anyway, resolve it rather than leave a thread asleep:
        // un-write-protect the page (which wakes the thread), else wake it.
        unexpected_faults_.fetch_add(1, std::memory_order_relaxed);
        const uint64_t page = msg.arg.pagefault.address & ~(page_size_ - 1);
        if (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
          uffdio_writeprotect wp{};
          wp.range.start = page;
          wp.range.len = page_size_;
          wp.mode = 0;  // clear WP and wake
          if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) == 0) return false;
        }
        uffdio_range range{page, page_size_};
        if (ioctl(uffd, UFFDIO_WAKE, &range) != 0) {
          ReportFromEventThread("UFFDIO_WAKE after an unexpected fault", errno);
        }
        return false;
      }
      default:
        unknown_events_.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
  }

  void EnqueueLocked(EventState* st, const QueuedInvalidation& inval)
      RC_REQUIRES(st->mu) {
    if (st->queued < st->queue.size()) {
      st->queue[st->queued++] = inval;
      return;
    }
    merged_events_.fetch_add(1, std::memory_order_relaxed);
    if (!st->has_merged) {
      st->merged = inval;
      st->has_merged = true;
    } else {
      st->merged.first = std::min(st->merged.first, inval.first);
      st->merged.last = std::max(st->merged.last, inval.last);
    }
  }

  void ReaderLoop(EventState* st, int uffd, int wake_fd) {
    uffd_msg msgs[kReadBatch];
    QueuedInvalidation batch[kReadBatch];
    for (;;) {
      pollfd fds[2] = {{uffd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno != EINTR) {
          ReportFromEventThread("poll", errno);
          SleepBriefly();
        }
        continue;
      }
      if (fds[1].revents != 0) {  // Stop()
        {
          MutexLock lock(&st->mu);
          st->reader_done = true;
        }
        st->reader_done_cv.notify_all();
        return;
      }
      if (fds[0].revents == 0) continue;
      uint64_t epoch;
      {  // R1
        MutexLock lock(&st->mu);
        epoch = ++st->seen;
        SetGatesLocked(true);
      }
      wakeups_.fetch_add(1, std::memory_order_relaxed);
      for (;;) {  // R2
        const ssize_t got = read(uffd, msgs, sizeof(msgs));
        if (got < 0) {
          if (errno == EINTR) continue;
          if (errno != EAGAIN) {
            ReportFromEventThread("read", errno);
            SleepBriefly();  // do not spin if the error persists
          }
          break;
        }
        const size_t n = static_cast<size_t>(got) / sizeof(uffd_msg);
        size_t queued = 0;
        for (size_t i = 0; i < n; ++i) {
          if (Translate(uffd, msgs[i], &batch[queued])) ++queued;
        }
        if (queued > 0) {
          MutexLock lock(&st->mu);
          for (size_t i = 0; i < queued; ++i) EnqueueLocked(st, batch[i]);
        }
      }
      {  // R3
        MutexLock lock(&st->mu);
        st->read_done = epoch;
      }
      st->work_cv.notify_one();
    }
  }

  void ApplierLoop(EventState* st) {
    std::array<QueuedInvalidation, kUffdApplyQueueCapacity> work;
    for (;;) {
      size_t count;
      bool has_merged;
      QueuedInvalidation merged;
      uint64_t target;
      {  // A1
        MutexLock lock(&st->mu);
        while (st->read_done == st->applied && !st->stopping) {
          WaitLocked(&st->work_cv, &st->mu);
        }
        if (st->read_done == st->applied && st->queued == 0 &&
            !st->has_merged) {
          return;  // stopping, nothing left
        }
        count = st->queued;
        std::copy_n(st->queue.begin(), count, work.begin());
        has_merged = st->has_merged;
        merged = st->merged;
        target = st->read_done;
        st->queued = 0;
        st->has_merged = false;
      }
      {  // A2
        MutexLock subs(&st->subs_mu);
        for (InvalidationSink* sink : sinks_) {
          if (sink == nullptr) continue;
          for (size_t i = 0; i < count; ++i) {
            sink->InvalidateRange(work[i].first, work[i].last, work[i].reason);
          }
          if (has_merged)
            sink->InvalidateRange(merged.first, merged.last, merged.reason);
        }
      }
      {  // A3
        MutexLock lock(&st->mu);
        st->applied = target;
        if (st->applied == st->seen) SetGatesLocked(false);
      }
      st->done_cv.notify_all();
    }
  }

  const uint64_t page_size_;
  std::atomic<pid_t> owner_pid_;
  // Where the descriptors live: a global fork slot (closed in fork children
  // by the atfork handler) or, if none was free, own_fds_.
  MonitorFds* slot_ = nullptr;
  MonitorFds own_fds_;
  MonitorFds* fds_ = nullptr;

  // The subscribers. A slot is written under the current state's subs_mu
  // and mu together; the reader reads gates_ under mu (R1), the applier
  // reads sinks_ under subs_mu (A2) and gates_ under mu (A3).
  std::array<InvalidationSink*, kMaxSubscribers> sinks_{};
  std::array<std::atomic<uint32_t>*, kMaxSubscribers> gates_{};
  // Subscribe/Unsubscribe/RestartInChild/Stop are serialised by g_hub_mu.
  bool started_ = false;
  bool stopped_ = false;
  std::atomic<bool> restarted_{false};  // RestartInChild() ran in this process
  std::unique_ptr<EventState> state_;

  std::atomic<uint64_t> unmap_events_{0}, remove_events_{0}, remap_events_{0},
      unexpected_faults_{0}, unknown_events_{0}, merged_events_{0}, wakeups_{0},
      watch_unsupported_{0}, watch_busy_{0}, window_refused_{0};
  RefusedWindows refused_windows_;
};

// The hub and who uses it. g_hub_mu is never held across a fork by a
// handler of ours; a child resets it (ResetHubMutexInChild), since a parent
// thread may have held it. Every update under it leaves g_hub and
// g_hub_users consistent at each step, so a child that inherits a half-done
// update at worst keeps a hub alive that nobody uses.
Mutex g_hub_mu;
UffdHub* g_hub RC_GUARDED_BY(g_hub_mu) = nullptr;
int g_hub_users RC_GUARDED_BY(g_hub_mu) = 0;

void ResetHubMutexInChild() RC_NO_TSA {
  new (&g_hub_mu) Mutex();  // only the forking thread exists here
}

// Takes a user reference on the process's hub, creating it if needed.
UffdHub* AcquireHub(std::string* why) {
  static const int installed =
      pthread_atfork(nullptr, nullptr, &ResetHubMutexInChild);
  (void)installed;
  MutexLock l(&g_hub_mu);
  if (g_hub == nullptr) {
    int uffd, wake;
    if (OpenHubFds(&uffd, &wake, why) != 0) return nullptr;
    g_hub = new UffdHub(uffd, wake);
  } else if (g_hub->owner_pid() != CurrentPid()) {
    // A fork child whose caches have not restarted the hub yet: this is
    // the first use here, so restart it for everyone.
    if (g_hub->RestartInChild(why) != 0) return nullptr;
  }
  ++g_hub_users;
  return g_hub;
}

void ReleaseHub(UffdHub* hub) {
  MutexLock l(&g_hub_mu);
  if (--g_hub_users > 0) return;
  g_hub = nullptr;
  delete hub;  // stops the threads and closes the uffd
}

// A cache's view of the hub: the Monitor the cache holds.
class UffdMonitor final : public Monitor {
 public:
  explicit UffdMonitor(UffdHub* hub) : hub_(hub) {}
  ~UffdMonitor() override { Stop(); }

  regcache_monitor_kind kind() const override { return REGCACHE_MONITOR_UFFD; }

  int Start(InvalidationSink* sink, std::atomic<uint32_t>* gate,
            std::string* why) override {
    if (started_ || hub_ == nullptr) {
      *why = started_ ? "uffd monitor already started" : "uffd monitor stopped";
      return -EINVAL;
    }
    int rc;
    {
      MutexLock l(&g_hub_mu);
      rc = hub_->Subscribe(sink, gate, why);
    }
    if (rc == 0) {
      sink_ = sink;
      started_ = true;
    }
    return rc;
  }

  int Watch(uint64_t first, uint64_t last, WatchToken* token) override {
    // Not subscribed: nothing would apply this range's events for us.
    if (!started_) return -EOPNOTSUPP;
    return hub_->Watch(first, last, token);
  }

  // Deliberately no UFFDIO_UNREGISTER; see "Why Unwatch() does not ..." above.
  void Unwatch(uint64_t, uint64_t, const WatchToken&) override {}

  void WaitForPending() override {
    if (started_) hub_->WaitForPending();
  }

  // The cache calls this with its mutex held. Only the first cache of a
  // fork child takes g_hub_mu (the hub's threads, whose sinks take cache
  // mutexes, do not exist before that); later ones return at once.
  int RestartInChild(std::string* why) override {
    if (hub_ == nullptr) {
      *why = "uffd monitor was stopped";
      return -EINVAL;
    }
    if (hub_->restarted_here()) return 0;
    MutexLock l(&g_hub_mu);
    return hub_->RestartInChild(why);
  }

  // Joins nothing while another cache still uses the hub; the last one out
  // stops it (see UffdHub::Stop for why no cache mutex may be held).
  void Stop() override {
    if (hub_ == nullptr) return;
    if (started_) {
      MutexLock l(&g_hub_mu);
      hub_->Unsubscribe(sink_);
    }
    started_ = false;
    ReleaseHub(hub_);
    hub_ = nullptr;
  }

  const UffdHub* hub() const { return hub_; }

 private:
  UffdHub* hub_;
  InvalidationSink* sink_ = nullptr;
  bool started_ = false;
};

}  // namespace

std::unique_ptr<Monitor> CreateUffdMonitor(std::string* why) {
  UffdHub* hub = AcquireHub(why);
  if (hub == nullptr) return nullptr;
  return std::make_unique<UffdMonitor>(hub);
}

bool GetUffdMonitorCounters(const Monitor& monitor, UffdMonitorCounters* out) {
  const auto* uffd = dynamic_cast<const UffdMonitor*>(&monitor);
  if (uffd == nullptr || uffd->hub() == nullptr) return false;
  uffd->hub()->ReadCounters(out);
  return true;
}

}  // namespace regcache_internal
