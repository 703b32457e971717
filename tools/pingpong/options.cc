// SPDX-License-Identifier: BSD-2-Clause
// regcache-pingpong's command line, sizes, modes, workloads and the plan
// (options.h).

#include "options.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sstream>

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

bool ParseUnsigned(const std::string& text, uint64_t* out) {
  if (text.empty() || !isdigit(static_cast<unsigned char>(text[0])))
    return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long value = strtoull(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = value;
  return true;
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
  }
  return "?";
}

bool ParseMode(const std::string& text, Mode* out) {
  for (Mode mode : kAllModes) {
    if (text == ModeName(mode)) {
      *out = mode;
      return true;
    }
  }
  // Short forms: "per-message", "kmod", "uffd", "none", "once".
  static const struct {
    const char* name;
    Mode mode;
  } kShort[] = {{"per-message", Mode::kPerMessage},
                {"kmod", Mode::kKmod},
                {"uffd", Mode::kUffd},
                {"none", Mode::kNone},
                {"once", Mode::kOnce}};
  for (const auto& s : kShort) {
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
         mode == Mode::kOdp;
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
  if (text.rfind("rotate-", 0) == 0 && ParseUnsigned(text.substr(7), &k) &&
      k >= 1 && k <= 4096) {
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
      !ParseUnsigned(text.substr(0, digits), &value))
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

std::string Usage(const char* program) {
  std::string u = "usage: ";
  u += program;
  u += R"( [options]
RDMA WRITE rendezvous ping-pong between two endpoints over an RC QP, with the
registrations obtained per message, through regcache (kmod, uffd, no monitor),
once up front, or with ODP; docs/pingpong.md explains the output.

Endpoints (default: this program forks both, on one device, over loopback):
  --server               wait for one client on --port (two hosts)
  --client HOST          connect to a server on HOST:--port (two hosts);
                         the client runs the plan and prints the results
  -p, --port N           TCP port for the exchange (default 18515)
  -d, --device DEV       RDMA device (default: the first one)
  -i, --ib-port N        device port (default 1)
  -g, --gid-index N      GID index (default: the port's RoCE v2 IPv4 GID;
                         none on InfiniBand)
  --cpu N|any            run both endpoints (and their threads) on CPU N
                         (default any). In a VM on a busy host this keeps a
                         message from waiting for a second vCPU to be
                         scheduled
  --poll HOW             wait for completions: busy (spin), yield (spin with
                         sched_yield, so that a software device's kernel
                         work runs at once), events (sleep on a completion
                         channel) or auto (default: yield on software
                         devices such as rxe, busy on hardware)
What to measure (default: everything):
  --modes LIST           register-per-message,regcache-kmod,regcache-uffd,
                         regcache-none,register-once,odp (or per-message,
                         kmod, uffd, none, once)
  --workloads LIST       reuse,rotate-8,rotate-64,realloc (rotate-K: any K)
  --sizes LIST           4K,64K,1M,16M,64M
  --iters N              round trips per point (default: ~16 MiB of payload,
                         2..100; 1 from 64M on)
  --warmup N             round trips before measuring, in each pass (default
                         2; rotate-K whose 2K buffers fit in the cache: at
                         least K); they register the whole buffers but write
                         only 4 KiB
  --passes N             measure each point in up to N passes of 5+ round
                         trips, the modes taking turns (default 20)
  --seconds-per-point S  end a point's measurement after S seconds, once it
                         has 2 round trips (default 6)
  --max-entries N        the caches' entry limit (REGCACHE_MAX_ENTRIES,
                         default 32; each endpoint keeps 2K entries in rotate-K)
  --mem-budget SIZE      buffer memory per endpoint (default 256M); bigger
                         points are skipped
  --full-check           check every 8-byte word (default: one per 256 bytes)
  --quick                sizes 4K,64K, 6 round trips, warmup 1 (a smoke test)
Output:
  --json FILE            the results for tools
  --svg FILE             bandwidth against message size, one line per mode
  -h, --help             this text
Exit status: 0, or 1 when a correctness target fails (data errors in a mode
with invalidation, or none in the unsafe control although realloc reused the
address), 2 for bad arguments, 3 when the run itself failed.
)";
  return u;
}

