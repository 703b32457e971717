// SPDX-License-Identifier: BSD-2-Clause
//
// regcache-limits: what limits RDMA memory registration on this node for
// this user, and which memlock limit to set. Parses the command line,
// gathers a Report (probe.cc) and prints it as text or JSON
// (render_text.cc, render_json.cc).
// Writes no system file. docs/operators.md explains the output.

#include <cstdio>
#include <string>
#include <vector>

#include "limits.h"
#include "report.h"

int main(int argc, char** argv) {
  using namespace regcache_limits;
  const char* program = "regcache-limits";
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  Options options;
  std::string error;
  if (!ParseArgs(args, &options, &error)) {
    fprintf(stderr, "%s: %s\n%s", program, error.c_str(),
            Usage(program).c_str());
    return 2;
  }
  if (options.help) {
    fputs(Usage(program).c_str(), stdout);
    return 0;
  }
  const Report report = Gather(options);
  const std::string out =
      options.json ? RenderJson(report) : RenderText(report);
  fputs(out.c_str(), stdout);
  return fflush(stdout) == 0 ? 0 : 1;
}
