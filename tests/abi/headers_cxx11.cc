// SPDX-License-Identifier: BSD-2-Clause
// Built with -std=c++11 -pedantic -Werror: the public headers, the C++ layer
// included, need nothing newer.
#include <regcache/ibverbs.h>
#include <regcache/regcache.h>
#include <regcache/regcache.hpp>

int RegcacheHeadersCxx11Check();
int RegcacheHeadersCxx11Check() {
  regcache_registrar registrar;
  if (regcache_registrar_fake(0, &registrar) != 0) return 1;
  regcache_config config;
  if (regcache_config_init(&config) != 0) return 1;
  config.monitor = REGCACHE_MONITOR_NONE;
  regcache::Cache cache;
  if (regcache::Cache::Create(registrar, &config, &cache) != 0) return 2;
  regcache::Registration registration;
  static char buffer[4096];
  if (cache.Get(buffer, sizeof buffer, REGCACHE_ACCESS_LOCAL_WRITE,
                &registration) != 0)
    return 3;
  return cache.Stats().misses == 1 ? 0 : 4;
}
