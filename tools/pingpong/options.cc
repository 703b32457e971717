// SPDX-License-Identifier: BSD-2-Clause
// regcache-pingpong's command line (with CLI11, in the tools' house style:
// tools/common/command_line.h), sizes, modes, workloads and the plan
// (options.h).

#include "options.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "command_line.h"

namespace regcache_pingpong {
namespace {

const std::vector<uint64_t> kDefaultSizes = {
    4ull << 10, 64ull << 10, 1ull << 20, 16ull << 20, 64ull << 20};
const std::vector<uint64_t> kQuickSizes = {4ull << 10, 64ull << 10};
constexpr uint64_t kMinSize = 64;
constexpr uint64_t kMaxSize = 1ull << 30;
constexpr uint64_t kBytesPerPoint = 16ull << 20;
constexpr uint32_t kMinIterations = 2, kMaxIterations = 100;
constexpr uint64_t kOneRoundTripFrom = 64ull << 20;
constexpr uint32_t kRoundTripsPerPass = 5;  // at least, when split
constexpr uint32_t kQuickIterations = 6;

std::vector<Workload> DefaultWorkloads() {
  using K = Workload::Kind;
  return {{K::kReuse, 1}, {K::kRotate, 8}, {K::kRotate, 64}, {K::kRealloc, 1}};
}

std::vector<std::string> Split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, sep)) parts.push_back(part);
  if (!text.empty() && text.back() == sep) parts.push_back("");
  return parts;
}

}  // namespace

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kPerMessage:
      return "register-per-message";
    case Mode::kKmod:
      return "regcache-kmod";
    case Mode::kUffd:
      return "regcache-uffd";
    case Mode::kNone:
      return "regcache-none";
    case Mode::kOnce:
      return "register-once";
    case Mode::kOdp:
      return "odp";
    case Mode::kPool:
      return "regcache-pool";
  }
  return "?";
}

namespace {

// Short forms of the modes' names.
constexpr struct {
  const char* name;
  Mode mode;
} kShortModeNames[] = {{"per-message", Mode::kPerMessage},
                       {"kmod", Mode::kKmod},
                       {"uffd", Mode::kUffd},
                       {"none", Mode::kNone},
                       {"once", Mode::kOnce},
                       {"pool", Mode::kPool}};

}  // namespace

bool ParseMode(const std::string& text, Mode* out) {
  for (Mode mode : kAllModes) {
    if (text == ModeName(mode)) {
      *out = mode;
      return true;
    }
  }
  for (const auto& s : kShortModeNames) {
    if (text == s.name) {
      *out = s.mode;
      return true;
    }
  }
  return false;
}

const char* PollingName(Polling polling) {
  switch (polling) {
    case Polling::kAuto:
      return "auto";
    case Polling::kBusy:
      return "busy";
    case Polling::kYield:
      return "yield";
    case Polling::kEvents:
      return "events";
  }
  return "?";
}

bool ParsePolling(const std::string& text, Polling* out) {
  for (Polling p :
       {Polling::kAuto, Polling::kBusy, Polling::kYield, Polling::kEvents}) {
    if (text == PollingName(p)) {
      *out = p;
      return true;
    }
  }
  return false;
}

bool IsCacheMode(Mode mode) {
  return mode == Mode::kKmod || mode == Mode::kUffd || mode == Mode::kNone ||
         mode == Mode::kOdp || mode == Mode::kPool;
}

bool HasInvalidation(Mode mode) { return mode != Mode::kNone; }

std::string Workload::Name() const {
  switch (kind) {
    case Kind::kReuse:
      return "reuse";
    case Kind::kRotate:
      return "rotate-" + std::to_string(buffers);
    case Kind::kRealloc:
      return "realloc";
  }
  return "?";
}

bool ParseWorkload(const std::string& text, Workload* out) {
  if (text == "reuse" || text == "realloc") {
    *out = {text == "reuse" ? Workload::Kind::kReuse : Workload::Kind::kRealloc,
            1};
    return true;
  }
  uint64_t k = 0;
  if (text.rfind("rotate-", 0) == 0 &&
      regcache_tools::ParseCount(text.substr(7), 1, 4096, &k)) {
    *out = {Workload::Kind::kRotate, static_cast<uint32_t>(k)};
    return true;
  }
  return false;
}

