// SPDX-License-Identifier: BSD-2-Clause
// The invalidation monitor interface.
//
// A Monitor tells the cache when memory under a cached registration was
// unmapped or remapped. The cache calls Watch() for a range BEFORE it
// registers that range, so an unmap racing with the registration is seen
// (either by the entry's generation word or by an InvalidateRange() call that
// the cache's miss path checks for). Implementations: none (common.cc),
// userfaultfd (uffd.cc), the kernel module (kmod.cc).
//
// Threading: Watch/Unwatch/WaitForPending are called by application threads
// without any cache lock held. A monitor's own event thread calls
// InvalidationSink::InvalidateRange(); that call takes the cache mutex
// briefly, never allocates, never deregisters and never waits for an
// application thread, so the event thread cannot deadlock with a thread that
// is blocked in munmap() waiting for it (libfabric issues 5554/5580).
#ifndef REGCACHE_SRC_REGCACHE_MONITOR_MONITOR_H_
#define REGCACHE_SRC_REGCACHE_MONITOR_MONITOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "regcache/regcache.h"

namespace regcache_internal {

// Bits of the cache's gate word. The hit path reads the gate once; any bit
// set sends it to the slow path.
inline constexpr uint32_t kGateEventsPending = 1u << 0;  // read, not applied
inline constexpr uint32_t kGateForked = 1u << 1;         // in a fork child
inline constexpr uint32_t kGateDestroying = 1u << 2;

// Where a monitor delivers invalidations. [first, last] is a closed byte range.
class InvalidationSink {
 public:
  virtual ~InvalidationSink() = default;
  virtual void InvalidateRange(uint64_t first, uint64_t last,
                               regcache_inval_reason reason) = 0;
};

// What the cache keeps per entry for its monitor. The hit path checks
// `generation->load(acquire) == expected`; a monitor without per-range
// generations points `generation` at a word that never changes.
struct WatchToken {
  const std::atomic<uint64_t>* generation = nullptr;
  uint64_t expected = 0;
  uint64_t cookie = 0;  // monitor-private (e.g. the kernel's range id)
};

// Counters a monitor's kernel side keeps (see Monitor::KernelCounters).
struct KernelCounts {
  uint64_t watched = 0;      // ranges it was asked to watch
  uint64_t invalidated = 0;  // ranges it made stale, any reason
  uint64_t unmapped = 0;     // ... of those, by munmap/mremap/exit
  uint64_t cleared = 0;      // ... by madvise, COW, migration, zaps
  uint64_t late = 0;         // ... found at the end of an invalidation
};

class Monitor {
 public:
  virtual ~Monitor() = default;
  virtual regcache_monitor_kind kind() const = 0;

  // Begin delivering events. `gate` is the cache's gate word: a monitor that
  // reads events asynchronously sets kGateEventsPending before it reads an
  // event and clears it after the sink has applied it, so a thread returning
  // from munmap() never sees a stale hit. Returns 0 or -errno with *why set.
  virtual int Start(InvalidationSink* sink, std::atomic<uint32_t>* gate,
                    std::string* why) = 0;

  // Watch [first, last] (page aligned). 0 on success with *token filled;
  // -EOPNOTSUPP if this kind of memory cannot be watched (the cache then
  // serves the request with an uncached registration); other -errno on error.
  virtual int Watch(uint64_t first, uint64_t last, WatchToken* token) = 0;

  // Stop watching a range the cache no longer holds. Best effort.
  virtual void Unwatch(uint64_t first, uint64_t last,
                       const WatchToken& token) = 0;

  // Block until every event read so far has been applied. Called by the
  // slow path when kGateEventsPending is set. Never called with a lock held.
  // A monitor with per-range generations (kmod) publishes invalidations in
  // its generation words and never sets the gate: its WaitForPending()
  // applies, in the calling thread, every invalidation published so far and
  // costs one load when there is none. For such a monitor the cache calls it
  // at the start of every slow path (before sampling its invalidation
  // sequence) and before reading statistics, so a stale entry is dropped and
  // counted before its range is registered again.
  virtual void WaitForPending() = 0;

  // False only if WaitForPending() would find nothing to apply right now;
  // true may be spurious. Lets the cache skip its bookkeeping around
  // WaitForPending() on a slow path that nothing was published for. Called
  // like WaitForPending().
  virtual bool HasPending() { return true; }

  // In a fork child: drop inherited state and start again (new fd, new
  // thread). Returns 0 or -errno with *why set.
  virtual int RestartInChild(std::string* why) = 0;

  // Stop the event thread. Idempotent; called before destruction.
  virtual void Stop() = 0;

  // What the kernel itself counted for this monitor (kmod: its context's
  // counters), for statistics that do not rest on userspace's own
  // counting. -EOPNOTSUPP for monitors without a kernel side. Thread-safe.
  virtual int KernelCounters(KernelCounts* out) { return -EOPNOTSUPP; }
};

// A word that never changes, for monitors without per-range generations.
const std::atomic<uint64_t>* StaticGeneration();

// Starts a monitor's event thread: named `name` (at most 15 characters),
// every signal blocked (no application handler, which might munmap or take
// a lock, runs on it), running `body`. Returns 0 once the new thread has
// entered `body`, or -EAGAIN with *why set. Waiting for that matters to a
// fork right after Start(): a thread still inside its start-up may hold a
// lock of the thread library or of a sanitizer runtime (ASan's allocator
// has no fork handler), and the child's own new threads would wait on it
// for ever.
int StartEventThread(const char* name, std::function<void()> body,
                     std::thread* out, std::string* why);

std::unique_ptr<Monitor> CreateNullMonitor();
// Return nullptr with *why set when the monitor cannot work here.
std::unique_ptr<Monitor> CreateUffdMonitor(std::string* why);
std::unique_ptr<Monitor> CreateKmodMonitor(std::string* why);

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_MONITOR_MONITOR_H_
