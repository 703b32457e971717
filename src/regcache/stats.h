// SPDX-License-Identifier: BSD-2-Clause
// Printing a cache's statistics at destroy or process exit, in the format
// its configuration asks for (REGCACHE_STATS=text|json); create.cc hands it
// to the cache core as CacheSetup::print_stats.
#ifndef REGCACHE_SRC_REGCACHE_STATS_H_
#define REGCACHE_SRC_REGCACHE_STATS_H_

namespace regcache_internal {

class Cache;

// To stderr: regcache_print_stats() or regcache_print_stats_json().
void PrintStatsAtExit(Cache* cache);

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_STATS_H_
