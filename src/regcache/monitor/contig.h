// SPDX-License-Identifier: BSD-2-Clause
// Physically contiguous memory from the regcache kernel module, for
// REGCACHE_MEM_CONTIG (core/pool_map.cc). It lives with the monitors
// because it is the other use of /dev/regcache (regcache/kmod_uapi.h).
#ifndef REGCACHE_SRC_REGCACHE_MONITOR_CONTIG_H_
#define REGCACHE_SRC_REGCACHE_MONITOR_CONTIG_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace regcache_internal {

// Maps `length` bytes (a multiple of the page size) of populated, locked,
// physically contiguous memory from /dev/regcache into *base. Returns 0, or
// -EOPNOTSUPP when this build or the loaded module has no contiguous memory
// or the module is not loaded, -ENOMEM/-EAGAIN/-EPERM as the module
// answers, each with *why saying what to do. Unmapped with munmap().
int MapKmodContig(size_t length, uint64_t* base, std::string* why);

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_MONITOR_CONTIG_H_
