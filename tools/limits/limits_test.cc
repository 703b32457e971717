// SPDX-License-Identifier: BSD-2-Clause
//
// Tests of regcache-limits: the /proc parsers on text fixtures, the
// recommendation arithmetic, the limits.d/systemd/Slurm lines, the JSON
// output (parsed back), the command line, the probes on fixture folders,
// and one run of the real program (REGCACHE_LIMITS_BINARY) with --json.

#include "limits.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command_line.h"
#include "regcache/regcache.h"
#include "report.h"
#include "run_command.h"

namespace regcache_limits {
namespace {

// ------------------------------------------------------------------ /proc

constexpr char kStatusPinned[] =
    "Name:\tmpi_rank\n"
    "Umask:\t0022\n"
    "State:\tS (sleeping)\n"
    "Uid:\t1000\t1000\t1000\t1000\n"
    "Gid:\t1000\t1000\t1000\t1000\n"
    "VmPeak:\t 8413236 kB\n"
    "VmLck:\t     256 kB\n"
    "VmPin:\t 2097152 kB\n"
    "VmHWM:\t  123456 kB\n";

constexpr char kStatusKernelThread[] =
    "Name:\tkworker/0:1-events\n"
    "State:\tI (idle)\n"
    "Uid:\t0\t0\t0\t0\n"
    "Threads:\t1\n";

TEST(ProcStatus, ReadsVmPinVmLckNameAndUidInBytes) {
  const ProcStatus st = ParseProcStatus(kStatusPinned);
  EXPECT_EQ(st.name, "mpi_rank");
  ASSERT_TRUE(st.uid.has_value());
  EXPECT_EQ(*st.uid, 1000u);
  ASSERT_TRUE(st.vm_pin_bytes.has_value());
  EXPECT_EQ(*st.vm_pin_bytes, 2097152ull * 1024);
  ASSERT_TRUE(st.vm_lck_bytes.has_value());
  EXPECT_EQ(*st.vm_lck_bytes, 256ull * 1024);
}

TEST(ProcStatus, KernelThreadHasNoVmFields) {
  const ProcStatus st = ParseProcStatus(kStatusKernelThread);
  EXPECT_EQ(st.name, "kworker/0:1-events");
  EXPECT_FALSE(st.vm_pin_bytes.has_value());
  EXPECT_FALSE(st.vm_lck_bytes.has_value());
}

TEST(ProcStatus, KeyMustStartALineAndEndInColon) {
  // "VmPinned" and an indented "VmPin" are not the VmPin line.
  EXPECT_FALSE(ParseKbField("VmPinned:\t4 kB\n  VmPin:\t8 kB\n", "VmPin"));
  EXPECT_EQ(ParseKbField("XVmPin:\t1 kB\nVmPin:\t8 kB\n", "VmPin"), 8u * 1024);
}

TEST(ProcStatus, UnitsAndMalformedValues) {
  EXPECT_EQ(ParseKbField("VmPin:\t0 kB\n", "VmPin"), 0u);
  EXPECT_EQ(ParseKbField("VmPin:\t0 kB", "VmPin"), 0u);  // no final newline
  EXPECT_EQ(ParseKbField("VmPin:  12 kB  \r\n", "VmPin"), 12u * 1024);
  EXPECT_EQ(ParseKbField("HugePages_Total:    17\n", "HugePages_Total"), 17u);
  EXPECT_FALSE(ParseKbField("VmPin:\t12 MB\n", "VmPin"));  // unknown unit
  EXPECT_FALSE(ParseKbField("VmPin:\tlots kB\n", "VmPin"));
  EXPECT_FALSE(ParseKbField("VmPin:\n", "VmPin"));
  EXPECT_FALSE(ParseKbField("VmPin:\t-4 kB\n", "VmPin"));
  EXPECT_FALSE(ParseKbField("VmPin:\t99999999999999999999 kB\n", "VmPin"));
  EXPECT_FALSE(
      ParseKbField("VmPin:\t18014398509481984 kB\n", "VmPin"));  // 2^54 KiB
  EXPECT_FALSE(ParseKbField("", "VmPin"));
}

TEST(Meminfo, ReadsMemTotal) {
  constexpr char kMeminfo[] =
      "MemTotal:       263842652 kB\n"
      "MemFree:        250000000 kB\n"
      "MemAvailable:   255000000 kB\n";
  EXPECT_EQ(ParseMemTotal(kMeminfo), 263842652ull * 1024);
  EXPECT_FALSE(ParseMemTotal("MemFree:  1 kB\n"));
}

TEST(ProcModules, FindsTheModuleByExactName) {
  constexpr char kModules[] =
      "regcache_other 16384 0 - Live 0xffffffffc0b00000\n"
      "regcache 28672 2 - Live 0xffffffffc0a3e000 (OE)\n"
      "rdma_rxe 155648 0 - Live 0xffffffffc0a00000\n";
  auto m = FindModule(kModules, "regcache");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->size_bytes, 28672u);
  EXPECT_EQ(m->refcount, 2u);
  EXPECT_EQ(m->state, "Live");
  EXPECT_EQ(m->taint, "(OE)");
  auto rxe = FindModule(kModules, "rdma_rxe");
  ASSERT_TRUE(rxe.has_value());
  EXPECT_EQ(rxe->taint, "");
  EXPECT_FALSE(FindModule(kModules, "regcach"));
  EXPECT_FALSE(FindModule("", "regcache"));
}

// --------------------------------------------------------- recommendation

TEST(Recommend, SharesMemTotalMinusReserveAmongRanks) {
  // 256 GiB, 64 ranks, 25%: 192 GiB / 64 = 3 GiB exactly.
  const Recommendation r = Recommend(256 * kGiB, 64, 2500);
  EXPECT_EQ(r.usable_bytes, 192 * kGiB);
  EXPECT_EQ(r.share_bytes, 3 * kGiB);
  EXPECT_EQ(r.recommended_bytes, 3 * kGiB);
  EXPECT_FALSE(r.floor_applied);
  EXPECT_EQ(r.max_bytes_hint, 3 * kGiB / 4 * 3);
}

TEST(Recommend, RoundsDownToAMiB) {
  // A MemTotal as the kernel reports it: 263842652 kB, 128 ranks, 25%.
  const uint64_t mem = 263842652ull * kKiB;
  const Recommendation r = Recommend(mem, 128, 2500);
  const uint64_t usable = mem / 4 * 3;  // exact: mem is a multiple of 4
  EXPECT_EQ(r.usable_bytes, usable);
  EXPECT_EQ(r.share_bytes, usable / 128 / kMiB * kMiB);
  EXPECT_EQ(r.share_bytes % kMiB, 0u);
  EXPECT_LE(r.share_bytes, usable / 128);
  EXPECT_GT(r.share_bytes + kMiB, usable / 128);
  EXPECT_EQ(r.recommended_bytes % kMiB, 0u);
  EXPECT_EQ(r.max_bytes_hint % kMiB, 0u);
}

TEST(Recommend, ReserveInBasisPoints) {
  // 100 GiB, 10 ranks: 0% -> 10 GiB; 12.5% -> 8.75 GiB = 8960 MiB;
  // 99.99% -> 10.24 MiB in all, 1 MiB each, below the floor.
  EXPECT_EQ(Recommend(100 * kGiB, 10, 0).share_bytes, 10 * kGiB);
  EXPECT_EQ(Recommend(100 * kGiB, 10, 1250).share_bytes, 8960 * kMiB);
  const Recommendation tiny = Recommend(100 * kGiB, 10, 9999);
  EXPECT_EQ(tiny.share_bytes, 1 * kMiB);
  EXPECT_TRUE(tiny.floor_applied);
  EXPECT_EQ(tiny.recommended_bytes, kFloorBytes);
}

TEST(Recommend, FloorWhenTheShareIsSmall) {
  // 4 GiB, 64 ranks, 25%: 48 MiB each < 64 MiB floor.
  const Recommendation r = Recommend(4 * kGiB, 64, 2500);
  EXPECT_EQ(r.share_bytes, 48 * kMiB);
  EXPECT_TRUE(r.floor_applied);
  EXPECT_EQ(r.recommended_bytes, kFloorBytes);
  EXPECT_EQ(r.max_bytes_hint, 48 * kMiB);
  // Exactly at the floor is not "applied".
  const Recommendation at = Recommend(4 * kGiB, 48, 2500);
  EXPECT_EQ(at.share_bytes, 64 * kMiB);
  EXPECT_FALSE(at.floor_applied);
}

TEST(Recommend, HugeNodesDoNotOverflow) {
  // 16 EiB - 1: MemTotal x 10000 needs more than 64 bits.
  const Recommendation r = Recommend(UINT64_MAX, 1, 2500);
  EXPECT_EQ(r.usable_bytes,
            uint64_t((unsigned __int128)UINT64_MAX * 7500 / 10000));
  EXPECT_EQ(r.share_bytes % kMiB, 0u);
}

TEST(Recommend, OneRankAndACustomFloor) {
  const Recommendation r = Recommend(1 * kGiB, 1, 5000, 1 * kGiB);
  EXPECT_EQ(r.share_bytes, 512 * kMiB);
  EXPECT_TRUE(r.floor_applied);
  EXPECT_EQ(r.recommended_bytes, 1 * kGiB);
}

// ------------------------------------------------------ configuration text

TEST(ConfigLines, LimitsConfCountsKiB) {
  EXPECT_EQ(LimitsConfLines(3 * kGiB),
            "@rdma soft memlock 3145728\n@rdma hard memlock 3145728\n");
  EXPECT_EQ(LimitsConfLines(64 * kMiB + 1023, "hpc"),
            "@hpc soft memlock 65536\n@hpc hard memlock 65536\n");
}

TEST(ConfigLines, SystemdTakesBytes) {
  EXPECT_EQ(SystemdDropIn(3 * kGiB), "[Service]\nLimitMEMLOCK=3221225472\n");
}

TEST(ConfigLines, SlurmPropagatesEverythingButMemlockAndSetsSlurmd) {
  const std::string s = SlurmHint(64 * kMiB);
  EXPECT_NE(s.find("\nPropagateResourceLimitsExcept=MEMLOCK\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("slurmd.service.d"), std::string::npos) << s;
  EXPECT_NE(s.find("[Service]\nLimitMEMLOCK=67108864\n"), std::string::npos)
      << s;
  // Every line is either a comment or a setting.
  EXPECT_EQ(s.back(), '\n');
}

// ------------------------------------------------------------------ output

TEST(Format, BytesInBinaryUnits) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(64 * kKiB), "64 KiB");
  EXPECT_EQ(FormatBytes(3 * kGiB / 2), "1.5 GiB");
  EXPECT_EQ(FormatBytes(8 * kMiB), "8 MiB");
  EXPECT_EQ(FormatBytes(263842652ull * kKiB), "251.6 GiB");
  EXPECT_EQ(FormatBytes(UINT64_MAX), "15.9 EiB");
}

TEST(Format, ModeAndReasonNames) {
  EXPECT_EQ(FormatMode(0660), "0660");
  EXPECT_EQ(FormatMode(0100600), "0600");  // file type bits dropped
  EXPECT_EQ(FormatMode(01777), "01777");
  EXPECT_STREQ(KmodReasonName(1), "unmap");
  EXPECT_STREQ(KmodReasonName(5), "exclusive");
  EXPECT_STREQ(KmodReasonName(7), "unknown");
  EXPECT_STREQ(KmodReasonName(-1), "unknown");
}

TEST(Format, PercentFromBasisPoints) {
  EXPECT_EQ(FormatPercent(2500), "25%");
  EXPECT_EQ(FormatPercent(1250), "12.5%");
  EXPECT_EQ(FormatPercent(1205), "12.05%");
  EXPECT_EQ(FormatPercent(25), "0.25%");
  EXPECT_EQ(FormatPercent(0), "0%");
}

// A JSON text parsed; a parse error fails the calling test.
nlohmann::json Parsed(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << text;
  return j;
}

TEST(Json, StringsComeBackAsGivenAndInvalidUtf8AsReplacementCharacters) {
  const std::string fffd = "\xef\xbf\xbd";  // U+FFFD
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"plain", "plain"},
      {"a\"b\\c/", "a\"b\\c/"},
      {"t\tn\nr\rb\bf\f", "t\tn\nr\rb\bf\f"},
      {std::string("nul\0x", 5), std::string("nul\0x", 5)},
      {"\x1f\x7f", "\x1f\x7f"},
      {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
       "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
      {"\xff", fffd},
      {"x\xffy", "x" + fffd + "y"},
      {"\xc3", fffd},                                   // truncated
      {"\xc0\xaf", fffd + fffd},                        // overlong '/'
      {"\xed\xa0\x80", fffd + fffd + fffd},             // surrogate
      {"\xf4\x90\x80\x80", fffd + fffd + fffd + fffd},  // above U+10FFFF
  };
  for (const auto& [given, expected] : cases) {
    Report r;
    r.hostname = given;  // a process name may hold any bytes too
    const std::string text = RenderJson(r);
    for (char c : text)
      EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 && c != '\n') << text;
    EXPECT_EQ(Parsed(text)["host"], expected) << text;
  }
}

