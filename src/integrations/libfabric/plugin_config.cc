// SPDX-License-Identifier: BSD-2-Clause
// Parses the libfabric plug-in's environment (plugin_config.h). The main
// function is ReadPluginConfig().
#include "integrations/libfabric/plugin_config.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace regcache_fi {
namespace {

const char* RealGetenv(const char* name) { return getenv(name); }

void AddError(std::string* error, const std::string& text) {
  if (!error->empty()) *error += "; ";
  *error += text;
}

}  // namespace

bool ReadPluginConfig(PluginConfig* out, std::string* error,
                      const char* (*getenv_fn)(const char*)) {
  if (getenv_fn == nullptr) getenv_fn = RealGetenv;
  *out = PluginConfig{};
  error->clear();
  if (const char* v = getenv_fn("REGCACHE_FI"); v != nullptr) {
    if (strcmp(v, "0") == 0)
      out->enabled = false;
    else if (strcmp(v, "1") != 0)
      AddError(error,
               std::string("REGCACHE_FI='") + v + "' is not 0 or 1; using 1");
  }
  if (const char* v = getenv_fn("REGCACHE_FI_MAX_SUBSCRIPTIONS");
      v != nullptr) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-' ||
        n < kMinSubscriptions || n > kMaxSubscriptions) {
      AddError(error, std::string("REGCACHE_FI_MAX_SUBSCRIPTIONS='") + v +
                          "' is not a number from " +
                          std::to_string(kMinSubscriptions) + " to " +
                          std::to_string(kMaxSubscriptions) + "; using " +
                          std::to_string(kDefaultMaxSubscriptions));
    } else {
      out->max_subscriptions = static_cast<size_t>(n);
    }
  }
  if (const char* v = getenv_fn("REGCACHE_STATS"); v != nullptr)
    out->print_stats = v[0] != '\0' && strcmp(v, "0") != 0;
  return error->empty();
}

}  // namespace regcache_fi
