// SPDX-License-Identifier: BSD-2-Clause
// regcache-pingpong's results and how they are shown: one PointResult per
// measured point, the targets evaluated over them, and three renderings:
// the terminal tables (one per workload), JSON, and an SVG plot of
// bandwidth against message size. All pure functions of the Report.
#ifndef REGCACHE_TOOLS_PINGPONG_REPORT_H_
#define REGCACHE_TOOLS_PINGPONG_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "options.h"

namespace regcache_pingpong {

struct PointResult {
  enum class Status {
    kOk,             // measured
    kNotApplicable,  // "n/a" (register-once in realloc)
    kUnavailable,    // the mode cannot run here (no module, no ODP, ...)
    kSkipped,        // over the memory budget
  };
  std::string workload;  // Workload::Name()
  Mode mode = Mode::kPerMessage;
  uint64_t size = 0;
  Status status = Status::kOk;
  std::string note;  // why not measured

  // Measured round trips (ping + pong); latencies are one way (RTT / 2).
  uint64_t round_trips = 0;
  double latency_us = 0;  // the median
  double latency_min_us = 0;
  double latency_mean_us = 0;  // wall time / messages
  double bandwidth_mbs = 0;    // size / median latency, MB = 10^6 bytes
  // Both endpoints, over the measured round trips.
  uint64_t registrations = 0;     // ibv_reg_mr calls
  uint64_t gets = 0;              // registrations asked for (2 per message)
  uint64_t hits = 0;              // of those, served from a cache
  uint64_t uncached = 0;          // of the misses, registered but not kept
  double reg_us_per_message = 0;  // obtaining + releasing, both ends
  // realloc: munmap + mmap of the buffers, both ends (0 for the others).
  double remap_us_per_message = 0;
  // CPU time of the threads besides the endpoints' own (a cache's monitor
  // and reaper threads), both ends.
  double other_threads_us_per_message = 0;
  // Both endpoints, over every message of the point (warm-up included).
  uint64_t messages_checked = 0;
  uint64_t data_errors = 0;  // messages whose pattern was wrong
  std::string first_error;
  uint64_t reallocations = 0;  // realloc: buffers freed and mapped again
  uint64_t same_address = 0;   // of those, at the same address

  bool measured() const { return status == Status::kOk; }
  bool safe() const { return data_errors == 0; }
  double hit_rate() const { return gets ? double(hits) / double(gets) : 0; }
};

struct TargetResult {
  enum class Verdict { kPass, kFail, kNotMeasured };
  std::string name;
  Verdict verdict = Verdict::kNotMeasured;
  bool correctness = false;  // a FAIL here makes the exit status non-zero
  std::string detail;
};
const char* VerdictName(TargetResult::Verdict verdict);  // PASS FAIL N/A

// --reg-time: ibv_reg_mr and ibv_dereg_mr of one buffer of `size` bytes,
// pinned and with IBV_ACCESS_ON_DEMAND, on memory just mapped (its pages
// not yet there: pinning faults them in) and on memory written first.
struct RegTime {
  struct Sample {
    bool measured = false;
    double reg_us = 0;  // median
    double reg_min_us = 0;
    double dereg_us = 0;  // median
  };
  uint64_t size = 0;  // 0: not measured
  uint32_t repetitions = 0;
  Sample pinned_fresh, pinned_touched, odp_fresh, odp_touched;
  std::string note;  // what was not measured and why ("" if all was)
};

struct Report {
  std::string device;  // "rxe0 port 1 GID[1] ::ffff:192.168.77.1 MTU 1024"
  // "odp: unsupported on rxe0 (odp_caps = 0)", "odp: runs on rxe0 despite
  // its known ODP defect ..." or ""
  std::string odp_note;
  std::string settings;  // "max entries 32, stamp every 256 B, ..."
  std::vector<std::string> workloads;  // in run order
  std::vector<uint64_t> sizes;
  std::vector<Mode> modes;
  std::vector<PointResult> points;
  std::vector<TargetResult> targets;
  RegTime reg_time;
  double wall_seconds = 0;
};

// The targets (docs/pingpong.md, "Targets"), at `reference_size` (64 KiB) in
// workload "reuse":
//   bandwidth: regcache-{kmod,uffd} >= 10x register-per-message (reported)
//   bandwidth: regcache-{kmod,uffd} within 5% of register-once (reported)
//   bandwidth: odp in realloc >= register-per-message (reported)
//   bandwidth: odp within 10% of register-once (reported)
//   correctness: no data errors in any mode with invalidation
//   correctness: regcache-none in realloc has data errors at every point
//                where the address was reused
std::vector<TargetResult> EvaluateTargets(
    const std::vector<PointResult>& points, uint64_t reference_size = 64 << 10);
bool AnyCorrectnessFailure(const std::vector<TargetResult>& targets);

std::string RenderTables(const Report& report);  // + the target lines
std::string RenderTargets(const std::vector<TargetResult>& targets);
std::string RenderRegTime(const RegTime& reg_time);  // "" if not measured
std::string RenderJson(const Report& report);
std::string RenderSvg(const Report& report);

}  // namespace regcache_pingpong

#endif  // REGCACHE_TOOLS_PINGPONG_REPORT_H_
