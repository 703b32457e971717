// SPDX-License-Identifier: BSD-2-Clause
// regcache-pingpong's vocabulary and command line: the registration modes,
// the workloads, message sizes ("4K", "64M"), the options, and the plan
// (every point the run measures, in order) that the client sends the server
// so that both ends walk the same points with the same parameters.
#ifndef REGCACHE_TOOLS_PINGPONG_OPTIONS_H_
#define REGCACHE_TOOLS_PINGPONG_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace regcache_pingpong {

// How each endpoint obtains the registrations of its buffers.
enum class Mode {
  kPerMessage,  // ibv_reg_mr before, ibv_dereg_mr after every message
  kKmod,        // regcache, REGCACHE_MONITOR=kmod
  kUffd,        // regcache, REGCACHE_MONITOR=uffd
  kNone,        // regcache, REGCACHE_MONITOR=none: the unsafe control
  kOnce,        // every buffer registered once up front: the physical limit
  kOdp,         // regcache over on-demand-paging MRs (devices with ODP)
  kPool,        // buffers from regcache_mem_alloc (pin-once memory), freed
                // to the pool and allocated again in realloc
};
inline constexpr Mode kAllModes[] = {
    Mode::kPerMessage, Mode::kKmod, Mode::kUffd, Mode::kNone,
    Mode::kOnce,       Mode::kPool, Mode::kOdp};
const char* ModeName(Mode mode);  // "register-per-message", "regcache-kmod"...
bool ParseMode(const std::string& text, Mode* out);
bool IsCacheMode(Mode mode);      // hits mean something
bool HasInvalidation(Mode mode);  // every mode but the unsafe control

// What happens to the buffers between messages.
struct Workload {
  enum class Kind { kReuse, kRotate, kRealloc };
  Kind kind = Kind::kReuse;
  uint32_t buffers = 1;      // K for rotate: buffers per direction per endpoint
  std::string Name() const;  // "reuse", "rotate-8", "realloc"
  bool operator==(const Workload&) const = default;
};
bool ParseWorkload(const std::string& text, Workload* out);

// "4096", "4K", "4k", "4KiB", "64M", "1G" (powers of 1024).
bool ParseSize(const std::string& text, uint64_t* out);
// Comma-separated sizes, each 64 bytes .. 1 GiB, no duplicates; kept in
// the given order.
bool ParseSizeList(const std::string& text, std::vector<uint64_t>* out,
                   std::string* error);
std::string FormatSize(uint64_t bytes);  // "4K", "64M", "1000"

enum class Role { kLoopback, kServer, kClient };

// How an endpoint waits for completions: spinning on the CQ (perftest's
// default, the lowest latency when each endpoint has a core to itself),
// spinning with sched_yield() (a software device's protocol work, which
// the kernel runs on the same CPUs, e.g. in ksoftirqd, then gets them at
// once rather than at the next scheduler tick), or sleeping on a
// completion channel. Auto: yield on software devices (rxe, siw), busy on
// hardware.
enum class Polling { kAuto, kBusy, kYield, kEvents };
const char* PollingName(Polling polling);  // "auto", "busy", "yield", ...
bool ParsePolling(const std::string& text, Polling* out);

struct Options {
  Role role = Role::kLoopback;
  std::string host;  // --client HOST
  uint16_t tcp_port = 18515;
  std::string device;                // -d; "" = first device
  int ib_port = 1;                   // -i
  int gid_index = -1;                // -g; -1 = the port's RoCE v2 IPv4 GID
  Polling polling = Polling::kAuto;  // --poll
  uint32_t spin_us = 50;             // --spin-us: events spin first
  int cpu = -1;  // --cpu: run both endpoints on this CPU; -1 = anywhere
  std::vector<Mode> modes;  // default: all
  std::vector<Workload> workloads;
  std::vector<uint64_t> sizes;
  uint32_t iterations = 0;    // round trips per point; 0 = scaled with size
  uint32_t warmup = 2;        // round trips (short ones: kWarmupBytes)
  uint32_t passes = 20;       // points run in up to this many passes
  uint64_t max_entries = 32;  // the caches' REGCACHE_MAX_ENTRIES
  uint64_t mem_budget = 256ull << 20;  // buffer bytes per endpoint
  double seconds_per_point = 6;        // stop a point early after this long
  size_t stamp_stride = 0;  // 0 = kDefaultStampStride; --full-check: 8
  // --reg-time SIZE: before the ping-pong, time registering SIZE bytes,
  // pinned and ODP (kRegTimeRepetitions each); 0 = not measured.
  uint64_t reg_time_size = 0;
  std::string json_path;
  std::string svg_path;
  bool quick = false;
  bool help = false;
  bool version = false;
};

// Parses argv[1..]; given twice, an option's last value counts. On bad
// input returns false with *error naming the option and what it accepts.
bool ParseArgs(const std::vector<std::string>& args, Options* out,
               std::string* error);
std::string Usage(const char* program);  // the --help text

// Round trips measured at `size` unless --iters: about 16 MiB of payload
// per direction, at least 2 and at most 100, and 1 from 64 MiB on (the
// default run then takes a few minutes in the qemu rig). --quick: 6.
uint32_t IterationsFor(uint64_t size, const Options& options);

// A warm-up round trip obtains the registrations of the whole buffers, as
// a measured one does, but writes only this many bytes (fewer if the
// message is smaller), so that warming up costs little even at 64M.
inline constexpr uint64_t kWarmupBytes = 4096;
uint64_t WireBytes(uint64_t size, bool warmup);

// One measurement: a workload, a mode and a size, or one pass of it.
// Points of many round trips are measured in passes, the modes taking
// turns (pass 1 of every mode, then pass 2, ...), so that a burst of noise
// on a shared machine hits every mode alike rather than one.
struct PointSpec {
  Workload workload;
  Mode mode = Mode::kPerMessage;
  uint64_t size = 0;
  uint32_t pass = 0;        // 0 .. passes-1
  uint32_t iterations = 0;  // measured round trips in this pass (at most)
  uint32_t warmup = 0;      // round trips before the measurement
  // Empty if the point runs; else why not ("n/a: ...", "skipped: ...").
  std::string skip;
};

struct Plan {
  size_t stamp_stride = 0;
  uint64_t max_entries = 0;
  double seconds_per_point = 0;
  std::vector<PointSpec> points;
  // The client's alone (never sent): Options::reg_time_size.
  uint64_t reg_time_size = 0;
};

// --reg-time: registrations timed per kind of memory and registration.
inline constexpr uint32_t kRegTimeRepetitions = 5;

// Every workload x size x pass x mode, in that nesting (modes side by side
// at each size). register-once in realloc is "n/a"; points whose buffers
// exceed the memory budget are "skipped" (one entry each, in pass 0).
Plan MakePlan(const Options& options);

// Buffer bytes one endpoint maps for a point (send + receive).
uint64_t EndpointBytes(const Workload& workload, uint64_t size);

// The plan as text (one line per point) and back.
std::string SerializePlan(const Plan& plan);
bool ParsePlan(const std::string& text, Plan* out, std::string* error);

}  // namespace regcache_pingpong

#endif  // REGCACHE_TOOLS_PINGPONG_OPTIONS_H_
