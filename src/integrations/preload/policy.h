// SPDX-License-Identifier: BSD-2-Clause
// The ibverbs interposer's decisions that need no device: its settings from
// the environment, and which registrations it serves from a cache and
// which it passes through to libibverbs untouched.
//
//   REGCACHE_PRELOAD=0|1         0: pass every registration through (still
//                                counted, for comparisons); default 1
//   REGCACHE_PRELOAD_REMOTE=0|1  0: registrations with remote access pass
//                                through, so their deregistration revokes
//                                the rkey at once; default 1
//   REGCACHE_STATS=...           set and not "0": one line on stderr when
//                                the interposer starts, one at exit
// The caches themselves read REGCACHE_MAX_ENTRIES, REGCACHE_MAX_BYTES and
// REGCACHE_MONITOR (regcache.h); the interposer accepts kmod (the default,
// also for auto) and uffd, and refuses none (nothing would invalidate).
//
// Thread-compatible: the settings are read once, before the first
// registration is served; Classify() is a pure function.
#ifndef REGCACHE_SRC_INTEGRATIONS_PRELOAD_POLICY_H_
#define REGCACHE_SRC_INTEGRATIONS_PRELOAD_POLICY_H_

#include <cstdint>
#include <string>

namespace regcache_preload {

struct PreloadConfig {
  bool enabled = true;
  bool cache_remote = true;
  bool print_stats = false;
};

// Reads the variables above through `getenv_fn` (nullptr: getenv). False
// with *error naming every bad value; those keep their defaults.
bool ReadPreloadConfig(PreloadConfig* out, std::string* error,
                       const char* (*getenv_fn)(const char*) = nullptr);

// Why a registration goes straight to libibverbs.
enum class PassReason : int {
  kCached = 0,      // served from the PD's cache
  kDisabled,        // REGCACHE_PRELOAD=0, or no cache could be made
  kOnDemand,        // IBV_ACCESS_ON_DEMAND: never stale, nothing to cache
  kZeroBased,       // IBV_ACCESS_ZERO_BASED: the MR's addresses start at 0
  kMwBind,          // IBV_ACCESS_MW_BIND: memory windows bind to this MR
  kIova,            // iova != addr
  kOptionalAccess,  // IBV_ACCESS_OPTIONAL_RANGE bits (relaxed ordering)
  kUnknownAccess,   // bits this interposer does not know
  kRemote,          // remote access with REGCACHE_PRELOAD_REMOTE=0
  kBadArgument,     // NULL PD, length 0: libibverbs gives the error
  kCount
};
const char* PassReasonName(PassReason reason);

// `access` is the caller's ibv_access_flags; *regcache_access gets the
// regcache_access bits for a cached registration (HUGETLB, a hint, is
// dropped).
PassReason Classify(const void* addr, size_t length, uint64_t iova,
                    unsigned int access, bool cache_remote,
                    uint32_t* regcache_access);

}  // namespace regcache_preload

#endif  // REGCACHE_SRC_INTEGRATIONS_PRELOAD_POLICY_H_