// Every leaf of `j` under `path`, with its path ("module.device.mode").
void Leaves(const nlohmann::json& j, const std::string& path,
            std::vector<std::pair<std::string, nlohmann::json>>* out) {
  if (j.is_object()) {
    for (const auto& [key, value] : j.items())
      Leaves(value, path.empty() ? key : path + "." + key, out);
  } else if (j.is_array()) {
    for (const auto& value : j) Leaves(value, path + "[]", out);
  } else {
    out->emplace_back(path, j);
  }
}

TEST(Json, NumbersAreNumbers) {
  Report r;
  r.version = "0.1";
  r.memlock.ok = true;
  r.memlock.soft_bytes = 64 * kKiB;
  r.memlock.hard_unlimited = true;
  r.node.mem_total_bytes = 256 * kGiB;
  r.node.numa_nodes = 2;
  r.node.cpus_online = 64;
  r.processes = ProcessScan{};
  r.processes->top.push_back({42, "rank0", "alice", 8 * kMiB, 0});
  r.module.proc_modules_read = true;
  r.module.loaded = ModuleLine{28672, 2, "Live", "(OE)"};
  r.module.max_ranges_param = "1048576";
  r.module.ring_entries_param = "2048";
  r.module.device_exists = true;
  r.module.device_mode = 0660;
  r.module.opened = true;
  r.module.abi_version = 3;
  r.module.stats_read = true;
  r.recommendation = Recommend(256 * kGiB, 64, 1250);
  const nlohmann::json j = Parsed(RenderJson(r));
  EXPECT_EQ(j["recommendation"]["reserve_percent"], 12.5);
  EXPECT_EQ(j["module"]["param_max_ranges"], 1048576);
  EXPECT_EQ(j["module"]["param_ring_entries"], 2048);
  EXPECT_EQ(j["memlock"]["soft_bytes"], 65536);
  EXPECT_EQ(j["memlock"]["hard_bytes"], "unlimited");
  // No number hides in a string: only the version and the permission bits
  // (as chmod takes them) look numeric, and they are names, not amounts.
  std::vector<std::pair<std::string, nlohmann::json>> leaves;
  Leaves(j, "", &leaves);
  size_t numbers = 0;
  for (const auto& [path, value] : leaves) {
    numbers += value.is_number();
    if (!value.is_string() || path == "regcache_version" ||
        path == "module.device.mode")
      continue;
    const std::string text = value.get<std::string>();
    EXPECT_FALSE(!text.empty() &&
                 text.find_first_not_of("0123456789.%") == std::string::npos)
        << path << ": \"" << text << "\"";
  }
  EXPECT_GT(numbers, 40u);
}

