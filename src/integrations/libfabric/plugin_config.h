// SPDX-License-Identifier: BSD-2-Clause
// The libfabric plug-in's settings, from the environment:
//   REGCACHE_FI=0|1                   import the monitor (default 1)
//   REGCACHE_FI_MAX_SUBSCRIPTIONS=N   records kept, 16..16777216 (default
//                                     16384); keep it above libfabric's
//                                     FI_MR_CACHE_MAX_COUNT (1024) times the
//                                     number of domains
//   REGCACHE_STATS=...                set and not "0": one line of counters
//                                     on stderr at exit
// A value that does not parse keeps the default and is reported; nothing
// else is lost. Thread-compatible (read once, in fi_prov_ini()).
#ifndef REGCACHE_SRC_INTEGRATIONS_LIBFABRIC_PLUGIN_CONFIG_H_
#define REGCACHE_SRC_INTEGRATIONS_LIBFABRIC_PLUGIN_CONFIG_H_

#include <cstddef>
#include <string>

namespace regcache_fi {

inline constexpr size_t kDefaultMaxSubscriptions = 16384;
inline constexpr size_t kMinSubscriptions = 16;
inline constexpr size_t kMaxSubscriptions = size_t{1} << 24;

struct PluginConfig {
  bool enabled = true;
  size_t max_subscriptions = kDefaultMaxSubscriptions;
  bool print_stats = false;
};

// `getenv_fn` reads a variable (tests pass a fake environment). Returns
// false with *error naming every bad variable; *out then has the defaults
// for those and the parsed values for the rest.
bool ReadPluginConfig(PluginConfig* out, std::string* error,
                      const char* (*getenv_fn)(const char*) = nullptr);

}  // namespace regcache_fi

#endif  // REGCACHE_SRC_INTEGRATIONS_LIBFABRIC_PLUGIN_CONFIG_H_