bool ParseSize(const std::string& text, uint64_t* out) {
  size_t digits = 0;
  while (digits < text.size() &&
         isdigit(static_cast<unsigned char>(text[digits])))
    ++digits;
  uint64_t value = 0;
  if (digits == 0 || digits > 12 ||
      !regcache_tools::ParseCount(text.substr(0, digits), 0, UINT64_MAX,
                                  &value))
    return false;
  std::string suffix = text.substr(digits);
  for (char& c : suffix)
    c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
  if (suffix.size() >= 2 && suffix.compare(suffix.size() - 2, 2, "IB") == 0)
    suffix.resize(suffix.size() - 2);
  else if (suffix.size() == 2 && suffix[1] == 'B')
    suffix.resize(1);
  int shift = 0;
  if (suffix.empty() || suffix == "B")
    shift = 0;
  else if (suffix == "K")
    shift = 10;
  else if (suffix == "M")
    shift = 20;
  else if (suffix == "G")
    shift = 30;
  else
    return false;
  *out = value << shift;
  return true;
}

bool ParseSizeList(const std::string& text, std::vector<uint64_t>* out,
                   std::string* error) {
  std::vector<uint64_t> sizes;
  for (const std::string& part : Split(text, ',')) {
    uint64_t size = 0;
    if (!ParseSize(part, &size)) {
      *error = "bad size '" + part + "' (e.g. 4096, 4K, 64M)";
      return false;
    }
    if (size < kMinSize || size > kMaxSize) {
      *error = "size " + part + " is outside 64 bytes .. 1G";
      return false;
    }
    if (std::find(sizes.begin(), sizes.end(), size) != sizes.end()) {
      *error = "size " + part + " is listed twice";
      return false;
    }
    sizes.push_back(size);
  }
  if (sizes.empty()) {
    *error = "no sizes";
    return false;
  }
  *out = std::move(sizes);
  return true;
}

std::string FormatSize(uint64_t bytes) {
  static const struct {
    int shift;
    const char* suffix;
  } kUnits[] = {{30, "G"}, {20, "M"}, {10, "K"}};
  for (const auto& unit : kUnits) {
    const uint64_t one = 1ull << unit.shift;
    if (bytes >= one && bytes % one == 0)
      return std::to_string(bytes / one) + unit.suffix;
  }
  return std::to_string(bytes);
}

namespace {

// "register-per-message, ..., odp; or per-message, kmod, ...".
std::string ModeNames() {
  std::string names;
  for (Mode mode : kAllModes)
    names += std::string(names.empty() ? "" : ", ") + ModeName(mode);
  names += "; or ";
  for (size_t i = 0; i < std::size(kShortModeNames); ++i)
    names += std::string(i > 0 ? ", " : "") + kShortModeNames[i].name;
  return names;
}

// The comma-separated modes of --modes, duplicates dropped, in order.
std::string ParseModeList(const std::string& text, std::vector<Mode>* out) {
  std::vector<Mode> modes;
  for (const std::string& part : Split(text, ',')) {
    Mode mode;
    if (!ParseMode(part, &mode))
      return "unknown mode '" + part + "' (" + ModeNames() + ")";
    if (std::find(modes.begin(), modes.end(), mode) == modes.end())
      modes.push_back(mode);
  }
  if (modes.empty()) return "no modes (" + ModeNames() + ")";
  *out = std::move(modes);
  return "";
}

// The comma-separated workloads of --workloads, duplicates dropped.
std::string ParseWorkloadList(const std::string& text,
                              std::vector<Workload>* out) {
  std::vector<Workload> workloads;
  for (const std::string& part : Split(text, ',')) {
    Workload w;
    if (!ParseWorkload(part, &w))
      return "unknown workload '" + part +
             "' (reuse, rotate-K with K from 1 to 4096, realloc)";
    if (std::find(workloads.begin(), workloads.end(), w) == workloads.end())
      workloads.push_back(w);
  }
  if (workloads.empty()) return "no workloads (reuse, rotate-K, realloc)";
  *out = std::move(workloads);
  return "";
}

// "N" or "any" (-1).
bool ParseCpu(const std::string& text, int* cpu) {
  uint64_t n = 0;
  if (text == "any") {
    *cpu = -1;
  } else if (regcache_tools::ParseCount(text, 0, 4095, &n)) {
    *cpu = static_cast<int>(n);
  } else {
    return false;
  }
  return true;
}

bool ParseSeconds(const std::string& text, double* seconds) {
  char* end = nullptr;
  const double value = strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(value > 0) || !std::isfinite(value))
    return false;
  *seconds = value;
  return true;
}

