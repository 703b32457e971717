// SPDX-License-Identifier: BSD-2-Clause
// File descriptors a monitor owns that must not survive into a fork child.
//
// A child that keeps the parent's /dev/regcache fd keeps the parent's kernel
// context alive (and blocks rmmod); a child that keeps the parent's
// userfaultfd keeps the parent's uffd context alive after the parent's
// monitor stopped, so the parent's next munmap() of registered memory
// sleeps for ever. One pthread_atfork() child handler closes, in every
// child, the fds of every live monitor from a fixed table; it does only
// async-signal-safe work (atomic exchanges and close()). Monitors read their
// fds from the table, so they never close a number the child reused.
#ifndef REGCACHE_SRC_REGCACHE_MONITOR_FDS_H_
#define REGCACHE_SRC_REGCACHE_MONITOR_FDS_H_

#include <atomic>

namespace regcache_internal {

struct MonitorFds {
  std::atomic<int> primary{-1};  // /dev/regcache or the userfaultfd
  std::atomic<int> wake{-1};     // eventfd that stops the event thread
};

// A pair in the table (installing the fork handler on first use), or
// nullptr when more monitors are alive than the table holds: the caller then
// uses its own MonitorFds, which fork children keep.
MonitorFds* AcquireForkClosedFds();
// Give a pair back to the table; its fds must already be closed.
void ReleaseForkClosedFds(MonitorFds* fds);
// Close the fd in *fd (if any) and leave -1 there.
void CloseExchanged(std::atomic<int>* fd);

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_MONITOR_FDS_H_
