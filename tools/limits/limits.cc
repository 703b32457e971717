// SPDX-License-Identifier: BSD-2-Clause
//
// regcache-limits, the pure part (see limits.h): /proc text parsers, the
// memlock recommendation and its configuration lines, size and percent
// formatting and the command line's value parsers. No system calls here.

#include "limits.h"

#include <algorithm>
#include <cstdio>

namespace regcache_limits {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string_view TrimLeft(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  return s;
}

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() && (IsSpace(s.back()) || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Leading decimal digits of *s as a uint64_t, consumed from *s; false when
// there are none or they overflow.
bool TakeNumber(std::string_view* s, uint64_t* out) {
  uint64_t v = 0;
  size_t i = 0;
  for (; i < s->size() && IsDigit((*s)[i]); ++i) {
    const uint64_t d = uint64_t((*s)[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (i == 0) return false;
  s->remove_prefix(i);
  *out = v;
  return true;
}

// The rest of the line that starts with "key:", without leading blanks.
std::optional<std::string_view> FieldValue(std::string_view text,
                                           std::string_view key) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (line.size() > key.size() && line.substr(0, key.size()) == key &&
        line[key.size()] == ':') {
      return TrimLeft(line.substr(key.size() + 1));
    }
    pos = end + 1;
  }
  return std::nullopt;
}

}  // namespace

// ---------------------------------------------------------------- /proc text

std::optional<uint64_t> ParseKbField(std::string_view text,
                                     std::string_view key) {
  std::optional<std::string_view> value = FieldValue(text, key);
  if (!value) return std::nullopt;
  std::string_view v = TrimRight(*value);
  uint64_t n;
  if (!TakeNumber(&v, &n)) return std::nullopt;
  v = TrimLeft(v);
  if (v.empty()) return n;
  if (v != "kB") return std::nullopt;
  if (n > UINT64_MAX / kKiB) return std::nullopt;
  return n * kKiB;
}

ProcStatus ParseProcStatus(std::string_view text) {
  ProcStatus st;
  if (auto name = FieldValue(text, "Name"))
    st.name = std::string(TrimRight(*name));
  if (auto uid = FieldValue(text, "Uid")) {
    std::string_view v = *uid;
    uint64_t n;
    if (TakeNumber(&v, &n) && n <= UINT32_MAX) st.uid = uint32_t(n);
  }
  st.vm_pin_bytes = ParseKbField(text, "VmPin");
  st.vm_lck_bytes = ParseKbField(text, "VmLck");
  return st;
}

std::optional<uint64_t> ParseMemTotal(std::string_view meminfo) {
  return ParseKbField(meminfo, "MemTotal");
}

std::optional<ModuleLine> FindModule(std::string_view proc_modules,
                                     std::string_view name) {
  size_t pos = 0;
  while (pos < proc_modules.size()) {
    size_t end = proc_modules.find('\n', pos);
    if (end == std::string_view::npos) end = proc_modules.size();
    std::string_view line = proc_modules.substr(pos, end - pos);
    pos = end + 1;
    // name size refcount deps state address [taint]
    std::vector<std::string_view> f;
    while (!(line = TrimLeft(line)).empty()) {
      size_t w = 0;
      while (w < line.size() && !IsSpace(line[w])) ++w;
      f.push_back(line.substr(0, w));
      line.remove_prefix(w);
    }
    if (f.size() < 5 || f[0] != name) continue;
    ModuleLine m;
    std::string_view size = f[1], refs = f[2];
    if (!TakeNumber(&size, &m.size_bytes) || !size.empty()) return std::nullopt;
    if (!TakeNumber(&refs, &m.refcount) || !refs.empty()) return std::nullopt;
    m.state = std::string(f[4]);
    if (f.size() >= 7) m.taint = std::string(f[6]);
    return m;
  }
  return std::nullopt;
}

// ------------------------------------------------------------ recommendation

Recommendation Recommend(uint64_t mem_total_bytes, uint32_t ranks,
                         uint32_t reserve_basis_points, uint64_t floor_bytes) {
  Recommendation r;
  r.mem_total_bytes = mem_total_bytes;
  r.ranks = ranks == 0 ? 1 : ranks;
  r.reserve_basis_points = std::min<uint32_t>(reserve_basis_points, 9999);
  // 128-bit product: MemTotal x 10000 overflows 64 bits above 1.8 PB.
  r.usable_bytes = uint64_t((unsigned __int128)mem_total_bytes *
                            (10000 - r.reserve_basis_points) / 10000);
  r.share_bytes = r.usable_bytes / r.ranks / kMiB * kMiB;
  r.floor_applied = r.share_bytes < floor_bytes;
  r.recommended_bytes = std::max(r.share_bytes, floor_bytes);
  r.max_bytes_hint = r.recommended_bytes / 4 * 3 / kMiB * kMiB;
  return r;
}

std::string LimitsConfLines(uint64_t bytes, std::string_view group) {
  const std::string kib = std::to_string(bytes / kKiB);
  const std::string who = "@" + std::string(group);
  return who + " soft memlock " + kib + "\n" + who + " hard memlock " + kib +
         "\n";
}

std::string SystemdDropIn(uint64_t bytes) {
  return "[Service]\nLimitMEMLOCK=" + std::to_string(bytes) + "\n";
}

std::string SlurmHint(uint64_t bytes) {
  return "# slurm.conf: tasks take MEMLOCK from slurmd, not from the shell "
         "that ran sbatch/srun\n"
         "PropagateResourceLimitsExcept=MEMLOCK\n"
         "# /etc/systemd/system/slurmd.service.d/memlock.conf on the compute "
         "nodes (systemctl daemon-reload; systemctl restart slurmd)\n" +
         SystemdDropIn(bytes);
}

// ------------------------------------------------------------------- output

std::string FormatBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B",   "KiB", "MiB", "GiB",
                                       "TiB", "PiB", "EiB"};
  int u = 0;
  uint64_t unit = 1;
  while (u < 6 && bytes / unit >= 1024) {
    unit *= 1024;
    ++u;
  }
  if (bytes % unit == 0) return std::to_string(bytes / unit) + " " + kUnits[u];
  const uint64_t tenths = uint64_t((unsigned __int128)bytes * 10 / unit);
  return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + " " +
         kUnits[u];
}

