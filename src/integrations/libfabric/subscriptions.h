// SPDX-License-Identifier: BSD-2-Clause
// The libfabric plug-in's table of subscriptions: what libfabric's MR cache
// asked the imported monitor to watch, the monitor watch behind each, and
// the thread that tells libfabric when one went stale.
//
// libfabric (rdma/fi_ext.h, struct fid_mem_monitor) calls subscribe(addr,
// len) once it has registered a range and valid(addr, len) on every cache
// hit, both with its global mm_lock held; the monitor calls libfabric's
// notify(addr, len), which takes mm_list_rwlock and then mm_lock. A record
// here is keyed by the page-rounded range [first, last]: every subscribe of
// a range inside the same pages shares it. Each record owns one Monitor
// watch (the kmod monitor's generation word), so valid() is a hash lookup
// and one load, no system call.
//
// The protocol (why valid() never says yes to a stale registration):
//   * A record leaves the table only by being RETIRED: its generation
//     changed (the kernel's event, or found by subscribe/unsubscribe), or
//     the table is full and CLOCK picked it. A retired range is PENDING
//     until the notifier thread has called notify() for it and notify()
//     has returned; valid() says no for anything overlapping a pending
//     range. notify() runs under mm_lock and removes every overlapping
//     entry from every libfabric cache, so once it returns, any entry still
//     cached for that range subscribed after the retirement, to a newer
//     record.
//   * unsubscribe() never removes a record (libfabric 1.17 never calls it on
//     LRU eviction, newer versions do, and a count would be shared between
//     caches that use the same pages): it retires a stale record and marks a
//     live one unreferenced, so CLOCK takes it first. Memory and kernel
//     slots are bounded by max_subscriptions (plus pending ranges).
//   * Hence valid(P) is true only if the record for P exists, its
//     generation is unchanged since it was created (before the entry
//     subscribed), and no notify for P is outstanding.
// Left to libfabric: it registers BEFORE it subscribes, so an unmap that
// races with the registration itself (the application freeing memory it is
// registering) is seen by no monitor.
//
// Threading and locks: mu_ guards everything below it. Subscribe, Valid and
// Unsubscribe run on application threads under libfabric's mm_lock and take
// mu_ (mm_lock -> mu_). InvalidateRange runs on the monitor's event thread
// and takes mu_ alone. The notifier thread takes mu_ to collect and to
// clear pending ranges, but calls notify() with no lock of ours held, so
// notify's mm_list_rwlock -> mm_lock never waits behind mu_. Monitor
// Watch/Unwatch (ioctls) run without mu_. mu_ is held across allocation
// (map nodes): with the kmod monitor no munmap waits for any thread, so an
// allocator's munmap under mu_ cannot deadlock; nothing that munmap may run
// (other libraries' hooks) calls into this table.
#ifndef REGCACHE_SRC_INTEGRATIONS_LIBFABRIC_SUBSCRIPTIONS_H_
#define REGCACHE_SRC_INTEGRATIONS_LIBFABRIC_SUBSCRIPTIONS_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/thread_annotations.h"
#include "monitor/monitor.h"

namespace regcache_fi {

// Counters for REGCACHE_STATS and the tests. Relaxed: a snapshot may be a
// few operations behind.
struct SubscriptionStats {
  uint64_t subscribes = 0;        // subscribe() calls
  uint64_t watches = 0;           // of those, new monitor watches
  uint64_t subscribe_errors = 0;  // the monitor could not watch
  uint64_t unsubscribes = 0;
  uint64_t valid_calls = 0;
  uint64_t valid_false = 0;    // of those, answered "not valid"
  uint64_t retired_stale = 0;  // records whose range changed
  uint64_t retired_full = 0;   // records CLOCK dropped at max_subscriptions
  uint64_t notifies = 0;       // notify() calls made
  uint64_t records_now = 0;
  uint64_t pending_now = 0;
};

class Subscriptions final : public regcache_internal::InvalidationSink {
 public:
  // What the notifier thread calls for each retired range: libfabric's
  // notify(addr, len). Called with no lock of ours held.
  using NotifyFn = std::function<void(uint64_t addr, uint64_t len)>;

