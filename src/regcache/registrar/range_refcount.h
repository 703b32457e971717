// SPDX-License-Identifier: BSD-2-Clause
// A per-byte reference count over the address space, kept as runs.
//
// RangeRefcount records how many live ranges cover each byte, stored as
// disjoint maximal runs of equal nonzero count in a std::map. The fake
// registrar uses it to know which pages it may munlock() when one of several
// overlapping registrations goes away: mlock() does not nest, so unlocking
// one registration's range must skip pages another registration still
// covers. Ranges are closed, [first, last], so the top page can be named.
// Not thread-safe: the caller serialises every call. Allocates.
#ifndef REGCACHE_SRC_REGCACHE_REGISTRAR_RANGE_REFCOUNT_H_
#define REGCACHE_SRC_REGCACHE_REGISTRAR_RANGE_REFCOUNT_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace regcache_internal {

struct ClosedRange {
  uint64_t first = 0;
  uint64_t last = 0;  // first <= last
  bool operator==(const ClosedRange&) const = default;
};

class RangeRefcount {
 public:
  RangeRefcount() = default;
  RangeRefcount(const RangeRefcount&) = delete;
  RangeRefcount& operator=(const RangeRefcount&) = delete;

  // Adds one reference to every byte of [first, last].
  void Add(uint64_t first, uint64_t last);

  // Drops one reference from every byte of [first, last] and appends to
  // `released` the maximal sub-ranges whose count fell to zero, ascending.
  // Returns false and changes nothing if some byte of the range has no
  // reference (a Remove without a matching Add).
  bool Remove(uint64_t first, uint64_t last,
              std::vector<ClosedRange>* released);

  // The maximal sub-ranges of [first, last] with no reference, ascending.
  std::vector<ClosedRange> Uncovered(uint64_t first, uint64_t last) const;

  // True if every byte of [first, last] has at least one reference.
  bool Covers(uint64_t first, uint64_t last) const;

  // References on the byte at `addr` (0 if none).
  uint64_t CountAt(uint64_t addr) const;

  // Number of runs stored (for tests: merged runs keep this small).
  size_t runs() const { return runs_.size(); }
  bool empty() const { return runs_.empty(); }

  // Expensive: checks every INVARIANT below. Returns false and describes the
  // first violation.
  bool CheckInvariants(std::string* why) const;

 private:
  struct Run {
    uint64_t last;
    uint64_t count;
  };

  // Makes `addr` the first byte of a run if a run straddles it.
  void SplitAt(uint64_t addr);
  // Joins adjacent runs of equal count that touch [first, last].
  void MergeAround(uint64_t first, uint64_t last);

  // Keyed by each run's first byte.
  // INVARIANT: runs are disjoint and ascending; first <= last; count >= 1.
  // INVARIANT: two touching runs (a.last + 1 == b.first) differ in count,
  //            so every run is maximal.
  std::map<uint64_t, Run> runs_;
};

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_REGISTRAR_RANGE_REFCOUNT_H_
