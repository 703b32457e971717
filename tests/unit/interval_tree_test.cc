// SPDX-License-Identifier: BSD-2-Clause
// Tests of the intrusive augmented AVL interval tree (interval_tree.h).
//
// Edge cases first, then a randomised comparison against a std::set oracle at
// several scales, with CheckInvariants() after every mutation. The seed is
// printed and recorded; REGCACHE_TEST_SEED=<n> replays a run. This binary
// replaces global operator new/delete to count allocations, so it can check
// that the tree never allocates.
#include "core/interval_tree.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <new>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace {
std::atomic<uint64_t> g_heap_calls{0};  // operator new and delete calls
}  // namespace

void* operator new(std::size_t size) {
  g_heap_calls.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return ::operator new(size); }
namespace {
// The replacement operator new above allocates with malloc(), so free() is
// its match; GCC cannot see that through the inlined operator delete.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void CountedFree(void* p) {
  g_heap_calls.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}
#pragma GCC diagnostic pop
}  // namespace
void operator delete(void* p) noexcept { CountedFree(p); }
void operator delete[](void* p) noexcept { CountedFree(p); }
void operator delete(void* p, std::size_t) noexcept { CountedFree(p); }
void operator delete[](void* p, std::size_t) noexcept { CountedFree(p); }