// ------------------------------------------------------------ command line

bool Parse(std::vector<std::string> args, Options* o, std::string* error) {
  return ParseArgs(args, o, error);
}

TEST(Args, DefaultsWithNoArguments) {
  Options o;
  std::string error;
  ASSERT_TRUE(Parse({}, &o, &error)) << error;
  EXPECT_FALSE(o.json);
  EXPECT_FALSE(o.all);
  EXPECT_FALSE(o.help);
  EXPECT_FALSE(o.ranks_per_node.has_value());
  EXPECT_EQ(o.reserve_basis_points, kDefaultReserveBasisPoints);
  EXPECT_EQ(o.top, kDefaultTop);
  EXPECT_FALSE(o.mem_total_bytes.has_value());
}

TEST(Args, AcceptsBothValueForms) {
  Options o;
  std::string error;
  ASSERT_TRUE(Parse({"--json", "--all", "--ranks-per-node", "48",
                     "--reserve=12.5%", "--top=3", "--mem-total", "512G"},
                    &o, &error))
      << error;
  EXPECT_TRUE(o.json);
  EXPECT_TRUE(o.all);
  EXPECT_EQ(o.ranks_per_node, 48u);
  EXPECT_EQ(o.reserve_basis_points, 1250u);
  EXPECT_EQ(o.top, 3u);
  EXPECT_EQ(o.mem_total_bytes, 512 * kGiB);
  ASSERT_TRUE(Parse({"-h"}, &o, &error));
  EXPECT_TRUE(o.help);
  ASSERT_TRUE(Parse({"--reserve", "0"}, &o, &error));
  EXPECT_EQ(o.reserve_basis_points, 0u);
}

