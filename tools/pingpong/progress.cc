// SPDX-License-Identifier: BSD-2-Clause
// regcache-pingpong's progress output (progress.h).

#include "progress.h"

namespace regcache_pingpong {

ProgressPrinter::ProgressPrinter(FILE* out, bool terminal, std::string prefix)
    : out_(out), terminal_(terminal), prefix_(std::move(prefix)) {}

void ProgressPrinter::Step(const ProgressStep& step) {
  if (terminal_) {
    char line[160];
    snprintf(line, sizeof(line), "[%zu/%zu] %-10s %-21s %5s pass %u",
             step.index, step.total, step.workload.c_str(), ModeName(step.mode),
             FormatSize(step.size).c_str(), step.pass + 1);
    fprintf(out_, "\r%-78.78s", line);
    line_shown_ = true;
  } else {
    if (step.workload == last_workload_ && step.size == last_size_) return;
    last_workload_ = step.workload;
    last_size_ = step.size;
    fprintf(out_, "%s[%zu/%zu] %s %s\n", prefix_.c_str(), step.index,
            step.total, step.workload.c_str(), FormatSize(step.size).c_str());
  }
  fflush(out_);
}

void ProgressPrinter::Finish() {
  if (!line_shown_) return;
  fprintf(out_, "\r%78s\r", "");
  fflush(out_);
  line_shown_ = false;
}

}  // namespace regcache_pingpong
