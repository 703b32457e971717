// SPDX-License-Identifier: BSD-2-Clause
// Small helpers shared by the end-to-end RDMA tests (header-only): anonymous
// mappings at chosen addresses, data patterns, a directly registered
// (uncached) buffer for the other side of a transfer, and a cache over the
// ibverbs registrar with a chosen monitor. No gtest assertions, so the
// helpers also work in forked children.
#ifndef REGCACHE_TESTS_RDMA_RDMA_TEST_UTIL_H_
#define REGCACHE_TESTS_RDMA_RDMA_TEST_UTIL_H_

#include <errno.h>
#include <infiniband/verbs.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "regcache/ibverbs.h"
#include "regcache/regcache.h"

namespace regcache_rdma_test {

inline size_t Page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
inline uint64_t Addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// Private anonymous read-write memory; at `at` with MAP_FIXED_NOREPLACE in
// `extra` to map again where something was unmapped. nullptr on failure.
inline char* MapAnon(size_t bytes, void* at = nullptr, int extra = 0) {
  void* p = mmap(at, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<char*>(p);
}

// A byte pattern that differs per `seed` and per offset (never all zero).
inline uint8_t PatternByte(uint32_t seed, size_t offset) {
  const uint32_t x = seed * 2654435761u + uint32_t(offset) * 40503u;
  return uint8_t((x >> 13) | 1u);
}
inline void FillPattern(void* p, size_t length, uint32_t seed) {
  auto* b = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < length; ++i) b[i] = PatternByte(seed, i);
}
// The first offset that does not hold the pattern, or -1.
inline long MismatchAt(const void* p, size_t length, uint32_t seed) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < length; ++i)
    if (b[i] != PatternByte(seed, i)) return long(i);
  return -1;
}
// The first offset whose byte is not `value`, or -1.
inline long FirstNotEqual(const void* p, size_t length, uint8_t value) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < length; ++i)
    if (b[i] != value) return long(i);
  return -1;
}

// A buffer registered directly with ibv_reg_mr (not through any cache): the
// source of RDMA WRITEs and the sink of RDMA READs.
class DirectBuffer {
 public:
  DirectBuffer() = default;
  ~DirectBuffer() { Release(); }
  DirectBuffer(const DirectBuffer&) = delete;
  DirectBuffer& operator=(const DirectBuffer&) = delete;

  // "" or what failed.
  std::string Init(ibv_pd* pd, size_t length) {
    length_ = length;
    data_ = MapAnon(length);
    if (data_ == nullptr) return std::string("mmap: ") + strerror(errno);
    mr_ = ibv_reg_mr(pd, data_, length,
                     IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                         IBV_ACCESS_REMOTE_READ);
    if (mr_ == nullptr) return std::string("ibv_reg_mr: ") + strerror(errno);
    return "";
  }
  void Release() {
    if (mr_ != nullptr) ibv_dereg_mr(mr_);
    if (data_ != nullptr) munmap(data_, length_);
    mr_ = nullptr;
    data_ = nullptr;
  }
  char* data() const { return data_; }
  size_t length() const { return length_; }
  uint32_t lkey() const { return mr_->lkey; }
  uint32_t rkey() const { return mr_->rkey; }

 private:
  char* data_ = nullptr;
  size_t length_ = 0;
  ibv_mr* mr_ = nullptr;
};

// A cache over the ibverbs registrar of `pd` with `monitor` and no byte
// limit (the default would be the soft RLIMIT_MEMLOCK). `registrar` must
// outlive the cache. Returns regcache_create()'s value; the message is in
// regcache_last_error(). The suites test the cached path, so by default
// every range is cached (the adaptive admission would serve a buffer that
// is replaced again and again without hits uncached); tests of the
// adaptive admission pass REGCACHE_ADMISSION_ADAPTIVE.
inline int CreateIbverbsCache(
    ibv_pd* pd, regcache_monitor_kind monitor, regcache_registrar* registrar,
    regcache_t** out, size_t max_bytes = 0,
    regcache_admission admission = REGCACHE_ADMISSION_ALWAYS) {
  int rc = regcache_registrar_ibverbs(pd, registrar);
  if (rc != 0) return rc;
  regcache_config config;
  rc = regcache_config_init(&config);
  if (rc != 0) return rc;
  config.monitor = monitor;
  config.max_bytes = max_bytes;
  config.max_entries = 0;
  config.admission = admission;
  return regcache_create(registrar, &config, out);
}

inline struct regcache_stats StatsOf(regcache_t* cache) {
  struct regcache_stats s {};
  regcache_stats(cache, &s);
  return s;
}

inline uint64_t TotalInvalidations(const struct regcache_stats& s) {
  uint64_t total = 0;
  for (uint64_t n : s.invalidations) total += n;
  return total;
}

// "unmap=1 remove=0 ..." for the reasons with a non-zero count.
inline std::string InvalidationsText(const struct regcache_stats& s) {
  std::string text;
  for (int r = 0; r < REGCACHE_INVAL_NREASONS; ++r) {
    if (s.invalidations[r] == 0) continue;
    if (!text.empty()) text += ' ';
    text += regcache_inval_reason_name(static_cast<regcache_inval_reason>(r));
    text += '=' + std::to_string(s.invalidations[r]);
  }
  return text.empty() ? "none" : text;
}

inline std::string Hex(uint64_t v) {
  char text[24];
  snprintf(text, sizeof(text), "0x%llx", static_cast<unsigned long long>(v));
  return text;
}

constexpr uint32_t kRemoteWriteAccess =
    REGCACHE_ACCESS_LOCAL_WRITE | REGCACHE_ACCESS_REMOTE_WRITE;
// Remote write, and remote read so a test can read the pages back through
// the same rkey.
constexpr uint32_t kRemoteAccess =
    kRemoteWriteAccess | REGCACHE_ACCESS_REMOTE_READ;

// Polls the statistics until `done(stats)` or `seconds` passed; returns the
// last statistics read. For counters a monitor's event thread updates
// asynchronously (the kmod monitor's reports; what protects the hit path is
// the generation word, not the counter).
template <typename Done>
struct regcache_stats WaitForStats(regcache_t* cache, double seconds,
                                   Done done) {
  struct regcache_stats s = StatsOf(cache);
  for (int i = 0; i < int(seconds * 1000) && !done(s); ++i) {
    usleep(1000);
    s = StatsOf(cache);
  }
  return s;
}

inline const char* MonitorName(regcache_monitor_kind kind) {
  return regcache_monitor_name(kind);
}

}  // namespace regcache_rdma_test

#endif  // REGCACHE_TESTS_RDMA_RDMA_TEST_UTIL_H_
