// SPDX-License-Identifier: BSD-2-Clause
// A program outside the tree that uses an installed regcache.
#include <regcache/regcache.hpp>

#include <cstdio>
#include <vector>

int main() {
  regcache_registrar reg;
  if (regcache_registrar_fake(0, &reg) != 0) return 1;
  regcache_config cfg;
  regcache_config_init(&cfg);
  cfg.monitor = REGCACHE_MONITOR_NONE;
  regcache::Cache cache;
  if (regcache::Cache::Create(reg, &cfg, &cache) != 0) {
    std::fprintf(stderr, "%s\n", regcache_last_error());
    return 1;
  }
  std::vector<char> buf(1 << 16);
  for (int i = 0; i < 2; ++i) {
    regcache::Registration r;
    if (cache.Get(buf.data(), buf.size(), REGCACHE_ACCESS_LOCAL_WRITE, &r) != 0)
      return 1;
  }
  const auto s = cache.Stats();
  std::printf("consumer: hits=%llu misses=%llu\n", (unsigned long long)s.hits,
              (unsigned long long)s.misses);
  return s.hits == 1 && s.misses == 1 ? 0 : 1;
}
