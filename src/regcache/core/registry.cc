// SPDX-License-Identifier: BSD-2-Clause
// Live caches, fork handlers, statistics at exit, and thread-exit hooks.
//
// Fork: prepare takes the registry mutex and every cache's reclaim_mu_ and
// mu_ (in that order, the order everything else uses), so no cache lock is
// held by a thread that does not exist in the child; parent and child
// release them, and the child also sets kGateForked on every cache so that
// its next call resets the cache (cache_fork.cc).
#include "core/registry.h"

#include <pthread.h>

#include <cstdio>
#include <mutex>
#include <utility>
#include <vector>

#include "core/cache.h"

namespace regcache_internal {

namespace {

std::mutex g_registry_mu;
Cache* g_caches = nullptr;  // guarded by g_registry_mu

bool LiveLocked(uint64_t id) {
  for (Cache* c = g_caches; c != nullptr; c = c->registry_next)
    if (c->id() == id) return true;
  return false;
}

void ForkPrepare() {
  g_registry_mu.lock();
  for (Cache* c = g_caches; c != nullptr; c = c->registry_next)
    c->ForkPrepare();
}

void ForkParent() {
  for (Cache* c = g_caches; c != nullptr; c = c->registry_next) c->ForkParent();
  g_registry_mu.unlock();
}

void ForkChild() {
  for (Cache* c = g_caches; c != nullptr; c = c->registry_next) c->ForkChild();
  g_registry_mu.unlock();
}

void PrintStatsAtExit() {
  std::lock_guard<std::mutex> l(g_registry_mu);
  for (Cache* c = g_caches; c != nullptr; c = c->registry_next)
    c->PrintStatsIfAsked();
}

// Orphans the thread's ThreadStates when it exits. Only touched on slow
// paths, so its non-trivial TLS wrapper stays off the hit path.
struct ThreadExitHook {
  std::vector<std::pair<uint64_t, ThreadState*>> refs;
  ~ThreadExitHook() {
    for (auto& ref : t_cache_refs) ref = TlsCacheRef{0, nullptr};
    std::lock_guard<std::mutex> l(g_registry_mu);
    for (auto& [id, ts] : refs) {
      if (!LiveLocked(id)) continue;  // cache gone: ts memory is gone too
      ts->SetOwner(nullptr);
      ts->live.store(0, std::memory_order_release);
    }
  }
};
thread_local ThreadExitHook t_exit_hook;

}  // namespace

void RegisterCache(Cache* cache) {
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_atfork(ForkPrepare, ForkParent, ForkChild);
    atexit(PrintStatsAtExit);
  });
  std::lock_guard<std::mutex> l(g_registry_mu);
  cache->registry_next = g_caches;
  g_caches = cache;
}

void UnregisterCache(Cache* cache) {
  std::lock_guard<std::mutex> l(g_registry_mu);
  for (Cache** p = &g_caches; *p != nullptr; p = &(*p)->registry_next) {
    if (*p == cache) {
      *p = cache->registry_next;
      break;
    }
  }
  for (auto& ref : t_cache_refs)
    if (ref.cache_id == cache->id()) ref = TlsCacheRef{0, nullptr};
}

ThreadState* LookupThreadStateSlow(uint64_t id) {
  for (auto& [ref_id, ts] : t_exit_hook.refs)
    if (ref_id == id) return ts;
  return nullptr;
}

void RememberThreadState(uint64_t id, ThreadState* ts) {
  bool known = false;
  for (auto& ref : t_exit_hook.refs) known |= ref.first == id;
  if (!known) t_exit_hook.refs.emplace_back(id, ts);
  // Most recent first in the fast ways; each id at most once.
  TlsCacheRef prev = TlsCacheRef{id, &ts->slots[0]};
  for (int i = 0; i < kTlsWays; ++i) {
    TlsCacheRef cur = t_cache_refs[i];
    t_cache_refs[i] = prev;
    if (cur.cache_id == id) break;
    prev = cur;
  }
}

}  // namespace regcache_internal
