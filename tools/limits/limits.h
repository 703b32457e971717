// SPDX-License-Identifier: BSD-2-Clause
//
// regcache-limits, the pure part: parsers for /proc text (status, meminfo,
// modules), the memlock recommendation and the configuration lines it
// prints (limits.d, systemd, Slurm), sizes and the command line (the
// parsing itself is in options.cc, with CLI11). Nothing here reads the system,
// so everything is unit-tested with text fixtures (limits_test.cc). What reads
// the system is in report.h.
//
// Sizes are bytes in uint64_t; the kernel's "kB" in /proc means KiB.
#ifndef REGCACHE_TOOLS_LIMITS_LIMITS_H_
#define REGCACHE_TOOLS_LIMITS_LIMITS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace regcache_limits {

inline constexpr uint64_t kKiB = uint64_t{1} << 10;
inline constexpr uint64_t kMiB = uint64_t{1} << 20;
inline constexpr uint64_t kGiB = uint64_t{1} << 30;

// The recommendation never goes below this: with less, a registration
// cache holds too little to be useful and large messages cannot be
// registered at all.
inline constexpr uint64_t kFloorBytes = 64 * kMiB;
// Share of MemTotal kept for the OS, page cache and memory that is not
// pinned, in basis points (1/100 of a percent): 25%.
inline constexpr uint32_t kDefaultReserveBasisPoints = 2500;
// Processes listed by --all unless --top says otherwise.
inline constexpr uint32_t kDefaultTop = 10;

// ---------------------------------------------------------------- /proc text

// The value of a "Key:   1234 kB" line of /proc/<pid>/status or
// /proc/meminfo, in bytes. The key must start a line and be followed by ':'.
// A value without a unit is taken as bytes; "kB" is KiB. nullopt when the
// line is missing or its value is not a number (kernel threads have no
// VmPin line, for instance).
std::optional<uint64_t> ParseKbField(std::string_view text,
                                     std::string_view key);

// The fields regcache-limits reads from /proc/<pid>/status.
struct ProcStatus {
  std::string name;                      // "Name:" (the comm, may be empty)
  std::optional<uint32_t> uid;           // real uid, first field of "Uid:"
  std::optional<uint64_t> vm_pin_bytes;  // pinned by drivers (ibv_reg_mr)
  std::optional<uint64_t> vm_lck_bytes;  // mlock()ed
};
ProcStatus ParseProcStatus(std::string_view text);

// MemTotal from /proc/meminfo, in bytes.
std::optional<uint64_t> ParseMemTotal(std::string_view meminfo);

// One module's line of /proc/modules:
//   "regcache 28672 0 - Live 0xffffffffc0a3e000 (OE)"
struct ModuleLine {
  uint64_t size_bytes = 0;
  uint64_t refcount = 0;  // processes holding /dev/regcache open, and users
  std::string state;      // Live, Loading, Unloading
  std::string taint;      // "(OE)" or ""
};
std::optional<ModuleLine> FindModule(std::string_view proc_modules,
                                     std::string_view name);

// ------------------------------------------------------------ recommendation

struct Recommendation {
  uint64_t mem_total_bytes = 0;
  uint32_t ranks = 0;
  uint32_t reserve_basis_points = 0;
  uint64_t usable_bytes = 0;       // MemTotal x (1 - reserve), bytes
  uint64_t share_bytes = 0;        // usable / ranks, rounded down to a MiB
  uint64_t recommended_bytes = 0;  // max(share, floor)
  bool floor_applied = false;      // the floor is above the share
  uint64_t max_bytes_hint = 0;  // REGCACHE_MAX_BYTES: 3/4 of it, MiB multiple
};

// Per-process memlock limit for `ranks` processes sharing `mem_total_bytes`
// with `reserve_basis_points` of it kept back. ranks must be >= 1 and
// reserve < 10000 (ParseArgs guarantees both).
Recommendation Recommend(uint64_t mem_total_bytes, uint32_t ranks,
                         uint32_t reserve_basis_points,
                         uint64_t floor_bytes = kFloorBytes);

// The configuration text for a limit of `bytes` (rounded down to a KiB for
// limits.conf, which counts KiB). Each returns complete lines ending in '\n'.
//   /etc/security/limits.d/90-rdma.conf: "@rdma soft memlock N" and "hard"
std::string LimitsConfLines(uint64_t bytes, std::string_view group = "rdma");
//   a systemd drop-in: "[Service]" and "LimitMEMLOCK=<bytes>"
std::string SystemdDropIn(uint64_t bytes);
//   slurm.conf and the slurmd drop-in that the tasks inherit from
std::string SlurmHint(uint64_t bytes);

// ------------------------------------------------------------------- output

// "0 B", "64 KiB", "1.5 GiB": binary units, one decimal when not whole.
std::string FormatBytes(uint64_t bytes);
// "25%", "12.5%", "0.25%" from basis points.
std::string FormatPercent(uint32_t basis_points);
// Permission bits as chmod takes them: "0660".
std::string FormatMode(uint32_t mode);
// A REGCACHE_KMOD_REASON_* value as a name ("unmap", "clear", ...).
const char* KmodReasonName(int reason);

// ------------------------------------------------------------- command line

struct Options {
  bool help = false;
  bool version = false;
  bool json = false;
  bool all = false;  // list processes by VmPin
  bool env = false;  // print the REGCACHE_* variables in effect instead
  uint32_t top = kDefaultTop;              // how many --all lists
  std::optional<uint32_t> ranks_per_node;  // default: online CPUs
  uint32_t reserve_basis_points = kDefaultReserveBasisPoints;
  std::optional<uint64_t> mem_total_bytes;  // plan for another node size
};

// Parses argv[1..] (options.cc): --json, --all, --top N, --ranks-per-node N,
// --reserve PCT, --mem-total SIZE, --env, --version, -h/--help; "--flag=value"
// or
// "--flag value"; given twice, the last counts. Returns false with *error
// set (naming the option and what it accepts) on an unknown option, a
// missing value or a bad one.
bool ParseArgs(const std::vector<std::string>& args, Options* options,
               std::string* error);
std::string Usage(const std::string& program);  // the --help text

// The value parsers ParseArgs uses (counts: regcache_tools::ParseCount).
// A percentage in [0, 100): "25", "25%", "12.5", "0.25" (at most two
// decimals), as basis points.
bool ParsePercent(std::string_view text, uint32_t* basis_points);
// A size: bytes, or a number with K/M/G/T (optionally "iB" or "B"), binary.
bool ParseSize(std::string_view text, uint64_t* bytes);

}  // namespace regcache_limits

#endif  // REGCACHE_TOOLS_LIMITS_LIMITS_H_
