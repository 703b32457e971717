// SPDX-License-Identifier: BSD-2-Clause
// regcache-pingpong's two small POSIX helpers, shared by its files: the
// monotonic clock (nanoseconds for measurements, seconds for deadlines) and
// the text of an errno value after the name of what failed.
#ifndef REGCACHE_TOOLS_PINGPONG_POSIX_UTIL_H_
#define REGCACHE_TOOLS_PINGPONG_POSIX_UTIL_H_

#include <time.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace regcache_pingpong {

// CLOCK_MONOTONIC in nanoseconds.
inline uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// CLOCK_MONOTONIC in seconds.
inline double Now() { return double(NowNs()) * 1e-9; }

// "what: strerror(err)", e.g. "ibv_alloc_pd: Cannot allocate memory".
inline std::string ErrnoText(const std::string& what, int err) {
  return what + ": " + strerror(err);
}

}  // namespace regcache_pingpong

#endif  // REGCACHE_TOOLS_PINGPONG_POSIX_UTIL_H_
