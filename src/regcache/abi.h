// SPDX-License-Identifier: BSD-2-Clause
// The sizes of the structs that cross the library boundary, and copying
// them between the caller's size and the library's (regcache.h,
// "Compatibility"). The rule is the kernel's copy_struct_from_user(): a
// smaller caller struct is padded with defaults, a larger one is accepted
// only when the bytes this library does not know are zero.
#ifndef REGCACHE_SRC_REGCACHE_ABI_H_
#define REGCACHE_SRC_REGCACHE_ABI_H_

#include <cstddef>
#include <cstring>

#include "regcache/regcache.h"

namespace regcache_internal {

// The smallest struct each entry point accepts: the end of the last field
// of version 0.1. Never change these; add fields after them instead.
inline constexpr size_t kConfigSizeV0_1 =
    offsetof(regcache_config, mode) + sizeof(regcache_config::mode);
inline constexpr size_t kStatsSizeV0_1 =
    offsetof(struct regcache_stats, monitor_reason) +
    sizeof(static_cast<struct regcache_stats*>(nullptr)->monitor_reason);

// Whether the caller's bytes past what the library knows ([known, size))
// are all zero.
inline bool TailIsZero(const void* caller, size_t size, size_t known) {
  const auto* p = static_cast<const unsigned char*>(caller);
  for (size_t i = known; i < size; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// Copies the library's `full` struct out to a caller struct of `size`
// bytes: truncated when the caller's is smaller, zero-padded when larger.
inline void CopyStructOut(void* caller, size_t size, const void* full,
                          size_t full_size) {
  const size_t n = size < full_size ? size : full_size;
  memcpy(caller, full, n);
  if (size > n) memset(static_cast<char*>(caller) + n, 0, size - n);
}

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_ABI_H_