TEST(Args, RejectsUnknownFlagsAndBadNumbersNamingThem) {
  const std::vector<std::vector<std::string>> bad = {
      {"--jsn"},
      {"-x"},
      {"extra"},
      {"--json=1"},
      {"--ranks-per-node"},
      {"--ranks-per-node", "0"},
      {"--ranks-per-node", "-4"},
      {"--ranks-per-node", "4x"},
      {"--ranks-per-node", ""},
      {"--ranks-per-node", "99999999999"},
      {"--reserve", "100"},
      {"--reserve", "101%"},
      {"--reserve", "12.345"},
      {"--reserve", "12."},
      {"--reserve", ".5"},
      {"--reserve", "abc"},
      {"--reserve", "-1"},
      {"--top", "0"},
      {"--mem-total", "0"},
      {"--mem-total", "12Q"},
      {"--mem-total", "12GB"},
      {"--mem-total", "99999999999T"},
  };
  for (const auto& args : bad) {
    Options o;
    std::string error;
    EXPECT_FALSE(Parse(args, &o, &error)) << args[0];
    const std::string flag = args[0].substr(0, args[0].find('='));
    EXPECT_NE(error.find(flag), std::string::npos) << error;
  }
}

TEST(Args, ErrorsSayWhatTheOptionAccepts) {
  Options o;
  std::string error;
  EXPECT_FALSE(Parse({"--top", "0"}, &o, &error));
  EXPECT_EQ(error, "--top: '0' is not a number from 1 to 100000");
  EXPECT_FALSE(Parse({"--reserve=abc"}, &o, &error));
  EXPECT_NE(error.find("0 <= PCT < 100"), std::string::npos) << error;
  EXPECT_FALSE(Parse({"--mem-total", "12Q"}, &o, &error));
  EXPECT_NE(error.find("K, M, G or T"), std::string::npos) << error;
  EXPECT_FALSE(Parse({"--ranks-per-node"}, &o, &error));
  EXPECT_EQ(error, "--ranks-per-node needs a value (N)");
  EXPECT_FALSE(Parse({"--json=1"}, &o, &error));
  EXPECT_EQ(error, "--json takes no value");
  EXPECT_FALSE(Parse({"--jsn"}, &o, &error));
  EXPECT_EQ(error, "unknown option '--jsn'");
}

TEST(Args, TheLastValueCountsAndVersionIsAnOption) {
  Options o;
  std::string error;
  ASSERT_TRUE(Parse({"--top", "3", "--top=5"}, &o, &error)) << error;
  EXPECT_EQ(o.top, 5u);
  EXPECT_FALSE(o.version);
  ASSERT_TRUE(Parse({"--version"}, &o, &error)) << error;
  EXPECT_TRUE(o.version);
  EXPECT_FALSE(o.help);
}

TEST(Args, HelpListsEveryOptionWithItsValue) {
  const std::string help = Usage("regcache-limits");
  EXPECT_EQ(help.rfind("usage: regcache-limits [--json]", 0), 0u) << help;
  for (const char* line :
       {"\n  --json ", "\n  --all ", "\n  --top N ", "\n  --ranks-per-node N ",
        "\n  --reserve PCT ", "\n  --mem-total SIZE ", "\n  --version ",
        "\n  -h, --help ", "Exit status: 0, or 2 for a usage error"})
    EXPECT_NE(help.find(line), std::string::npos) << line << "\n" << help;
}