namespace regcache_internal {
namespace {

constexpr uint64_t kMax = UINT64_MAX;

::testing::AssertionResult Valid(const IntervalTree& tree) {
  std::string why;
  if (tree.CheckInvariants(&why)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "CheckInvariants: " << why;
}

IntervalNode MakeNode(uint64_t first, uint64_t last) {
  IntervalNode node;
  node.first = first;
  node.last = last;
  return node;
}

std::vector<IntervalNode*> Overlaps(const IntervalTree& tree, uint64_t first,
                                    uint64_t last) {
  std::vector<IntervalNode*> found;
  tree.ForEachOverlap(first, last, [&](IntervalNode* node) {
    found.push_back(node);
    return true;
  });
  return found;
}

IntervalNode* Covering(const IntervalTree& tree, uint64_t first,
                       uint64_t last) {
  return tree.FindCovering(first, last, [](IntervalNode*) { return true; });
}

// Largest height an AVL tree of n nodes can have.
int MaxAvlHeight(size_t n) {
  return static_cast<int>(1.4405 * std::log2(static_cast<double>(n) + 2) -
                          0.3277);
}

uint64_t TestSeed() {
  static const uint64_t seed = [] {
    if (const char* env = std::getenv("REGCACHE_TEST_SEED")) {
      return static_cast<uint64_t>(std::strtoull(env, nullptr, 0));
    }
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) | device();
  }();
  return seed;
}

uint64_t AnnounceSeed() {
  const uint64_t seed = TestSeed();
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  std::cout << "[   SEED   ] REGCACHE_TEST_SEED=" << seed << std::endl;
  return seed;
}

// ---------------------------------------------------------------------------
// Edge cases.

TEST(IntervalTree, EmptyTreeFindsNothing) {
  IntervalTree tree;
  EXPECT_TRUE(tree.empty());
  EXPECT_EQ(tree.size(), 0u);
  EXPECT_EQ(tree.root(), nullptr);
  EXPECT_TRUE(Valid(tree));
  EXPECT_TRUE(Overlaps(tree, 0, kMax).empty());
  EXPECT_EQ(Covering(tree, 0, 0), nullptr);
  EXPECT_EQ(Covering(tree, kMax, kMax), nullptr);
}

TEST(IntervalTree, SingleNodeIsFoundOnlyWhereItOverlaps) {
  IntervalTree tree;
  IntervalNode node = MakeNode(100, 199);
  tree.Insert(&node);
  ASSERT_TRUE(Valid(tree));
  EXPECT_EQ(tree.size(), 1u);
  EXPECT_EQ(tree.root(), &node);
  EXPECT_EQ(node.height, 1);
  EXPECT_EQ(node.subtree_last, 199u);

  using Nodes = std::vector<IntervalNode*>;
  EXPECT_EQ(Overlaps(tree, 0, 99), Nodes{});
  EXPECT_EQ(Overlaps(tree, 0, 100), Nodes{&node});
  EXPECT_EQ(Overlaps(tree, 150, 150), Nodes{&node});
  EXPECT_EQ(Overlaps(tree, 199, kMax), Nodes{&node});
  EXPECT_EQ(Overlaps(tree, 200, kMax), Nodes{});
  EXPECT_EQ(Overlaps(tree, 0, kMax), Nodes{&node});

  EXPECT_EQ(Covering(tree, 100, 199), &node);
  EXPECT_EQ(Covering(tree, 120, 130), &node);
  EXPECT_EQ(Covering(tree, 99, 130), nullptr);
  EXPECT_EQ(Covering(tree, 120, 200), nullptr);

  tree.Erase(&node);
  EXPECT_TRUE(Valid(tree));
  EXPECT_TRUE(tree.empty());
  EXPECT_EQ(tree.root(), nullptr);
  // An erased node is reset to "not in a tree" and can be inserted again.
  EXPECT_EQ(node.height, 0);
  EXPECT_EQ(node.parent, nullptr);
  EXPECT_EQ(node.left, nullptr);
  EXPECT_EQ(node.right, nullptr);
  tree.Insert(&node);
  EXPECT_TRUE(Valid(tree));
  EXPECT_EQ(Covering(tree, 150, 150), &node);
}

TEST(IntervalTree, AdjacentClosedIntervalsDoNotOverlap) {
  IntervalTree tree;
  IntervalNode low = MakeNode(0, 9);
  IntervalNode high = MakeNode(10, 19);
  tree.Insert(&low);
  tree.Insert(&high);
  ASSERT_TRUE(Valid(tree));

  using Nodes = std::vector<IntervalNode*>;
  EXPECT_EQ(Overlaps(tree, 9, 9), Nodes{&low});
  EXPECT_EQ(Overlaps(tree, 10, 10), Nodes{&high});
  EXPECT_EQ(Overlaps(tree, 9, 10), (Nodes{&low, &high}));
  EXPECT_EQ(Overlaps(tree, 0, 9), Nodes{&low});
  EXPECT_EQ(Overlaps(tree, 10, 19), Nodes{&high});
  EXPECT_EQ(Overlaps(tree, 20, 29), Nodes{});

  // Neither covers a range that straddles the seam.
  EXPECT_EQ(Covering(tree, 9, 10), nullptr);
  EXPECT_EQ(Covering(tree, 0, 9), &low);
  EXPECT_EQ(Covering(tree, 10, 19), &high);
  EXPECT_EQ(Covering(tree, 19, 19), &high);
}

TEST(IntervalTree, IntervalsEndingAtTheTopOfTheAddressSpace) {
  IntervalTree tree;
  IntervalNode top = MakeNode(kMax - 9, kMax);
  IntervalNode point = MakeNode(kMax, kMax);
  IntervalNode everything = MakeNode(0, kMax);
  IntervalNode below = MakeNode(kMax - 20, kMax - 10);
  for (IntervalNode* node : {&top, &point, &everything, &below}) {
    tree.Insert(node);
    ASSERT_TRUE(Valid(tree));
  }
  EXPECT_EQ(tree.root()->subtree_last, kMax);

  using Nodes = std::vector<IntervalNode*>;
  EXPECT_EQ(Overlaps(tree, kMax, kMax), (Nodes{&everything, &top, &point}));
  EXPECT_EQ(Overlaps(tree, kMax - 10, kMax - 10), (Nodes{&everything, &below}));
  EXPECT_EQ(Overlaps(tree, 0, kMax),
            (Nodes{&everything, &below, &top, &point}));

  // FindCovering returns the covering node with the smallest first.
  EXPECT_EQ(Covering(tree, kMax, kMax), &everything);
  EXPECT_EQ(tree.FindCovering(
                kMax, kMax, [&](IntervalNode* n) { return n != &everything; }),
            &top);
  EXPECT_EQ(
      tree.FindCovering(kMax - 9, kMax,
                        [&](IntervalNode* n) { return n != &everything; }),
      &top);
  EXPECT_EQ(
      tree.FindCovering(kMax - 10, kMax,
                        [&](IntervalNode* n) { return n != &everything; }),
      nullptr);
}

TEST(IntervalTree, DuplicateIntervalsAreAllKeptAndFound) {
  std::vector<IntervalNode> nodes(50, MakeNode(4096, 8191));
  IntervalTree tree;
  for (IntervalNode& node : nodes) {
    tree.Insert(&node);
    ASSERT_TRUE(Valid(tree));
  }
  std::vector<IntervalNode*> found = Overlaps(tree, 8191, 8191);
  ASSERT_EQ(found.size(), nodes.size());
  // Duplicates are ordered by address.
  for (size_t i = 0; i < nodes.size(); ++i) EXPECT_EQ(found[i], &nodes[i]);
  EXPECT_EQ(Covering(tree, 5000, 6000), &nodes[0]);

  // Erase every other duplicate; the rest are still found, in order.
  for (size_t i = 0; i < nodes.size(); i += 2) {
    tree.Erase(&nodes[i]);
    ASSERT_TRUE(Valid(tree));
  }
  found = Overlaps(tree, 0, kMax);
  ASSERT_EQ(found.size(), nodes.size() / 2);
  for (size_t i = 0; i < found.size(); ++i)
    EXPECT_EQ(found[i], &nodes[2 * i + 1]);
}

TEST(IntervalTree, ErasingTheRootRepeatedlyKeepsTheTreeValid) {
  std::vector<IntervalNode> nodes;
  for (uint64_t i = 0; i < 300; ++i)
    nodes.push_back(MakeNode(i * 7, i * 7 + 20));
  IntervalTree tree;
  for (IntervalNode& node : nodes) tree.Insert(&node);
  ASSERT_TRUE(Valid(tree));
  while (!tree.empty()) {
    IntervalNode* root = tree.root();
    tree.Erase(root);
    ASSERT_TRUE(Valid(tree))
        << "after erasing the root with " << tree.size() << " left";
    EXPECT_EQ(root->height, 0);
    for (IntervalNode* found : Overlaps(tree, root->first, root->last)) {
      ASSERT_NE(found, root);
    }
  }
  EXPECT_EQ(tree.root(), nullptr);
}

TEST(IntervalTree, ErasesEveryNodeInRandomOrder) {
  const uint64_t seed = AnnounceSeed();
  SCOPED_TRACE("REGCACHE_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (size_t n : {1, 2, 3, 7, 64, 1000}) {
    std::vector<IntervalNode> nodes;
    for (size_t i = 0; i < n; ++i) {
      const uint64_t first = rng() % 1000;
      nodes.push_back(MakeNode(first, first + rng() % 100));
    }
    IntervalTree tree;
    for (IntervalNode& node : nodes) tree.Insert(&node);
    ASSERT_TRUE(Valid(tree));
    std::vector<IntervalNode*> order;
    for (IntervalNode& node : nodes) order.push_back(&node);
    std::shuffle(order.begin(), order.end(), rng);
    for (IntervalNode* node : order) {
      tree.Erase(node);
      ASSERT_TRUE(Valid(tree)) << "n=" << n;
    }
    EXPECT_TRUE(tree.empty());
    EXPECT_EQ(tree.root(), nullptr);
    EXPECT_TRUE(Overlaps(tree, 0, kMax).empty());
  }
}

// Sorted input is the worst case for an unbalanced tree.
TEST(IntervalTree, SortedInsertionKeepsTheHeightLogarithmic) {
  constexpr size_t kNodes = 1 << 16;
  enum class Order { kAscending, kDescending, kAllEqual };
  for (Order order :
       {Order::kAscending, Order::kDescending, Order::kAllEqual}) {
    std::vector<IntervalNode> nodes(kNodes);
    for (size_t i = 0; i < kNodes; ++i) {
      const uint64_t first = order == Order::kAllEqual    ? 0
                             : order == Order::kAscending ? i
                                                          : kNodes - i;
      nodes[i] = MakeNode(first, first + 1);
    }
    IntervalTree tree;
    for (size_t i = 0; i < kNodes; ++i) {
      tree.Insert(&nodes[i]);
      ASSERT_LE(tree.root()->height, MaxAvlHeight(tree.size()));
      if ((i & 4095) == 0) {
        ASSERT_TRUE(Valid(tree));
      }
    }
    ASSERT_TRUE(Valid(tree));
    // Sorted input fills the tree almost perfectly: log2(65536) + 1 = 17.
    EXPECT_LE(tree.root()->height, 18);
    // Erasing in sorted order must keep it balanced too.
    for (size_t i = 0; i < kNodes; ++i) {
      tree.Erase(&nodes[i]);
      if (!tree.empty()) {
        ASSERT_LE(tree.root()->height, MaxAvlHeight(tree.size()));
      }
      if ((i & 4095) == 0) {
        ASSERT_TRUE(Valid(tree));
      }
    }
    EXPECT_TRUE(tree.empty());
  }
}

TEST(IntervalTree, ForEachOverlapStopsWhenFnReturnsFalse) {
  std::vector<IntervalNode> nodes;
  for (uint64_t i = 0; i < 100; ++i) nodes.push_back(MakeNode(i, 1000));
  IntervalTree tree;
  for (IntervalNode& node : nodes) tree.Insert(&node);
  for (size_t stop_after : {1, 3, 50, 100}) {
    std::vector<IntervalNode*> seen;
    tree.ForEachOverlap(500, 600, [&](IntervalNode* node) {
      seen.push_back(node);
      return seen.size() < stop_after;
    });
    ASSERT_EQ(seen.size(), stop_after);
    for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], &nodes[i]);
  }
}

