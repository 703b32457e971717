// SPDX-License-Identifier: BSD-2-Clause
// Insert, Erase and CheckInvariants of the intrusive augmented AVL interval
// tree (the queries are templates in interval_tree_inl.h).
//
// Every mutation ends in RebalanceUpward, which walks from the lowest changed
// node towards the root recomputing height and subtree_last, rotating where
// the AVL balance is broken, and stops as soon as a subtree's height and
// subtree_last come out as they were before the mutation. Nothing here
// allocates, except CheckInvariants' description of a violation.
#include "core/interval_tree.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <functional>

namespace regcache_internal {
namespace {

int32_t Height(const IntervalNode* node) {
  return node == nullptr ? 0 : node->height;
}

// Strict order of nodes in the tree: by first, then by address so that
// duplicate intervals have a well-defined place.
bool Precedes(const IntervalNode* a, const IntervalNode* b) {
  if (a->first != b->first) return a->first < b->first;
  return std::less<const IntervalNode*>()(a, b);
}

// Recomputes node's height and subtree_last from its children.
void Update(IntervalNode* node) {
  node->height = 1 + std::max(Height(node->left), Height(node->right));
  uint64_t subtree_last = node->last;
  if (node->left != nullptr) {
    subtree_last = std::max(subtree_last, node->left->subtree_last);
  }
  if (node->right != nullptr) {
    subtree_last = std::max(subtree_last, node->right->subtree_last);
  }
  node->subtree_last = subtree_last;
}

IntervalNode* Leftmost(IntervalNode* node) {
  while (node->left != nullptr) node = node->left;
  return node;
}

std::string Describe(const IntervalNode* node) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "node %p [%#llx, %#llx]",
                static_cast<const void*>(node),
                static_cast<unsigned long long>(node->first),
                static_cast<unsigned long long>(node->last));
  return buf;
}

}  // namespace

// Makes `replacement` take `old_child`'s place under `parent` (or as root).
// Does not touch replacement->parent.
void IntervalTree::ReplaceChild(IntervalNode* parent, IntervalNode* old_child,
                                IntervalNode* replacement) {
  if (parent == nullptr) {
    root_ = replacement;
  } else if (parent->left == old_child) {
    parent->left = replacement;
  } else {
    parent->right = replacement;
  }
}

// x(a, y(b, c)) ==> y(x(a, b), c): y rises, x becomes its left child and
// takes over y's left subtree b. In-order (a x b y c) is unchanged.
IntervalNode* IntervalTree::RotateLeft(IntervalNode* x) {
  IntervalNode* y = x->right;
  x->right = y->left;
  if (y->left != nullptr) y->left->parent = x;
  y->parent = x->parent;
  ReplaceChild(x->parent, x, y);
  y->left = x;
  x->parent = y;
  Update(x);
  Update(y);
  return y;
}

// Mirror image of RotateLeft.
IntervalNode* IntervalTree::RotateRight(IntervalNode* x) {
  IntervalNode* y = x->left;
  x->left = y->right;
  if (y->right != nullptr) y->right->parent = x;
  y->parent = x->parent;
  ReplaceChild(x->parent, x, y);
  y->right = x;
  x->parent = y;
  Update(x);
  Update(y);
  return y;
}

// Recomputes `node` and restores its AVL balance (children are balanced and
// differ in height by at most 2). Returns the root of the rebalanced subtree.
IntervalNode* IntervalTree::Rebalance(IntervalNode* node) {
  Update(node);
  const int32_t balance = Height(node->left) - Height(node->right);
  if (balance > 1) {
    if (Height(node->left->left) < Height(node->left->right)) {
      RotateLeft(node->left);
    }
    return RotateRight(node);
  }
  if (balance < -1) {
    if (Height(node->right->right) < Height(node->right->left)) {
      RotateRight(node->right);
    }
    return RotateLeft(node);
  }
  return node;
}

// Walks from `node` to the root. The ancestors' height and subtree_last were
// computed from the values `node` held before the mutation, so once a subtree
// comes out with the same height and subtree_last the rest is still right,
// unless the mutation also changed a node further up the path: the walk does
// not stop before it has been through `also_changed` (an ancestor of `node`,
// or nullptr).
void IntervalTree::RebalanceUpward(IntervalNode* node,
                                   const IntervalNode* also_changed) {
  bool may_stop = also_changed == nullptr;
  while (node != nullptr) {
    if (node == also_changed) may_stop = true;
    const int32_t old_height = node->height;
    const uint64_t old_subtree_last = node->subtree_last;
    IntervalNode* subtree = Rebalance(node);
    if (may_stop && subtree->height == old_height &&
        subtree->subtree_last == old_subtree_last) {
      return;
    }
    node = subtree->parent;
  }
}

