// SPDX-License-Identifier: BSD-2-Clause
// An intrusive, augmented AVL interval tree over closed ranges [first, last].
//
// The cache embeds an IntervalNode in each entry; the tree never allocates,
// so it can be used under the cache mutex without calling malloc/free (which
// may munmap, which may block on the userfaultfd monitor). Duplicate and
// overlapping intervals are allowed; nodes are ordered by (first, address).
// Not thread-safe: the caller serialises every call (the cache mutex).
#ifndef REGCACHE_SRC_REGCACHE_CORE_INTERVAL_TREE_H_
#define REGCACHE_SRC_REGCACHE_CORE_INTERVAL_TREE_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace regcache_internal {

struct IntervalNode {
  uint64_t first = 0;  // closed interval: first <= last
  uint64_t last = 0;
  // INVARIANT: subtree_last == max(last, left->subtree_last,
  //                                right->subtree_last)
  uint64_t subtree_last = 0;
  IntervalNode* left = nullptr;
  IntervalNode* right = nullptr;
  IntervalNode* parent = nullptr;
  // INVARIANT: height == 1 + max(height(left), height(right)), and the two
  // children's heights differ by at most 1 (AVL balance).
  int32_t height = 0;  // 0 while not in a tree
};

class IntervalTree {
 public:
  IntervalTree() = default;
  IntervalTree(const IntervalTree&) = delete;
  IntervalTree& operator=(const IntervalTree&) = delete;

  // `node->first/last` must be set; the node must not be in a tree.
  void Insert(IntervalNode* node);
  // `node` must be in this tree.
  void Erase(IntervalNode* node);

  // Calls fn(IntervalNode*) for every node overlapping [first, last], in
  // ascending order of first; stops early when fn returns false. fn must not
  // modify the tree.
  template <typename Fn>
  void ForEachOverlap(uint64_t first, uint64_t last, Fn&& fn) const;

  // The first node (ascending first) with node->first <= first and
  // node->last >= last for which pred(node) is true, or nullptr.
  template <typename Pred>
  IntervalNode* FindCovering(uint64_t first, uint64_t last, Pred&& pred) const;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  IntervalNode* root() const { return root_; }

  // Expensive: checks ordering, parent links, heights, balance,
  // subtree_last and size. Returns false and describes the first violation.
  bool CheckInvariants(std::string* why) const;

 private:
  void ReplaceChild(IntervalNode* parent, IntervalNode* old_child,
                    IntervalNode* replacement);
  IntervalNode* RotateLeft(IntervalNode* x);
  IntervalNode* RotateRight(IntervalNode* x);
  IntervalNode* Rebalance(IntervalNode* node);
  void RebalanceUpward(IntervalNode* node, const IntervalNode* also_changed);
  bool CheckSubtree(const IntervalNode* node, const IntervalNode* parent,
                    int depth, const IntervalNode** previous, size_t* count,
                    std::string* why) const;

  IntervalNode* root_ = nullptr;
  // INVARIANT: size_ == number of nodes reachable from root_.
  size_t size_ = 0;
};

}  // namespace regcache_internal

#include "core/interval_tree_inl.h"  // IWYU pragma: export

#endif  // REGCACHE_SRC_REGCACHE_CORE_INTERVAL_TREE_H_
