// SPDX-License-Identifier: BSD-2-Clause
// The admission signals (admission.h): the churn table and the frequency
// sketch. Both are plain data under the cache mutex.
#include "core/admission.h"

#include <algorithm>
#include <new>

namespace regcache_internal {

namespace {

// The page number times 2^64 / golden ratio, high bits folded in (as the
// hash index does, so strided buffers spread like random keys).
uint64_t Mix(uint64_t first) {
  uint64_t h = (first >> 12) * 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 29);
}

}  // namespace

// ---------------------------------------------------------------------------
// ChurnTable

size_t ChurnTable::SetOf(uint64_t first) { return Mix(first) % kSets; }

ChurnTable::Slot* ChurnTable::Find(uint64_t first) {
  Slot* set = &slots_[SetOf(first) * kWays];
  for (size_t w = 0; w < kWays; ++w) {
    if (set[w].key == first + 1) return &set[w];
  }
  return nullptr;
}

const ChurnTable::Slot* ChurnTable::Find(uint64_t first) const {
  return const_cast<ChurnTable*>(this)->Find(first);
}

ChurnTable::Slot* ChurnTable::FindOrInsert(uint64_t first) {
  if (Slot* s = Find(first)) return s;
  Slot* set = &slots_[SetOf(first) * kWays];
  Slot* victim = &set[0];
  for (size_t w = 0; w < kWays; ++w) {
    if (set[w].key == 0) {
      victim = &set[w];
      break;
    }
    // Least recently touched (unsigned distance: the clock may wrap).
    if (clock_ - set[w].touched > clock_ - victim->touched) victim = &set[w];
  }
  *victim = Slot{};
  victim->key = first + 1;
  return victim;
}

void ChurnTable::OnInvalidated(uint64_t first, bool hit) {
  if (hit) {
    // Reused: whatever the range did before, it is worth caching now.
    if (Slot* s = Find(first)) *s = Slot{};
    return;
  }
  Slot* s = FindOrInsert(first);
  s->touched = ++clock_;
  if (s->wasted < UINT32_MAX) ++s->wasted;
  if (s->skip != 0) {
    // A probe (or an entry cached before the churn began) went unhit:
    // back off further.
    s->skip = std::min(2 * s->skip, kMaxSkip);
    s->skip_left = s->skip;
  } else if (s->wasted >= kChurnThreshold) {
    s->skip = kInitialSkip;
    s->skip_left = s->skip;
  }
}

ChurnTable::Decision ChurnTable::OnMiss(uint64_t first) {
  Slot* s = Find(first);
  if (s == nullptr || s->skip == 0) return Decision::kCache;
  s->touched = ++clock_;
  if (s->skip_left == 0) return Decision::kProbe;
  --s->skip_left;
  return Decision::kBypass;
}

uint32_t ChurnTable::TakeSkip(uint64_t first) {
  Slot* s = Find(first);
  if (s == nullptr) return 0;
  const uint32_t taken = s->skip_left;
  s->skip_left = 0;
  return taken;
}

void ChurnTable::GiveBackSkip(uint64_t first, uint32_t unused) {
  Slot* s = Find(first);
  if (s == nullptr) return;
  s->skip_left = std::min(s->skip_left + unused, s->skip);
}

bool ChurnTable::Churning(uint64_t first, uint32_t* skip_left) const {
  const Slot* s = Find(first);
  if (s == nullptr || s->skip == 0) return false;
  if (skip_left != nullptr) *skip_left = s->skip_left;
  return true;
}

bool ChurnTable::CheckInvariants() const {
  for (const Slot& s : slots_) {
    if (s.key == 0) continue;
    if (s.skip_left > s.skip || s.skip > kMaxSkip) return false;
    if (s.skip != 0 && s.skip < kInitialSkip) return false;
    if ((s.key - 1) % 4096 != 0) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// FrequencySketch

bool FrequencySketch::Init(size_t width) {
  size_t w = 64;
  while (w < width) w *= 2;
  counters_.reset(new (std::nothrow) uint8_t[kRows * w]());
  if (!counters_) return false;
  mask_ = w - 1;
  additions_ = 0;
  return true;
}

size_t FrequencySketch::Index(uint64_t first, int row) const {
  // One 64-bit mix, a different 16-bit slice (and odd multiplier) per row.
  const uint64_t h = Mix(first) * (2 * uint64_t(row) + 0x9E3779B97F4A7C15ull);
  return size_t(row) * (mask_ + 1) + (size_t(h >> (16 * row)) & mask_);
}

void FrequencySketch::Increment(uint64_t first) {
  if (!counters_) return;
  for (int r = 0; r < kRows; ++r) {
    uint8_t& c = counters_[Index(first, r)];
    if (c < kMaxCount) ++c;
  }
  if (++additions_ >= 10 * (mask_ + 1)) Halve();
}

uint32_t FrequencySketch::Estimate(uint64_t first) const {
  if (!counters_) return 0;
  uint32_t m = kMaxCount;
  for (int r = 0; r < kRows; ++r)
    m = std::min<uint32_t>(m, counters_[Index(first, r)]);
  return m;
}

void FrequencySketch::Halve() {
  for (size_t i = 0; i < kRows * (mask_ + 1); ++i) counters_[i] >>= 1;
  additions_ = 0;
}

}  // namespace regcache_internal