std::string FormatPercent(uint32_t basis_points) {
  std::string s = std::to_string(basis_points / 100);
  const uint32_t frac = basis_points % 100;
  if (frac != 0) {
    s += '.';
    s += char('0' + frac / 10);
    if (frac % 10 != 0) s += char('0' + frac % 10);
  }
  return s + "%";
}

std::string FormatMode(uint32_t mode) {
  char buf[16];
  snprintf(buf, sizeof buf, "0%03o", mode & 07777);
  return buf;
}

const char* KmodReasonName(int reason) {
  static const char* const kNames[] = {"none",    "unmap",   "clear",
                                       "release", "migrate", "exclusive"};
  if (reason >= 0 && reason < int(sizeof kNames / sizeof kNames[0]))
    return kNames[reason];
  return "unknown";
}

// ----------------------------------------------------- command-line values

bool ParsePercent(std::string_view text, uint32_t* basis_points) {
  if (!text.empty() && text.back() == '%') text.remove_suffix(1);
  uint64_t whole;
  if (text.size() > 8 || !TakeNumber(&text, &whole)) return false;
  uint64_t frac = 0;
  if (!text.empty() && text.front() == '.') {
    text.remove_prefix(1);
    if (text.empty() || text.size() > 2) return false;
    for (size_t i = 0; i < 2; ++i) {
      frac *= 10;
      if (i < text.size()) {
        if (!IsDigit(text[i])) return false;
        frac += uint64_t(text[i] - '0');
      }
    }
    text = {};
  }
  if (!text.empty()) return false;
  const uint64_t bp = whole * 100 + frac;
  if (bp >= 10000) return false;
  *basis_points = uint32_t(bp);
  return true;
}

bool ParseSize(std::string_view text, uint64_t* bytes) {
  uint64_t n;
  if (!TakeNumber(&text, &n)) return false;
  uint64_t unit = 1;
  if (!text.empty()) {
    switch (text.front()) {
      case 'k':
      case 'K':
        unit = kKiB;
        break;
      case 'm':
      case 'M':
        unit = kMiB;
        break;
      case 'g':
      case 'G':
        unit = kGiB;
        break;
      case 't':
      case 'T':
        unit = kGiB * 1024;
        break;
      case 'B':
        unit = 1;
        break;
      default:
        return false;
    }
    text.remove_prefix(1);
    if (unit != 1 && text == "iB") text = {};
    if (!text.empty()) return false;
  }
  if (n == 0 || n > UINT64_MAX / unit) return false;
  *bytes = n * unit;
  return true;
}

}  // namespace regcache_limits