TEST(Args, ValueParsers) {
  uint64_t n;
  EXPECT_TRUE(regcache_tools::ParseCount("1", 1, 10, &n));
  EXPECT_EQ(n, 1u);
  EXPECT_FALSE(regcache_tools::ParseCount("11", 1, 10, &n));
  EXPECT_FALSE(regcache_tools::ParseCount("+3", 1, 10, &n));
  EXPECT_FALSE(regcache_tools::ParseCount("0x3", 1, 10, &n));
  EXPECT_FALSE(
      regcache_tools::ParseCount("99999999999999999999", 1, UINT64_MAX, &n));
  uint32_t bp;
  EXPECT_TRUE(ParsePercent("99.99", &bp));
  EXPECT_EQ(bp, 9999u);
  EXPECT_TRUE(ParsePercent("0.5%", &bp));
  EXPECT_EQ(bp, 50u);
  EXPECT_FALSE(ParsePercent("%", &bp));
  EXPECT_FALSE(ParsePercent("", &bp));
  uint64_t b;
  EXPECT_TRUE(ParseSize("4096", &b));
  EXPECT_EQ(b, 4096u);
  EXPECT_TRUE(ParseSize("64k", &b));
  EXPECT_EQ(b, 64 * kKiB);
  EXPECT_TRUE(ParseSize("1TiB", &b));
  EXPECT_EQ(b, 1024 * kGiB);
  EXPECT_TRUE(ParseSize("100B", &b));
  EXPECT_EQ(b, 100u);
  EXPECT_FALSE(ParseSize("1.5G", &b));
  EXPECT_FALSE(ParseSize("G", &b));
}

// ---------------------------------------------------------- probe fixtures

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/limits_test.XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }
  void Write(const std::string& rel, const std::string& text) const {
    const std::string full = path_ + "/" + rel;
    std::system(("mkdir -p \"$(dirname '" + full + "')\"").c_str());
    std::ofstream(full) << text;
  }
  void Mkdir(const std::string& rel) const {
    std::system(("mkdir -p '" + path_ + "/" + rel + "'").c_str());
  }

 private:
  std::string path_;
};

TEST(Probe, ScanProcessesSortsByVmPinThenVmLckAndTotals) {
  TempDir proc;
  auto status = [](const char* name, uint64_t pin_kb, uint64_t lck_kb) {
    return std::string("Name:\t") + name + "\nUid:\t0\t0\t0\t0\nVmLck:\t" +
           std::to_string(lck_kb) + " kB\nVmPin:\t" + std::to_string(pin_kb) +
           " kB\n";
  };
  proc.Write("10/status", status("small", 4, 0));
  proc.Write("11/status", status("big", 1024, 0));
  proc.Write("12/status", status("locker", 0, 512));
  proc.Write("13/status", status("idle", 0, 0));
  proc.Write("14/status", kStatusKernelThread);
  proc.Write("15/status", status("big-too", 1024, 8));
  proc.Write("self/status", status("not-a-pid", 99999, 0));
  proc.Mkdir("16");  // exited between readdir and open: no status
  const ProcessScan all = ScanProcesses(proc.path(), 10);
  EXPECT_EQ(all.scanned, 6u);
  EXPECT_EQ(all.unreadable, 0u);
  EXPECT_EQ(all.total_pin_bytes, (4 + 1024 + 1024) * kKiB);
  EXPECT_EQ(all.total_lck_bytes, (512 + 8) * kKiB);
  EXPECT_EQ(all.pinning, 3u);
  EXPECT_EQ(all.locking, 2u);
  ASSERT_EQ(all.top.size(), 4u);
  EXPECT_EQ(all.top[0].name, "big-too");  // same VmPin, more VmLck
  EXPECT_EQ(all.top[1].name, "big");
  EXPECT_EQ(all.top[2].name, "small");
  EXPECT_EQ(all.top[3].name, "locker");
  EXPECT_EQ(all.top[1].pid, 11);
  EXPECT_EQ(all.top[1].user, "root");
  const ProcessScan two = ScanProcesses(proc.path(), 2);
  ASSERT_EQ(two.top.size(), 2u);
  EXPECT_EQ(two.total_pin_bytes, all.total_pin_bytes);  // totals cover all
}

TEST(Probe, CountsNumaNodeFoldersOnly) {
  TempDir sys;
  sys.Mkdir("node0");
  sys.Mkdir("node1");
  sys.Mkdir("node12");
  sys.Mkdir("nodex");
  sys.Write("possible", "0-12\n");
  sys.Write("has_cpu", "0-1\n");
  EXPECT_EQ(CountNumaNodes(sys.path()), 3);
  EXPECT_EQ(CountNumaNodes(sys.path() + "/missing"), -1);
}

TEST(Probe, NoModuleNoDeviceSaysSo) {
  TempDir root;
  root.Write("proc/modules", "rdma_rxe 155648 0 - Live 0xffffffffc0a00000\n");
  Paths paths;
  paths.proc = root.path() + "/proc";
  paths.sys_module = root.path() + "/sys/module/regcache";
  paths.device = root.path() + "/dev/regcache";
  const ModuleInfo m = ProbeModule(paths);
  EXPECT_TRUE(m.proc_modules_read);
  EXPECT_FALSE(m.loaded.has_value());
  EXPECT_FALSE(m.device_exists);
  EXPECT_FALSE(m.opened);
  EXPECT_NE(m.open_error.find("not loaded"), std::string::npos) << m.open_error;
}

