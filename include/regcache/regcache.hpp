// SPDX-License-Identifier: BSD-2-Clause
// regcache: a thin C++ layer over the C API (regcache/regcache.h).
//
//   regcache::Cache cache;
//   if (regcache::Cache::Create(registrar, nullptr, &cache) != 0)
//     die(regcache_last_error());
//   regcache::Registration reg;
//   if (cache.Get(buf, len, REGCACHE_ACCESS_LOCAL_WRITE, &reg) == 0)
//     post_send(buf, len, reg.lkey());        // reg released at scope exit
//
//   regcache::Memory mem;                     // pin-once memory
//   if (cache.Allocate(64 << 20, REGCACHE_MEM_HUGE, &mem) != 0)
//     die(regcache_last_error());
//   cache.Get(mem.data(), mem.size(), REGCACHE_ACCESS_LOCAL_WRITE, &reg);
//                                             // a hit; freed at scope exit
//
// Thread safety: as the C API. A Cache may be used from many threads at once
// but destroyed (or moved from) by one. A Registration is a handle, and a
// Memory an allocation: move them between threads freely, but do not use
// one object from two threads.
// Lifetime: a Registration and a Memory must not outlive their Cache
// (destroy them first: regcache_destroy() unmaps the pool's memory). A
// Registration's lkey/rkey stay valid until it is reset or destroyed, even
// if the memory is invalidated meanwhile (see regcache.h). A Memory gives
// its block back to the cache's pool (regcache_mem_free) when it is reset
// or destroyed. No exceptions: errors are negative errno values with a
// message in regcache_last_error(). Needs C++11 or later.
#ifndef REGCACHE_REGCACHE_HPP_
#define REGCACHE_REGCACHE_HPP_

#include <cstddef>
#include <cstdint>

#include "regcache/regcache.h"

namespace regcache {
namespace detail {

// std::exchange, which C++11 lacks.
template <typename T, typename U>
T Exchange(T& object, U value) {
  T old = object;
  object = value;
  return old;
}

}  // namespace detail

class Registration {
 public:
  Registration() = default;
  Registration(regcache_t* cache, regcache_handle_t* handle)
      : cache_(cache), handle_(handle) {}
  Registration(Registration&& other) noexcept
      : cache_(other.cache_),
        handle_(detail::Exchange(other.handle_, nullptr)) {}
  Registration& operator=(Registration&& other) noexcept {
    if (this != &other) {
      Reset();
      cache_ = other.cache_;
      handle_ = detail::Exchange(other.handle_, nullptr);
    }
    return *this;
  }
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;
  ~Registration() { Reset(); }

  // Release the reference now. Returns regcache_put()'s result (0 if empty).
  int Reset() {
    if (handle_ == nullptr) return 0;
    return regcache_put(cache_, detail::Exchange(handle_, nullptr));
  }
  // Give up ownership without releasing (for callers that put themselves).
  regcache_handle_t* release() { return detail::Exchange(handle_, nullptr); }

  explicit operator bool() const { return handle_ != nullptr; }
  // The registration; all zeros (lkey 0, addr NULL) for an empty
  // Registration, e.g. after a failed Cache::Get().
  const regcache_mr& mr() const {
    static const regcache_mr kEmpty = {};
    const regcache_mr* mr =
        handle_ != nullptr ? regcache_handle_mr(handle_) : nullptr;
    return mr != nullptr ? *mr : kEmpty;
  }
  void* addr() const { return mr().addr; }
  size_t length() const { return mr().length; }
  uint32_t lkey() const { return mr().lkey; }
  uint32_t rkey() const { return mr().rkey; }
  uint64_t key() const { return mr().key; }
  void* desc() const { return mr().desc; }
  void* backend() const { return mr().backend; }
  regcache_handle_t* handle() const { return handle_; }

