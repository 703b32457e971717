// SPDX-License-Identifier: BSD-2-Clause
// For the tools' tests, which run the real programs: a shell command's
// standard output and exit status.
#ifndef REGCACHE_TOOLS_COMMON_RUN_COMMAND_H_
#define REGCACHE_TOOLS_COMMON_RUN_COMMAND_H_

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace regcache_tools {

// Runs `command` with sh; returns its stdout and sets *status to its exit
// status (-1 if it did not exit).
inline std::string RunCommand(const std::string& command, int* status) {
  std::string out;
  *status = -1;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  if (rc != -1 && WIFEXITED(rc)) *status = WEXITSTATUS(rc);
  return out;
}

}  // namespace regcache_tools

#endif  // REGCACHE_TOOLS_COMMON_RUN_COMMAND_H_
