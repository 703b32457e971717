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
// Thread safety: as the C API. A Cache may be used from many threads at once
// but destroyed (or moved from) by one. A Registration is a handle: move it
// between threads freely, but do not use one object from two threads.
// Lifetime: a Registration must not outlive its Cache. Its lkey/rkey stay
// valid until it is reset or destroyed, even if the memory is invalidated
// meanwhile (see regcache.h). No exceptions: errors are negative errno values
// with a message in regcache_last_error(). Needs C++11 or later.
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
      : cache_(other.cache_), handle_(detail::Exchange(other.handle_, nullptr)) {}
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

class Cache {
 public:
  Cache() = default;
  Cache(Cache&& other) noexcept : cache_(detail::Exchange(other.cache_, nullptr)) {}
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

  int Get(const void* addr, size_t length, uint32_t access,
          Registration* out) {
    regcache_handle_t* h = nullptr;
    int rc = regcache_get(cache_, addr, length, access, &h);
    if (rc == 0) *out = Registration(cache_, h);
    return rc;
  }
  int Invalidate(const void* addr, size_t length) {
    return regcache_invalidate(cache_, addr, length);
  }
  int Flush() { return regcache_flush(cache_); }
  struct regcache_stats Stats() const {
    struct regcache_stats s{};
    ::regcache_stats(cache_, &s);
    return s;
  }
  int Destroy() {
    return cache_ == nullptr ? 0 : regcache_destroy(detail::Exchange(cache_, nullptr));
  }
  regcache_t* get() const { return cache_; }
  explicit operator bool() const { return cache_ != nullptr; }

 private:
  explicit Cache(regcache_t* c) : cache_(c) {}
  regcache_t* cache_ = nullptr;
};

}  // namespace regcache

#endif  // REGCACHE_REGCACHE_HPP_