TEST(IntervalTree, FindCoveringAsksPredInAscendingOrderAndStopsAtTrue) {
  // [0,99] [10,99] [20,99] ... [90,99], plus ones that do not cover [50,60].
  std::vector<IntervalNode> nodes;
  for (uint64_t i = 0; i < 10; ++i) nodes.push_back(MakeNode(i * 10, 99));
  nodes.push_back(MakeNode(0, 59));
  nodes.push_back(MakeNode(51, 200));
  IntervalTree tree;
  for (IntervalNode& node : nodes) tree.Insert(&node);

  std::vector<IntervalNode*> asked;
  IntervalNode* found = tree.FindCovering(50, 60, [&](IntervalNode* node) {
    asked.push_back(node);
    return node->first >= 30;
  });
  EXPECT_EQ(found, &nodes[3]);
  EXPECT_EQ(asked, (std::vector<IntervalNode*>{&nodes[0], &nodes[1], &nodes[2],
                                               &nodes[3]}));

  asked.clear();
  found = tree.FindCovering(50, 60, [&](IntervalNode* node) {
    asked.push_back(node);
    return false;
  });
  EXPECT_EQ(found, nullptr);
  EXPECT_EQ(asked.size(), 6u);  // [0,99] .. [50,99]; never [0,59] or [51,200]
}

