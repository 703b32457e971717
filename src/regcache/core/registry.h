// SPDX-License-Identifier: BSD-2-Clause
// Process-wide bookkeeping of live caches: fork handlers (pthread_atfork),
// statistics at exit, and each thread's map from cache id to ThreadState,
// which is how a ThreadState is orphaned when its thread exits.
#ifndef REGCACHE_SRC_REGCACHE_CORE_REGISTRY_H_
#define REGCACHE_SRC_REGCACHE_CORE_REGISTRY_H_

#include <cstdint>

namespace regcache_internal {

class Cache;
struct ThreadState;

void RegisterCache(Cache* cache);
void UnregisterCache(Cache* cache);

// The calling thread's ThreadState for cache `id` when it is not in the
// fast TLS ways, or nullptr.
ThreadState* LookupThreadStateSlow(uint64_t id);
// Record that the calling thread uses `ts` for cache `id`.
void RememberThreadState(uint64_t id, ThreadState* ts);

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_CORE_REGISTRY_H_