bool ParseBudget(const std::string& text, uint64_t* bytes) {
  return ParseSize(text, bytes) && *bytes > 0;
}

bool ParseRegTimeSize(const std::string& text, uint64_t* bytes) {
  return ParseSize(text, bytes) && *bytes >= 4096 && *bytes <= kMaxSize;
}

// The options as given, before they become Options.
struct Given {
  bool server = false, full_check = false, quick = false;
  std::string client, port, device, ib_port, gid_index, cpu, poll, spin_us;
  std::string modes, workloads, sizes, iterations, warmup, passes;
  std::string seconds_per_point, max_entries, mem_budget, reg_time, json, svg;
};

// An option whose value must be a number in [min, max].
CLI::Option* AddCount(CLI::App* app, const std::string& name, std::string* to,
                      uint64_t min, uint64_t max, const std::string& help) {
  return app->add_option(name, *to, help)
      ->check(regcache_tools::Count(min, max))
      ->type_name("N");
}

void Define(CLI::App* app, Given* g) {
  regcache_tools::SetUpCommandLine(app, "[options]", 25);
  app->description(
      "RDMA WRITE rendezvous ping-pong between two endpoints over an RC QP, "
      "with the\n"
      "registrations obtained per message, through regcache (kmod, uffd, no "
      "monitor),\n"
      "once up front, or with ODP; docs/pingpong.md explains the output.\n\n");
  using regcache_tools::Accepts;
  using regcache_tools::Check;

  const std::string endpoints =
      "Endpoints (default: this program forks both, on one device, over "
      "loopback)";
  CLI::Option* server =
      app->add_flag("--server", g->server,
                    "wait for one client on --port (two hosts)")
          ->group(endpoints);
  app->add_option("--client", g->client,
                  "connect to a server on HOST:--port (two hosts);\n"
                  "the client runs the plan and prints the results")
      ->check(Accepts([](const std::string& s) { return !s.empty(); },
                      "a host name or address"))
      ->type_name("HOST")
      ->excludes(server)
      ->group(endpoints);
  AddCount(app, "-p,--port", &g->port, 1, 65535,
           "TCP port for the exchange (default 18515)")
      ->group(endpoints);
  app->add_option("-d,--device", g->device,
                  "RDMA device (default: the first one)")
      ->type_name("DEV")
      ->group(endpoints);
  AddCount(app, "-i,--ib-port", &g->ib_port, 1, 255, "device port (default 1)")
      ->group(endpoints);
  AddCount(app, "-g,--gid-index", &g->gid_index, 0, 65535,
           "GID index (default: the port's RoCE v2 IPv4 GID;\n"
           "none on InfiniBand)")
      ->group(endpoints);
  app->add_option("--cpu", g->cpu,
                  "run both endpoints (and their threads) on CPU N\n"
                  "(default any). In a VM on a busy host this keeps a\n"
                  "message from waiting for a second vCPU to be\n"
                  "scheduled")
      ->check(regcache_tools::Parses<int>(ParseCpu,
                                          "a CPU number (0 to 4095) or 'any'"))
      ->type_name("N|any")
      ->group(endpoints);
  app->add_option("--poll", g->poll,
                  "wait for completions: busy (spin), yield (spin with\n"
                  "sched_yield, so that a software device's kernel\n"
                  "work runs at once), events (sleep on a completion\n"
                  "channel) or auto (default: yield on software\n"
                  "devices such as rxe, busy on hardware)")
      ->check(regcache_tools::Parses<Polling>(ParsePolling,
                                              "auto, busy, yield or events"))
      ->type_name("HOW")
      ->group(endpoints);
  AddCount(app, "--spin-us", &g->spin_us, 0, 1000000,
           "with --poll events: spin this many microseconds\n"
           "before sleeping (default 50)")
      ->group(endpoints);

  const std::string measure = "What to measure (default: everything)";
  app->add_option("--modes", g->modes,
                  "register-per-message,regcache-kmod,regcache-uffd,\n"
                  "regcache-none,register-once,regcache-pool,odp (or\n"
                  "per-message, kmod, uffd, none, once, pool)")
      ->check(Check([](const std::string& s) {
        std::vector<Mode> ignored;
        return ParseModeList(s, &ignored);
      }))
      ->type_name("LIST")
      ->group(measure);
  app->add_option("--workloads", g->workloads,
                  "reuse,rotate-8,rotate-64,realloc (rotate-K: any K)")
      ->check(Check([](const std::string& s) {
        std::vector<Workload> ignored;
        return ParseWorkloadList(s, &ignored);
      }))
      ->type_name("LIST")
      ->group(measure);
  app->add_option("--sizes", g->sizes, "4K,64K,1M,16M,64M")
      ->check(Check([](const std::string& s) {
        std::vector<uint64_t> ignored;
        std::string error;
        return ParseSizeList(s, &ignored, &error) ? "" : error;
      }))
      ->type_name("LIST")
      ->group(measure);
  AddCount(app, "--iters", &g->iterations, 1, 10000000,
           "round trips per point (default: ~16 MiB of payload,\n"
           "2..100; 1 from 64M on)")
      ->group(measure);
  AddCount(app, "--warmup", &g->warmup, 0, 100000,
           "round trips before measuring, in each pass (default\n"
           "2; rotate-K whose 2K buffers fit in the cache: at\n"
           "least K); they register the whole buffers but write\n"
           "only 4 KiB")
      ->group(measure);
  AddCount(app, "--passes", &g->passes, 1, 100,
           "measure each point in up to N passes of 5+ round\n"
           "trips, the modes taking turns (default 20)")
      ->group(measure);
  app->add_option("--seconds-per-point", g->seconds_per_point,
                  "end a point's measurement after S seconds, once it\n"
                  "has 2 round trips (default 6)")
      ->check(regcache_tools::Parses<double>(
          ParseSeconds, "a number of seconds greater than 0"))
      ->type_name("S")
      ->group(measure);
  AddCount(app, "--max-entries", &g->max_entries, 0, 1u << 24,
           "the caches' entry limit (REGCACHE_MAX_ENTRIES,\n"
           "default 32; each endpoint keeps 2K entries in rotate-K)")
      ->group(measure);
  app->add_option("--mem-budget", g->mem_budget,
                  "buffer memory per endpoint (default 256M); bigger\n"
                  "points are skipped")
      ->check(regcache_tools::Parses<uint64_t>(
          ParseBudget, "a size above 0 such as 256M (K, M, G: powers of 1024)"))
      ->type_name("SIZE")
      ->group(measure);
  app->add_flag("--full-check", g->full_check,
                "check every 8-byte word (default: one per 256 bytes)")
      ->group(measure);
  app->add_option("--reg-time", g->reg_time,
                  "first time ibv_reg_mr and ibv_dereg_mr of SIZE (e.g.\n"
                  "64M) of fresh and of touched memory, pinned and ODP\n"
                  "(medians of 5 each); client or loopback only")
      ->check(regcache_tools::Parses<uint64_t>(
          ParseRegTimeSize, "a size from 4K to 1G such as 64M"))
      ->type_name("SIZE")
      ->excludes(server)
      ->group(measure);
  app->add_flag("--quick", g->quick,
                "sizes 4K,64K, 6 round trips, warmup 1 (a smoke test)")
      ->group(measure);

  const std::string output = "Output";
  app->add_option("--json", g->json, "the results for tools")
      ->type_name("FILE")
      ->group(output);
  app->add_option("--svg", g->svg,
                  "bandwidth against message size, one line per mode")
      ->type_name("FILE")
      ->group(output);
  regcache_tools::AddHelpAndVersion(app, output);
  app->footer(
      "Exit status: 0, or 1 when a correctness target fails (data errors in "
      "a mode\n"
      "with invalidation, or none in the unsafe control although realloc "
      "reused the\n"
      "address), 2 for bad arguments, 3 when the run itself failed.");
}

