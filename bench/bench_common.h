// SPDX-License-Identifier: BSD-2-Clause
//
// What every benchmark binary in bench/ does the same way: the page size
// they assume, how they describe a failed regcache call, and the start of
// main() (Google Benchmark's flags, the page-size check, the build type in
// the JSON context).
#ifndef REGCACHE_BENCH_BENCH_COMMON_H_
#define REGCACHE_BENCH_BENCH_COMMON_H_

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cstddef>
#include <string>

#include <benchmark/benchmark.h>
#include <regcache/regcache.h>

#ifndef REGCACHE_BENCH_BUILD_TYPE  // set by bench/CMakeLists.txt
#define REGCACHE_BENCH_BUILD_TYPE "unknown"
#endif

namespace regcache_bench {

// The benchmarks lay out their buffers in 4 KiB pages.
inline constexpr size_t kPageSize = 4096;

// "what: strerror(-rc) (regcache_last_error())" for a failed call.
inline std::string Describe(const char* what, int rc) {
  return std::string(what) + ": " + strerror(-rc) + " (" +
         regcache_last_error() + ")";
}

// The start of main(): Google Benchmark's flags, then the checks every
// benchmark needs. False (after a message on stderr) when main() should
// return 1: an unrecognised flag, or pages that are not 4 KiB.
inline bool StartBenchmark(int* argc, char** argv, const char* name) {
  benchmark::Initialize(argc, argv);
  if (benchmark::ReportUnrecognizedArguments(*argc, argv)) return false;
  if (sysconf(_SC_PAGESIZE) != static_cast<long>(kPageSize)) {
    fprintf(stderr, "%s: assumes 4 KiB pages\n", name);
    return false;
  }
  benchmark::AddCustomContext("regcache_build_type", REGCACHE_BENCH_BUILD_TYPE);
  return true;
}

}  // namespace regcache_bench

#endif  // REGCACHE_BENCH_BENCH_COMMON_H_
