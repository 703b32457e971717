// SPDX-License-Identifier: BSD-2-Clause
// Configuration: regcache_config_init() (defaults, then the REGCACHE_*
// environment variables), regcache_print_config() (every variable, its
// effective value and where that came from, like `fi_info -e`), and the
// names of the API's enumerations.
//
// Every variable is one row of kVariables: its name, what it accepts, what
// it means, how it is applied to a config and how a config's field is
// spelt back. Adding a variable is adding a row (and its regcache.h field).
#include <sys/resource.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "abi.h"
#include "base/errors.h"
#include "regcache/regcache.h"

using regcache_internal::SetError;

namespace {

// Parses "123", "64K", "1M", "2G", "1T" (binary multiples, with an optional
// "iB"/"B"). Returns false on anything else, including overflow.
bool ParseSize(const char* s, size_t* out) {
  if (s == nullptr || *s == '\0') return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || s[0] == '-') return false;
  unsigned shift = 0;
  switch (*end) {
    case '\0':
      break;
    case 'k':
    case 'K':
      shift = 10;
      ++end;
      break;
    case 'm':
    case 'M':
      shift = 20;
      ++end;
      break;
    case 'g':
    case 'G':
      shift = 30;
      ++end;
      break;
    case 't':
    case 'T':
      shift = 40;
      ++end;
      break;
    default:
      return false;
  }
  if (*end == 'i' || *end == 'I') ++end;  // KiB, MiB, ...
  if (*end == 'b' || *end == 'B') ++end;
  if (*end != '\0') return false;
  if (shift != 0 && (v >> (64 - shift)) != 0) return false;
  *out = size_t(v << shift);
  return true;
}

bool Is(const char* text, const char* word) { return strcmp(text, word) == 0; }

std::string Number(uint64_t v) { return std::to_string(v); }

constexpr uint32_t kPrefetchBits =
    REGCACHE_CONFIG_ODP_PREFETCH_SYNC | REGCACHE_CONFIG_ODP_NO_PREFETCH;

// One REGCACHE_* variable.
struct Variable {
  const char* name;
  const char* values;   // what it accepts, for messages and the listing
  const char* meaning;  // one line
  // Sets the config's field from `text`; false (config untouched) when
  // `text` is not one of `values`.
  bool (*apply)(const char* text, regcache_config* config);
  // The config's field as the variable would spell it.
  std::string (*show)(const regcache_config& config);
};