TEST(Render, JsonOfASyntheticReportHasEveryKeyAndNulls) {
  Report r;
  r.version = "0.1";
  r.hostname = "node\"1";
  r.user = "alice";
  r.memlock.ok = true;
  r.memlock.soft_unlimited = true;
  r.memlock.hard_unlimited = true;
  r.memlock.cap_ipc_lock = false;
  r.node.mem_total_bytes = 256 * kGiB;
  r.node.numa_nodes = 2;
  r.ranks = 64;
  r.recommendation = Recommend(256 * kGiB, 64, 2500);
  r.library.created = true;
  r.library.monitor = "uffd";
  r.library.mode = "pin (ODP policy not built)";
  r.rdma.listed = true;
  r.rdma.devices = {"mlx5_0", "mlx5_1"};
  const std::string json = RenderJson(r);
  for (const char* key :
       {"\"memlock\"", "\"soft_bytes\": \"unlimited\"",
        "\"cap_ipc_lock\": false", "\"self\"", "\"processes\": null",
        "\"node\"", "\"numa_nodes\": 2", "\"module\"", "\"counters\": null",
        "\"library\"", "\"monitor\": \"uffd\"", "\"mode\"", "\"rdma_devices\"",
        "\"mlx5_1\"", "\"recommendation\"", "\"memlock_bytes\": 3221225472",
        "\"memlock_kib\": 3145728", "\"warnings\"",
        "\"host\": \"node\\\"1\""}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << "\n" << json;
  }
  // Unlimited memlock without CAP_IPC_LOCK is the first warning.
  const std::vector<std::string> w = Warnings(r);
  ASSERT_FALSE(w.empty());
  EXPECT_NE(w[0].find("unlimited"), std::string::npos) << w[0];
  const std::string text = RenderText(r);
  EXPECT_NE(text.find("@rdma soft memlock 3145728"), std::string::npos) << text;
  EXPECT_NE(text.find("LimitMEMLOCK=3221225472"), std::string::npos) << text;
  EXPECT_NE(text.find("PropagateResourceLimitsExcept=MEMLOCK"),
            std::string::npos);
  EXPECT_NE(text.find("--ulimit memlock=3221225472:3221225472"),
            std::string::npos);
}

// A report of a process without CAP_IPC_LOCK at the default 64 KiB limit.
Report At64KiB() {
  Report r;
  r.memlock.ok = true;
  r.memlock.soft_bytes = 64 * kKiB;
  r.memlock.hard_bytes = 64 * kKiB;
  r.memlock.cap_ipc_lock = false;
  return r;
}

TEST(Render, SmallLimitWarnsAboutRegistrationFailures) {
  Report r = At64KiB();
  r.recommendation = Recommend(64 * kGiB, 16, 2500);
  const std::vector<std::string> w = Warnings(r);
  ASSERT_FALSE(w.empty());
  EXPECT_NE(w[0].find("8229"), std::string::npos) << w[0];
  // With CAP_IPC_LOCK the limit does not apply: no such warning.
  r.memlock.cap_ipc_lock = true;
  for (const std::string& s : Warnings(r))
    EXPECT_EQ(s.find("8229"), std::string::npos) << s;
}

TEST(Render, RegcacheMaxBytesAboveTheMemlockLimitIsWarnedAbout) {
  Report r = At64KiB();
  r.library.created = true;
  auto warned = [&r] {
    for (const std::string& w : Warnings(r))
      if (w.find("REGCACHE_MAX_BYTES") != std::string::npos) return w;
    return std::string();
  };
  // Unset: the library's default is the soft limit itself.
  r.library.max_bytes = 64 * kKiB;
  EXPECT_EQ(warned(), "");
  r.library.max_bytes_env = "4G";
  r.library.max_bytes = 4 * kGiB;
  EXPECT_NE(warned().find("REGCACHE_MAX_BYTES=4G (4 GiB) exceeds the soft "
                          "memlock limit (64 KiB)"),
            std::string::npos)
      << warned();
  EXPECT_NE(RenderText(r).find("REGCACHE_MAX_BYTES 4G = 4 GiB (4294967296 "
                               "bytes)"),
            std::string::npos)
      << RenderText(r);
  r.library.max_bytes_env = "64K";  // at the limit is not above it
  r.library.max_bytes = 64 * kKiB;
  EXPECT_EQ(warned(), "");
  r.memlock.soft_unlimited = true;  // no limit to exceed
  r.library.max_bytes_env = "4G";
  r.library.max_bytes = 4 * kGiB;
  EXPECT_EQ(warned(), "");
}

// A module whose context opened and answered CONTIG_INFO: 256 MiB per
// process, 1 GiB in all, 4 MiB buddy blocks, the range allocator, and
// 12 MiB held in 3 mappings.
Report WithContig() {
  Report r;
  r.module.proc_modules_read = true;
  r.module.loaded = ModuleLine{28672, 1, "Live", "(OE)"};
  r.module.device_exists = true;
  r.module.device_mode = 0660;
  r.module.opened = true;
  r.module.abi_version = REGCACHE_KMOD_ABI_VERSION;
  r.module.contig_read = true;
  regcache_kmod_contig_info& c = r.module.contig;
  c.max_process_bytes = 256 * kMiB;
  c.max_total_bytes = kGiB;
  c.max_buddy_bytes = 4 * kMiB;
  c.max_bytes = 256 * kMiB;
  c.page_size = 4096;
  c.flags = REGCACHE_KMOD_CONTIG_F_LARGE;
  c.total_bytes = 12 * kMiB;
  c.total_mappings = 3;
  return r;
}

