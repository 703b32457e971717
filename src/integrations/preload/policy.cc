// SPDX-License-Identifier: BSD-2-Clause
// The interposer's settings and its cache-or-pass-through rule (policy.h).
// The main functions are ReadPreloadConfig() and Classify().
#include "integrations/preload/policy.h"

#include <infiniband/verbs.h>

#include <cstdlib>
#include <cstring>

#include "regcache/regcache.h"

namespace regcache_preload {
namespace {

const char* RealGetenv(const char* name) { return getenv(name); }

void ReadBool(const char* name, const char* (*getenv_fn)(const char*),
              bool* value, std::string* error) {
  const char* v = getenv_fn(name);
  if (v == nullptr) return;
  if (strcmp(v, "0") == 0) {
    *value = false;
  } else if (strcmp(v, "1") == 0) {
    *value = true;
  } else {
    if (!error->empty()) *error += "; ";
    *error += std::string(name) + "='" + v + "' is not 0 or 1; using " +
              (*value ? "1" : "0");
  }
}

}  // namespace

bool ReadPreloadConfig(PreloadConfig* out, std::string* error,
                       const char* (*getenv_fn)(const char*)) {
  if (getenv_fn == nullptr) getenv_fn = RealGetenv;
  *out = PreloadConfig{};
  error->clear();
  ReadBool("REGCACHE_PRELOAD", getenv_fn, &out->enabled, error);
  ReadBool("REGCACHE_PRELOAD_REMOTE", getenv_fn, &out->cache_remote, error);
  if (const char* v = getenv_fn("REGCACHE_STATS"); v != nullptr)
    out->print_stats = v[0] != '\0' && strcmp(v, "0") != 0;
  return error->empty();
}

const char* PassReasonName(PassReason reason) {
  switch (reason) {
    case PassReason::kCached:
      return "cached";
    case PassReason::kDisabled:
      return "disabled";
    case PassReason::kOnDemand:
      return "on_demand";
    case PassReason::kZeroBased:
      return "zero_based";
    case PassReason::kMwBind:
      return "mw_bind";
    case PassReason::kIova:
      return "iova";
    case PassReason::kOptionalAccess:
      return "optional_access";
    case PassReason::kUnknownAccess:
      return "unknown_access";
    case PassReason::kRemote:
      return "remote";
    case PassReason::kBadArgument:
      return "bad_argument";
    case PassReason::kCount:
      break;
  }
  return "?";
}

PassReason Classify(const void* addr, size_t length, uint64_t iova,
                    unsigned int access, bool cache_remote,
                    uint32_t* regcache_access) {
  constexpr unsigned int kKnown =
      IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
      IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_MW_BIND |
      IBV_ACCESS_ZERO_BASED | IBV_ACCESS_ON_DEMAND | IBV_ACCESS_HUGETLB |
      IBV_ACCESS_OPTIONAL_RANGE;
  constexpr unsigned int kRemoteBits = IBV_ACCESS_REMOTE_WRITE |
                                       IBV_ACCESS_REMOTE_READ |
                                       IBV_ACCESS_REMOTE_ATOMIC;
  *regcache_access = 0;
  if (addr == nullptr || length == 0) return PassReason::kBadArgument;
  if (access & ~kKnown) return PassReason::kUnknownAccess;
  if (access & IBV_ACCESS_ON_DEMAND) return PassReason::kOnDemand;
  if (access & IBV_ACCESS_ZERO_BASED) return PassReason::kZeroBased;
  if (access & IBV_ACCESS_MW_BIND) return PassReason::kMwBind;
  if (iova != reinterpret_cast<uintptr_t>(addr)) return PassReason::kIova;
  if (access & IBV_ACCESS_OPTIONAL_RANGE) return PassReason::kOptionalAccess;
  if (!cache_remote && (access & kRemoteBits)) return PassReason::kRemote;
  uint32_t bits = 0;
  if (access & IBV_ACCESS_LOCAL_WRITE) bits |= REGCACHE_ACCESS_LOCAL_WRITE;
  if (access & IBV_ACCESS_REMOTE_WRITE) bits |= REGCACHE_ACCESS_REMOTE_WRITE;
  if (access & IBV_ACCESS_REMOTE_READ) bits |= REGCACHE_ACCESS_REMOTE_READ;
  if (access & IBV_ACCESS_REMOTE_ATOMIC) bits |= REGCACHE_ACCESS_REMOTE_ATOMIC;
  *regcache_access = bits;
  return PassReason::kCached;
}

}  // namespace regcache_preload
