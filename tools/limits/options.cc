// SPDX-License-Identifier: BSD-2-Clause
//
// regcache-limits' command line (limits.h): the options, their checks and
// the --help text, with CLI11 in the tools' house style
// (tools/common/command_line.h).

#include <string>
#include <vector>

#include "command_line.h"
#include "limits.h"

namespace regcache_limits {
namespace {

// The options as given, before they are turned into Options.
struct Given {
  bool json = false, all = false, env = false;
  std::string top, ranks_per_node, reserve, mem_total;
};

void Define(CLI::App* app, Given* g) {
  const std::string indent(
      std::string("usage: ").size() + app->get_name().size() + 1, ' ');
  regcache_tools::SetUpCommandLine(
      app,
      "[--json] [--all [--top N]] [--ranks-per-node N] [--reserve PCT]\n" +
          indent + "[--mem-total SIZE] [--env] [--version]",
      23);
  app->description(
      "Shows what limits RDMA memory registration on this node for this user\n"
      "(RLIMIT_MEMLOCK, CAP_IPC_LOCK, pinned memory, the regcache module and\n"
      "its device, the monitor the library would pick, RDMA devices) and\n"
      "recommends a per-process memlock limit. Writes no system file.");
  const std::string group = "Options";
  app->add_flag("--json", g->json, "machine-readable output")->group(group);
  app->add_flag("--all", g->all,
                "also list the processes pinning the most memory")
      ->group(group);
  app->add_option("--top", g->top, "how many --all lists (default 10)")
      ->check(regcache_tools::Count(1, 100000))
      ->type_name("N")
      ->group(group);
  app->add_option("--ranks-per-node", g->ranks_per_node,
                  "processes that pin memory per node (default: the\n"
                  "number of online CPUs)")
      ->check(regcache_tools::Count(1, 1000000))
      ->type_name("N")
      ->group(group);
  app->add_option("--reserve", g->reserve,
                  "share of MemTotal kept for the OS and unpinned\n"
                  "memory, 0 <= PCT < 100 (default 25)")
      ->check(regcache_tools::Parses<uint32_t>(
          ParsePercent,
          "a percentage, 0 <= PCT < 100, at most two decimals (e.g. 25, "
          "12.5%)"))
      ->type_name("PCT")
      ->group(group);
  app->add_option("--mem-total", g->mem_total,
                  "plan for a node with this much memory instead of\n"
                  "this one's MemTotal (e.g. 512G, 1T)")
      ->check(regcache_tools::Parses<uint64_t>(
          ParseSize,
          "a size in bytes or with K, M, G or T (binary), e.g. 512G"))
      ->type_name("SIZE")
      ->group(group);
  app->add_flag("--env", g->env,
                "print every REGCACHE_* variable with its effective\n"
                "value and where it came from, and nothing else")
      ->group(group);
  regcache_tools::AddHelpAndVersion(app, group);
  app->footer("See docs/operators.md. Exit status: 0, or 2 for a usage error.");
}

}  // namespace

bool ParseArgs(const std::vector<std::string>& args, Options* options,
               std::string* error) {
  CLI::App app("", "regcache-limits");
  Given g;
  Define(&app, &g);
  Options o;
  if (!regcache_tools::Parse(&app, args, &o.help, &o.version, error))
    return false;
  // The values passed their checks, so these conversions succeed.
  o.json = g.json;
  o.all = g.all;
  o.env = g.env;
  uint64_t n = 0;
  if (regcache_tools::ParseCount(g.top, 1, 100000, &n)) o.top = uint32_t(n);
  if (regcache_tools::ParseCount(g.ranks_per_node, 1, 1000000, &n))
    o.ranks_per_node = uint32_t(n);
  if (!g.reserve.empty()) ParsePercent(g.reserve, &o.reserve_basis_points);
  uint64_t bytes = 0;
  if (!g.mem_total.empty() && ParseSize(g.mem_total, &bytes))
    o.mem_total_bytes = bytes;
  *options = o;
  return true;
}

std::string Usage(const std::string& program) {
  CLI::App app("", program);
  Given g;
  Define(&app, &g);
  return app.help();
}

}  // namespace regcache_limits
