// SPDX-License-Identifier: BSD-2-Clause
//
// Samples: the per-operation times of one benchmark run, for benchmarks that
// time each operation themselves (UseManualTime). Google Benchmark reports
// their mean; Report() adds the median and the 10th percentile as counters
// `<prefix>_median_ns` and `<prefix>_p10_ns`, which are much less sensitive
// than the mean to the preemptions of a shared machine.
// compare_monitor_costs.py uses the median.
#ifndef REGCACHE_BENCH_SAMPLES_H_
#define REGCACHE_BENCH_SAMPLES_H_

#include <stdint.h>
#include <time.h>

#include <algorithm>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

namespace regcache_bench {

inline uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

class Samples {
 public:
  // Keeps at most `capacity` samples (allocated now, not while timing).
  explicit Samples(size_t capacity = size_t{1} << 20) { ns_.reserve(capacity); }

  // Records one operation of `ns` nanoseconds as the iteration's time
  // (State::SetIterationTime() adds up: call it once per iteration).
  void Add(benchmark::State& state, uint64_t ns) {
    state.SetIterationTime(double(ns) * 1e-9);
    Record(ns);
  }

  // Records one operation without touching the iteration's time.
  void Record(uint64_t ns) {
    if (ns_.size() < ns_.capacity()) ns_.push_back(ns);
  }

  void Report(benchmark::State& state, const std::string& prefix) {
    if (ns_.empty()) return;
    std::sort(ns_.begin(), ns_.end());
    state.counters[prefix + "_median_ns"] = double(ns_[ns_.size() / 2]);
    state.counters[prefix + "_p10_ns"] = double(ns_[ns_.size() / 10]);
  }

 private:
  std::vector<uint64_t> ns_;
};

}  // namespace regcache_bench

#endif  // REGCACHE_BENCH_SAMPLES_H_
