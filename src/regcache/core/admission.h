// SPDX-License-Identifier: BSD-2-Clause
// Admission: whether a miss keeps its registration in the cache or serves
// the get uncached (registered for that use, deregistered at its put, never
// watched). Caching costs a monitor watch, an invalidation and a reclaim on
// top of the registration; it pays only if the entry is hit. Two signals
// say when it will not be (docs/design.md, "Admission"):
//
//   ChurnTable       invalidation churn: a range that is unmapped (or
//                    otherwise invalidated) again and again with no hit in
//                    between, as when a program frees and reallocates its
//                    message buffers at the same address.
//   FrequencySketch  capacity churn: a working set larger than the cache.
//                    A full cache admits a newcomer only if it was
//                    requested more often than the entry CLOCK would evict
//                    for it (TinyLFU), so a cyclic scan keeps part of its
//                    ranges cached instead of evicting every one before
//                    its next use.
//
// Both are small fixed-size tables that never allocate after creation;
// the cache guards them with its mutex. Neither is on the hit path.
#ifndef REGCACHE_SRC_REGCACHE_CORE_ADMISSION_H_
#define REGCACHE_SRC_REGCACHE_CORE_ADMISSION_H_

#include <cstddef>
#include <cstdint>
#include <memory>

namespace regcache_internal {

// Wasted registrations per first page. An entry that is invalidated
// without having served a hit was a wasted registration; after
// kChurnThreshold of them in a row at the same first page, the range is
// churning: its next gets are served uncached. Every so often one get is
// cached again as a probe, with exponential backoff: kInitialSkip uncached
// gets before the first probe, twice as many after each probe that is
// invalidated unhit, at most kMaxSkip. A probe (or any entry of the range)
// that is hit before its invalidation ends the churn: the range is cached
// again as usual.
//
// The table is set-associative (kWays ways per set); a full set forgets its
// least recently touched slot. Forgetting a range only delays its
// detection.
class ChurnTable {
 public:
  static constexpr uint32_t kChurnThreshold = 2;
  static constexpr uint32_t kInitialSkip = 8;
  static constexpr uint32_t kMaxSkip = 64;
  static constexpr size_t kSets = 64;
  static constexpr size_t kWays = 4;

  enum class Decision {
    kCache,   // not churning: cache as usual
    kProbe,   // churning, but this get is the probe: cache it
    kBypass,  // churning: serve uncached
  };

  // A valid entry whose range starts at `first` was invalidated; `hit`
  // says whether it served any hit while it was cached.
  void OnInvalidated(uint64_t first, bool hit);
  // A get of a range starting at `first` missed. Counts an uncached get
  // against the range's backoff.
  Decision OnMiss(uint64_t first);
  // After OnMiss(first) said kBypass: hands the rest of the range's
  // uncached gets before its next probe to the caller, who serves them
  // without asking again (the cache's churn lane), and returns how many.
  // The next OnMiss(first) is then the probe, as it would have been.
  uint32_t TakeSkip(uint64_t first);
  // Gives back `unused` of what TakeSkip(first) handed out (at most up to
  // the range's current skip): the caller stopped serving the range.
  void GiveBackSkip(uint64_t first, uint32_t unused);

  // For tests: whether `first` is churning, and the uncached gets left
  // before its next probe.
  bool Churning(uint64_t first, uint32_t* skip_left = nullptr) const;
  // INVARIANT: in every slot, skip_left <= skip <= kMaxSkip, and
  // churning slots have skip >= kInitialSkip.
  bool CheckInvariants() const;

 private:
  struct Slot {
    uint64_t key = 0;        // first page + 1 (0: free)
    uint32_t wasted = 0;     // invalidations without a hit, in a row
    uint32_t skip = 0;       // uncached gets between probes (0: not churning)
    uint32_t skip_left = 0;  // uncached gets before the next probe
    uint32_t touched = 0;    // clock_ when last used, for replacement
  };
  Slot* Find(uint64_t first);
  const Slot* Find(uint64_t first) const;
  Slot* FindOrInsert(uint64_t first);
  static size_t SetOf(uint64_t first);

  Slot slots_[kSets * kWays];
  uint32_t clock_ = 0;
};

// A count-min sketch of how often ranges (by first page) were requested
// recently: kRows rows of 4-bit saturating counters (one byte each here),
// halved every 10 x width increments so that old popularity fades
// (TinyLFU's aging). Estimate() never under-counts what Increment() added
// since the last halving (rounding down at the halving aside).
class FrequencySketch {
 public:
  static constexpr int kRows = 4;
  static constexpr uint8_t kMaxCount = 15;

  // `width` counters per row, rounded up to a power of two (at least 64).
  // Returns false when memory cannot be had.
  bool Init(size_t width);
  void Increment(uint64_t first);
  uint32_t Estimate(uint64_t first) const;
  size_t width() const { return mask_ + 1; }

 private:
  size_t Index(uint64_t first, int row) const;
  void Halve();

  std::unique_ptr<uint8_t[]> counters_;  // kRows rows of width counters
  size_t mask_ = 0;
  uint64_t additions_ = 0;  // since the last halving
};

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_CORE_ADMISSION_H_
