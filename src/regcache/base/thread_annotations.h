// SPDX-License-Identifier: BSD-2-Clause
// Clang thread-safety annotations (no-ops with other compilers), and an
// annotated mutex so that `clang -Wthread-safety` can check the cache's
// locking protocol. scripts/test-all.sh builds the library with clang and
// -Wthread-safety -Wthread-safety-beta -Werror (the beta flag checks the
// lock order that RC_ACQUIRED_BEFORE states).
#ifndef REGCACHE_SRC_REGCACHE_BASE_THREAD_ANNOTATIONS_H_
#define REGCACHE_SRC_REGCACHE_BASE_THREAD_ANNOTATIONS_H_

#include <mutex>

#if defined(__clang__)
#define RC_TSA(x) __attribute__((x))
#else
#define RC_TSA(x)
#endif

#define RC_CAPABILITY(x) RC_TSA(capability(x))
#define RC_GUARDED_BY(x) RC_TSA(guarded_by(x))
#define RC_PT_GUARDED_BY(x) RC_TSA(pt_guarded_by(x))
#define RC_REQUIRES(...) RC_TSA(requires_capability(__VA_ARGS__))
#define RC_EXCLUDES(...) RC_TSA(locks_excluded(__VA_ARGS__))
#define RC_ACQUIRED_BEFORE(...) RC_TSA(acquired_before(__VA_ARGS__))
#define RC_ACQUIRED_AFTER(...) RC_TSA(acquired_after(__VA_ARGS__))
#define RC_ACQUIRE(...) RC_TSA(acquire_capability(__VA_ARGS__))
#define RC_RELEASE(...) RC_TSA(release_capability(__VA_ARGS__))
#define RC_SCOPED_CAPABILITY RC_TSA(scoped_lockable)
#define RC_NO_TSA RC_TSA(no_thread_safety_analysis)

namespace regcache_internal {

class RC_CAPABILITY("mutex") Mutex {
 public:
  void Lock() RC_ACQUIRE() { mu_.lock(); }
  void Unlock() RC_RELEASE() { mu_.unlock(); }
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

class RC_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) RC_ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RC_RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_BASE_THREAD_ANNOTATIONS_H_