void IntervalTree::Insert(IntervalNode* node) {
  assert(node->height == 0 && "node is already in a tree");
  assert(node->first <= node->last);
  node->left = nullptr;
  node->right = nullptr;
  node->height = 1;
  node->subtree_last = node->last;
  ++size_;

  IntervalNode* parent = nullptr;
  IntervalNode** link = &root_;
  while (*link != nullptr) {
    parent = *link;
    link = Precedes(node, parent) ? &parent->left : &parent->right;
  }
  node->parent = parent;
  *link = node;
  RebalanceUpward(parent, nullptr);
}

void IntervalTree::Erase(IntervalNode* node) {
  assert(node->height != 0 && "node is not in a tree");
  assert(size_ > 0);
  IntervalNode* lowest_changed;
  // Set when the successor moves up: its new position is a second place where
  // the tree changed, since its `last` replaces node->last there.
  IntervalNode* moved_successor = nullptr;
  if (node->left == nullptr || node->right == nullptr) {
    // Splice the node out; its only child (if any) takes its place.
    IntervalNode* child = node->left != nullptr ? node->left : node->right;
    if (child != nullptr) child->parent = node->parent;
    ReplaceChild(node->parent, node, child);
    lowest_changed = node->parent;
  } else {
    // Move the in-order successor (leftmost of the right subtree, which has
    // no left child) into the node's place.
    IntervalNode* successor = Leftmost(node->right);
    if (successor->parent == node) {
      lowest_changed = successor;  // keeps its right subtree
    } else {
      lowest_changed = successor->parent;
      successor->parent->left = successor->right;
      if (successor->right != nullptr) {
        successor->right->parent = successor->parent;
      }
      successor->right = node->right;
      node->right->parent = successor;
    }
    successor->left = node->left;
    node->left->parent = successor;
    successor->parent = node->parent;
    ReplaceChild(node->parent, node, successor);
    // The ancestors saw node's values at this position; RebalanceUpward
    // compares against them to know when to stop.
    successor->height = node->height;
    successor->subtree_last = node->subtree_last;
    moved_successor = successor;
  }
  node->left = nullptr;
  node->right = nullptr;
  node->parent = nullptr;
  node->height = 0;
  --size_;
  RebalanceUpward(lowest_changed, moved_successor);
}

// Checks the subtree at `node` (whose parent must be `parent`) and returns
// false with a description on the first violation. `previous` is the last
// node seen in order; `count` the nodes seen so far.
bool IntervalTree::CheckSubtree(const IntervalNode* node,
                                const IntervalNode* parent, int depth,
                                const IntervalNode** previous, size_t* count,
                                std::string* why) const {
  if (node == nullptr) return true;
  // Bounds recursion and catches cycles before they overflow the stack; an
  // AVL tree of 2^64 nodes is less than 93 high.
  if (depth > 96) {
    *why = "deeper than any AVL tree can be at " + Describe(node);
    return false;
  }
  if (++*count > size_) {
    *why = "more nodes reachable than size() = " + std::to_string(size_);
    return false;
  }
  if (node->parent != parent) {
    *why = "wrong parent link at " + Describe(node);
    return false;
  }
  if (node->first > node->last) {
    *why = "first > last at " + Describe(node);
    return false;
  }
  if (!CheckSubtree(node->left, node, depth + 1, previous, count, why)) {
    return false;
  }
  if (*previous != nullptr && !Precedes(*previous, node)) {
    *why = "out of order: " + Describe(*previous) + " before " + Describe(node);
    return false;
  }
  *previous = node;
  if (!CheckSubtree(node->right, node, depth + 1, previous, count, why)) {
    return false;
  }
  const int32_t left_height = Height(node->left);
  const int32_t right_height = Height(node->right);
  if (node->height != 1 + std::max(left_height, right_height)) {
    *why = "height " + std::to_string(node->height) + " should be " +
           std::to_string(1 + std::max(left_height, right_height)) + " at " +
           Describe(node);
    return false;
  }
  if (left_height - right_height > 1 || right_height - left_height > 1) {
    *why = "unbalanced (left height " + std::to_string(left_height) +
           ", right height " + std::to_string(right_height) + ") at " +
           Describe(node);
    return false;
  }
  uint64_t subtree_last = node->last;
  if (node->left != nullptr) {
    subtree_last = std::max(subtree_last, node->left->subtree_last);
  }
  if (node->right != nullptr) {
    subtree_last = std::max(subtree_last, node->right->subtree_last);
  }
  if (node->subtree_last != subtree_last) {
    *why = "subtree_last " + std::to_string(node->subtree_last) +
           " should be " + std::to_string(subtree_last) + " at " +
           Describe(node);
    return false;
  }
  return true;
}

bool IntervalTree::CheckInvariants(std::string* why) const {
  std::string ignored;
  if (why == nullptr) why = &ignored;
  why->clear();
  const IntervalNode* previous = nullptr;
  size_t count = 0;
  if (!CheckSubtree(root_, nullptr, 0, &previous, &count, why)) return false;
  if (count != size_) {
    *why = "size() = " + std::to_string(size_) + " but " +
           std::to_string(count) + " nodes are reachable";
    return false;
  }
  return true;
}

}  // namespace regcache_internal