// A query must not look inside a subtree whose subtree_last says it ends
// before the query. Poison the `last` of every such node (leaving the stale
// subtree_last that hides it): a query that looked at them would report them.
TEST(IntervalTree, QueriesNeverExamineSubtreesThatEndBeforeTheQuery) {
  constexpr size_t kNodes = 4096;
  std::vector<IntervalNode> nodes;
  for (uint64_t i = 0; i < kNodes; ++i) {
    nodes.push_back(MakeNode(i * 16, i * 16 + 1));
  }
  IntervalTree tree;
  for (IntervalNode& node : nodes) tree.Insert(&node);
  for (uint64_t query : {uint64_t{5}, uint64_t{16 * 1000 + 8},
                         uint64_t{16 * 2047 + 1}, uint64_t{16 * 4095 + 8}}) {
    std::vector<IntervalNode*> poisoned;
    for (IntervalNode& node : nodes) {
      if (node.subtree_last < query) {
        node.last = kMax;
        poisoned.push_back(&node);
      }
    }
    ASSERT_FALSE(poisoned.empty());
    const uint64_t expected_first = query / 16 * 16;
    const bool in_node = query - expected_first <= 1;
    std::vector<IntervalNode*> found = Overlaps(tree, query, query);
    IntervalNode* covering = Covering(tree, query, query);
    for (IntervalNode* node : poisoned) node->last = node->first + 1;
    ASSERT_TRUE(Valid(tree));
    if (in_node) {
      EXPECT_EQ(found, std::vector<IntervalNode*>{&nodes[query / 16]});
      EXPECT_EQ(covering, &nodes[query / 16]);
    } else {
      EXPECT_TRUE(found.empty()) << "query " << query;
      EXPECT_EQ(covering, nullptr) << "query " << query;
    }
  }
}

