// SPDX-License-Identifier: BSD-2-Clause
// A fixed-capacity arena of type-stable objects.
//
// The arena reserves address space for `capacity` objects up front
// (PROT_NONE, so nothing is committed) and commits it in chunks with
// mprotect() as it grows. Objects never move and their memory is never
// returned while the arena lives, so a lock-free reader may dereference a
// pointer to a freed object and read a well-defined (stale) value; the cache
// relies on this, validating every such read with a generation word.
// Contains() is a bounds-and-alignment check, which is how regcache_put()
// rejects pointers that are not handles without dereferencing them.
//
// Allocate()/Free() are not thread-safe: the caller serialises them (the
// cache mutex). They never call malloc/free/munmap.
#ifndef REGCACHE_SRC_REGCACHE_CORE_ARENA_H_
#define REGCACHE_SRC_REGCACHE_CORE_ARENA_H_

#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <new>

namespace regcache_internal {

template <typename T>
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() { Release(); }

  // Reserve room for `capacity` objects. Returns 0 or -errno.
  int Init(size_t capacity) {
    capacity_ = capacity;
    reserved_bytes_ = RoundUp(capacity * sizeof(T), kCommitChunk);
    void* p = mmap(nullptr, reserved_bytes_, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return -errno;
    base_ = static_cast<char*>(p);
    return 0;
  }

  // A default-constructed object the first time a slot is used; a recycled
  // object (fields as Free() left them) afterwards. nullptr when full or
  // when committing memory fails.
  T* Allocate() {
    if (free_list_ != nullptr) {
      T* obj = free_list_;
      free_list_ = obj->arena_next;
      obj->arena_next = nullptr;
      return obj;
    }
    if (used_ == capacity_) return nullptr;
    size_t need = (used_ + 1) * sizeof(T);
    if (need > committed_bytes_) {
      size_t grow = RoundUp(need - committed_bytes_, kCommitChunk);
      if (mprotect(base_ + committed_bytes_, grow, PROT_READ | PROT_WRITE) != 0)
        return nullptr;
      // Fault the chunk in at once rather than one page per allocation
      // that first reaches it (best effort: Linux 5.14 and later).
      madvise(base_ + committed_bytes_, grow, kMadvPopulateWrite);
      committed_bytes_ += grow;
    }
    T* obj = new (base_ + used_ * sizeof(T)) T();
    // Publish after construction: scanners read used() without the lock.
    __atomic_store_n(&used_, used_ + 1, __ATOMIC_RELEASE);
    return obj;
  }

  void Free(T* obj) {
    obj->arena_next = free_list_;
    free_list_ = obj;
  }

  // Forget every object (fork child). Objects stay constructed.
  void ResetFreeList() { free_list_ = nullptr; }

  // True if `p` points at the start of an object this arena handed out.
  bool Contains(const void* p) const {
    uintptr_t off =
        reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(base_);
    return off < used_ * sizeof(T) && off % sizeof(T) == 0;
  }

  // Objects handed out so far, for scans (index < used()). Lock-free
  // readers may call used() and At() concurrently with Allocate().
  size_t used() const { return __atomic_load_n(&used_, __ATOMIC_ACQUIRE); }
  T* At(size_t i) const { return reinterpret_cast<T*>(base_ + i * sizeof(T)); }
  char* base() const { return base_; }
  size_t capacity() const { return capacity_; }
  size_t committed_bytes() const { return committed_bytes_; }

  void Release() {
    if (base_ != nullptr) munmap(base_, reserved_bytes_);
    base_ = nullptr;
  }

 private:
  static constexpr size_t kCommitChunk = size_t{1} << 16;
#ifdef MADV_POPULATE_WRITE
  static constexpr int kMadvPopulateWrite = MADV_POPULATE_WRITE;
#else
  static constexpr int kMadvPopulateWrite = 23;  // Linux 5.14
#endif
  static size_t RoundUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

  char* base_ = nullptr;
  size_t capacity_ = 0;
  size_t reserved_bytes_ = 0;
  size_t committed_bytes_ = 0;
  size_t used_ = 0;  // objects ever handed out; only grows
  T* free_list_ = nullptr;
};

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_CORE_ARENA_H_