// A count's value into `*to`, when the option was given (its value passed
// its check, so it is a number that fits).
template <typename T>
void SetCount(const std::string& text, T* to) {
  uint64_t n = 0;
  if (regcache_tools::ParseCount(text, 0, UINT64_MAX, &n))
    *to = static_cast<T>(n);
}

}  // namespace

std::string Usage(const char* program) {
  CLI::App app("", program);
  Given g;
  Define(&app, &g);
  return app.help();
}

bool ParseArgs(const std::vector<std::string>& args, Options* out,
               std::string* error) {
  CLI::App app("", "regcache-pingpong");
  Given g;
  Define(&app, &g);
  Options o;
  if (!regcache_tools::Parse(&app, args, &o.help, &o.version, error))
    return false;
  // Every value given passed its check, so the conversions succeed.
  if (g.server) o.role = Role::kServer;
  if (!g.client.empty()) {
    o.role = Role::kClient;
    o.host = g.client;
  }
  SetCount(g.port, &o.tcp_port);
  o.device = g.device;
  SetCount(g.ib_port, &o.ib_port);
  SetCount(g.gid_index, &o.gid_index);
  if (!g.cpu.empty()) ParseCpu(g.cpu, &o.cpu);
  if (!g.poll.empty()) ParsePolling(g.poll, &o.polling);
  SetCount(g.spin_us, &o.spin_us);
  if (!g.modes.empty()) ParseModeList(g.modes, &o.modes);
  if (o.modes.empty())
    o.modes.assign(std::begin(kAllModes), std::end(kAllModes));
  if (!g.workloads.empty()) ParseWorkloadList(g.workloads, &o.workloads);
  if (o.workloads.empty()) o.workloads = DefaultWorkloads();
  std::string ignored;
  if (!g.sizes.empty()) ParseSizeList(g.sizes, &o.sizes, &ignored);
  if (o.sizes.empty()) o.sizes = g.quick ? kQuickSizes : kDefaultSizes;
  SetCount(g.iterations, &o.iterations);
  if (g.quick) o.warmup = 1;  // unless --warmup says otherwise
  SetCount(g.warmup, &o.warmup);
  SetCount(g.passes, &o.passes);
  if (g.quick) o.passes = 1;
  if (!g.seconds_per_point.empty())
    ParseSeconds(g.seconds_per_point, &o.seconds_per_point);
  SetCount(g.max_entries, &o.max_entries);
  if (!g.mem_budget.empty()) ParseBudget(g.mem_budget, &o.mem_budget);
  if (g.full_check) o.stamp_stride = 8;
  if (!g.reg_time.empty()) ParseRegTimeSize(g.reg_time, &o.reg_time_size);
  o.quick = g.quick;
  o.json_path = g.json;
  o.svg_path = g.svg;
  *out = std::move(o);
  return true;
}

