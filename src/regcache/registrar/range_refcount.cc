// SPDX-License-Identifier: BSD-2-Clause
// RangeRefcount: per-byte reference counts stored as maximal runs.
//
// Every mutation first splits runs at the edges of the range it touches, so
// the loop over the range only ever sees whole runs, then merges the edges
// back so the runs stay maximal. Runs end at inclusive `last` values, so a
// range ending at UINT64_MAX needs no split past it.
#include "registrar/range_refcount.h"

#include <cstdint>
#include <iterator>
#include <limits>

namespace regcache_internal {

namespace {
constexpr uint64_t kMaxAddr = std::numeric_limits<uint64_t>::max();
}  // namespace

void RangeRefcount::SplitAt(uint64_t addr) {
  auto it = runs_.upper_bound(addr);
  if (it == runs_.begin()) return;
  --it;
  if (it->first < addr && it->second.last >= addr) {
    runs_.emplace_hint(std::next(it), addr,
                       Run{it->second.last, it->second.count});
    it->second.last = addr - 1;
  }
}

void RangeRefcount::MergeAround(uint64_t first, uint64_t last) {
  // Start at the run before `first` (it may touch the first run of the range)
  // and stop after the run that begins just past `last`.
  auto it = runs_.lower_bound(first);
  if (it != runs_.begin()) --it;
  while (it != runs_.end()) {
    auto next = std::next(it);
    if (next == runs_.end()) break;
    if (it->first > last) break;
    if (it->second.last != kMaxAddr && it->second.last + 1 == next->first &&
        it->second.count == next->second.count) {
      it->second.last = next->second.last;
      runs_.erase(next);
      continue;  // `it` may now touch the run after the erased one
    }
    it = next;
  }
}

void RangeRefcount::Add(uint64_t first, uint64_t last) {
  SplitAt(first);
  if (last != kMaxAddr) SplitAt(last + 1);
  uint64_t cur = first;
  auto it = runs_.lower_bound(first);
  for (;;) {
    if (it != runs_.end() && it->first == cur) {
      // A whole run inside the range (the splits above guarantee it).
      it->second.count++;
      if (it->second.last >= last) break;
      cur = it->second.last + 1;
      ++it;
    } else {
      // A gap from cur to the next run or to the end of the range.
      uint64_t gap_last = last;
      if (it != runs_.end() && it->first <= last) gap_last = it->first - 1;
      runs_.emplace_hint(it, cur, Run{gap_last, 1});
      if (gap_last >= last) break;
      cur = gap_last + 1;
    }
  }
  MergeAround(first, last);
}

bool RangeRefcount::Covers(uint64_t first, uint64_t last) const {
  auto it = runs_.upper_bound(first);
  if (it == runs_.begin()) return false;
  --it;
  uint64_t cur = first;
  for (;;) {
    if (it == runs_.end() || it->first > cur || it->second.last < cur) {
      return false;
    }
    if (it->second.last >= last) return true;
    cur = it->second.last + 1;
    ++it;
  }
}

bool RangeRefcount::Remove(uint64_t first, uint64_t last,
                           std::vector<ClosedRange>* released) {
  if (!Covers(first, last)) return false;
  SplitAt(first);
  if (last != kMaxAddr) SplitAt(last + 1);
  auto it = runs_.lower_bound(first);
  while (it != runs_.end() && it->first <= last) {
    if (--it->second.count == 0) {
      ClosedRange r{it->first, it->second.last};
      if (!released->empty() && released->back().last != kMaxAddr &&
          released->back().last + 1 == r.first) {
        released->back().last = r.last;
      } else {
        released->push_back(r);
      }
      it = runs_.erase(it);
    } else {
      ++it;
    }
  }
  MergeAround(first, last);
  return true;
}

std::vector<ClosedRange> RangeRefcount::Uncovered(uint64_t first,
                                                  uint64_t last) const {
  std::vector<ClosedRange> gaps;
  auto it = runs_.upper_bound(first);
  if (it != runs_.begin() && std::prev(it)->second.last >= first) --it;
  uint64_t cur = first;
  for (;;) {
    if (it == runs_.end() || it->first > last) {
      gaps.push_back({cur, last});
      return gaps;
    }
    if (it->first > cur) gaps.push_back({cur, it->first - 1});
    if (it->second.last >= last) return gaps;
    cur = it->second.last + 1;
    ++it;
  }
}

uint64_t RangeRefcount::CountAt(uint64_t addr) const {
  auto it = runs_.upper_bound(addr);
  if (it == runs_.begin()) return 0;
  --it;
  return it->second.last >= addr ? it->second.count : 0;
}

bool RangeRefcount::CheckInvariants(std::string* why) const {
  const std::pair<const uint64_t, Run>* prev = nullptr;
  for (const auto& run : runs_) {
    if (run.first > run.second.last) {
      *why = "run with first > last at " + std::to_string(run.first);
      return false;
    }
    if (run.second.count == 0) {
      *why = "run with count 0 at " + std::to_string(run.first);
      return false;
    }
    if (prev != nullptr) {
      if (prev->second.last >= run.first) {
        *why = "overlapping runs at " + std::to_string(run.first);
        return false;
      }
      if (prev->second.last + 1 == run.first &&
          prev->second.count == run.second.count) {
        *why = "unmerged touching runs at " + std::to_string(run.first);
        return false;
      }
    }
    prev = &run;
  }
  return true;
}

}  // namespace regcache_internal