// A scan of the whole tree costs ~4000x more per query on 2^20 nodes than on
// 2^8; a logarithmic walk costs ~2.5x, or 10-50x with cache misses. The bound
// is loose so that a loaded machine does not fail it.

TEST(IntervalTree, NeverAllocates) {
  constexpr size_t kNodes = 2000;
  std::vector<IntervalNode> nodes(kNodes);
  std::vector<IntervalNode*> order(kNodes);
  std::mt19937_64 rng(TestSeed());
  for (size_t i = 0; i < kNodes; ++i) {
    const uint64_t first = rng() % 100000;
    nodes[i] = MakeNode(first, first + rng() % 1000);
    order[i] = &nodes[i];
  }
  std::shuffle(order.begin(), order.end(), rng);
  IntervalTree tree;
  uint64_t sink = 0;

  const uint64_t heap_calls_before = g_heap_calls.load();
  for (IntervalNode* node : order) tree.Insert(node);
  for (uint64_t q = 0; q < 1000; ++q) {
    tree.ForEachOverlap(q * 100, q * 100 + 50, [&](IntervalNode* node) {
      sink += node->first;
      return true;
    });
    sink += Covering(tree, q * 100, q * 100 + 50) != nullptr;
  }
  for (size_t i = 0; i < kNodes; i += 2) tree.Erase(order[i]);
  for (size_t i = 0; i < kNodes; i += 2) tree.Insert(order[i]);
  for (IntervalNode* node : order) tree.Erase(node);
  const uint64_t heap_calls_after = g_heap_calls.load();

  EXPECT_EQ(heap_calls_after - heap_calls_before, 0u) << sink;
  EXPECT_TRUE(tree.empty());
}

// ---------------------------------------------------------------------------
// Randomised comparison against an oracle.

struct Scale {
  const char* name;
  size_t nodes;       // pool size: the most nodes in the tree at once
  uint64_t universe;  // random endpoints fall in [0, universe); 0 = 2^64
  int operations;
};

void PrintTo(const Scale& scale, std::ostream* os) { *os << scale.name; }

class IntervalTreeOracleTest : public ::testing::TestWithParam<Scale> {};

// Ordered the way the tree orders nodes: by first, then by address (all
// nodes live in one array, so `<` on their addresses is well defined).
using Oracle = std::set<std::pair<uint64_t, IntervalNode*>>;

