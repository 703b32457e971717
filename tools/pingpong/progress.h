// SPDX-License-Identifier: BSD-2-Clause
// regcache-pingpong's progress while the plan runs, which goes where the
// reader is: on a terminal, one line rewritten in place ('\r') per point
// and pass; into a pipe or a file (a job's log), a plain line each time the
// workload or the message size changes, so that the log shows how far the
// run got without a line per point or a thousand '\r'-joined ones.
#ifndef REGCACHE_TOOLS_PINGPONG_PROGRESS_H_
#define REGCACHE_TOOLS_PINGPONG_PROGRESS_H_

#include <cstdint>
#include <cstdio>
#include <string>

#include "options.h"

namespace regcache_pingpong {

// The point about to run: the index-th (from 1) of `total` in the plan.
struct ProgressStep {
  size_t index = 0, total = 0;
  std::string workload;  // Workload::Name()
  Mode mode = Mode::kPerMessage;
  uint64_t size = 0;
  uint32_t pass = 0;  // from 0
};

class ProgressPrinter {
 public:
  // `terminal`: whether `out` is one (isatty). `prefix` starts each plain
  // line ("regcache-pingpong: ").
  ProgressPrinter(FILE* out, bool terminal, std::string prefix);
  void Step(const ProgressStep& step);
  // Clears the terminal's progress line, if one was written.
  void Finish();

 private:
  FILE* out_;
  bool terminal_;
  std::string prefix_;
  bool line_shown_ = false;    // terminal: a line to clear
  std::string last_workload_;  // plain: the step last written
  uint64_t last_size_ = 0;
};

}  // namespace regcache_pingpong

#endif  // REGCACHE_TOOLS_PINGPONG_PROGRESS_H_
