// SPDX-License-Identifier: BSD-2-Clause
// Tests of RangeRefcount against a per-unit oracle, plus the edges of the
// address space.
#include "registrar/range_refcount.h"

#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace regcache_internal {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

void ExpectValid(const RangeRefcount& counts) {
  std::string why;
  EXPECT_TRUE(counts.CheckInvariants(&why)) << why;
}

TEST(RangeRefcount, OverlappingAddsCountEachByte) {
  RangeRefcount counts;
  counts.Add(0, 9);
  counts.Add(5, 14);
  ExpectValid(counts);
  EXPECT_EQ(counts.CountAt(4), 1u);
  EXPECT_EQ(counts.CountAt(5), 2u);
  EXPECT_EQ(counts.CountAt(9), 2u);
  EXPECT_EQ(counts.CountAt(10), 1u);
  EXPECT_EQ(counts.CountAt(15), 0u);
  EXPECT_EQ(counts.runs(), 3u);
}

TEST(RangeRefcount, RemoveReleasesOnlyBytesNobodyElseHolds) {
  RangeRefcount counts;
  counts.Add(0, 9);
  counts.Add(5, 14);
  std::vector<ClosedRange> released;
  ASSERT_TRUE(counts.Remove(0, 9, &released));
  EXPECT_EQ(released, (std::vector<ClosedRange>{{0, 4}}));
  released.clear();
  ASSERT_TRUE(counts.Remove(5, 14, &released));
  EXPECT_EQ(released, (std::vector<ClosedRange>{{5, 14}}));
  EXPECT_TRUE(counts.empty());
}

TEST(RangeRefcount, RemoveOfUncoveredRangeChangesNothing) {
  RangeRefcount counts;
  counts.Add(10, 19);
  std::vector<ClosedRange> released;
  EXPECT_FALSE(counts.Remove(5, 15, &released));
  EXPECT_FALSE(counts.Remove(15, 25, &released));
  EXPECT_TRUE(released.empty());
  EXPECT_EQ(counts.CountAt(10), 1u);
  EXPECT_EQ(counts.runs(), 1u);
}

TEST(RangeRefcount, TouchingAddsMergeIntoOneRun) {
  RangeRefcount counts;
  counts.Add(0, 9);
  counts.Add(20, 29);
  counts.Add(10, 19);
  ExpectValid(counts);
  EXPECT_EQ(counts.runs(), 1u);
  EXPECT_TRUE(counts.Covers(0, 29));
}

TEST(RangeRefcount, UncoveredListsTheGaps) {
  RangeRefcount counts;
  counts.Add(10, 19);
  counts.Add(30, 39);
  EXPECT_EQ(counts.Uncovered(0, 50),
            (std::vector<ClosedRange>{{0, 9}, {20, 29}, {40, 50}}));
  EXPECT_EQ(counts.Uncovered(15, 35), (std::vector<ClosedRange>{{20, 29}}));
  EXPECT_TRUE(counts.Uncovered(12, 18).empty());
}

TEST(RangeRefcount, TopOfTheAddressSpaceDoesNotOverflow) {
  RangeRefcount counts;
  counts.Add(kMax - 9, kMax);
  counts.Add(kMax, kMax);
  counts.Add(0, 0);
  ExpectValid(counts);
  EXPECT_EQ(counts.CountAt(kMax), 2u);
  EXPECT_TRUE(counts.Covers(kMax - 9, kMax));
  EXPECT_EQ(counts.Uncovered(kMax - 20, kMax),
            (std::vector<ClosedRange>{{kMax - 20, kMax - 10}}));
  std::vector<ClosedRange> released;
  ASSERT_TRUE(counts.Remove(kMax - 9, kMax, &released));
  EXPECT_EQ(released, (std::vector<ClosedRange>{{kMax - 9, kMax - 1}}));
  released.clear();
  ASSERT_TRUE(counts.Remove(kMax, kMax, &released));
  EXPECT_EQ(released, (std::vector<ClosedRange>{{kMax, kMax}}));
  ExpectValid(counts);
  EXPECT_EQ(counts.runs(), 1u);  // {0, 0}
}

// Random Add/Remove over a small universe, checked byte by byte against an
// array of counts.
TEST(RangeRefcount, MatchesAnOracleUnderRandomOperations) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  constexpr uint64_t kUniverse = 64;
  std::vector<uint64_t> oracle(kUniverse, 0);
  std::vector<std::pair<uint64_t, uint64_t>> live;
  RangeRefcount counts;
  for (int step = 0; step < 20000; ++step) {
    std::vector<ClosedRange> released;
    if (!live.empty() && rng() % 2 == 0) {
      const size_t i = rng() % live.size();
      const auto [first, last] = live[i];
      live.erase(live.begin() + i);
      ASSERT_TRUE(counts.Remove(first, last, &released)) << "step " << step;
      std::vector<ClosedRange> want;
      for (uint64_t b = first; b <= last; ++b) {
        if (--oracle[b] != 0) continue;
        if (!want.empty() && want.back().last + 1 == b) {
          want.back().last = b;
        } else {
          want.push_back({b, b});
        }
      }
      ASSERT_EQ(released, want) << "step " << step;
    } else {
      const uint64_t first = rng() % kUniverse;
      const uint64_t last = first + rng() % (kUniverse - first);
      if (rng() % 8 == 0) {
        // A Remove that should be refused when some byte is uncovered.
        bool covered = true;
        for (uint64_t b = first; b <= last; ++b) covered &= oracle[b] > 0;
        ASSERT_EQ(counts.Covers(first, last), covered) << "step " << step;
        if (!covered) {
          ASSERT_FALSE(counts.Remove(first, last, &released));
        }
        continue;
      }
      counts.Add(first, last);
      for (uint64_t b = first; b <= last; ++b) ++oracle[b];
      live.emplace_back(first, last);
    }
    std::string why;
    ASSERT_TRUE(counts.CheckInvariants(&why)) << "step " << step << ": " << why;
    for (uint64_t b = 0; b < kUniverse; ++b) {
      ASSERT_EQ(counts.CountAt(b), oracle[b])
          << "byte " << b << " step " << step;
    }
    const uint64_t q_first = rng() % kUniverse;
    const uint64_t q_last = q_first + rng() % (kUniverse - q_first);
    std::vector<ClosedRange> gaps;
    for (uint64_t b = q_first; b <= q_last; ++b) {
      if (oracle[b] != 0) continue;
      if (!gaps.empty() && gaps.back().last + 1 == b) {
        gaps.back().last = b;
      } else {
        gaps.push_back({b, b});
      }
    }
    ASSERT_EQ(counts.Uncovered(q_first, q_last), gaps) << "step " << step;
  }
}

}  // namespace
}  // namespace regcache_internal
