// SPDX-License-Identifier: BSD-2-Clause
// Template members of IntervalTree: the two queries, ForEachOverlap and
// FindCovering. Included only from interval_tree.h.
//
// Both are in-order walks that use the parent links instead of a stack, so
// they need no memory and no recursion. Each prunes with the augmented
// subtree_last and stops at the first in-order node whose `first` is past the
// query, which bounds the work by the tree height per reported node.
#ifndef REGCACHE_SRC_REGCACHE_CORE_INTERVAL_TREE_INL_H_
#define REGCACHE_SRC_REGCACHE_CORE_INTERVAL_TREE_INL_H_

#include <cstdint>
#include <type_traits>

#include "core/interval_tree.h"

namespace regcache_internal {

namespace interval_tree_detail {

// Climbs from `node` to the next in-order node whose left subtree has just
// been finished, i.e. the in-order successor of a node whose right subtree is
// done (or skipped). Returns nullptr past the last node.
inline IntervalNode* NextAncestor(IntervalNode* node) {
  IntervalNode* child = node;
  IntervalNode* parent = node->parent;
  while (parent != nullptr && parent->right == child) {
    child = parent;
    parent = parent->parent;
  }
  return parent;
}

// In-order walk over the nodes with node->first <= max_first whose subtrees
// may hold a node with last >= min_last (subtree_last prunes the others).
// Calls visit(node) on each such node with node->last >= min_last until visit
// returns true. Returns the node at which visit returned true, or nullptr.
//
// Cost: O(h) to reach the first visited node and O(h) between consecutive
// visited nodes, where h is the tree height: any subtree it enters has
// subtree_last >= min_last, so a subtree lying wholly left of the
// max_first boundary holds a node to visit, and the walk to it is one path.
template <typename Visit>
IntervalNode* Walk(IntervalNode* root, uint64_t max_first, uint64_t min_last,
                   Visit& visit) {
  IntervalNode* node = root;
  if (node == nullptr || node->subtree_last < min_last) return nullptr;
  for (;;) {
    // Invariant here: node->subtree_last >= min_last. Descend to the leftmost
    // node of this subtree whose left subtree has nothing for us.
    while (node->left != nullptr && node->left->subtree_last >= min_last) {
      node = node->left;
    }
    for (;;) {
      // Every later in-order node has first >= node->first.
      if (node->first > max_first) return nullptr;
      if (node->last >= min_last && visit(node)) return node;
      if (node->right != nullptr && node->right->subtree_last >= min_last) {
        node = node->right;
        break;  // descend into the right subtree
      }
      node = NextAncestor(node);
      if (node == nullptr) return nullptr;
      // `node`'s left subtree is done; visit `node` itself next.
    }
  }
}

}  // namespace interval_tree_detail

template <typename Fn>
void IntervalTree::ForEachOverlap(uint64_t first, uint64_t last,
                                  Fn&& fn) const {
  static_assert(
      std::is_convertible_v<std::invoke_result_t<Fn&, IntervalNode*>, bool>,
      "fn must return bool: false stops the walk");
  // A node overlaps [first, last] iff node->first <= last and
  // node->last >= first (closed intervals).
  auto visit = [&fn](IntervalNode* node) { return !fn(node); };
  interval_tree_detail::Walk(root_, last, first, visit);
}

template <typename Pred>
IntervalNode* IntervalTree::FindCovering(uint64_t first, uint64_t last,
                                         Pred&& pred) const {
  static_assert(
      std::is_convertible_v<std::invoke_result_t<Pred&, IntervalNode*>, bool>,
      "pred must return bool");
  // A node covers [first, last] iff node->first <= first and
  // node->last >= last. pred is called only on covering nodes, in ascending
  // order, until it returns true.
  auto visit = [&pred](IntervalNode* node) -> bool { return pred(node); };
  return interval_tree_detail::Walk(root_, first, last, visit);
}

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_CORE_INTERVAL_TREE_INL_H_
