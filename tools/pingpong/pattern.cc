// SPDX-License-Identifier: BSD-2-Clause
// The payload pattern (pattern.h): stamped words that carry the message's
// sequence number, so a data error also says where the bytes came from.

#include "pattern.h"

#include <cstdio>
#include <cstring>

namespace regcache_pingpong {
namespace {

// A 64-bit mixer (the finaliser of SplitMix64).
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t LastOffset(size_t length) { return length - sizeof(uint64_t); }

template <typename Visit>
void ForEachStamp(size_t length, size_t stride, Visit visit) {
  const uint64_t last = LastOffset(length);
  // Stamps end before the last word starts, so none overlaps it.
  for (uint64_t offset = 0; offset + sizeof(uint64_t) <= last; offset += stride)
    visit(offset);
  visit(last);
}

}  // namespace

uint64_t PatternWord(uint64_t seq, uint64_t offset) {
  // Never zero: a zero word always means "nothing was written here".
  const uint64_t low = (Mix(seq * 0x100000001b3ull ^ offset) & 0xffffffffu) | 1;
  return (seq & 0xffffffffu) << 32 | low;
}

uint64_t StampedWords(size_t length, size_t stride) {
  uint64_t n = 0;
  ForEachStamp(length, stride, [&](uint64_t) { ++n; });
  return n;
}

void FillPattern(void* buf, size_t length, uint64_t seq, size_t stride) {
  auto* bytes = static_cast<unsigned char*>(buf);
  ForEachStamp(length, stride, [&](uint64_t offset) {
    const uint64_t word = PatternWord(seq, offset);
    memcpy(bytes + offset, &word, sizeof(word));
  });
}

PatternCheck CheckPattern(const void* buf, size_t length, uint64_t seq,
                          size_t stride) {
  PatternCheck check;
  check.expected_seq = seq;
  const auto* bytes = static_cast<const unsigned char*>(buf);
  ForEachStamp(length, stride, [&](uint64_t offset) {
    uint64_t word;
    memcpy(&word, bytes + offset, sizeof(word));
    if (word == PatternWord(seq, offset)) return;
    if (check.bad_words++ == 0) {
      check.first_bad_offset = offset;
      check.first_bad_found = word;
    }
  });
  return check;
}

std::string PatternCheck::Describe(size_t length, size_t stride) const {
  if (ok()) return "ok";
  char what[96];
  if (first_bad_found == 0) {
    snprintf(what, sizeof(what), "0 (never written: the data went elsewhere)");
  } else if (PatternWord(first_bad_found >> 32, first_bad_offset) ==
             first_bad_found) {
    snprintf(what, sizeof(what), "a word of message %llu (old pages)",
             static_cast<unsigned long long>(first_bad_found >> 32));
  } else {
    snprintf(what, sizeof(what), "0x%016llx",
             static_cast<unsigned long long>(first_bad_found));
  }
  char text[256];
  snprintf(text, sizeof(text),
           "message %llu: %llu of %llu words wrong, first at offset %llu: "
           "found %s",
           static_cast<unsigned long long>(expected_seq),
           static_cast<unsigned long long>(bad_words),
           static_cast<unsigned long long>(StampedWords(length, stride)),
           static_cast<unsigned long long>(first_bad_offset), what);
  return text;
}

}  // namespace regcache_pingpong
