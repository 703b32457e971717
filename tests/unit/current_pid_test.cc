// SPDX-License-Identifier: BSD-2-Clause
// CurrentPid(): the monitors' fork check without a system call. The id must
// be right in the process that prepared it and in every kind of child,
// including one made by a raw fork system call that runs no
// pthread_atfork() handler (only MADV_WIPEONFORK can tell that child).
// Its own binary: the raw fork is safe only while this process has one
// thread.
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "monitor/fds.h"

namespace regcache_internal {
namespace {

// Runs `child` in a process made by `do_fork` and returns its exit status:
// 0 when CurrentPid() there is the child's own id, 1 when it is the
// parent's, 2 otherwise.
template <typename Fork>
int ChildSeesItsOwnPid(Fork do_fork) {
  const pid_t parent = getpid();
  const pid_t child = do_fork();
  if (child == 0) {
    const pid_t seen = CurrentPid();
    // Asked twice: the second answer comes from the page.
    const pid_t again = CurrentPid();
    _exit(seen == getpid() && again == seen ? 0 : seen == parent ? 1 : 2);
  }
  if (child < 0) return -1;
  int status = 0;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

TEST(CurrentPid, IsThisProcessOnceThePageIsMapped) {
  EXPECT_EQ(PrepareCurrentPid(), getpid());
  EXPECT_EQ(CurrentPid(), getpid());
  EXPECT_EQ(PrepareCurrentPid(), getpid())
      << "a second prepare changes nothing";
}

TEST(CurrentPid, ForkChildSeesItsOwnPid) {
  ASSERT_EQ(PrepareCurrentPid(), getpid());
  EXPECT_EQ(ChildSeesItsOwnPid([] { return fork(); }), 0)
      << "1 = the child saw the parent's id";
  EXPECT_EQ(CurrentPid(), getpid()) << "the parent's page was not wiped";
}

TEST(CurrentPid, RawForkChildWithoutAtforkHandlersSeesItsOwnPid) {
  ASSERT_EQ(PrepareCurrentPid(), getpid());
  // No pthread_atfork() handler runs in this child: a pid cached in plain
  // memory (or reset by a handler) would still read as the parent's.
  EXPECT_EQ(ChildSeesItsOwnPid([] { return pid_t(syscall(SYS_fork)); }), 0)
      << "1 = the child saw the parent's id";
  EXPECT_EQ(CurrentPid(), getpid());
}

TEST(CurrentPid, GrandchildSeesItsOwnPid) {
  ASSERT_EQ(PrepareCurrentPid(), getpid());
  // The child asks once (caching its id), then forks again.
  EXPECT_EQ(ChildSeesItsOwnPid([] {
              const pid_t child = fork();
              if (child != 0) return child;
              if (CurrentPid() != getpid()) _exit(3);
              const int status = ChildSeesItsOwnPid([] { return fork(); });
              _exit(status);
            }),
            0);
}

}  // namespace
}  // namespace regcache_internal