constexpr Variable kVariables[] = {
    {"REGCACHE_MAX_ENTRIES", "a count (e.g. 4096, 64K); 0 = no limit",
     "unused entries beyond this are evicted (CLOCK)",
     [](const char* t, regcache_config* c) {
       return ParseSize(t, &c->max_entries);
     },
     [](const regcache_config& c) { return Number(c.max_entries); }},
    {"REGCACHE_MAX_BYTES", "a size (e.g. 1073741824, 512M, 4G); 0 = no limit",
     "unused pinned bytes beyond this are evicted (not in ODP mode)",
     [](const char* t, regcache_config* c) {
       return ParseSize(t, &c->max_bytes);
     },
     [](const regcache_config& c) { return Number(c.max_bytes); }},
    {"REGCACHE_MONITOR", "auto, kmod, uffd or none",
     "how unmapped memory is noticed (auto: kmod, else uffd)",
     [](const char* t, regcache_config* c) {
       for (auto m : {REGCACHE_MONITOR_AUTO, REGCACHE_MONITOR_NONE,
                      REGCACHE_MONITOR_UFFD, REGCACHE_MONITOR_KMOD}) {
         if (Is(t, regcache_monitor_name(m))) return c->monitor = m, true;
       }
       return false;
     },
     [](const regcache_config& c) {
       return std::string(regcache_monitor_name(c.monitor));
     }},
    {"REGCACHE_MODE", "auto, odp or pin",
     "pinned registrations, or on-demand paging where the device has it",
     [](const char* t, regcache_config* c) {
       for (auto m :
            {REGCACHE_MODE_AUTO, REGCACHE_MODE_PIN, REGCACHE_MODE_ODP}) {
         if (Is(t, regcache_mode_name(m))) return c->mode = m, true;
       }
       return false;
     },
     [](const regcache_config& c) {
       return std::string(regcache_mode_name(c.mode));
     }},
    {"REGCACHE_ODP_IMPLICIT", "0 or 1",
     "in ODP mode, one implicit whole-address-space MR",
     [](const char* t, regcache_config* c) {
       if (!Is(t, "0") && !Is(t, "1")) return false;
       c->flags = (c->flags & ~REGCACHE_CONFIG_ODP_IMPLICIT) |
                  (t[0] == '1' ? REGCACHE_CONFIG_ODP_IMPLICIT : 0u);
       return true;
     },
     [](const regcache_config& c) {
       return std::string((c.flags & REGCACHE_CONFIG_ODP_IMPLICIT) ? "1" : "0");
     }},
    {"REGCACHE_ODP_PREFETCH", "async, sync or none",
     "in ODP mode, how a registration's pages are prefetched",
     [](const char* t, regcache_config* c) {
       uint32_t bits;
       if (Is(t, "async"))
         bits = 0;
       else if (Is(t, "sync"))
         bits = REGCACHE_CONFIG_ODP_PREFETCH_SYNC;
       else if (Is(t, "none"))
         bits = REGCACHE_CONFIG_ODP_NO_PREFETCH;
       else
         return false;
       c->flags = (c->flags & ~kPrefetchBits) | bits;
       return true;
     },
     [](const regcache_config& c) {
       if (c.flags & REGCACHE_CONFIG_ODP_PREFETCH_SYNC)
         return std::string("sync");
       if (c.flags & REGCACHE_CONFIG_ODP_NO_PREFETCH)
         return std::string("none");
       return std::string("async");
     }},
    {"REGCACHE_ADMISSION", "adaptive or always",
     "which misses are cached (adaptive: not ranges that churn)",
     [](const char* t, regcache_config* c) {
       if (Is(t, "adaptive"))
         c->admission = REGCACHE_ADMISSION_ADAPTIVE;
       else if (Is(t, "always"))
         c->admission = REGCACHE_ADMISSION_ALWAYS;
       else
         return false;
       return true;
     },
     [](const regcache_config& c) {
       return std::string(
           c.admission == REGCACHE_ADMISSION_ALWAYS ? "always" : "adaptive");
     }},
    {"REGCACHE_STATS", "0, 1 (or text) or json",
     "print each cache's statistics to stderr at destroy or exit",
     [](const char* t, regcache_config* c) {
       if (Is(t, "0"))
         c->print_stats_at_exit = 0;
       else if (Is(t, "1") || Is(t, "text"))
         c->print_stats_at_exit = REGCACHE_STATS_TEXT;
       else if (Is(t, "json"))
         c->print_stats_at_exit = REGCACHE_STATS_JSON;
       else
         return false;
       return true;
     },
     [](const regcache_config& c) {
       switch (c.print_stats_at_exit) {
         case 0:
           return std::string("0");
         case REGCACHE_STATS_JSON:
           return std::string("json");
         default:
           return std::string("text");
       }
     }},
};

// The built-in defaults, before the environment. *max_bytes_source says
// where the byte limit came from.
regcache_config Defaults(std::string* max_bytes_source) {
  regcache_config config{};
  config.monitor = REGCACHE_MONITOR_AUTO;
  config.mode = REGCACHE_MODE_AUTO;
  config.admission = REGCACHE_ADMISSION_ADAPTIVE;
  // Default byte limit: what the process may lock, when that is bounded.
  rlimit rl{};
  if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    config.max_bytes = size_t(rl.rlim_cur);
    if (max_bytes_source != nullptr)
      *max_bytes_source = "RLIMIT_MEMLOCK soft limit";
  } else if (max_bytes_source != nullptr) {
    *max_bytes_source = "default: RLIMIT_MEMLOCK is unlimited";
  }
  return config;
}

