// SPDX-License-Identifier: BSD-2-Clause
// Helpers shared by the unit tests; header-only.
//
// DropIpcLockCapability() and SetMemlockSoftLimit() make RLIMIT_MEMLOCK bite
// for a test running as root (root has CAP_IPC_LOCK, and with it mlock() and
// ibv_reg_mr() ignore the limit). Both change the calling process or thread
// for good, so call them in a child made with RunInChild(). VmLckKiB() reads
// how much memory the process has locked. Under ASan/TSan, libc's mlock()
// and munlock() are no-ops that return 0 (the runtimes intercept them): a
// test that needs a real lock calls syscall(SYS_mlock, ...).
//
// ThreadsNamed() and BlockedSignals() read /proc/self/task: how many threads
// have a name, and which signals one blocks.
#ifndef REGCACHE_TESTS_UNIT_TEST_UTIL_H_
#define REGCACHE_TESTS_UNIT_TEST_UTIL_H_

#include <dirent.h>
#include <errno.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

// Defined when built with ThreadSanitizer, which cannot follow threads
// started in the child of a multi-threaded fork().
#if defined(__SANITIZE_THREAD__)
#define REGCACHE_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define REGCACHE_TEST_TSAN 1
#endif
#endif

namespace regcache_test {

// Removes CAP_IPC_LOCK from the calling thread's effective capability set,
// leaving the permitted set alone (the thread could raise it again).
// Capabilities are per thread, so call this on the thread that will lock
// memory; in a single-threaded forked child that is the whole process.
// Returns true when CAP_IPC_LOCK is no longer effective (also when it never
// was); false with *why when capget()/capset() failed. Uses the raw system
// calls, so no libcap is needed.
inline bool DropIpcLockCapability(std::string* why) {
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;  // the calling thread
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) {
    *why = std::string("capget: ") + strerror(errno);
    return false;
  }
  const unsigned word = CAP_IPC_LOCK / 32;
  const uint32_t bit = 1u << (CAP_IPC_LOCK % 32);
  if ((data[word].effective & bit) == 0) return true;
  data[word].effective &= ~bit;
  if (syscall(SYS_capset, &header, data) != 0) {
    *why = std::string("capset without CAP_IPC_LOCK: ") + strerror(errno);
    return false;
  }
  if (syscall(SYS_capget, &header, data) != 0 ||
      (data[word].effective & bit) != 0) {
    *why = "CAP_IPC_LOCK still effective after capset";
    return false;
  }
  return true;
}

// Sets the soft RLIMIT_MEMLOCK of the process to `bytes` (lowering a soft
// limit is always allowed). Returns false with *why on failure.
inline bool SetMemlockSoftLimit(rlim_t bytes, std::string* why) {
  rlimit limit{};
  if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) {
    *why = std::string("getrlimit(RLIMIT_MEMLOCK): ") + strerror(errno);
    return false;
  }
  if (limit.rlim_max != RLIM_INFINITY && bytes > limit.rlim_max) {
    *why = "RLIMIT_MEMLOCK hard limit is below the requested soft limit";
    return false;
  }
  limit.rlim_cur = bytes;
  if (setrlimit(RLIMIT_MEMLOCK, &limit) != 0) {
    *why = std::string("setrlimit(RLIMIT_MEMLOCK): ") + strerror(errno);
    return false;
  }
  return true;
}

// The VmLck line of /proc/self/status in KiB, or -1 if it cannot be read.
inline long VmLckKiB() {
  FILE* f = fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (sscanf(line, "VmLck: %ld kB", &kib) == 1) break;
  }
  fclose(f);
  return kib;
}

// What a RunInChild() body reported.
struct ChildOutcome {
  bool passed = false;
  bool skipped = false;
  std::string message;  // failure or skip reason
};

// Prefix of a RunInChild() body's return value that means "skip".
inline constexpr const char kChildSkip[] = "SKIP: ";

// Runs `body` in a forked child and reports its result to the parent. The
// body returns "" for success, kChildSkip + reason to skip, or a failure
// message. It must not use gtest assertions (the child's results would be
// lost); the child leaves with _exit(), so no atexit handler or gtest
// listener runs twice. A crash or non-zero exit of the child is a failure
// (the body may call alarm() to turn a hang into one). Only the forking
// thread exists in the child: locks other threads held stay held there.
inline ChildOutcome RunInChild(const std::function<std::string()>& body) {
  ChildOutcome outcome;
  int fds[2];
  if (pipe(fds) != 0) {
    outcome.message = std::string("pipe: ") + strerror(errno);
    return outcome;
  }
  const pid_t pid = fork();
  if (pid < 0) {
    outcome.message = std::string("fork: ") + strerror(errno);
    close(fds[0]);
    close(fds[1]);
    return outcome;
  }
  if (pid == 0) {
    close(fds[0]);
    const std::string result = body();
    size_t off = 0;
    while (off < result.size()) {
      const ssize_t n = write(fds[1], result.data() + off, result.size() - off);
      if (n <= 0) _exit(3);
      off += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string result;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    result.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    outcome.message = "child died (wait status " + std::to_string(status) +
                      ")" + (result.empty() ? "" : ": " + result);
    return outcome;
  }
  if (result.rfind(kChildSkip, 0) == 0) {
    outcome.skipped = true;
    outcome.message = result.substr(sizeof(kChildSkip) - 1);
    return outcome;
  }
  outcome.passed = result.empty();
  outcome.message = result;
  return outcome;
}

// The ids of this process's threads named `name` (from /proc).
inline std::vector<std::string> ThreadIdsNamed(const std::string& name) {
  std::vector<std::string> tids;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return tids;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    char comm[64] = {};
    const std::string path =
        std::string("/proc/self/task/") + e->d_name + "/comm";
    if (FILE* f = fopen(path.c_str(), "r")) {
      if (fgets(comm, sizeof(comm), f) != nullptr &&
          std::string(comm) == name + "\n") {
        tids.push_back(e->d_name);
      }
      fclose(f);
    }
  }
  closedir(dir);
  return tids;
}

// How many threads of this process are named `name`; -1 if /proc cannot
// say (so that no expected count, 0 included, passes by accident).
inline int ThreadsNamed(const std::string& name) {
  if (access("/proc/self/task", R_OK | X_OK) != 0) return -1;
  return static_cast<int>(ThreadIdsNamed(name).size());
}

// ThreadsNamed(name) once it has dropped to 0, or after 5 s. pthread_join()
// returns when the kernel clears the thread's tid (in exit_mm), a moment
// before the task leaves /proc/self/task: a joined thread can still be
// listed there for a little while.
inline int ThreadsNamedOnceGone(const std::string& name) {
  int n = ThreadsNamed(name);
  for (int i = 0; i < 500 && n > 0; ++i) {
    usleep(10000);
    n = ThreadsNamed(name);
  }
  return n;
}

// The signal mask of thread `tid` of this process (SigBlk in its status:
// bit n - 1 is signal n), or 0 if /proc cannot say.
inline uint64_t BlockedSignals(const std::string& tid) {
  uint64_t mask = 0;
  const std::string path = "/proc/self/task/" + tid + "/status";
  if (FILE* f = fopen(path.c_str(), "r")) {
    char line[256];
    while (fgets(line, sizeof(line), f) != nullptr) {
      if (strncmp(line, "SigBlk:", 7) == 0) {
        mask = strtoull(line + 7, nullptr, 16);
        break;
      }
    }
    fclose(f);
  }
  return mask;
}

}  // namespace regcache_test

#endif  // REGCACHE_TESTS_UNIT_TEST_UTIL_H_