TEST(Render, ContiguousMemoryLimitsAndUsageAreShown) {
  const Report r = WithContig();
  const std::string text = RenderText(r);
  for (const char* line :
       {"  contiguous       256 MiB per process, 1 GiB in all "
        "(contig_max_per_process_mb, contig_max_total_mb)\n",
        "                   up to 4 MiB from the buddy allocator; larger from "
        "the kernel's range allocator (largest to try: 256 MiB)\n",
        "  contiguous held  12 MiB in 3 mappings, all processes"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
  const nlohmann::json j = Parsed(RenderJson(r));
  const nlohmann::json& c = j["module"]["contig"];
  EXPECT_EQ(c["max_process_bytes"], 256 * kMiB);
  EXPECT_EQ(c["max_total_bytes"], kGiB);
  EXPECT_EQ(c["max_buddy_bytes"], 4 * kMiB);
  EXPECT_EQ(c["max_bytes"], 256 * kMiB);
  EXPECT_EQ(c["large_sizes"], true);
  EXPECT_EQ(c["page_size"], 4096);
  EXPECT_EQ(c["total_bytes"], 12 * kMiB);
  EXPECT_EQ(c["total_mappings"], 3);
  EXPECT_TRUE(j["module"]["contig_error"].is_null());
  for (const std::string& w : Warnings(r))
    EXPECT_EQ(w.find("contig"), std::string::npos) << w;
}

TEST(Render, ContiguousMemoryTurnedOffOrWithoutTheRangeAllocatorSaysSo) {
  Report r = WithContig();
  r.module.contig.flags = 0;
  r.module.contig.max_bytes = 4 * kMiB;
  std::string text = RenderText(r);
  EXPECT_NE(text.find("up to 4 MiB from the buddy allocator; nothing larger"),
            std::string::npos)
      << text;
  EXPECT_EQ(Parsed(RenderJson(r))["module"]["contig"]["large_sizes"], false);
  r.module.contig.max_total_bytes = 0;
  r.module.contig.max_bytes = 0;
  text = RenderText(r);
  EXPECT_NE(text.find("0 B in all (contig_max_per_process_mb, "
                      "contig_max_total_mb): turned off"),
            std::string::npos)
      << text;
}

// A module built before contiguous memory answers CONTIG_INFO with ENOTTY.
TEST(Render, ModuleWithoutContiguousMemorySaysWhy) {
  Report r = WithContig();
  r.module.contig_read = false;
  r.module.contig_error =
      "REGCACHE_IOC_CONTIG_INFO: Inappropriate ioctl for device (this module "
      "has no contiguous memory: an older build)";
  const std::string text = RenderText(r);
  EXPECT_NE(text.find("  contiguous       unknown: REGCACHE_IOC_CONTIG_INFO: "
                      "Inappropriate ioctl for device"),
            std::string::npos)
      << text;
  const nlohmann::json j = Parsed(RenderJson(r));
  EXPECT_TRUE(j["module"]["contig"].is_null());
  EXPECT_EQ(j["module"]["contig_error"], r.module.contig_error);
}

TEST(Render, ContiguousMemoryNearTheTotalLimitIsWarnedAbout) {
  Report r = WithContig();
  auto warned = [&r] {
    for (const std::string& w : Warnings(r))
      if (w.find("contig_max_total_mb") != std::string::npos) return w;
    return std::string();
  };
  r.module.contig.total_bytes = 900 * kMiB;  // 88% of 1 GiB
  EXPECT_EQ(warned(), "");
  r.module.contig.total_bytes = 1000 * kMiB;
  EXPECT_EQ(warned(),
            "contiguous memory held by all processes (1000 MiB) is near "
            "contig_max_total_mb (1 GiB): further mappings of it fail with "
            "ENOMEM");
  r.module.contig.max_total_bytes = 0;  // turned off: nothing to be near
  r.module.contig.total_bytes = 0;
  EXPECT_EQ(warned(), "");
}

TEST(Render, LimitsConfGroupLinesSayWhomTheyApplyTo) {
  GroupInfo g;
  g.name = "rdma";
  EXPECT_NE(GroupNote(g, "alice").find("group rdma, which does not exist"),
            std::string::npos);
  g.exists = true;
  g.user_is_member = true;
  EXPECT_EQ(GroupNote(g, "alice"),
            "the @rdma lines apply only to members of group rdma; user "
            "alice is one");
  g.user_is_member = false;
  EXPECT_EQ(GroupNote(g, "bob"),
            "the @rdma lines apply only to members of group rdma; user bob "
            "is not (usermod -aG rdma bob, then log in again)");
  g.user_is_member.reset();
  EXPECT_NE(GroupNote(g, "1234").find("no passwd entry"), std::string::npos);
  // In the report, beside the lines themselves.
  Report r;
  r.user = "bob";
  r.rdma_group.exists = true;
  r.rdma_group.user_is_member = false;
  r.recommendation = Recommend(64 * kGiB, 16, 2500);
  const std::string text = RenderText(r);
  const size_t lines = text.find("@rdma hard memlock");
  ASSERT_NE(lines, std::string::npos) << text;
  EXPECT_NE(text.find("user bob is not (usermod -aG rdma bob", lines),
            std::string::npos)
      << text;
  const nlohmann::json j = Parsed(RenderJson(r));
  EXPECT_EQ(j["rdma_group"]["user_is_member"], false);
}

TEST(Probe, GroupMembershipFromTheGroupDatabase) {
  const GroupInfo root = ProbeGroup("root", 0);
  EXPECT_TRUE(root.exists);
  EXPECT_EQ(root.gid, 0u);
  EXPECT_EQ(root.user_is_member, true);  // root's primary group
  const GroupInfo none = ProbeGroup("regcache-test-no-such-group", 0);
  EXPECT_FALSE(none.exists);
  EXPECT_FALSE(none.user_is_member.has_value());
}

// --------------------------------------------------------- the real program

using regcache_tools::RunCommand;

TEST(Program, JsonRunHasTheTopLevelKeys) {
  int status = -1;
  const std::string json = RunCommand(
      std::string(REGCACHE_LIMITS_BINARY) + " --json --all 2>/dev/null",
      &status);
  ASSERT_EQ(status, 0) << json;
  for (const char* key :
       {"\"memlock\"", "\"cap_ipc_lock\"", "\"self\"", "\"processes\"",
        "\"node\"", "\"mem_total_bytes\"", "\"module\"", "\"library\"",
        "\"monitor\"", "\"mode\"", "\"rdma_devices\"", "\"recommendation\"",
        "\"warnings\""}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << "\n" << json;
  }
  ASSERT_EQ(json.front(), '{');
  ASSERT_EQ(json.substr(json.size() - 2), "}\n");
  // A real parser, when there is one.
  if (std::system("command -v python3 >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 not found: only the key check ran";
  const std::string check =
      std::string(REGCACHE_LIMITS_BINARY) +
      " --json 2>/dev/null | python3 -c 'import json,sys; "
      "d=json.load(sys.stdin); "
      "assert {\"memlock\",\"node\",\"module\",\"library\",\"recommendation\"} "
      "<= "
      "set(d), d.keys(); print(\"ok\")'";
  EXPECT_EQ(RunCommand(check, &status), "ok\n");
  EXPECT_EQ(status, 0);
}

TEST(Program, EnvPrintsEveryVariableWithItsValueAndSource) {
  int status = -1;
  const std::string out = RunCommand(
      "env -u REGCACHE_MONITOR REGCACHE_MODE=pin REGCACHE_STATS=nope " +
          std::string(REGCACHE_LIMITS_BINARY) + " --env 2>/dev/null",
      &status);
  ASSERT_EQ(status, 0) << out;
  for (const char* line :
       {"REGCACHE_MODE=pin  (environment)\n",
        "REGCACHE_MONITOR=auto  (default)\n",
        "REGCACHE_STATS=0  (environment: \"nope\" is invalid",
        "# REGCACHE_MAX_ENTRIES: ", "REGCACHE_MAX_BYTES=",
        "REGCACHE_ODP_IMPLICIT=", "REGCACHE_ODP_PREFETCH="})
    EXPECT_NE(out.find(line), std::string::npos) << line << " missing in:\n"
                                                 << out;
  EXPECT_EQ(out.find("memlock"), std::string::npos)
      << "--env prints only the variables";
}

TEST(Program, UsageErrorsExitWithTwo) {
  int status = -1;
  RunCommand(std::string(REGCACHE_LIMITS_BINARY) + " --bogus 2>/dev/null",
             &status);
  EXPECT_EQ(status, 2);
  RunCommand(std::string(REGCACHE_LIMITS_BINARY) +
                 " --ranks-per-node zero 2>/dev/null",
             &status);
  EXPECT_EQ(status, 2);
  const std::string help =
      RunCommand(std::string(REGCACHE_LIMITS_BINARY) + " --help", &status);
  EXPECT_EQ(status, 0);
  EXPECT_NE(help.find("--ranks-per-node"), std::string::npos) << help;
}

TEST(Program, BadInputIsOneMessageOnStderrAndNoReport) {
  int status = -1;
  // stderr into stdout: the message and the hint, nothing else.
  const std::string out = RunCommand(
      std::string(REGCACHE_LIMITS_BINARY) + " --json --top 0 2>&1", &status);
  EXPECT_EQ(status, 2);
  EXPECT_EQ(out,
            "regcache-limits: --top: '0' is not a number from 1 to 100000\n"
            "Try 'regcache-limits --help'.\n");
}

TEST(Program, VersionNamesTheToolAndTheLibrary) {
  int status = -1;
  const std::string out = RunCommand(
      std::string(REGCACHE_LIMITS_BINARY) + " --version 2>&1", &status);
  EXPECT_EQ(status, 0);
  const std::string library = "(regcache API " +
                              std::to_string(REGCACHE_VERSION_MAJOR) + "." +
                              std::to_string(REGCACHE_VERSION_MINOR) + ")\n";
  EXPECT_EQ(out.rfind("regcache-limits ", 0), 0u) << out;
  EXPECT_NE(out.find(library), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

TEST(Program, ReadsRegcacheMaxBytesAsTheLibraryDoes) {
  // A soft limit of 1 MiB (any user may lower it); the sizes as the
  // library parses them.
  auto run = [](const std::string& max_bytes) {
    int status = -1;
    const std::string out = RunCommand(
        "ulimit -l 1024 && REGCACHE_MAX_BYTES=" + max_bytes + " " +
            std::string(REGCACHE_LIMITS_BINARY) + " --json 2>/dev/null",
        &status);
    EXPECT_EQ(status, 0) << out;
    return Parsed(out);
  };
  auto warns = [](const nlohmann::json& j) {
    for (const auto& w : j["warnings"])
      if (w.get<std::string>().find("REGCACHE_MAX_BYTES") != std::string::npos)
        return true;
    return false;
  };
  const nlohmann::json above = run("512M");
  EXPECT_EQ(above["library"]["env_max_bytes"], "512M");
  EXPECT_EQ(above["library"]["max_bytes"], 512 * kMiB);
  EXPECT_TRUE(warns(above)) << above["warnings"];
  const nlohmann::json below = run("512KiB");
  EXPECT_EQ(below["library"]["max_bytes"], 512 * kKiB);
  EXPECT_FALSE(warns(below)) << below["warnings"];
}

}  // namespace
}  // namespace regcache_limits
