// SPDX-License-Identifier: BSD-2-Clause
// Pieces every monitor shares: the never-changing generation word that
// monitors without per-range generations hand out in their WatchTokens, and
// the null monitor (REGCACHE_MONITOR_NONE), which watches nothing and so
// leaves invalidation to regcache_invalidate(); the table of fds that fork
// children close, and the fork-proof cached process id. The main functions
// exported are StaticGeneration(), StartEventThread(), CreateNullMonitor(),
// AcquireForkClosedFds() and CurrentPid().
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <system_error>
#include <thread>

#include "monitor/fds.h"
#include "monitor/monitor.h"

namespace regcache_internal {

const std::atomic<uint64_t>* StaticGeneration() {
  // Constant-initialised, never written: the hit path's
  // `generation->load() == expected` check always passes for it.
  static constinit const std::atomic<uint64_t> kGeneration{0};
  return &kGeneration;
}

int StartEventThread(const char* name, std::function<void()> body,
                     std::thread* out, std::string* why) {
  // Lives on this stack: the new thread touches it only under `mu`, and
  // notifies before unlocking, so it is done with it once we see `entered`.
  struct {
    std::mutex mu;
    std::condition_variable cv;
    bool entered = false;
  } latch;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);  // the new thread inherits it
  int rc = 0;
  try {
    *out = std::thread([&latch, name, body = std::move(body)] {
      pthread_setname_np(pthread_self(), name);
      {
        std::lock_guard<std::mutex> lock(latch.mu);
        latch.entered = true;
        latch.cv.notify_one();
      }
      body();
    });
  } catch (const std::system_error& e) {
    *why = std::string("cannot start the ") + name + " thread: " + e.what();
    rc = -EAGAIN;
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc == 0) {
    std::unique_lock<std::mutex> lock(latch.mu);
    latch.cv.wait(lock, [&latch] { return latch.entered; });
  }
  return rc;
}

namespace {

// Accepts every range and reports nothing. The cache then relies on the
// application calling regcache_invalidate() before it unmaps memory.
class NullMonitor final : public Monitor {
 public:
  regcache_monitor_kind kind() const override { return REGCACHE_MONITOR_NONE; }
  int Start(InvalidationSink*, std::atomic<uint32_t>*, std::string*) override {
    return 0;
  }
  int Watch(uint64_t, uint64_t, WatchToken* token) override {
    token->generation = StaticGeneration();
    token->expected = token->generation->load(std::memory_order_relaxed);
    token->cookie = 0;
    return 0;
  }
  void Unwatch(uint64_t, uint64_t, const WatchToken&) override {}
  void WaitForPending() override {}
  int RestartInChild(std::string*) override { return 0; }
  void Stop() override {}
};

}  // namespace

std::unique_ptr<Monitor> CreateNullMonitor() {
  return std::make_unique<NullMonitor>();
}

}  // namespace regcache_internal

// ---------------------------------------------------------------------------
// Fds closed in fork children (fds.h).

namespace regcache_internal {
namespace {

struct ForkClosedSlot {
  std::atomic<bool> in_use{false};
  MonitorFds fds;
};
constexpr int kForkClosedSlots = 32;
ForkClosedSlot g_fork_closed[kForkClosedSlots];  // constant-initialised

void CloseFdsInForkChild() {
  for (ForkClosedSlot& slot : g_fork_closed) {
    if (!slot.in_use.load(std::memory_order_relaxed)) continue;
    CloseExchanged(&slot.fds.primary);
    CloseExchanged(&slot.fds.wake);
  }
}

}  // namespace

void CloseExchanged(std::atomic<int>* fd) {
  const int old = fd->exchange(-1);
  if (old >= 0) close(old);
}

MonitorFds* AcquireForkClosedFds() {
  // glibc unregisters the handler if this library is dlclose()d.
  static const int installed =
      pthread_atfork(nullptr, nullptr, &CloseFdsInForkChild);
  (void)installed;
  for (ForkClosedSlot& slot : g_fork_closed) {
    bool expected = false;
    if (slot.in_use.compare_exchange_strong(expected, true)) return &slot.fds;
  }
  return nullptr;
}

void ReleaseForkClosedFds(MonitorFds* fds) {
  for (ForkClosedSlot& slot : g_fork_closed) {
    if (&slot.fds == fds) slot.in_use.store(false);
  }
}

namespace {

// The page CurrentPid() reads. Invariant: `pid` is 0 or the id of the
// process that reads it, because every child gets the page zeroed
// (MADV_WIPEONFORK) and only getpid()'s result is ever stored. Published
// once through g_pid_page and never unmapped.
struct PidPage {
  std::atomic<pid_t> pid{0};
};
static_assert(std::atomic<pid_t>::is_always_lock_free);
std::atomic<PidPage*> g_pid_page{nullptr};

}  // namespace

pid_t PrepareCurrentPid() {
  if (g_pid_page.load(std::memory_order_acquire) != nullptr)
    return CurrentPid();
  const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* page = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return getpid();
  if (madvise(page, size, MADV_WIPEONFORK) != 0) {  // before Linux 4.14
    munmap(page, size);
    return getpid();
  }
  PidPage* fresh = new (page) PidPage;
  PidPage* expected = nullptr;
  if (!g_pid_page.compare_exchange_strong(expected, fresh,
                                          std::memory_order_acq_rel))
    munmap(page, size);  // another thread published its page first
  return CurrentPid();
}

pid_t CurrentPid() {
  PidPage* page = g_pid_page.load(std::memory_order_acquire);
  if (page == nullptr) return getpid();
  pid_t pid = page->pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    // First call in this process (or in this fork child): every thread
    // that races here stores the same value.
    pid = getpid();
    page->pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
}

}  // namespace regcache_internal
