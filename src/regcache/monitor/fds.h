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

#include <sys/types.h>

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

// This process's id, for the monitors' "am I a fork child?" checks on the
// miss path, usually without a system call (glibc's getpid() makes one each
// time). After PrepareCurrentPid() the id is cached in a page mapped
// MADV_WIPEONFORK (Linux 4.14), which the kernel hands zeroed to every
// child of fork(), of clone() without CLONE_VM and of a raw fork system call
// that skips pthread_atfork(); a zero makes the next call ask getpid()
// again. Before PrepareCurrentPid(), or where the madvise() failed, every
// call is getpid(). Not for a vfork() child, which shares the parent's
// memory (and may only exec or _exit anyway). Thread-safe; async-signal-safe.
pid_t CurrentPid();
// Maps the page, once per process (later calls only read it), and returns
// CurrentPid(). Call it where a system call is fine, e.g. when a monitor is
// created. Thread-safe.
pid_t PrepareCurrentPid();

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_MONITOR_FDS_H_
