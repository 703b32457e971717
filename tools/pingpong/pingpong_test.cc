// SPDX-License-Identifier: BSD-2-Clause
// Host tests of regcache-pingpong's pure logic: the payload pattern, sizes
// and options, the plan and its wire form, the targets, and the table, JSON
// and SVG renderings, the progress output, and the real program where it
// needs no device. The RDMA parts run in the qemu rig (vm-smoke.sh).

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "odp_defect.h"
#include "options.h"
#include "pattern.h"
#include "progress.h"
#include "report.h"
#include "run_command.h"

namespace regcache_pingpong {
namespace {

// ------------------------------------------------------------------ pattern

TEST(Pattern, FilledMessagePassesItsCheck) {
  for (size_t size : {64ul, 4096ul, 4100ul, 65536ul, 1ul << 20}) {
    for (size_t stride : {8ul, kDefaultStampStride}) {
      std::vector<unsigned char> buf(size);
      FillPattern(buf.data(), size, 7, stride);
      const PatternCheck check = CheckPattern(buf.data(), size, 7, stride);
      EXPECT_TRUE(check.ok())
          << size << " " << stride << ": " << check.Describe(size, stride);
    }
  }
}

TEST(Pattern, OlderMessageIsReportedAsOldPages) {
  std::vector<unsigned char> buf(8192);
  FillPattern(buf.data(), buf.size(), 4, kDefaultStampStride);
  const PatternCheck check =
      CheckPattern(buf.data(), buf.size(), 6, kDefaultStampStride);
  EXPECT_FALSE(check.ok());
  EXPECT_EQ(check.bad_words, StampedWords(buf.size(), kDefaultStampStride));
  EXPECT_NE(check.Describe(buf.size(), kDefaultStampStride).find("message 4"),
            std::string::npos)
      << check.Describe(buf.size(), kDefaultStampStride);
}

TEST(Pattern, UntouchedBufferIsReportedAsNeverWritten) {
  std::vector<unsigned char> buf(4096, 0);
  const PatternCheck check =
      CheckPattern(buf.data(), buf.size(), 1, kDefaultStampStride);
  EXPECT_FALSE(check.ok());
  EXPECT_EQ(check.first_bad_offset, 0u);
  EXPECT_NE(
      check.Describe(buf.size(), kDefaultStampStride).find("never written"),
      std::string::npos);
}

TEST(Pattern, OneStalePageInTheMiddleIsCaught) {
  const size_t size = 64 * 4096;
  std::vector<unsigned char> buf(size);
  FillPattern(buf.data(), size, 9, kDefaultStampStride);
  memset(buf.data() + 17 * 4096, 0, 4096);
  const PatternCheck check =
      CheckPattern(buf.data(), size, 9, kDefaultStampStride);
  EXPECT_EQ(check.bad_words, 4096 / kDefaultStampStride);
  EXPECT_EQ(check.first_bad_offset, 17u * 4096);
}

TEST(Pattern, LastBytesAreStampedEvenOffStride) {
  const size_t size = 1000;  // last word at 992, not a multiple of 256
  std::vector<unsigned char> buf(size);
  FillPattern(buf.data(), size, 3, kDefaultStampStride);
  buf[size - 1] ^= 0xff;
  const PatternCheck check =
      CheckPattern(buf.data(), size, 3, kDefaultStampStride);
  EXPECT_EQ(check.bad_words, 1u);
  EXPECT_EQ(check.first_bad_offset, size - 8);
}

TEST(Pattern, WordsAreNeverZeroAndCarryTheSequenceNumber) {
  for (uint64_t seq : {0ull, 1ull, 12345ull, 0xffffffffull}) {
    for (uint64_t offset : {0ull, 8ull, 4096ull, 1ull << 26}) {
      const uint64_t word = PatternWord(seq, offset);
      EXPECT_NE(word, 0u);
      EXPECT_EQ(word >> 32, seq & 0xffffffff);
    }
  }
  EXPECT_NE(PatternWord(1, 0), PatternWord(1, 256));
}

// ------------------------------------------------------------------ options

TEST(Sizes, ParseAcceptsSuffixes) {
  const std::map<std::string, uint64_t> cases = {
      {"4096", 4096}, {"4K", 4096},         {"4k", 4096},       {"4KiB", 4096},
      {"4KB", 4096},  {"64M", 64ull << 20}, {"1G", 1ull << 30}, {"100", 100}};
  for (const auto& [text, want] : cases) {
    uint64_t got = 0;
    EXPECT_TRUE(ParseSize(text, &got)) << text;
    EXPECT_EQ(got, want) << text;
  }
  uint64_t ignored;
  for (const char* bad : {"", "K", "4X", "-4K", "4 K", "4KK", "0x10"})
    EXPECT_FALSE(ParseSize(bad, &ignored)) << bad;
}

TEST(Sizes, ListRejectsDuplicatesRangeAndJunk) {
  std::vector<uint64_t> sizes;
  std::string error;
  ASSERT_TRUE(ParseSizeList("4K,64K,1M", &sizes, &error)) << error;
  EXPECT_EQ(sizes, (std::vector<uint64_t>{4096, 65536, 1 << 20}));
  EXPECT_FALSE(ParseSizeList("4K,4096", &sizes, &error));
  EXPECT_NE(error.find("twice"), std::string::npos);
  EXPECT_FALSE(ParseSizeList("32", &sizes, &error));
  EXPECT_FALSE(ParseSizeList("2G", &sizes, &error));
  EXPECT_FALSE(ParseSizeList("4K,", &sizes, &error));
  EXPECT_FALSE(ParseSizeList("4K,x", &sizes, &error));
}

TEST(Sizes, FormatIsShortAndExact) {
  EXPECT_EQ(FormatSize(4096), "4K");
  EXPECT_EQ(FormatSize(64ull << 20), "64M");
  EXPECT_EQ(FormatSize(1ull << 30), "1G");
  EXPECT_EQ(FormatSize(1000), "1000");
  EXPECT_EQ(FormatSize(1536), "1536");
}

TEST(Options, DefaultsMeasureEverything) {
  Options o;
  std::string error;
  ASSERT_TRUE(ParseArgs({}, &o, &error)) << error;
  EXPECT_EQ(o.role, Role::kLoopback);
  EXPECT_EQ(o.modes.size(), std::size(kAllModes));
  ASSERT_EQ(o.workloads.size(), 4u);
  EXPECT_EQ(o.workloads[0].Name(), "reuse");
  EXPECT_EQ(o.workloads[1].Name(), "rotate-8");
  EXPECT_EQ(o.workloads[2].Name(), "rotate-64");
  EXPECT_EQ(o.workloads[3].Name(), "realloc");
  EXPECT_EQ(o.sizes, (std::vector<uint64_t>{4 << 10, 64 << 10, 1 << 20,
                                            16 << 20, 64 << 20}));
}

TEST(Options, PerftestStyleFlagsAndTwoHostModes) {
  Options o;
  std::string error;
  ASSERT_TRUE(ParseArgs(
      {"-d", "mlx5_0", "-g", "3", "-i", "2", "--client", "127.0.0.1", "-p",
       "9999", "--modes", "kmod,once", "--sizes=4K,1M", "--json", "r.json"},
      &o, &error))
      << error;
  EXPECT_EQ(o.device, "mlx5_0");
  EXPECT_EQ(o.gid_index, 3);
  EXPECT_EQ(o.ib_port, 2);
  EXPECT_EQ(o.role, Role::kClient);
  EXPECT_EQ(o.host, "127.0.0.1");
  EXPECT_EQ(o.tcp_port, 9999);
  EXPECT_EQ(o.modes, (std::vector<Mode>{Mode::kKmod, Mode::kOnce}));
  EXPECT_EQ(o.sizes, (std::vector<uint64_t>{4096, 1 << 20}));
  EXPECT_EQ(o.json_path, "r.json");
  ASSERT_TRUE(ParseArgs({"--server"}, &o, &error));
  EXPECT_EQ(o.role, Role::kServer);
}

TEST(Options, BadArgumentsSayWhy) {
  Options o;
  std::string error;
  EXPECT_FALSE(ParseArgs({"--modes", "kmod,fast"}, &o, &error));
  EXPECT_NE(error.find("fast"), std::string::npos);
  EXPECT_FALSE(ParseArgs({"--workloads", "rotate-x"}, &o, &error));
  EXPECT_FALSE(ParseArgs({"--iters"}, &o, &error));
  EXPECT_NE(error.find("needs a value"), std::string::npos);
  EXPECT_FALSE(ParseArgs({"--frobnicate"}, &o, &error));
  EXPECT_FALSE(ParseArgs({"-p", "70000"}, &o, &error));
  EXPECT_FALSE(ParseArgs({"--seconds-per-point", "0"}, &o, &error));
}

TEST(Options, ErrorsNameTheOptionAndWhatItAccepts) {
  Options o;
  std::string error;
  EXPECT_FALSE(ParseArgs({"-p", "70000"}, &o, &error));
  EXPECT_EQ(error, "--port: '70000' is not a number from 1 to 65535");
  EXPECT_FALSE(ParseArgs({"--iters", "0x10"}, &o, &error));
  EXPECT_EQ(error, "--iters: '0x10' is not a number from 1 to 10000000");
  EXPECT_FALSE(ParseArgs({"--poll=spin"}, &o, &error));
  EXPECT_EQ(error, "--poll: 'spin' is not auto, busy, yield or events");
  EXPECT_FALSE(ParseArgs({"--modes", "kmod,fast"}, &o, &error));
  EXPECT_NE(error.find("--modes: unknown mode 'fast' (register-per-message, "),
            std::string::npos)
      << error;
  EXPECT_FALSE(ParseArgs({"--sizes", "4K,4096"}, &o, &error));
  EXPECT_EQ(error, "--sizes: size 4096 is listed twice");
  EXPECT_FALSE(ParseArgs({"--frobnicate"}, &o, &error));
  EXPECT_EQ(error, "unknown option '--frobnicate'");
  EXPECT_FALSE(ParseArgs({"--quick=yes"}, &o, &error));
  EXPECT_EQ(error, "--quick takes no value");
  // Empty lists once meant "everything" (--modes) or "nothing" (--workloads).
  EXPECT_FALSE(ParseArgs({"--modes", ","}, &o, &error));
  EXPECT_FALSE(ParseArgs({"--workloads", ""}, &o, &error));
  EXPECT_FALSE(ParseArgs({"--client", ""}, &o, &error));
  EXPECT_NE(error.find("--client"), std::string::npos) << error;
}

TEST(Options, TwoHostRolesExcludeEachOther) {
  Options o;
  std::string error;
  EXPECT_FALSE(ParseArgs({"--server", "--client", "h"}, &o, &error));
  EXPECT_EQ(error, "--server excludes --client");
}

TEST(Options, TheLastValueCounts) {
  // scripts/run-main.sh puts its defaults (--cpu 0) before the user's.
  Options o;
  std::string error;
  ASSERT_TRUE(
      ParseArgs({"--cpu", "0", "--sizes", "4K", "--cpu=any", "--sizes", "64K"},
                &o, &error))
      << error;
  EXPECT_EQ(o.cpu, -1);
  EXPECT_EQ(o.sizes, (std::vector<uint64_t>{64 << 10}));
}

TEST(Options, HelpListsEveryOptionAndVersionIsOne) {
  const std::string help = Usage("regcache-pingpong");
  EXPECT_EQ(help.rfind("usage: regcache-pingpong [options]\n", 0), 0u) << help;
  for (const char* line :
       {"\n  --server ",
        "\n  --client HOST ",
        "\n  -p, --port N ",
        "\n  -d, --device DEV ",
        "\n  -i, --ib-port N ",
        "\n  -g, --gid-index N ",
        "\n  --cpu N|any ",
        "\n  --poll HOW ",
        "\n  --spin-us N ",
        "\n  --modes LIST ",
        "\n  --workloads LIST ",
        "\n  --sizes LIST ",
        "\n  --iters N ",
        "\n  --warmup N ",
        "\n  --passes N ",
        "\n  --seconds-per-point S ",
        "\n  --max-entries N ",
        "\n  --mem-budget SIZE ",
        "\n  --reg-time SIZE ",
        "\n  --full-check ",
        "\n  --quick ",
        "\n  --json FILE ",
        "\n  --svg FILE ",
        "\n  --version ",
        "\n  -h, --help ",
        "\nEndpoints (default: this program forks both",
        "\nWhat to measure (default: everything):\n",
        "\nOutput:\n",
        "2 for bad arguments, 3 when the run itself failed.\n"})
    EXPECT_NE(help.find(line), std::string::npos) << line << "\n" << help;
  Options o;
  std::string error;
  ASSERT_TRUE(ParseArgs({"--version"}, &o, &error)) << error;
  EXPECT_TRUE(o.version);
  // With --version every other option is still checked: run-main.sh checks
  // the values this way before it boots the VM.
  EXPECT_FALSE(
      ParseArgs({"--quick", "--passes", "0", "--version"}, &o, &error));
  EXPECT_FALSE(ParseArgs({"--version", "--frobnicate"}, &o, &error));
  ASSERT_TRUE(ParseArgs({"-h"}, &o, &error)) << error;
  EXPECT_TRUE(o.help);
}

TEST(Options, RegTimeTakesASizeAndIsTheClients) {
  Options o;
  std::string error;
  ASSERT_TRUE(ParseArgs({}, &o, &error)) << error;
  EXPECT_EQ(o.reg_time_size, 0u);
  EXPECT_EQ(MakePlan(o).reg_time_size, 0u);
  ASSERT_TRUE(ParseArgs({"--reg-time", "64M"}, &o, &error)) << error;
  EXPECT_EQ(o.reg_time_size, 64u << 20);
  EXPECT_EQ(MakePlan(o).reg_time_size, 64u << 20);
  // Not on the wire: the server has nothing to time.
  Plan parsed;
  ASSERT_TRUE(ParsePlan(SerializePlan(MakePlan(o)), &parsed, &error)) << error;
  EXPECT_EQ(parsed.reg_time_size, 0u);
  EXPECT_FALSE(ParseArgs({"--reg-time", "1K"}, &o, &error));
  EXPECT_EQ(error, "--reg-time: '1K' is not a size from 4K to 1G such as 64M");
  EXPECT_FALSE(ParseArgs({"--reg-time", "2G"}, &o, &error));
  EXPECT_FALSE(ParseArgs({"--reg-time"}, &o, &error));
  EXPECT_FALSE(ParseArgs({"--server", "--reg-time", "64M"}, &o, &error));
  EXPECT_NE(error.find("excludes"), std::string::npos) << error;
}

TEST(Options, QuickIsSmall) {
  Options o;
  std::string error;
  ASSERT_TRUE(ParseArgs({"--quick"}, &o, &error));
  EXPECT_EQ(o.sizes.size(), 2u);
  EXPECT_EQ(o.warmup, 1u);
  EXPECT_EQ(IterationsFor(64 << 20, o), 6u);
  const Plan plan = MakePlan(o);
  EXPECT_EQ(plan.points.size(), 4u * 2u * std::size(kAllModes));
}

TEST(Options, IterationsScaleWithSize) {
  Options o;
  EXPECT_EQ(IterationsFor(4 << 10, o), 100u);
  EXPECT_EQ(IterationsFor(1 << 20, o), 16u);
  EXPECT_EQ(IterationsFor(16 << 20, o), 2u);
  EXPECT_EQ(IterationsFor(64 << 20, o), 1u);
  o.iterations = 17;
  EXPECT_EQ(IterationsFor(64 << 20, o), 17u);
}

TEST(Options, WarmupRoundTripsWriteOnlyTheirFirstBytes) {
  EXPECT_EQ(WireBytes(64 << 20, /*warmup=*/true), kWarmupBytes);
  EXPECT_EQ(WireBytes(64 << 20, /*warmup=*/false), 64u << 20);
  EXPECT_EQ(WireBytes(1000, /*warmup=*/true), 1000u);
}

TEST(Plan, LongPointsRunInPassesWithTheModesTakingTurns) {
  Options o;
  std::string error;
  ASSERT_TRUE(ParseArgs(
      {"--workloads", "reuse", "--sizes", "64K,64M", "--modes", "kmod,once"},
      &o, &error));
  const Plan plan = MakePlan(o);
  // 64K: 100 round trips in 20 passes of 5, kmod and once taking turns;
  // 64M: 1 round trip, one pass.
  ASSERT_EQ(plan.points.size(), 20u * 2u + 2u);
  for (size_t i = 0; i < plan.points.size(); ++i) {
    EXPECT_EQ(plan.points[i].iterations, i < 40 ? 5u : 1u) << i;
    EXPECT_EQ(plan.points[i].pass, i < 40 ? i / 2 : 0u) << i;
    EXPECT_EQ(plan.points[i].mode, i % 2 ? Mode::kOnce : Mode::kKmod) << i;
  }
  ASSERT_TRUE(ParseArgs(
      {"--workloads", "reuse", "--sizes", "1M", "--passes", "3"}, &o, &error));
  const Plan three = MakePlan(o);
  uint32_t total = 0;
  for (const PointSpec& p : three.points)
    if (p.mode == Mode::kKmod) total += p.iterations;
  EXPECT_EQ(total, 16u);  // 6 + 5 + 5
}

TEST(Plan, RegisterOnceInReallocIsNotApplicable) {
  Options o;
  std::string error;
  ASSERT_TRUE(
      ParseArgs({"--workloads", "realloc,reuse", "--sizes", "4K"}, &o, &error));
  const Plan plan = MakePlan(o);
  int na = 0;
  for (const PointSpec& p : plan.points) {
    if (p.mode == Mode::kOnce && p.workload.kind == Workload::Kind::kRealloc) {
      EXPECT_EQ(p.skip.rfind("n/a", 0), 0u) << p.skip;
      ++na;
    } else {
      EXPECT_TRUE(p.skip.empty()) << p.skip;
    }
  }
  EXPECT_EQ(na, 1);
}

TEST(Plan, PointsOverTheMemoryBudgetAreSkippedWithTheArithmetic) {
  Options o;
  std::string error;
  ASSERT_TRUE(ParseArgs(
      {"--workloads", "rotate-64", "--sizes", "1M,16M", "--modes", "kmod"}, &o,
      &error));
  const Plan plan = MakePlan(o);
  ASSERT_EQ(plan.points.size(), 4u);         // 1M in 3 passes, 16M skipped once
  EXPECT_TRUE(plan.points[0].skip.empty());  // 2 x 64 x 1M = 128M
  EXPECT_EQ(plan.points[3].skip,
            "skipped: 2 x 64 x 16M = 2G per endpoint > --mem-budget 256M");
  // 128 buffers do not fit in 32 entries: no point warming the rotation.
  EXPECT_EQ(plan.points[0].warmup, 2u);
  ASSERT_TRUE(
      ParseArgs({"--workloads", "rotate-8", "--sizes", "4K"}, &o, &error));
  EXPECT_EQ(MakePlan(o).points[0].warmup, 8u);  // 16 buffers fit: warm them
}

TEST(Plan, SurvivesTheWire) {
  Options o;
  std::string error;
  ASSERT_TRUE(ParseArgs({"--full-check", "--max-entries", "16"}, &o, &error));
  const Plan plan = MakePlan(o);
  Plan back;
  ASSERT_TRUE(ParsePlan(SerializePlan(plan), &back, &error)) << error;
  EXPECT_EQ(back.stamp_stride, 8u);
  EXPECT_EQ(back.max_entries, 16u);
  ASSERT_EQ(back.points.size(), plan.points.size());
  for (size_t i = 0; i < plan.points.size(); ++i) {
    EXPECT_EQ(back.points[i].workload, plan.points[i].workload);
    EXPECT_EQ(back.points[i].mode, plan.points[i].mode);
    EXPECT_EQ(back.points[i].size, plan.points[i].size);
    EXPECT_EQ(back.points[i].pass, plan.points[i].pass);
    EXPECT_EQ(back.points[i].iterations, plan.points[i].iterations);
    EXPECT_EQ(back.points[i].warmup, plan.points[i].warmup);
    EXPECT_EQ(back.points[i].skip.empty(), plan.points[i].skip.empty());
  }
  EXPECT_FALSE(ParsePlan("plan 8 16 6 2\npoint reuse kmod 4096 0 1 1 run\n",
                         &back, &error));
}

TEST(Modes, NamesRoundTrip) {
  for (Mode mode : kAllModes) {
    Mode back;
    ASSERT_TRUE(ParseMode(ModeName(mode), &back));
    EXPECT_EQ(back, mode);
  }
  for (Polling polling :
       {Polling::kAuto, Polling::kBusy, Polling::kYield, Polling::kEvents}) {
    Polling back;
    ASSERT_TRUE(ParsePolling(PollingName(polling), &back));
    EXPECT_EQ(back, polling);
  }
  Options o;
  std::string error;
  ASSERT_TRUE(ParseArgs({}, &o, &error));
  EXPECT_EQ(o.polling, Polling::kAuto);
  EXPECT_FALSE(ParseArgs({"--poll", "spin"}, &o, &error));
  EXPECT_EQ(o.cpu, -1);
  ASSERT_TRUE(ParseArgs({"--cpu", "0"}, &o, &error));
  EXPECT_EQ(o.cpu, 0);
  ASSERT_TRUE(ParseArgs({"--cpu", "0", "--cpu", "any"}, &o, &error));
  EXPECT_EQ(o.cpu, -1);
  EXPECT_FALSE(ParseArgs({"--cpu", "x"}, &o, &error));
  EXPECT_FALSE(HasInvalidation(Mode::kNone));
  EXPECT_TRUE(HasInvalidation(Mode::kUffd));
  EXPECT_TRUE(IsCacheMode(Mode::kKmod));
  EXPECT_FALSE(IsCacheMode(Mode::kOnce));
}

// ------------------------------------------------------------------ report

PointResult Measured(const std::string& workload, Mode mode, uint64_t size,
                     double bandwidth, uint64_t errors = 0, uint64_t same = 0) {
  PointResult p;
  p.workload = workload;
  p.mode = mode;
  p.size = size;
  p.round_trips = 10;
  p.bandwidth_mbs = bandwidth;
  p.latency_us = double(size) / bandwidth;
  p.messages_checked = 24;
  p.data_errors = errors;
  p.reallocations = same;
  p.same_address = same;
  p.gets = 20;
  p.hits = IsCacheMode(mode) ? 18 : 0;
  p.uncached = IsCacheMode(mode) ? 1 : 0;
  if (errors) p.first_error = "message 3: 1 of 2 words wrong";
  return p;
}

std::vector<PointResult> GoodRun() {
  const uint64_t k64 = 64 << 10;
  return {Measured("reuse", Mode::kPerMessage, k64, 4.0),
          Measured("reuse", Mode::kKmod, k64, 49.0),
          Measured("reuse", Mode::kUffd, k64, 48.0),
          Measured("reuse", Mode::kNone, k64, 49.5),
          Measured("reuse", Mode::kOnce, k64, 50.0),
          Measured("realloc", Mode::kKmod, k64, 3.0, 0, 24),
          Measured("realloc", Mode::kNone, k64, 40.0, 20, 24),
          Measured("reuse", Mode::kOdp, k64, 46.0),
          Measured("realloc", Mode::kPerMessage, k64, 3.5, 0, 24),
          Measured("realloc", Mode::kOdp, k64, 3.6, 0, 24),
          Measured("realloc", Mode::kPool, k64, 48.5, 0, 24)};
}

const TargetResult& Named(const std::vector<TargetResult>& targets,
                          const std::string& part) {
  for (const TargetResult& t : targets) {
    if (t.name.find(part) != std::string::npos) return t;
  }
  ADD_FAILURE() << "no target named like " << part;
  return targets.front();
}

TEST(Targets, AllPassOnAGoodRun) {
  const auto targets = EvaluateTargets(GoodRun());
  for (const TargetResult& t : targets)
    EXPECT_EQ(t.verdict, TargetResult::Verdict::kPass)
        << t.name << ": " << t.detail;
  EXPECT_FALSE(AnyCorrectnessFailure(targets));
  const TargetResult& ratio = Named(targets, "regcache-kmod bandwidth >= 10x");
  EXPECT_NE(ratio.detail.find("12.25x"), std::string::npos) << ratio.detail;
  EXPECT_FALSE(ratio.correctness);
}

TEST(Targets, RatiosAreAlsoGivenFromTheFastestRoundTrips) {
  auto points = GoodRun();
  points[0].latency_min_us = 20;  // per-message
  points[1].latency_min_us = 10;  // kmod
  points[4].latency_min_us = 8;   // once
  const auto targets = EvaluateTargets(points);
  EXPECT_NE(Named(targets, "kmod bandwidth >= 10x")
                .detail.find("fastest round trips: 2.00x"),
            std::string::npos);
  EXPECT_NE(Named(targets, "kmod bandwidth within 5%")
                .detail.find("fastest round trips: 80.0%"),
            std::string::npos);
  // Unknown minima: nothing said.
  EXPECT_EQ(Named(targets, "uffd bandwidth >= 10x").detail.find("fastest"),
            std::string::npos);
}

TEST(Targets, SlowCacheFailsOnlyTheReportedTargets) {
  auto points = GoodRun();
  points[1].bandwidth_mbs = 30;  // kmod: 7.5x per-message, 60% of once
  const auto targets = EvaluateTargets(points);
  EXPECT_EQ(Named(targets, "kmod bandwidth >= 10x").verdict,
            TargetResult::Verdict::kFail);
  EXPECT_EQ(Named(targets, "kmod bandwidth within 5%").verdict,
            TargetResult::Verdict::kFail);
  EXPECT_FALSE(AnyCorrectnessFailure(targets));
}

TEST(Targets, DataErrorsInAnInvalidatingModeAreACorrectnessFailure) {
  auto points = GoodRun();
  points[5].data_errors = 2;  // realloc kmod
  points[5].first_error = "message 5: found 0";
  const auto targets = EvaluateTargets(points);
  const TargetResult& clean = Named(targets, "no data errors");
  EXPECT_EQ(clean.verdict, TargetResult::Verdict::kFail);
  EXPECT_NE(clean.detail.find("realloc regcache-kmod 64K: 2"),
            std::string::npos)
      << clean.detail;
  EXPECT_TRUE(AnyCorrectnessFailure(targets));
}

TEST(Targets, ASilentUnsafeControlIsACorrectnessFailure) {
  auto points = GoodRun();
  points[6].data_errors = 0;
  const auto targets = EvaluateTargets(points);
  EXPECT_EQ(Named(targets, "regcache-none in realloc").verdict,
            TargetResult::Verdict::kFail);
  EXPECT_TRUE(AnyCorrectnessFailure(targets));
}

TEST(Targets, UnsafeControlWithoutAddressReuseIsNotJudged) {
  auto points = GoodRun();
  points[6].data_errors = 0;
  points[6].same_address = 0;
  const auto targets = EvaluateTargets(points);
  EXPECT_EQ(Named(targets, "regcache-none in realloc").verdict,
            TargetResult::Verdict::kNotMeasured);
  EXPECT_FALSE(AnyCorrectnessFailure(targets));
}

TEST(Targets, PoolInReallocIsComparedWithRegisterOnceInReuse) {
  auto points = GoodRun();
  points[10].registrations = 0;
  const auto passing = EvaluateTargets(points);
  const TargetResult& pass =
      Named(passing, "realloc: regcache-pool bandwidth within 5%");
  EXPECT_EQ(pass.verdict, TargetResult::Verdict::kPass) << pass.detail;
  EXPECT_NE(pass.detail.find("97.0% of it"), std::string::npos) << pass.detail;
  EXPECT_NE(pass.detail.find("0.00 registrations per message"),
            std::string::npos)
      << pass.detail;
  EXPECT_FALSE(pass.correctness);
  points[10].bandwidth_mbs = 40;  // 80% of register-once
  const auto targets = EvaluateTargets(points);
  EXPECT_EQ(Named(targets, "regcache-pool bandwidth within 5%").verdict,
            TargetResult::Verdict::kFail);
  EXPECT_FALSE(AnyCorrectnessFailure(targets));
}

TEST(Options, PoolIsAModeWithItsShortName) {
  Mode mode;
  ASSERT_TRUE(ParseMode("regcache-pool", &mode));
  EXPECT_EQ(mode, Mode::kPool);
  ASSERT_TRUE(ParseMode("pool", &mode));
  EXPECT_EQ(mode, Mode::kPool);
  EXPECT_TRUE(IsCacheMode(Mode::kPool));
  EXPECT_TRUE(HasInvalidation(Mode::kPool));
}

TEST(Targets, OdpIsJudgedInReallocAgainstPerMessageAndInReuseAgainstOnce) {
  const auto good = EvaluateTargets(GoodRun());
  const TargetResult& realloc =
      Named(good, "64K realloc: odp bandwidth >= register-per-message");
  EXPECT_EQ(realloc.verdict, TargetResult::Verdict::kPass) << realloc.detail;
  EXPECT_FALSE(realloc.correctness);
  EXPECT_NE(realloc.detail.find("1.03x (3.60 vs 3.50 MB/s)"), std::string::npos)
      << realloc.detail;
  const TargetResult& reuse =
      Named(good, "64K reuse: odp bandwidth within 10% of register-once");
  EXPECT_EQ(reuse.verdict, TargetResult::Verdict::kPass) << reuse.detail;
  EXPECT_NE(reuse.detail.find("92.0% of it"), std::string::npos)
      << reuse.detail;

  std::vector<PointResult> slow = GoodRun();
  for (PointResult& p : slow) {
    if (p.mode == Mode::kOdp) p.bandwidth_mbs *= 0.9;  // 3.24 < 3.5, 82.8%
  }
  const auto targets = EvaluateTargets(slow);
  EXPECT_EQ(Named(targets, "realloc: odp").verdict,
            TargetResult::Verdict::kFail);
  EXPECT_EQ(Named(targets, "reuse: odp").verdict, TargetResult::Verdict::kFail);
  // Reported, never enforced.
  EXPECT_FALSE(AnyCorrectnessFailure(targets));
}

TEST(Targets, OdpDataErrorsAreACorrectnessFailure) {
  std::vector<PointResult> points = GoodRun();
  points.push_back(Measured("rotate-8", Mode::kOdp, 4096, 3.0, 2));
  const auto targets = EvaluateTargets(points);
  EXPECT_EQ(Named(targets, "no data errors").verdict,
            TargetResult::Verdict::kFail);
  EXPECT_NE(Named(targets, "no data errors").detail.find("rotate-8 odp 4K"),
            std::string::npos);
  EXPECT_TRUE(AnyCorrectnessFailure(targets));
}

TEST(Targets, UnmeasuredOdpSaysWhy) {
  std::vector<PointResult> points = GoodRun();
  for (PointResult& p : points) {
    if (p.mode != Mode::kOdp) continue;
    p.status = PointResult::Status::kUnavailable;
    p.note =
        "odp: refused on rxe0: its ODP has the known defect "
        "rxe-odp-page-offset";
  }
  const auto targets = EvaluateTargets(points);
  for (const char* name : {"realloc: odp", "reuse: odp"}) {
    EXPECT_EQ(Named(targets, name).verdict,
              TargetResult::Verdict::kNotMeasured);
    EXPECT_EQ(Named(targets, name).detail,
              "not measured (odp: refused on rxe0: its ODP has the known "
              "defect rxe-odp-page-offset)");
  }
}

TEST(Targets, MissingModesAreNotMeasured) {
  const auto targets =
      EvaluateTargets({Measured("reuse", Mode::kKmod, 65536, 40)});
  EXPECT_EQ(Named(targets, "kmod bandwidth >= 10x").verdict,
            TargetResult::Verdict::kNotMeasured);
  EXPECT_EQ(Named(targets, "regcache-none in realloc").verdict,
            TargetResult::Verdict::kNotMeasured);
}

Report SampleReport() {
  Report r;
  r.device = "rxe0 port 1 GID[1] ::ffff:192.168.77.1 RoCE v2, MTU 1024";
  r.odp_note = "odp: unsupported on rxe0 (odp_caps = 0)";
  r.workloads = {"reuse", "realloc"};
  r.sizes = {4 << 10, 64 << 10};
  r.modes = {Mode::kPerMessage, Mode::kKmod, Mode::kNone, Mode::kOnce,
             Mode::kOdp};
  for (const std::string& w : r.workloads) {
    for (uint64_t size : r.sizes) {
      for (Mode mode : r.modes) {
        PointResult p = Measured(w, mode, size, 10 + double(size) / 8192,
                                 w == "realloc" && mode == Mode::kNone ? 5 : 0,
                                 w == "realloc" ? 24 : 0);
        if (mode == Mode::kOdp) {
          p.status = PointResult::Status::kUnavailable;
          p.note = r.odp_note;
        } else if (mode == Mode::kOnce && w == "realloc") {
          p.status = PointResult::Status::kNotApplicable;
          p.note = "n/a: its buffers are registered once and never freed";
        }
        r.points.push_back(p);
      }
    }
  }
  r.targets = EvaluateTargets(r.points);
  return r;
}

TEST(Render, TableHasOneSectionPerWorkloadAndMarksUnsafePoints) {
  const std::string table = RenderTables(SampleReport());
  EXPECT_NE(table.find("== reuse:"), std::string::npos);
  EXPECT_NE(table.find("== realloc:"), std::string::npos);
  // The unsafe control in realloc, at both sizes.
  size_t unsafe = 0;
  for (size_t at = table.find("UNSAFE\n"); at != std::string::npos;
       at = table.find("UNSAFE\n", at + 1))
    ++unsafe;
  EXPECT_EQ(unsafe, 2u) << table;
  // ODP is unavailable everywhere: said once per workload, not per size
  // (and once more by each target about it).
  const std::string tables = table.substr(0, table.find("\ntargets:"));
  size_t odp = 0;
  for (size_t at = tables.find("odp: unsupported on rxe0 (odp_caps = 0)");
       at != std::string::npos;
       at = tables.find("odp: unsupported on rxe0", at + 1))
    ++odp;
  EXPECT_EQ(odp, 2u) << table;
  EXPECT_NE(table.find("n/a: its buffers"), std::string::npos);
  EXPECT_NE(table.find("came back at the same address"), std::string::npos);
  EXPECT_NE(table.find("targets:"), std::string::npos);
  EXPECT_NE(table.find("PASS"), std::string::npos);
}

TEST(Render, ASizeEveryModeSkipsIsOneLine) {
  Report r = SampleReport();
  r.sizes.push_back(64 << 20);
  for (Mode mode : r.modes) {
    PointResult p;
    p.workload = "reuse";
    p.mode = mode;
    p.size = 64 << 20;
    p.status = PointResult::Status::kSkipped;
    p.note = "skipped: 2 x 1 x 64M = 128M per endpoint > --mem-budget 64M";
    r.points.push_back(p);
  }
  const std::string table = RenderTables(r);
  EXPECT_NE(table.find("64M   (every mode)          skipped: 2 x 1 x 64M"),
            std::string::npos)
      << table;
  size_t n = 0;
  for (size_t at = table.find("skipped:"); at != std::string::npos;
       at = table.find("skipped:", at + 1))
    ++n;
  EXPECT_EQ(n, 1u);
  // ODP (unavailable where it ran, skipped elsewhere) is still one line.
  EXPECT_EQ(
      table.find(
          "odp                   odp: unsupported on rxe0 (odp_caps = 0)\n"),
      std::string::npos);
}

TEST(Render, JsonCarriesEveryPointWithTheKeysScriptsRead) {
  Report r = SampleReport();
  r.points[0].first_error = "quote \" backslash \\ newline \n tab \t \x01";
  r.wall_seconds = 12.34567;
  PointResult& realloc_kmod = r.points[11];
  ASSERT_EQ(realloc_kmod.workload, "realloc");
  ASSERT_EQ(realloc_kmod.mode, Mode::kKmod);
  realloc_kmod.remap_us_per_message = 12.5;
  realloc_kmod.other_threads_us_per_message = 3.25;
  const nlohmann::ordered_json j =
      nlohmann::ordered_json::parse(RenderJson(r), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << RenderJson(r);
  std::vector<std::string> top;
  for (const auto& [key, value] : j.items()) top.push_back(key);
  EXPECT_EQ(top, (std::vector<std::string>{
                     "tool", "device", "odp", "settings", "wall_seconds",
                     "units", "workloads", "sizes", "modes", "points",
                     "targets", "reg_time", "correctness_failure"}));
  EXPECT_TRUE(j["reg_time"].is_null());
  EXPECT_EQ(j["wall_seconds"], 12.346);
  EXPECT_EQ(j["sizes"], nlohmann::ordered_json({4096, 65536}));
  EXPECT_EQ(j["modes"][1], "regcache-kmod");
  ASSERT_EQ(j["points"].size(), r.points.size());
  const std::vector<std::string> point_keys = {"workload",
                                               "mode",
                                               "size",
                                               "status",
                                               "note",
                                               "round_trips",
                                               "latency_us",
                                               "latency_min_us",
                                               "latency_mean_us",
                                               "bandwidth_mbs",
                                               "registrations",
                                               "gets",
                                               "hits",
                                               "uncached",
                                               "hit_rate",
                                               "reg_us_per_message",
                                               "remap_us_per_message",
                                               "other_threads_us_per_message",
                                               "messages_checked",
                                               "data_errors",
                                               "safe",
                                               "first_error",
                                               "reallocations",
                                               "same_address"};
  for (const nlohmann::ordered_json& p : j["points"]) {
    std::vector<std::string> keys;
    for (const auto& [key, value] : p.items()) keys.push_back(key);
    EXPECT_EQ(keys, point_keys);
    EXPECT_TRUE(p["size"].is_number_unsigned());
    EXPECT_TRUE(p["data_errors"].is_number_unsigned());
    EXPECT_TRUE(p["safe"].is_boolean());
  }
  EXPECT_EQ(j["points"][0]["first_error"], r.points[0].first_error);
  // register-per-message is no cache: no hit rate; ODP is unavailable.
  EXPECT_TRUE(j["points"][0]["hit_rate"].is_null());
  EXPECT_EQ(j["points"][1]["hit_rate"], 0.9);
  EXPECT_EQ(j["points"][0]["uncached"], 0u);
  EXPECT_EQ(j["points"][1]["uncached"], 1u);
  EXPECT_EQ(j["points"][4]["status"], "unavailable");
  // Time in munmap + mmap only where buffers are reallocated.
  EXPECT_TRUE(j["points"][1]["remap_us_per_message"].is_null());
  EXPECT_EQ(j["points"][11]["remap_us_per_message"], 12.5);
  EXPECT_EQ(j["points"][1]["other_threads_us_per_message"], 0.0);
  EXPECT_EQ(j["points"][11]["other_threads_us_per_message"], 3.25);
  EXPECT_EQ(j["correctness_failure"], false);
  ASSERT_EQ(j["targets"].size(), r.targets.size());
  EXPECT_EQ(j["targets"][0]["verdict"], VerdictName(r.targets[0].verdict));
}

RegTime SampleRegTime() {
  RegTime t;
  t.size = 64 << 20;
  t.repetitions = 5;
  t.pinned_fresh = {true, 200000.0, 150000.0, 30000.0};
  t.pinned_touched = {true, 40000.0, 35000.0, 20000.0};
  t.odp_fresh = {true, 800.0, 700.0, 300.0};
  t.odp_touched = {true, 900.0, 750.0, 310.0};
  return t;
}

TEST(Render, RegTimeIsATableBeforeTheTargetsAndAnObjectInTheJson) {
  Report r = SampleReport();
  EXPECT_EQ(RenderTables(r).find("registration of"), std::string::npos);
  r.reg_time = SampleRegTime();
  const std::string table = RenderTables(r);
  const size_t at =
      table.find("registration of 64M (ibv_reg_mr, ibv_dereg_mr; medians of 5");
  ASSERT_NE(at, std::string::npos) << table;
  EXPECT_LT(at, table.find("targets:"));
  EXPECT_NE(table.find("  pinned, fresh memory    reg     200000.0 us "
                       "(    150000.0)  dereg      30000.0 us\n"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("  odp, touched memory     reg        900.0 us"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("odp takes 0.0040x the time of pinned (pinned 250.0x "
                       "odp)"),
            std::string::npos)
      << table;
  const nlohmann::ordered_json j =
      nlohmann::ordered_json::parse(RenderJson(r), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["reg_time"]["size"], 64u << 20);
  EXPECT_EQ(j["reg_time"]["repetitions"], 5);
  EXPECT_EQ(j["reg_time"]["pinned_fresh"]["reg_us"], 200000.0);
  EXPECT_EQ(j["reg_time"]["odp_fresh"]["reg_min_us"], 700.0);
  EXPECT_EQ(j["reg_time"]["odp_touched"]["dereg_us"], 310.0);
  EXPECT_EQ(j["reg_time"]["note"], "");
}

TEST(Render, RegTimeWithoutOdpSaysWhy) {
  Report r = SampleReport();
  r.reg_time = SampleRegTime();
  r.reg_time.odp_fresh = {};
  r.reg_time.odp_touched = {};
  r.reg_time.note =
      "odp not measured: ibv_reg_mr(IBV_ACCESS_ON_DEMAND, 67108864 bytes): "
      "Invalid argument";
  const std::string table = RenderTables(r);
  EXPECT_EQ(table.find("odp, fresh memory"), std::string::npos) << table;
  EXPECT_EQ(table.find("odp takes"), std::string::npos) << table;
  EXPECT_NE(table.find("  odp not measured: ibv_reg_mr(IBV_ACCESS_ON_DEMAND"),
            std::string::npos)
      << table;
  const nlohmann::ordered_json j =
      nlohmann::ordered_json::parse(RenderJson(r), nullptr, false);
  EXPECT_TRUE(j["reg_time"]["odp_fresh"].is_null());
  EXPECT_TRUE(j["reg_time"]["pinned_fresh"].is_object());
}

TEST(Render, TheOdpNoteHeadsTheTablesWhenOdpRan) {
  Report r = SampleReport();
  r.odp_note =
      "odp: runs on rxe0 despite its known ODP defect "
      "rxe-odp-page-offset: ...";
  EXPECT_EQ(RenderTables(r).find("odp: runs on rxe0"), std::string::npos);
  for (PointResult& p : r.points) {
    if (p.mode == Mode::kOdp) {
      p.status = PointResult::Status::kOk;
      p.note.clear();
    }
  }
  const std::string table = RenderTables(r);
  const size_t at = table.find("odp: runs on rxe0 despite");
  ASSERT_NE(at, std::string::npos) << table;
  EXPECT_LT(at, table.find("== reuse:"));
}

// ---------------------------------------------------------------- odp defect

TEST(OdpDefect, IsReadFromTheLibrarysModeReason) {
  // regcache_stats.mode_reason with REGCACHE_MODE=odp and with auto.
  EXPECT_EQ(
      OdpDefectIn("requested; known defect rxe-odp-page-offset; rxe0 "
                  "supports ODP for RC send/recv/write/read; explicit MRs"),
      kRxeOdpPageOffset);
  EXPECT_EQ(OdpDefectIn("rxe0: ODP not used, known defect rxe-odp-page-offset "
                        "(unaligned RDMA lands misplaced); REGCACHE_MODE=odp "
                        "overrides"),
            kRxeOdpPageOffset);
  EXPECT_EQ(OdpDefectIn("requested; mlx5_0 supports ODP for RC "
                        "send/recv/write/read; explicit MRs"),
            "");
  EXPECT_EQ(OdpDefectIn(""), "");
}

TEST(OdpDefect, RxePageOffsetRunsOnlyAtPathMtuEqualToThePageSize) {
  EXPECT_EQ(OdpRefusal("rxe0", kRxeOdpPageOffset, 4096, 4096), "");
  for (uint32_t mtu : {256u, 512u, 1024u, 2048u}) {
    const std::string why = OdpRefusal("rxe0", kRxeOdpPageOffset, mtu, 4096);
    EXPECT_EQ(why.rfind("refused on rxe0: its ODP has the known defect "
                        "rxe-odp-page-offset (a packet that starts inside a "
                        "page lands misplaced): at path MTU " +
                            std::to_string(mtu) + " with 4096-byte pages",
                        0),
              0u)
        << why;
    EXPECT_NE(why.find("active_mtu is 4096, e.g. to 9000"), std::string::npos)
        << why;
  }
  // Pages larger than any RDMA MTU: every packet but a page's first starts
  // inside it.
  const std::string big = OdpRefusal("rxe0", kRxeOdpPageOffset, 4096, 65536);
  EXPECT_NE(big.find("no RDMA MTU reaches the page size"), std::string::npos)
      << big;
  EXPECT_NE(OdpDefectAvoidedNote("rxe0", kRxeOdpPageOffset, 4096, 4096)
                .find("path MTU 4096 = page size 4096"),
            std::string::npos);
}

TEST(OdpDefect, NoDefectNeverRefusesAndAnUnknownOneAlwaysDoes) {
  EXPECT_EQ(OdpRefusal("mlx5_0", "", 1024, 4096), "");
  EXPECT_EQ(OdpRefusal("dev0", "dev-odp-something", 4096, 4096),
            "refused on dev0: its ODP has the known defect dev-odp-something, "
            "which this tool does not know how to avoid");
}

// Tags of an XML text: every element closes, in order; returns the element
// names in document order (for counting), or an empty list if unbalanced.
std::vector<std::string> XmlElements(const std::string& xml, std::string* why) {
  std::vector<std::string> open, all;
  for (size_t at = xml.find('<'); at != std::string::npos;
       at = xml.find('<', at + 1)) {
    const size_t end = xml.find('>', at);
    if (end == std::string::npos) {
      *why = "unterminated tag";
      return {};
    }
    std::string tag = xml.substr(at + 1, end - at - 1);
    if (tag.empty() || tag[0] == '?' || tag[0] == '!') continue;
    if (tag[0] == '/') {
      if (open.empty() || open.back() != tag.substr(1)) {
        *why = "</" + tag.substr(1) + "> closes " +
               (open.empty() ? "nothing" : open.back());
        return {};
      }
      open.pop_back();
      continue;
    }
    const bool self_closing = tag.back() == '/';
    const std::string name = tag.substr(0, tag.find_first_of(" /"));
    all.push_back(name);
    if (!self_closing) open.push_back(name);
  }
  if (!open.empty()) {
    *why = "<" + open.back() + "> never closed";
    return {};
  }
  // Text never holds a bare '&' or '<' (escaped as entities).
  for (size_t at = xml.find('&'); at != std::string::npos;
       at = xml.find('&', at + 1)) {
    if (xml.compare(at, 5, "&amp;") && xml.compare(at, 4, "&lt;") &&
        xml.compare(at, 4, "&gt;") && xml.compare(at, 6, "&quot;")) {
      *why = "bare &";
      return {};
    }
  }
  return all;
}

TEST(Render, SvgIsWellFormedWithOnePolylinePerMeasuredModePerPanel) {
  Report r = SampleReport();
  r.device += " & <friends>";
  const std::string svg = RenderSvg(r);
  std::string why;
  const std::vector<std::string> elements = XmlElements(svg, &why);
  ASSERT_FALSE(elements.empty()) << why << "\n" << svg;
  EXPECT_EQ(elements.front(), "svg");
  // reuse: per-message, kmod, none, once (odp unavailable) = 4;
  // realloc: per-message, kmod, none (once n/a) = 3.
  EXPECT_EQ(std::count(elements.begin(), elements.end(), "polyline"), 7);
  for (Mode mode : {Mode::kPerMessage, Mode::kKmod, Mode::kNone}) {
    const std::string attr =
        std::string("data-mode=\"") + ModeName(mode) + "\"";
    size_t n = 0;
    for (size_t at = svg.find(attr); at != std::string::npos;
         at = svg.find(attr, at + 1))
      ++n;
    EXPECT_EQ(n, 2u) << ModeName(mode);
  }
  // Legend names every mode, axis labels and a title are there, and the
  // unsafe points are marked.
  for (Mode mode : r.modes)
    EXPECT_NE(svg.find(ModeName(mode)), std::string::npos);
  EXPECT_NE(svg.find("message size (bytes, log scale)"), std::string::npos);
  EXPECT_NE(svg.find("bandwidth (MB/s)"), std::string::npos);
  EXPECT_NE(svg.find("regcache-pingpong: RDMA WRITE rendezvous bandwidth"),
            std::string::npos);
  EXPECT_NE(svg.find("class=\"unsafe\""), std::string::npos);
  EXPECT_NE(svg.find("&amp; &lt;friends&gt;"), std::string::npos);
}

TEST(Render, SvgXAxisIsLogarithmic) {
  Report r;
  r.device = "d";
  r.workloads = {"reuse"};
  r.sizes = {4 << 10, 64 << 10, 1 << 20};
  r.modes = {Mode::kKmod};
  for (uint64_t size : r.sizes)
    r.points.push_back(Measured("reuse", Mode::kKmod, size, 10));
  const std::string svg = RenderSvg(r);
  const size_t at = svg.find("<polyline");
  ASSERT_NE(at, std::string::npos);
  const size_t pts = svg.find("points=\"", at) + 8;
  double x[3], y[3];
  ASSERT_EQ(sscanf(svg.c_str() + pts, "%lf,%lf %lf,%lf %lf,%lf", &x[0], &y[0],
                   &x[1], &y[1], &x[2], &y[2]),
            6);
  // 4K -> 64K and 64K -> 1M are both x16: equal steps on a log axis.
  EXPECT_NEAR(x[1] - x[0], x[2] - x[1], 0.2);
  EXPECT_GT(x[1], x[0]);
}

// ---------------------------------------------------------------- progress

// What a ProgressPrinter writes for `steps`, to a terminal or not.
std::string ProgressText(bool terminal,
                         const std::vector<ProgressStep>& steps) {
  char* text = nullptr;
  size_t length = 0;
  FILE* out = open_memstream(&text, &length);
  {
    ProgressPrinter progress(out, terminal, "tool: ");
    for (const ProgressStep& step : steps) progress.Step(step);
    progress.Finish();
  }
  fclose(out);
  std::string result(text, length);
  free(text);
  return result;
}

// Two workloads x two sizes x two modes x two passes.
std::vector<ProgressStep> SixteenSteps() {
  std::vector<ProgressStep> steps;
  for (const char* workload : {"reuse", "realloc"})
    for (uint64_t size : {4096u, 65536u})
      for (uint32_t pass : {0u, 1u})
        for (Mode mode : {Mode::kKmod, Mode::kOnce})
          steps.push_back({steps.size() + 1, 16, workload, mode, size, pass});
  return steps;
}

TEST(Progress, IntoAFileOrPipeIsAPlainLinePerWorkloadAndSize) {
  const std::string text = ProgressText(/*terminal=*/false, SixteenSteps());
  EXPECT_EQ(text,
            "tool: [1/16] reuse 4K\n"
            "tool: [5/16] reuse 64K\n"
            "tool: [9/16] realloc 4K\n"
            "tool: [13/16] realloc 64K\n");
}

TEST(Progress, OnATerminalIsOneLineRewrittenInPlaceThenCleared) {
  const std::string text = ProgressText(/*terminal=*/true, SixteenSteps());
  EXPECT_EQ(std::count(text.begin(), text.end(), '\r'), 16 + 2);
  EXPECT_EQ(text.find('\n'), std::string::npos);
  EXPECT_NE(text.find("[16/16] realloc    register-once           64K pass 2"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.substr(text.size() - 80), "\r" + std::string(78, ' ') + "\r");
  // Nothing shown, nothing to clear.
  EXPECT_EQ(ProgressText(/*terminal=*/true, {}), "");
}

// ------------------------------------------------------- the real program

using regcache_tools::RunCommand;

TEST(Program, WithoutTheDeviceSaysSoOnceAndWritesNoCarriageReturns) {
  // Both endpoints fail to find the device; stderr is a pipe here.
  int status = -1;
  const std::string err =
      RunCommand(std::string(REGCACHE_PINGPONG_BINARY) +
                     " --quick -d regcache-test-no-such-device 2>&1 >/dev/null",
                 &status);
  EXPECT_EQ(status, 3) << err;
  EXPECT_EQ(err.find('\r'), std::string::npos) << err;
  const std::string line = "no RDMA device";
  size_t n = 0;
  for (size_t at = err.find(line); at != std::string::npos;
       at = err.find(line, at + 1))
    ++n;
  EXPECT_EQ(n, 1u) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST(Program, AnOutputFileItCannotWriteIsABadArgumentBeforeTheRun) {
  int status = -1;
  const std::string err = RunCommand(
      std::string(REGCACHE_PINGPONG_BINARY) +
          " --quick --svg /regcache-test-no-such-dir/p.svg 2>&1 >/dev/null",
      &status);
  EXPECT_EQ(status, 2) << err;
  EXPECT_EQ(err,
            "regcache-pingpong: --svg /regcache-test-no-such-dir/p.svg: No "
            "such file or directory\n");
}

TEST(Program, UsageErrorsAndVersion) {
  int status = -1;
  const std::string err = RunCommand(
      std::string(REGCACHE_PINGPONG_BINARY) + " --passes 0 2>&1", &status);
  EXPECT_EQ(status, 2);
  EXPECT_EQ(err,
            "regcache-pingpong: --passes: '0' is not a number from 1 to 100\n"
            "Try 'regcache-pingpong --help'.\n");
  const std::string version = RunCommand(
      std::string(REGCACHE_PINGPONG_BINARY) + " --version 2>&1", &status);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(version.rfind("regcache-pingpong ", 0), 0u) << version;
  EXPECT_NE(version.find(" (regcache API "), std::string::npos) << version;
}

}  // namespace
}  // namespace regcache_pingpong
