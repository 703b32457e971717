// SPDX-License-Identifier: BSD-2-Clause
//
// regcache-limits: what limits RDMA memory registration on this node for
// this user, and which memlock limit to set. Parses the command line
// (options.cc), gathers a Report (probe.cc) and prints it as text or JSON
// (render_text.cc, render_json.cc).
// Writes no system file. docs/operators.md explains the output.

#include <cstdio>
#include <string>
#include <vector>

#include "command_line.h"
#include "limits.h"
#include "regcache/regcache.h"
#include "report.h"

int main(int argc, char** argv) {
  using namespace regcache_limits;
  const char* program = "regcache-limits";
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  Options options;
  std::string error;
  if (!ParseArgs(args, &options, &error)) {
    fprintf(stderr, "%s: %s\nTry '%s --help'.\n", program, error.c_str(),
            program);
    return 2;
  }
  if (options.help || options.version) {
    const std::string text =
        options.help ? Usage(program) : regcache_tools::VersionText(program);
    fputs(text.c_str(), stdout);
    return fflush(stdout) == 0 ? 0 : 1;
  }
  if (options.env) {
    // The library's own table: the same parsing regcache_config_init() does.
    return regcache_print_config(stdout) == 0 && fflush(stdout) == 0 ? 0 : 1;
  }
  const Report report = Gather(options);
  const std::string out =
      options.json ? RenderJson(report) : RenderText(report);
  fputs(out.c_str(), stdout);
  return fflush(stdout) == 0 ? 0 : 1;
}
