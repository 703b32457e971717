// SPDX-License-Identifier: BSD-2-Clause
// The kernel-module monitor (REGCACHE_MONITOR_KMOD): invalidation through
// /dev/regcache (src/kmod_notifier/, docs/kmod.md). The main function
// exported is CreateKmodMonitor().
//
// Watch() is the MONITOR ioctl; the WatchToken's `generation` points at the
// range's generation word in the module's read-only shared area, which the
// kernel bumps synchronously inside munmap()/madvise()/mremap(). Those words
// are authoritative: the cache's hit path and slow path compare them, so a
// thread returning from munmap() can never be handed a stale registration,
// and this monitor never needs kGateEventsPending. The event thread only
// makes dropping stale entries eager: woken by poll() on the fd, it reads the
// event ring, translates slots to ranges and calls
// InvalidationSink::InvalidateRange(); when the ring overflowed it rescans
// every watched slot's generation instead. Nothing the kernel does ever
// waits for this thread, so it cannot deadlock with an unmapping thread.
//
// WaitForPending() applies, in the calling thread, every invalidation the
// kernel has published (the shared inval_seq moved) that the event thread
// has not handled yet, and costs one load when there is none. The cache
// calls it at the start of a slow path (monitor.h), so a miss right after
// munmap() drops and counts the stale entry before the range is registered
// again, and a late event cannot drop the new entry of the same range.
//
// Parked watches. Unwatch() of a range whose generation has not moved (the
// cache evicted the entry; nothing changed the memory) does not UNMONITOR
// it at once: the watch is parked, still in the kernel's tree, and a later
// Watch() of exactly that range (the capacity miss of a recently evicted
// buffer) takes it back if its generation is still the one MONITOR
// returned, with no system call either way. That is safe because the watch
// never stopped: any invalidation since would have bumped the generation,
// and the cache checks the generation again after it registers, as for a
// fresh MONITOR. At most kParkedSets x kParkedWays watches are parked; a
// full set UNMONITORs its oldest. A parked range that is invalidated is
// reported like any other (the cache has nothing there to drop) and
// UNMONITORed when Watch() or a full set meets it.
//
// Threading: Watch/Unwatch run on application threads; `mu_` guards the
// slot table and the parked watches they share with the event thread. The
// sink is called with no lock of ours held; no ioctl is made under `mu_`.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "base/thread_annotations.h"
#include "monitor/fds.h"
#include "monitor/monitor.h"
#include "regcache/kmod_uapi.h"