uint32_t IterationsFor(uint64_t size, const Options& options) {
  if (options.iterations != 0) return options.iterations;
  if (options.quick) return kQuickIterations;
  // Two 64 MiB messages take about 6 s in the qemu rig.
  if (size >= kOneRoundTripFrom) return 1;
  const uint64_t n = kBytesPerPoint / std::max<uint64_t>(size, 1);
  return static_cast<uint32_t>(
      std::clamp<uint64_t>(n, kMinIterations, kMaxIterations));
}

uint64_t EndpointBytes(const Workload& workload, uint64_t size) {
  const uint64_t page = 4096;
  const uint64_t mapped = (size + page - 1) / page * page;
  return 2 * uint64_t{workload.buffers} * mapped;
}

uint64_t WireBytes(uint64_t size, bool warmup) {
  return warmup ? std::min(size, kWarmupBytes) : size;
}

Plan MakePlan(const Options& options) {
  Plan plan;
  plan.stamp_stride = options.stamp_stride;
  plan.max_entries = options.max_entries;
  plan.seconds_per_point = options.seconds_per_point;
  plan.reg_time_size = options.reg_time_size;
  for (const Workload& workload : options.workloads) {
    for (uint64_t size : options.sizes) {
      const uint32_t iterations = IterationsFor(size, options);
      const uint32_t passes = std::max<uint32_t>(
          1, std::min(options.passes, iterations / kRoundTripsPerPass));
      for (uint32_t pass = 0; pass < passes; ++pass) {
        for (Mode mode : options.modes) {
          PointSpec p;
          p.workload = workload;
          p.mode = mode;
          p.size = size;
          p.pass = pass;
          // Split the round trips evenly; the first passes take the rest.
          p.iterations =
              iterations / passes + (pass < iterations % passes ? 1 : 0);
          p.warmup = options.warmup;
          // A rotation that fits in the cache is warmed whole, so that
          // the measurement sees its steady state (all hits); one that
          // does not fit misses anyway.
          if (workload.kind == Workload::Kind::kRotate && !options.quick &&
              2 * uint64_t{workload.buffers} <= options.max_entries)
            p.warmup = std::max(p.warmup, workload.buffers);
          if (mode == Mode::kOnce &&
              workload.kind == Workload::Kind::kRealloc) {
            p.skip = "n/a: its buffers are registered once and never freed";
          } else if (EndpointBytes(workload, size) > options.mem_budget) {
            p.skip = "skipped: 2 x " + std::to_string(workload.buffers) +
                     " x " + FormatSize(size) + " = " +
                     FormatSize(EndpointBytes(workload, size)) +
                     " per endpoint > --mem-budget " +
                     FormatSize(options.mem_budget);
          }
          if (!p.skip.empty() && pass > 0) continue;  // said once
          plan.points.push_back(std::move(p));
        }
      }
    }
  }
  return plan;
}

