// SPDX-License-Identifier: BSD-2-Clause
// Statistics: regcache_stats() at the caller's struct size (abi.h), and
// their text and JSON forms (regcache_print_stats, regcache_print_stats_json,
// and at exit with REGCACHE_STATS).
#include "stats.h"

#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "abi.h"
#include "base/errors.h"
#include "core/cache.h"
#include "regcache/regcache.h"

using regcache_internal::Cache;
using regcache_internal::SetError;

namespace {

Cache* AsCache(regcache_t* c) { return reinterpret_cast<Cache*>(c); }

// "0x55d0c3e4a2b0": how messages name a cache.
std::string Address(const void* p) {
  char buf[32];
  snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

}  // namespace

namespace regcache_internal {

void PrintStatsAtExit(Cache* cache) {
  regcache_t* c = reinterpret_cast<regcache_t*>(cache);
  if (cache->print_stats_format() == REGCACHE_STATS_JSON)
    regcache_print_stats_json(c, stderr);
  else
    regcache_print_stats(c, stderr);
}

}  // namespace regcache_internal

extern "C" {

int regcache_stats_sz(regcache_t* cache, struct regcache_stats* out,
                      size_t size) {
  if (cache == nullptr || out == nullptr)
    return SetError(-EINVAL, "regcache_stats: NULL %s",
                    cache ? "out" : "cache");
  if (size < regcache_internal::kStatsSizeV0_1) {
    return SetError(-EINVAL,
                    "regcache_stats: a struct regcache_stats of %zu bytes is "
                    "smaller than any version's (%zu)",
                    size, regcache_internal::kStatsSizeV0_1);
  }
  struct regcache_stats full;
  AsCache(cache)->Stats(&full);
  regcache_internal::CopyStructOut(out, size, &full, sizeof full);
  return 0;
}

int regcache_print_stats(regcache_t* cache, void* stream) {
  struct regcache_stats s;
  int rc = regcache_stats(cache, &s);
  if (rc != 0) return rc;
  FILE* f = stream != nullptr ? static_cast<FILE*>(stream) : stderr;
  const uint64_t gets = s.hits + s.misses;
  fprintf(f, "regcache stats: pid=%d cache=%s registrar=%s\n", int(getpid()),
          Address(cache).c_str(), AsCache(cache)->registrar_name());
  fprintf(f,
          "regcache stats: monitor=%s hits=%" PRIu64 " misses=%" PRIu64
          " hit_rate=%.1f%% registrations=%" PRIu64 " deregistrations=%" PRIu64
          " errors=%" PRIu64 " evictions=%" PRIu64 " uncacheable=%" PRIu64
          " uncached_churn=%" PRIu64 " uncached_admission=%" PRIu64
          " entries=%" PRIu64 " pinned_bytes=%" PRIu64 " in_use=%" PRIu64
          " reg_time_avg_us=%.1f\n",
          regcache_monitor_name(s.monitor), s.hits, s.misses,
          gets ? 100.0 * double(s.hits) / double(gets) : 0.0, s.registrations,
          s.deregistrations, s.registration_errors, s.evictions, s.uncacheable,
          s.uncached_churn, s.uncached_admission, s.entries_now,
          s.pinned_bytes_now, s.in_use_now,
          s.registrations
              ? double(s.registration_ns) / 1e3 / double(s.registrations)
              : 0.0);
  fprintf(f, "regcache mode=%s (%s), monitor=%s (%s)\n",
          regcache_mode_name(s.mode), s.mode_reason,
          regcache_monitor_name(s.monitor), s.monitor_reason);
  fprintf(f,
          "regcache mem: allocs=%" PRIu64 " reuses=%" PRIu64 " pages=%" PRIu64
          "/%" PRIu64 " hugetlb=%" PRIu64 "/%" PRIu64 " thp=%" PRIu64
          "/%" PRIu64 " contig=%" PRIu64 "/%" PRIu64 " bytes=%" PRIu64
          " free_bytes=%" PRIu64 "\n",
          s.mem_allocs, s.mem_reuses, s.mem_pages_allocs, s.mem_pages_bytes,
          s.mem_hugetlb_allocs, s.mem_hugetlb_bytes, s.mem_thp_allocs,
          s.mem_thp_bytes, s.mem_contig_allocs, s.mem_contig_bytes,
          s.mem_bytes_now, s.mem_free_bytes_now);
  fprintf(f, "regcache invalidations:");
  for (int r = 0; r < REGCACHE_INVAL_NREASONS; ++r) {
    fprintf(f, " %s=%" PRIu64,
            regcache_inval_reason_name(regcache_inval_reason(r)),
            s.invalidations[r]);
  }
  fprintf(f, "\n");
  return ferror(f) ? SetError(-EIO, "regcache_print_stats: write failed") : 0;
}

int regcache_print_stats_json(regcache_t* cache, void* stream) {
  struct regcache_stats s;
  int rc = regcache_stats(cache, &s);
  if (rc != 0) return rc;
  FILE* f = stream != nullptr ? static_cast<FILE*>(stream) : stderr;
  const regcache_config& config = AsCache(cache)->config();
  nlohmann::ordered_json invalidations = nlohmann::ordered_json::object();
  for (int r = 0; r < REGCACHE_INVAL_NREASONS; ++r)
    invalidations[regcache_inval_reason_name(regcache_inval_reason(r))] =
        s.invalidations[r];
  const nlohmann::ordered_json j = {
      {"pid", int(getpid())},
      {"cache", Address(cache)},
      {"registrar", AsCache(cache)->registrar_name()},
      {"mode", regcache_mode_name(s.mode)},
      {"mode_reason", s.mode_reason},
      {"monitor", regcache_monitor_name(s.monitor)},
      {"monitor_reason", s.monitor_reason},
      {"limits",
       {{"max_entries", config.max_entries}, {"max_bytes", config.max_bytes}}},
      {"admission",
       config.admission == REGCACHE_ADMISSION_ALWAYS ? "always" : "adaptive"},
      {"hits", s.hits},
      {"misses", s.misses},
      {"registrations", s.registrations},
      {"deregistrations", s.deregistrations},
      {"registration_errors", s.registration_errors},
      {"evictions", s.evictions},
      {"uncacheable", s.uncacheable},
      {"uncached_churn", s.uncached_churn},
      {"uncached_admission", s.uncached_admission},
      {"registration_ns", s.registration_ns},
      {"entries_now", s.entries_now},
      {"pinned_bytes_now", s.pinned_bytes_now},
      {"in_use_now", s.in_use_now},
      {"invalidations", invalidations},
      {"mem",
       {{"allocs", s.mem_allocs},
        {"reuses", s.mem_reuses},
        {"pages",
         {{"allocs", s.mem_pages_allocs}, {"bytes", s.mem_pages_bytes}}},
        {"hugetlb",
         {{"allocs", s.mem_hugetlb_allocs}, {"bytes", s.mem_hugetlb_bytes}}},
        {"thp", {{"allocs", s.mem_thp_allocs}, {"bytes", s.mem_thp_bytes}}},
        {"contig",
         {{"allocs", s.mem_contig_allocs}, {"bytes", s.mem_contig_bytes}}},
        {"bytes_now", s.mem_bytes_now},
        {"free_bytes_now", s.mem_free_bytes_now}}},
  };
  // replace: a reason with bytes that are not UTF-8 must not throw.
  const std::string line =
      j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  fprintf(f, "%s\n", line.c_str());
  return ferror(f) ? SetError(-EIO, "regcache_print_stats_json: write failed")
                   : 0;
}

}  // extern "C"