TEST_P(IntervalTreeOracleTest, MatchesOracleUnderRandomOperations) {
  const Scale& scale = GetParam();
  const uint64_t seed = AnnounceSeed();
  SCOPED_TRACE("REGCACHE_TEST_SEED=" + std::to_string(seed) + " scale " +
               scale.name);
  // Each scale draws its own stream from the one printed seed.
  std::seed_seq seed_sequence{seed & 0xffffffffu, seed >> 32,
                              uint64_t{scale.nodes}};
  std::mt19937_64 rng(seed_sequence);
  std::vector<IntervalNode> pool(scale.nodes);
  std::vector<size_t> free_slots, used_slots;  // indices into pool
  for (size_t i = 0; i < pool.size(); ++i) free_slots.push_back(i);
  IntervalTree tree;
  Oracle oracle;

  auto chance = [&](int percent) {
    return static_cast<int>(rng() % 100) < percent;
  };
  auto random_point = [&]() -> uint64_t {
    return scale.universe == 0 ? rng() : rng() % scale.universe;
  };
  // Lengths from 1 to the whole universe, skewed towards short.
  auto random_length = [&]() -> uint64_t {
    const uint64_t length = rng() >> (rng() % 64);
    return scale.universe == 0 ? length : length % scale.universe;
  };
  auto saturating_add = [](uint64_t a, uint64_t b) {
    return a > kMax - b ? kMax : a + b;
  };
  auto random_interval = [&]() -> std::pair<uint64_t, uint64_t> {
    const int kind = static_cast<int>(rng() % 10);
    if (kind == 0 && !used_slots.empty()) {  // duplicate of a live interval
      const IntervalNode& twin = pool[used_slots[rng() % used_slots.size()]];
      return {twin.first, twin.last};
    }
    if (kind == 1) {  // ends at the top of the address space
      return {kMax - random_length() % 4096 * (rng() % 3), kMax};
    }
    if (kind == 2) {  // a point
      const uint64_t point = random_point();
      return {point, point};
    }
    const uint64_t first = random_point();
    return {first, saturating_add(first, random_length())};
  };
  // Queries favour the edges of live intervals, where off-by-one bugs live.
  auto random_query = [&]() -> std::pair<uint64_t, uint64_t> {
    if (chance(5)) return {0, kMax};
    auto endpoint = [&]() -> uint64_t {
      if (used_slots.empty() || chance(40)) return random_point();
      const IntervalNode& node = pool[used_slots[rng() % used_slots.size()]];
      switch (rng() % 4) {
        case 0:
          return node.first;
        case 1:
          return node.last;
        case 2:
          return node.first == 0 ? 0 : node.first - 1;
        default:
          return node.last == kMax ? kMax : node.last + 1;
      }
    };
    uint64_t a = endpoint();
    uint64_t b = chance(30) ? a : endpoint();
    if (a > b) std::swap(a, b);
    return {a, b};
  };

  int inserts = 0, erases = 0, overlap_queries = 0, covering_queries = 0;
  size_t largest = 0;
  for (int op = 0; op < scale.operations; ++op) {
    SCOPED_TRACE("operation " + std::to_string(op));
    // Alternate growing and shrinking phases so the tree's size sweeps.
    const bool growing = (op / 500) % 2 == 0;
    const int kind = static_cast<int>(rng() % 100);
    if (kind < (growing ? 40 : 15) && !free_slots.empty()) {
      const size_t pick = rng() % free_slots.size();
      const size_t slot = free_slots[pick];
      free_slots[pick] = free_slots.back();
      free_slots.pop_back();
      used_slots.push_back(slot);
      IntervalNode& node = pool[slot];
      std::tie(node.first, node.last) = random_interval();
      tree.Insert(&node);
      oracle.insert({node.first, &node});
      ++inserts;
      largest = std::max(largest, tree.size());
      ASSERT_TRUE(Valid(tree));
      ASSERT_EQ(tree.size(), oracle.size());
    } else if (kind < 50 && !used_slots.empty()) {
      const size_t pick = rng() % used_slots.size();
      const size_t slot = used_slots[pick];
      used_slots[pick] = used_slots.back();
      used_slots.pop_back();
      free_slots.push_back(slot);
      IntervalNode& node = pool[slot];
      tree.Erase(&node);
      ASSERT_EQ(oracle.erase({node.first, &node}), 1u);
      ++erases;
      ASSERT_TRUE(Valid(tree));
      ASSERT_EQ(tree.size(), oracle.size());
      ASSERT_EQ(node.height, 0);
    } else if (kind < 75) {
      const auto [first, last] = random_query();
      std::vector<IntervalNode*> expected;
      for (const auto& [key, node] : oracle) {
        if (node->first <= last && node->last >= first)
          expected.push_back(node);
      }
      // Sometimes stop early: fn returns false on its stop_at'th call.
      const size_t stop_at =
          chance(25) ? 1 + rng() % (expected.size() + 1) : SIZE_MAX;
      if (stop_at < expected.size()) expected.resize(stop_at);
      std::vector<IntervalNode*> found;
      tree.ForEachOverlap(first, last, [&](IntervalNode* node) {
        found.push_back(node);
        return found.size() < stop_at;
      });
      ++overlap_queries;
      ASSERT_EQ(found, expected) << "ForEachOverlap [" << first << ", " << last
                                 << "] stop_at " << stop_at;
    } else {
      const auto [first, last] = random_query();
      // pred accepts everything, nothing, or a pseudo-random subset.
      const int mode = static_cast<int>(rng() % 3);
      const size_t modulus = 2 + rng() % 4;
      auto accepts = [&](IntervalNode* node) {
        return mode == 0 ||
               (mode == 2 &&
                static_cast<size_t>(node - pool.data()) % modulus == 0);
      };
      std::vector<IntervalNode*> expected_asked;
      IntervalNode* expected = nullptr;
      for (const auto& [key, node] : oracle) {
        if (node->first <= first && node->last >= last) {
          expected_asked.push_back(node);
          if (accepts(node)) {
            expected = node;
            break;
          }
        }
      }
      std::vector<IntervalNode*> asked;
      IntervalNode* found =
          tree.FindCovering(first, last, [&](IntervalNode* node) {
            asked.push_back(node);
            return accepts(node);
          });
      ++covering_queries;
      ASSERT_EQ(found, expected)
          << "FindCovering [" << first << ", " << last << "] mode " << mode;
      ASSERT_EQ(asked, expected_asked)
          << "FindCovering [" << first << ", " << last << "] mode " << mode;
    }
  }
  std::cout << "[  " << scale.name << "  ] " << inserts << " inserts, "
            << erases << " erases, " << overlap_queries << " overlap queries, "
            << covering_queries << " covering queries, up to " << largest
            << " nodes" << std::endl;
  for (size_t slot : used_slots) tree.Erase(&pool[slot]);
  EXPECT_TRUE(tree.empty());
  EXPECT_TRUE(Valid(tree));
}

INSTANTIATE_TEST_SUITE_P(
    Scales, IntervalTreeOracleTest,
    ::testing::Values(
        // Few nodes, tiny universe: mostly duplicates and overlaps.
        Scale{"Tiny", 12, 16, 6000},
        // Dense: many overlapping intervals in a small range.
        Scale{"Dense", 300, 1 << 12, 12000},
        // Page-sized spread, as the cache sees it.
        Scale{"Medium", 2000, uint64_t{1} << 32, 12000},
        // Whole 64-bit space, including the very top.
        Scale{"Full64Bit", 1500, 0, 12000}),
    [](const ::testing::TestParamInfo<Scale>& info) {
      return std::string(info.param.name);
    });

}  // namespace
}  // namespace regcache_internal