std::string SerializePlan(const Plan& plan) {
  std::ostringstream out;
  out << "plan " << plan.stamp_stride << ' ' << plan.max_entries << ' '
      << plan.seconds_per_point << ' ' << plan.points.size() << '\n';
  for (const PointSpec& p : plan.points) {
    out << "point " << p.workload.Name() << ' ' << ModeName(p.mode) << ' '
        << p.size << ' ' << p.pass << ' ' << p.iterations << ' ' << p.warmup
        << ' ' << (p.skip.empty() ? "run" : "skip") << '\n';
  }
  return out.str();
}

bool ParsePlan(const std::string& text, Plan* out, std::string* error) {
  std::istringstream in(text);
  std::string word;
  Plan plan;
  size_t count = 0;
  if (!(in >> word) || word != "plan" ||
      !(in >> plan.stamp_stride >> plan.max_entries >> plan.seconds_per_point >>
        count)) {
    *error = "bad plan header";
    return false;
  }
  for (size_t i = 0; i < count; ++i) {
    PointSpec p;
    std::string workload, mode, run;
    if (!(in >> word >> workload >> mode >> p.size >> p.pass >> p.iterations >>
          p.warmup >> run) ||
        word != "point" || !ParseWorkload(workload, &p.workload) ||
        !ParseMode(mode, &p.mode) || (run != "run" && run != "skip")) {
      *error = "bad plan line " + std::to_string(i + 1);
      return false;
    }
    if (run == "skip") p.skip = "skipped by the client";
    plan.points.push_back(std::move(p));
  }
  *out = std::move(plan);
  return true;
}

}  // namespace regcache_pingpong