namespace regcache_internal {
namespace {

static_assert(sizeof(std::atomic<uint64_t>) == sizeof(__u64) &&
                  std::atomic<uint64_t>::is_always_lock_free,
              "generation words are read as std::atomic<uint64_t>");

std::string ErrnoText(int err) { return std::string(strerror(err)); }

regcache_inval_reason MapReason(uint16_t reason) {
  switch (reason) {
    case REGCACHE_KMOD_REASON_CLEAR:
      return REGCACHE_INVAL_REMOVE;
    case REGCACHE_KMOD_REASON_MIGRATE:
    case REGCACHE_KMOD_REASON_EXCLUSIVE:
      return REGCACHE_INVAL_MIGRATE;
    case REGCACHE_KMOD_REASON_UNMAP:
    case REGCACHE_KMOD_REASON_RELEASE:
    default:
      return REGCACHE_INVAL_UNMAP;
  }
}

// Opens and maps one context. Returns 0 or -errno with *why set.
int OpenDevice(int* fd_out, const char** area_out, size_t* size_out,
               std::string* why) {
  const int fd = open(REGCACHE_KMOD_DEVICE_PATH, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    *why = std::string(REGCACHE_KMOD_DEVICE_PATH) + ": " + ErrnoText(err);
    if (err == ENOENT || err == ENODEV || err == ENXIO)
      *why += " (is the regcache module loaded? see docs/operators.md)";
    else if (err == EACCES || err == EPERM)
      *why += " (the udev rule in docs/operators.md gives group rdma access)";
    return -err;
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* head = mmap(nullptr, page, PROT_READ, MAP_SHARED, fd, 0);
  if (head == MAP_FAILED) {
    const int err = errno;
    *why = std::string("mmap of ") + REGCACHE_KMOD_DEVICE_PATH + ": " +
           ErrnoText(err);
    close(fd);
    return -err;
  }
  const auto* sh = static_cast<const regcache_kmod_shared*>(head);
  const uint32_t abi = sh->abi_version;
  const uint64_t size = sh->map_size;
  const uint32_t header = sh->header_size;
  munmap(head, page);
  if (abi != REGCACHE_KMOD_ABI_VERSION ||
      header < sizeof(regcache_kmod_shared)) {
    *why = std::string(REGCACHE_KMOD_DEVICE_PATH) + ": module ABI version " +
           std::to_string(abi) + ", this library needs " +
           std::to_string(REGCACHE_KMOD_ABI_VERSION) +
           " (rebuild and reload the module, see docs/operators.md)";
    close(fd);
    return -EPROTO;
  }
  void* area = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (area == MAP_FAILED) {
    const int err = errno;
    *why = std::string("mmap of ") + REGCACHE_KMOD_DEVICE_PATH + ": " +
           ErrnoText(err);
    close(fd);
    return -err;
  }
  *fd_out = fd;
  *area_out = static_cast<const char*>(area);
  *size_out = size;
  return 0;
}

// What the monitor knows about one slot of its context.
struct SlotInfo {
  uint64_t first = 0;
  uint64_t last = 0;
  uint64_t expected = 0;  // generation at MONITOR
  uint64_t cookie = 0;    // our watch id, echoed by the kernel; 0 = free
  bool reported = false;  // handed to the sink once already
};

struct PendingInvalidation {
  uint64_t first;
  uint64_t last;
  regcache_inval_reason reason;
};

// The ring reader's state, shared by the event thread and the application
// threads that apply pending events inline (Watch(), WaitForPending()). A
// fork child abandons the parent's (its mutex may be held by a thread that
// does not exist in the child) and never destroys it.
struct EventState {
  Mutex drain_mu;  // one reader of the ring at a time
  uint64_t tail RC_GUARDED_BY(drain_mu) = 0;
  std::vector<regcache_kmod_event> copies RC_GUARDED_BY(drain_mu);
  std::vector<PendingInvalidation> pending RC_GUARDED_BY(drain_mu);
  std::thread thread;
};

class KmodMonitor final : public Monitor {
 public:
  KmodMonitor(int fd, const char* area, size_t size)
      : page_size_(static_cast<uint64_t>(sysconf(_SC_PAGESIZE))),
        owner_pid_(PrepareCurrentPid()) {
    fork_slot_ = AcquireForkClosedFds();
    if (fork_slot_ == nullptr) fork_slot_ = &own_fds_;
    Adopt(fd, area, size);
  }

  ~KmodMonitor() override {
    Stop();
    if (area_ != nullptr &&
        CurrentPid() == owner_pid_.load(std::memory_order_relaxed))
      munmap(const_cast<char*>(area_), area_size_);
    area_ = nullptr;
    if (fork_slot_ != &own_fds_) ReleaseForkClosedFds(fork_slot_);
  }

  regcache_monitor_kind kind() const override { return REGCACHE_MONITOR_KMOD; }

  int Start(InvalidationSink* sink, std::atomic<uint32_t>* gate,
            std::string* why) override {
    if (started_ || stopped_) {
      *why = started_ ? "kmod monitor already started" : "kmod monitor stopped";
      return -EINVAL;
    }
    // `gate` stays untouched: the generation words are synchronous and
    // authoritative, so no event is ever "read but not applied" in a way
    // the hit path could miss (see the top of this file).
    (void)gate;
    sink_ = sink;
    const int rc = StartThread(why);
    if (rc == 0) started_ = true;
    return rc;
  }

  int Watch(uint64_t first, uint64_t last, WatchToken* token) override {
    if (first > last || (first & (page_size_ - 1)) != 0 ||
        ((last + 1) & (page_size_ - 1)) != 0)
      return -EINVAL;
    const int fd = fork_slot_->primary.load(std::memory_order_acquire);
    // A fork child before RestartInChild(): the fd (if any) is the parent's.
    if (fd < 0 || CurrentPid() != owner_pid_.load(std::memory_order_relaxed))
      return -EOPNOTSUPP;
    Parked stale;
    if (Unpark(first, last, token, &stale)) return 0;
    if (stale.first <= stale.last) Unmonitor(fd, stale.slot, stale.expected);
    const uint64_t cookie =
        next_cookie_.fetch_add(1, std::memory_order_relaxed);
    regcache_kmod_range r{};
    r.start = first;
    r.length = last - first + 1;
    r.cookie = cookie;
    if (ioctl(fd, REGCACHE_IOC_MONITOR, &r) != 0) {
      const int err = errno;
      // Out of slots (module parameter max_ranges) or an mm we do not own:
      // the cache serves the request uncached.
      if (err == ENOSPC || err == EPERM || err == ESRCH) return -EOPNOTSUPP;
      return -err;
    }
    {
      MutexLock l(&mu_);
      if (r.slot >= slots_.size()) slots_.resize(size_t{r.slot} + 1);
      slots_[r.slot] = SlotInfo{first, last, r.generation, cookie};
    }
    token->generation = GenerationWord(r.slot);
    token->expected = r.generation;
    token->cookie =
        (uint64_t{epoch_.load(std::memory_order_relaxed)} << 32) | r.slot;
    return 0;
  }

  void Unwatch(uint64_t first, uint64_t last,
               const WatchToken& token) override {
    const uint32_t slot = static_cast<uint32_t>(token.cookie);
    // A token of a context this process no longer has (before a fork).
    if (static_cast<uint32_t>(token.cookie >> 32) !=
        epoch_.load(std::memory_order_relaxed))
      return;
    const int fd = fork_slot_->primary.load(std::memory_order_acquire);
    if (fd < 0 || CurrentPid() != owner_pid_.load(std::memory_order_relaxed))
      return;
    if (token.generation->load(std::memory_order_acquire) == token.expected) {
      // Unchanged: park it (see "Parked watches" above).
      Parked evicted;
      Park(Parked{first, last, slot, token.expected, 0}, &evicted);
      if (evicted.first > evicted.last) return;
      Unmonitor(fd, evicted.slot, evicted.expected);
      return;
    }
    Unmonitor(fd, slot, token.expected);
  }

  void WaitForPending() override {
    if (CurrentPid() == owner_pid_.load(std::memory_order_relaxed))
      ApplyPending();
  }

  bool HasPending() override {
    return CurrentPid() == owner_pid_.load(std::memory_order_relaxed) &&
           PublishedUnapplied();
  }

  int RestartInChild(std::string* why) override {
    if (CurrentPid() == owner_pid_.load(std::memory_order_relaxed)) return 0;
    // mu_ may have been held at fork() by a thread that does not exist
    // here (the event thread copying events, an application thread in
    // Watch() or Unwatch()): it would stay locked forever. No thread of
    // this process can hold it now: Watch(), Unwatch() and ApplyPending()
    // return before taking it while owner_pid_ is the parent's, which it is
    // until below. So it is made anew.
    new (&mu_) Mutex();
    // The parent's event thread does not exist here; its state may hold a
    // lock forever. Keep it reachable, never destroy it.
    if (state_) abandoned_.push_back(state_.release());
    CloseExchanged(&fork_slot_->primary);
    CloseExchanged(&fork_slot_->wake);
    // The parent's area is not mapped in the child (VM_DONTCOPY), and the
    // address may hold something else by now: forget it, never munmap it.
    area_ = nullptr;
    owner_pid_.store(CurrentPid(), std::memory_order_relaxed);
    epoch_.fetch_add(1, std::memory_order_relaxed);
    {
      MutexLock l(&mu_);
      slots_.clear();
      for (Parked& p : parked_) p = Parked{};
    }
    int fd;
    const char* area;
    size_t size;
    int rc = OpenDevice(&fd, &area, &size, why);
    if (rc != 0) return rc;
    Adopt(fd, area, size);
    if (started_ && !stopped_) return StartThread(why);
    return 0;
  }

  int KernelCounters(KernelCounts* out) override {
    const int fd = fork_slot_->primary.load(std::memory_order_acquire);
    if (fd < 0 || CurrentPid() != owner_pid_.load(std::memory_order_relaxed))
      return -ESRCH;
    regcache_kmod_stats st{};
    if (ioctl(fd, REGCACHE_IOC_STATS, &st) != 0) return -errno;
    out->watched = st.monitors;
    out->invalidated = 0;
    for (uint64_t n : st.invalidated) out->invalidated += n;
    out->unmapped = st.invalidated[REGCACHE_KMOD_REASON_UNMAP] +
                    st.invalidated[REGCACHE_KMOD_REASON_RELEASE];
    out->cleared = out->invalidated - out->unmapped;
    out->late = st.late;
    return 0;
  }

  void Stop() override {
    if (stopped_) return;
    stopped_ = true;
    const bool in_owner =
        CurrentPid() == owner_pid_.load(std::memory_order_relaxed);
    if (state_ && state_->thread.joinable()) {
      if (in_owner) {
        const int wake = fork_slot_->wake.load();
        if (wake >= 0) {
          const uint64_t one = 1;
          (void)!write(wake, &one, sizeof(one));
        }
        state_->thread.join();
      } else {
        abandoned_.push_back(state_.release());
      }
    }
    CloseExchanged(&fork_slot_->wake);
    // The area stays mapped until the destructor: the cache's reaper may
    // still be in Unwatch(), reading a token's generation word, until the
    // cache joins it after this returns.
    CloseExchanged(&fork_slot_->primary);
  }

 private:
  // A parked watch (see above); first > last marks a free way.
  struct Parked {
    uint64_t first = 1;
    uint64_t last = 0;
    uint32_t slot = 0;
    uint64_t expected = 0;
    uint64_t stamp = 0;  // park order, for replacement
  };
  static constexpr size_t kParkedSets = 16;
  static constexpr size_t kParkedWays = 4;

  Parked* ParkedSet(uint64_t first) RC_REQUIRES(mu_) {
    const uint64_t h = (first >> 12) * 0x9E3779B97F4A7C15ull;
    return &parked_[((h ^ (h >> 29)) % kParkedSets) * kParkedWays];
  }

  // Parks `p`; *evicted is the way it replaced (free: first > last), to
  // UNMONITOR outside the lock.
  void Park(Parked p, Parked* evicted) {
    MutexLock l(&mu_);
    Parked* set = ParkedSet(p.first);
    Parked* way = &set[0];
    for (size_t w = 0; w < kParkedWays; ++w) {
      if (set[w].first > set[w].last) {
        way = &set[w];
        break;
      }
      if (set[w].stamp < way->stamp) way = &set[w];
    }
    *evicted = *way;
    if (evicted->first <= evicted->last)
      ForgetSlotLocked(evicted->slot, evicted->expected);
    p.stamp = ++park_clock_;
    *way = p;
  }

  // Takes back the parked watch of exactly [first, last] if its generation
  // has not moved: fills *token and returns true. A parked watch of that
  // range whose generation moved is returned in *stale (else stale->first
  // > stale->last) for the caller to UNMONITOR.
  bool Unpark(uint64_t first, uint64_t last, WatchToken* token, Parked* stale) {
    MutexLock l(&mu_);
    *stale = Parked{};
    Parked* set = ParkedSet(first);
    for (size_t w = 0; w < kParkedWays; ++w) {
      Parked& p = set[w];
      if (p.first != first || p.last != last || p.first > p.last) continue;
      const Parked found = p;
      p = Parked{};
      if (GenerationWord(found.slot)->load(std::memory_order_acquire) !=
          found.expected) {
        ForgetSlotLocked(found.slot, found.expected);
        *stale = found;
        return false;
      }
      token->generation = GenerationWord(found.slot);
      token->expected = found.expected;
      token->cookie =
          (uint64_t{epoch_.load(std::memory_order_relaxed)} << 32) | found.slot;
      return true;
    }
    return false;
  }

  // Forget the slot before the kernel may hand it out again.
  void ForgetSlotLocked(uint32_t slot, uint64_t expected) RC_REQUIRES(mu_) {
    if (slot < slots_.size() && slots_[slot].expected == expected)
      slots_[slot] = SlotInfo{};
  }

  void Unmonitor(int fd, uint32_t slot, uint64_t expected) {
    {
      MutexLock l(&mu_);
      ForgetSlotLocked(slot, expected);
    }
    regcache_kmod_unmonitor u{};
    u.slot = slot;
    u.generation = expected;
    ioctl(fd, REGCACHE_IOC_UNMONITOR, &u);  // best effort: ENOENT is harmless
  }

  void Adopt(int fd, const char* area, size_t size) {
    fork_slot_->primary.store(fd, std::memory_order_release);
    area_ = area;
    area_size_ = size;
    const auto* sh = reinterpret_cast<const regcache_kmod_shared*>(area);
    ring_ =
        reinterpret_cast<const regcache_kmod_event*>(area + sh->ring_offset);
    ring_entries_ = sh->ring_entries;
    gens_ =
        reinterpret_cast<const std::atomic<uint64_t>*>(area + sh->gen_offset);
  }

  const std::atomic<uint64_t>* GenerationWord(uint32_t slot) const {
    return gens_ + slot;
  }

  uint64_t Head() const {
    const auto* sh = reinterpret_cast<const regcache_kmod_shared*>(area_);
    return __atomic_load_n(&sh->ring_head, __ATOMIC_ACQUIRE);
  }
  uint64_t Seq() const {
    const auto* sh = reinterpret_cast<const regcache_kmod_shared*>(area_);
    return __atomic_load_n(&sh->inval_seq, __ATOMIC_ACQUIRE);
  }

  int StartThread(std::string* why) {
    const int wake = eventfd(0, EFD_CLOEXEC);
    if (wake < 0) {
      const int err = errno;
      *why = "eventfd: " + ErrnoText(err);
      return -err;
    }
    fork_slot_->wake.store(wake);
    state_ = std::make_unique<EventState>();
    {
      MutexLock l(&state_->drain_mu);
      state_->tail = Head();
      state_->copies.reserve(ring_entries_);
      state_->pending.reserve(ring_entries_);
    }
    applied_seq_.store(Seq(), std::memory_order_release);
    return StartEventThread(
        "regcache-kmod", [this, state = state_.get()] { Run(state); },
        &state_->thread, why);
  }

  void Run(EventState* state) {
    const int fd = fork_slot_->primary.load();
    const int wake = fork_slot_->wake.load();
    for (;;) {
      pollfd fds[2] = {{fd, POLLIN, 0}, {wake, POLLIN, 0}};
      const int n = poll(fds, 2, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 || (fds[1].revents & POLLIN) ||
          (fds[0].revents & (POLLERR | POLLNVAL)))
        break;
      regcache_kmod_ack ack{};
      {
        MutexLock l(&state->drain_mu);
        DrainAndApplyLocked(state);
        ack.tail = state->tail;
      }
      ioctl(fd, REGCACHE_IOC_ACK_EVENTS, &ack);  // re-arms poll()
      if (fds[0].revents & POLLHUP) break;  // the mm released: nothing more
    }
  }

  // Whether the kernel published invalidations nobody applied yet. Only in
  // the owner process: a fork child before RestartInChild() must not read
  // area_ (the parent's mapping is not in the child).
  bool PublishedUnapplied() const {
    return state_ != nullptr && area_ != nullptr &&
           Seq() != applied_seq_.load(std::memory_order_acquire);
  }

  // Applies, in this thread, what the kernel published and nobody applied.
  void ApplyPending() {
    if (!PublishedUnapplied()) return;
    EventState* state = state_.get();
    MutexLock l(&state->drain_mu);
    DrainAndApplyLocked(state);
  }

  // Reads the events for every invalidation published so far and hands
  // them to the sink (which takes the cache mutex; no lock of the cache is
  // held by any caller here).
  void DrainAndApplyLocked(EventState* state) RC_REQUIRES(state->drain_mu) {
    // inval_seq first: the events of every bump it counts precede it in
    // the ring, so draining to the head read after it covers them all.
    const uint64_t seq = Seq();
    Drain(state);
    for (const PendingInvalidation& p : state->pending)
      sink_->InvalidateRange(p.first, p.last, p.reason);
    state->pending.clear();
    applied_seq_.store(seq, std::memory_order_release);
  }

  // Reads the ring from state->tail (docs/kmod.md, "Reading the ring") into
  // state->pending, or rescans every watched slot after an overflow, and
  // moves the tail to the head it read.
  void Drain(EventState* state) RC_REQUIRES(state->drain_mu) {
    const uint64_t n = ring_entries_;
    const uint64_t tail = state->tail;
    const uint64_t head = Head();
    bool overflow = head - tail >= n;
    if (!overflow) {
      state->copies.clear();
      for (uint64_t i = tail; i != head; ++i) {
        const regcache_kmod_event& e = ring_[i & (n - 1)];
        regcache_kmod_event c{};
        c.cookie = __atomic_load_n(&e.cookie, __ATOMIC_RELAXED);
        c.generation = __atomic_load_n(&e.generation, __ATOMIC_RELAXED);
        c.slot = __atomic_load_n(&e.slot, __ATOMIC_RELAXED);
        c.reason = __atomic_load_n(&e.reason, __ATOMIC_RELAXED);
        state->copies.push_back(c);
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      overflow = Head() - tail >= n;
    }
    MutexLock l(&mu_);
    if (overflow) {
      overflows_.fetch_add(1, std::memory_order_relaxed);
      state->tail = Head();  // move the tail first, then rescan
      for (SlotInfo& s : slots_) {
        if (s.cookie == 0 || s.reported) continue;
        const uint32_t slot = static_cast<uint32_t>(&s - slots_.data());
        if (GenerationWord(slot)->load(std::memory_order_acquire) !=
            s.expected) {
          state->pending.push_back({s.first, s.last, REGCACHE_INVAL_UNMAP});
          s.reported = true;
        }
      }
      return;
    }
    for (const regcache_kmod_event& e : state->copies) {
      // A slot unwatched (and perhaps reused) since: not ours any more. An
      // event that beat Watch()'s bookkeeping is dropped too; the
      // generation word already told the cache.
      if (e.slot >= slots_.size()) continue;
      SlotInfo& s = slots_[e.slot];
      if (s.cookie != e.cookie || e.generation <= s.expected || s.reported)
        continue;
      state->pending.push_back({s.first, s.last, MapReason(e.reason)});
      s.reported = true;
    }
    state->tail = head;
  }

  const uint64_t page_size_;
  std::atomic<pid_t> owner_pid_;
  std::atomic<uint32_t> epoch_{1};  // which context a token's cookie names
  MonitorFds own_fds_;              // when the fork-slot table is full
  MonitorFds* fork_slot_ = nullptr;

  const char* area_ = nullptr;
  size_t area_size_ = 0;
  const regcache_kmod_event* ring_ = nullptr;
  uint64_t ring_entries_ = 0;
  const std::atomic<uint64_t>* gens_ = nullptr;

  InvalidationSink* sink_ = nullptr;
  bool started_ = false;
  bool stopped_ = false;
  std::atomic<uint64_t> next_cookie_{1};
  std::atomic<uint64_t> overflows_{0};

  Mutex mu_;
  std::vector<SlotInfo> slots_ RC_GUARDED_BY(mu_);  // by kernel slot
  Parked parked_[kParkedSets * kParkedWays] RC_GUARDED_BY(mu_);
  uint64_t park_clock_ RC_GUARDED_BY(mu_) = 0;

  std::atomic<uint64_t> applied_seq_{0};  // inval_seq whose events are applied

  std::unique_ptr<EventState> state_;
  std::vector<EventState*> abandoned_;  // fork children: never destroyed
};

}  // namespace

std::unique_ptr<Monitor> CreateKmodMonitor(std::string* why) {
  int fd;
  const char* area;
  size_t size;
  if (OpenDevice(&fd, &area, &size, why) != 0) return nullptr;
  return std::make_unique<KmodMonitor>(fd, area, size);
}

}  // namespace regcache_internal