 private:
  regcache_t* cache_ = nullptr;
  regcache_handle_t* handle_ = nullptr;
};

// Memory from the cache's pin-once pool (regcache_mem_alloc): registered
// once, every Get inside it a hit. Move-only; gives the memory back to the
// pool in its destructor.
class Memory {
 public:
  Memory() = default;
  Memory(regcache_t* cache, void* addr, size_t length)
      : cache_(cache), addr_(addr), length_(length) {}
  Memory(Memory&& other) noexcept
      : cache_(other.cache_),
        addr_(detail::Exchange(other.addr_, static_cast<void*>(nullptr))),
        length_(detail::Exchange(other.length_, size_t{0})) {}
  Memory& operator=(Memory&& other) noexcept {
    if (this != &other) {
      Reset();
      cache_ = other.cache_;
      addr_ = detail::Exchange(other.addr_, static_cast<void*>(nullptr));
      length_ = detail::Exchange(other.length_, size_t{0});
    }
    return *this;
  }
  Memory(const Memory&) = delete;
  Memory& operator=(const Memory&) = delete;
  ~Memory() { Reset(); }

  // Give the memory back to the pool now. Returns regcache_mem_free()'s
  // result (0 if empty).
  int Reset() {
    if (addr_ == nullptr) return 0;
    length_ = 0;
    return regcache_mem_free(
        cache_, detail::Exchange(addr_, static_cast<void*>(nullptr)));
  }
  // Give up ownership without freeing (for callers that free themselves).
  void* release() {
    length_ = 0;
    return detail::Exchange(addr_, static_cast<void*>(nullptr));
  }

  explicit operator bool() const { return addr_ != nullptr; }
  void* data() const { return addr_; }
  size_t size() const { return length_; }  // as requested

 private:
  regcache_t* cache_ = nullptr;
  void* addr_ = nullptr;
  size_t length_ = 0;
};

class Cache {
 public:
  Cache() = default;
  Cache(Cache&& other) noexcept
      : cache_(detail::Exchange(other.cache_, nullptr)) {}
  Cache& operator=(Cache&& other) noexcept {
    if (this != &other) {
      Destroy();
      cache_ = detail::Exchange(other.cache_, nullptr);
    }
    return *this;
  }
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;
  ~Cache() { Destroy(); }

  // `config` may be null (defaults + environment).
  static int Create(const regcache_registrar& registrar,
                    const regcache_config* config, Cache* out) {
    regcache_t* c = nullptr;
    int rc = regcache_create(&registrar, config, &c);
    if (rc == 0) *out = Cache(c);
    return rc;
  }

  int Get(const void* addr, size_t length, uint32_t access, Registration* out) {
    regcache_handle_t* h = nullptr;
    int rc = regcache_get(cache_, addr, length, access, &h);
    if (rc == 0) *out = Registration(cache_, h);
    return rc;
  }
  int Invalidate(const void* addr, size_t length) {
    return regcache_invalidate(cache_, addr, length);
  }
  int Flush() { return regcache_flush(cache_); }
  // Pin-once memory: `flags` are REGCACHE_MEM_* bits.
  int Allocate(size_t length, uint32_t flags, Memory* out) {
    void* addr = nullptr;
    int rc = regcache_mem_alloc(cache_, length, flags, &addr);
    if (rc == 0) *out = Memory(cache_, addr, length);
    return rc;
  }
  int TrimMemory() { return regcache_mem_trim(cache_); }
  struct regcache_stats Stats() const {
    struct regcache_stats s {};
    ::regcache_stats(cache_, &s);
    return s;
  }
  int Destroy() {
    return cache_ == nullptr
               ? 0
               : regcache_destroy(detail::Exchange(cache_, nullptr));
  }
  regcache_t* get() const { return cache_; }
  explicit operator bool() const { return cache_ != nullptr; }

 private:
  explicit Cache(regcache_t* c) : cache_(c) {}
  regcache_t* cache_ = nullptr;
};

}  // namespace regcache

#endif  // REGCACHE_REGCACHE_HPP_