// Defaults, then the environment. Returns 0, or -EINVAL for the last
// variable that could not be parsed (its field keeps its default).
int ConfigInit(regcache_config* config) {
  *config = Defaults(nullptr);
  int rc = 0;
  for (const Variable& var : kVariables) {
    const char* text = getenv(var.name);
    if (text == nullptr) continue;
    if (!var.apply(text, config)) {
      rc = SetError(-EINVAL, "%s=\"%s\": expected %s", var.name, text,
                    var.values);
    }
  }
  return rc;
}

}  // namespace

extern "C" {

const char* regcache_monitor_name(enum regcache_monitor_kind kind) {
  switch (kind) {
    case REGCACHE_MONITOR_AUTO:
      return "auto";
    case REGCACHE_MONITOR_NONE:
      return "none";
    case REGCACHE_MONITOR_UFFD:
      return "uffd";
    case REGCACHE_MONITOR_KMOD:
      return "kmod";
  }
  return "unknown";
}

const char* regcache_inval_reason_name(enum regcache_inval_reason reason) {
  switch (reason) {
    case REGCACHE_INVAL_EXPLICIT:
      return "explicit";
    case REGCACHE_INVAL_UNMAP:
      return "unmap";
    case REGCACHE_INVAL_REMOVE:
      return "remove";
    case REGCACHE_INVAL_REMAP:
      return "remap";
    case REGCACHE_INVAL_MIGRATE:
      return "migrate";
    case REGCACHE_INVAL_FLUSH:
      return "flush";
    case REGCACHE_INVAL_FORK:
      return "fork";
    case REGCACHE_INVAL_NREASONS:
      break;
  }
  return "unknown";
}

const char* regcache_mode_name(enum regcache_mode mode) {
  switch (mode) {
    case REGCACHE_MODE_AUTO:
      return "auto";
    case REGCACHE_MODE_PIN:
      return "pin";
    case REGCACHE_MODE_ODP:
      return "odp";
  }
  return "unknown";
}

int regcache_config_init_sz(struct regcache_config* caller, size_t size) {
  if (caller == nullptr)
    return SetError(-EINVAL, "regcache_config_init: NULL config");
  if (size < regcache_internal::kConfigSizeV0_1) {
    return SetError(
        -EINVAL,
        "regcache_config_init: a struct regcache_config of %zu bytes "
        "is smaller than any version's (%zu)",
        size, regcache_internal::kConfigSizeV0_1);
  }
  // Filled in full here, then copied out at the caller's size (abi.h).
  regcache_config full;
  const int rc = ConfigInit(&full);
  regcache_internal::CopyStructOut(caller, size, &full, sizeof full);
  return rc;
}

int regcache_print_config(void* stream) {
  FILE* f = stream != nullptr ? static_cast<FILE*>(stream) : stdout;
  std::string max_bytes_source;
  const regcache_config defaults = Defaults(&max_bytes_source);
  for (const Variable& var : kVariables) {
    const char* text = getenv(var.name);
    regcache_config config = defaults;
    std::string source;
    if (text == nullptr) {
      source =
          Is(var.name, "REGCACHE_MAX_BYTES") ? max_bytes_source : "default";
    } else if (var.apply(text, &config)) {
      source = "environment";
    } else {
      source = std::string("environment: \"") + text +
               "\" is invalid, expected " + var.values +
               "; regcache_config_init() fails";
    }
    fprintf(f, "# %s: %s\n#   %s\n%s=%s  (%s)\n\n", var.name, var.meaning,
            var.values, var.name, var.show(config).c_str(), source.c_str());
  }
  return ferror(f) ? SetError(-EIO, "regcache_print_config: write failed") : 0;
}

}  // extern "C"
