// SPDX-License-Identifier: BSD-2-Clause
// Introspection of the userfaultfd monitor (uffd.cc), for statistics
// and tests. The monitor itself is created through CreateUffdMonitor() in
// monitor.h; this header only adds what is specific to it: its counters and
// the size of its apply queue, past which queued invalidations are merged
// into one covering range.
//
// Thread safety: GetUffdMonitorCounters() may race with everything; each
// counter is read atomically, the set as a whole is not a snapshot.
#ifndef REGCACHE_SRC_REGCACHE_MONITOR_UFFD_H_
#define REGCACHE_SRC_REGCACHE_MONITOR_UFFD_H_

#include <cstddef>
#include <cstdint>

#include "monitor/monitor.h"

namespace regcache_internal {

// Invalidations read from the uffd but not yet handed to the sink. When more
// arrive before the applier drains them, the excess is merged into one range
// covering all of it (over-invalidation is safe; the reader never waits).
inline constexpr size_t kUffdApplyQueueCapacity = 256;

struct UffdMonitorCounters {
  uint64_t unmap_events = 0;       // UFFD_EVENT_UNMAP read
  uint64_t remove_events = 0;      // UFFD_EVENT_REMOVE read
  uint64_t remap_events = 0;       // UFFD_EVENT_REMAP read
  uint64_t unexpected_faults = 0;  // UFFD_EVENT_PAGEFAULT (never expected)
  uint64_t unknown_events = 0;     // any other event type
  uint64_t merged_events = 0;      // events merged because the queue was full
  uint64_t wakeups = 0;            // reader wake-ups ("seen" epochs)
  uint64_t watch_unsupported = 0;  // Watch() answered -EOPNOTSUPP
  uint64_t watch_busy = 0;         // ... of which: range owned by another uffd
  // Registrations of the 2 MiB window around a range that the kernel
  // refused (the range alone was then tried).
  uint64_t window_refused = 0;
};

// Fills *out and returns true if `monitor` is a userfaultfd monitor.
bool GetUffdMonitorCounters(const Monitor& monitor, UffdMonitorCounters* out);

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_MONITOR_UFFD_H_