bool ParseArgs(const std::vector<std::string>& args, Options* out,
               std::string* error) {
  Options o;
  bool sizes_given = false, workloads_given = false, warmup_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    std::string value;
    bool has_inline_value = false;
    if (arg.rfind("--", 0) == 0) {
      const size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg.resize(eq);
        has_inline_value = true;
      }
    }
    auto next = [&](std::string* v) {
      if (has_inline_value) {
        *v = value;
        return true;
      }
      if (i + 1 >= args.size()) {
        *error = arg + " needs a value";
        return false;
      }
      *v = args[++i];
      return true;
    };
    auto number = [&](uint64_t lo, uint64_t hi, uint64_t* n) {
      std::string v;
      if (!next(&v)) return false;
      if (!ParseUnsigned(v, n) || *n < lo || *n > hi) {
        *error = arg + ": '" + v + "' is not a number in " +
                 std::to_string(lo) + ".." + std::to_string(hi);
        return false;
      }
      return true;
    };
    uint64_t n = 0;
    std::string v;
    if (arg == "-h" || arg == "--help") {
      o.help = true;
    } else if (arg == "--server") {
      o.role = Role::kServer;
    } else if (arg == "--client") {
      if (!next(&o.host)) return false;
      o.role = Role::kClient;
    } else if (arg == "-p" || arg == "--port") {
      if (!number(1, 65535, &n)) return false;
      o.tcp_port = static_cast<uint16_t>(n);
    } else if (arg == "-d" || arg == "--device") {
      if (!next(&o.device)) return false;
    } else if (arg == "-i" || arg == "--ib-port") {
      if (!number(1, 255, &n)) return false;
      o.ib_port = static_cast<int>(n);
    } else if (arg == "-g" || arg == "--gid-index") {
      if (!number(0, 65535, &n)) return false;
      o.gid_index = static_cast<int>(n);
    } else if (arg == "--poll") {
      if (!next(&v)) return false;
      if (!ParsePolling(v, &o.polling)) {
        *error = "--poll: '" + v + "' is not auto, busy, yield or events";
        return false;
      }
    } else if (arg == "--cpu") {
      if (!next(&v)) return false;
      if (v == "any") {
        o.cpu = -1;
      } else if (ParseUnsigned(v, &n) && n < 4096) {
        o.cpu = static_cast<int>(n);
      } else {
        *error = "--cpu: '" + v + "' is not a CPU number or 'any'";
        return false;
      }
    } else if (arg == "--spin-us") {
      if (!number(0, 1000000, &n)) return false;
      o.spin_us = static_cast<uint32_t>(n);
    } else if (arg == "--modes") {
      if (!next(&v)) return false;
      o.modes.clear();
      for (const std::string& part : Split(v, ',')) {
        Mode mode;
        if (!ParseMode(part, &mode)) {
          *error = "unknown mode '" + part + "'";
          return false;
        }
        if (std::find(o.modes.begin(), o.modes.end(), mode) == o.modes.end())
          o.modes.push_back(mode);
      }
    } else if (arg == "--workloads") {
      if (!next(&v)) return false;
      o.workloads.clear();
      for (const std::string& part : Split(v, ',')) {
        Workload w;
        if (!ParseWorkload(part, &w)) {
          *error = "unknown workload '" + part + "' (reuse, rotate-K, realloc)";
          return false;
        }
        if (std::find(o.workloads.begin(), o.workloads.end(), w) ==
            o.workloads.end())
          o.workloads.push_back(w);
      }
      workloads_given = true;
    } else if (arg == "--sizes") {
      if (!next(&v) || !ParseSizeList(v, &o.sizes, error)) {
        if (error->empty()) *error = "--sizes needs a value";
        return false;
      }
      sizes_given = true;
    } else if (arg == "--iters") {
      if (!number(1, 10000000, &n)) return false;
      o.iterations = static_cast<uint32_t>(n);
    } else if (arg == "--warmup") {
      if (!number(0, 100000, &n)) return false;
      o.warmup = static_cast<uint32_t>(n);
      warmup_given = true;
    } else if (arg == "--passes") {
      if (!number(1, 100, &n)) return false;
      o.passes = static_cast<uint32_t>(n);
    } else if (arg == "--max-entries") {
      if (!number(0, 1u << 24, &n)) return false;
      o.max_entries = n;
    } else if (arg == "--mem-budget") {
      if (!next(&v)) return false;
      if (!ParseSize(v, &o.mem_budget) || o.mem_budget == 0) {
        *error = "--mem-budget: bad size '" + v + "'";
        return false;
      }
    } else if (arg == "--seconds-per-point") {
      if (!next(&v)) return false;
      char* end = nullptr;
      o.seconds_per_point = strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(o.seconds_per_point > 0)) {
        *error = "--seconds-per-point: bad number '" + v + "'";
        return false;
      }
    } else if (arg == "--full-check") {
      o.stamp_stride = 8;
    } else if (arg == "--json") {
      if (!next(&o.json_path)) return false;
    } else if (arg == "--svg") {
      if (!next(&o.svg_path)) return false;
    } else if (arg == "--quick") {
      o.quick = true;
    } else {
      *error = "unknown argument '" + args[i] + "'";
      return false;
    }
  }
  if (o.modes.empty())
    o.modes.assign(std::begin(kAllModes), std::end(kAllModes));
  if (!workloads_given) o.workloads = DefaultWorkloads();
  if (!sizes_given) o.sizes = o.quick ? kQuickSizes : kDefaultSizes;
  if (o.quick && !warmup_given) o.warmup = 1;
  if (o.quick) o.passes = 1;
  if (o.role == Role::kClient && o.host.empty()) {
    *error = "--client needs a host";
    return false;
  }
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