  // `monitor` must outlive the table; `max_subscriptions` >= 1.
  Subscriptions(regcache_internal::Monitor* monitor, size_t max_subscriptions,
                uint64_t page_size);
  ~Subscriptions() override;  // Stop()s first

  // Starts the monitor (this table is its sink) and the notifier thread
  // (named `thread_name`). 0 or -errno with *why set.
  int Start(NotifyFn notify, const char* thread_name, std::string* why);
  // Stops the notifier and the monitor, unwatches every record and forgets
  // them. Idempotent. Not from the notifier thread itself.
  void Stop();

  // libfabric's subscribe: 0, -EINVAL (len 0 or the range wraps), or the
  // monitor's error (-EOPNOTSUPP: libfabric keeps that entry uncached).
  int Subscribe(uint64_t addr, uint64_t len) RC_EXCLUDES(mu_);
  void Unsubscribe(uint64_t addr, uint64_t len) RC_EXCLUDES(mu_);
  bool Valid(uint64_t addr, uint64_t len) RC_EXCLUDES(mu_);

  // The monitor's event thread: the watch of [first, last] fired.
  void InvalidateRange(uint64_t first, uint64_t last,
                       regcache_inval_reason reason) override RC_EXCLUDES(mu_);

  // Blocks until every range retired so far has been notified (tests).
  void WaitForNotifier() RC_EXCLUDES(mu_);
  SubscriptionStats stats() RC_EXCLUDES(mu_);
  size_t max_subscriptions() const { return max_; }

 private:
  struct Range {
    uint64_t first;
    uint64_t last;
    bool operator==(const Range& o) const {
      return first == o.first && last == o.last;
    }
  };
  struct RangeHash {
    size_t operator()(const Range& r) const {
      return std::hash<uint64_t>()(r.first * 0x9E3779B97F4A7C15ull ^ r.last);
    }
  };
  struct Record {
    Range range;
    regcache_internal::WatchToken token;
    bool referenced = false;  // CLOCK: set by Valid(), cleared by the hand
    Record* older = nullptr;  // CLOCK list, oldest at clock_head_
    Record* newer = nullptr;
  };
  struct Pending {
    Range range;
    regcache_internal::WatchToken token;
  };

  bool RoundToPages(uint64_t addr, uint64_t len, Range* out) const;
  static bool Stale(const Record& r) {
    return r.token.generation->load(std::memory_order_acquire) !=
           r.token.expected;
  }
  // Inserts a record for `range` with a fresh watch; false (the caller
  // unwatches `token`) when a live record for it appeared meanwhile.
  bool InsertWatched(const Range& range,
                     const regcache_internal::WatchToken& token)
      RC_EXCLUDES(mu_);
  bool OverlapsPendingLocked(const Range& r) const RC_REQUIRES(mu_);
  void RetireLocked(Record* r) RC_REQUIRES(mu_);
  void MakeRoomLocked() RC_REQUIRES(mu_);
  void LinkNewestLocked(Record* r) RC_REQUIRES(mu_);
  void UnlinkLocked(Record* r) RC_REQUIRES(mu_);
  void RunNotifier();

  regcache_internal::Monitor* const monitor_;
  const size_t max_;
  const uint64_t page_mask_;

  regcache_internal::Mutex mu_;
  // Both wait on mu_.native(): pending_ grew or stop; a batch was notified.
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::unordered_map<Range, Record*, RangeHash> records_ RC_GUARDED_BY(mu_);
  Record* clock_head_ RC_GUARDED_BY(mu_) = nullptr;  // oldest
  Record* clock_tail_ RC_GUARDED_BY(mu_) = nullptr;  // newest
  // Retired ranges: [0, in_flight_) are being notified now; the rest wait.
  std::vector<Pending> pending_ RC_GUARDED_BY(mu_);
  size_t in_flight_ RC_GUARDED_BY(mu_) = 0;
  bool stopping_ RC_GUARDED_BY(mu_) = false;
  bool started_ = false;

  NotifyFn notify_;
  std::thread notifier_;
  SubscriptionStats counts_ RC_GUARDED_BY(mu_);
};

}  // namespace regcache_fi

#endif  // REGCACHE_SRC_INTEGRATIONS_LIBFABRIC_SUBSCRIPTIONS_H_
