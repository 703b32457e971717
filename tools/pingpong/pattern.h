// SPDX-License-Identifier: BSD-2-Clause
// The payload pattern of regcache-pingpong: how a message is filled and how
// its receiver checks it.
//
// A message of sequence number `seq` carries, at every stamped position,
// the 64-bit word PatternWord(seq, offset): the sequence number in the
// upper 32 bits, a hash of (seq, offset) in the lower. The positions are
// every `stride` bytes from offset 0 (8-byte aligned) plus the last 8 bytes.
// A registration of the wrong pages is page-granular: the RDMA WRITE read
// the sender's old pages (words of an older seq arrive) or landed in the
// receiver's old pages (the new ones stay zero), so a stride of a few
// hundred bytes catches it at every page; stride 8 checks every word.
#ifndef REGCACHE_TOOLS_PINGPONG_PATTERN_H_
#define REGCACHE_TOOLS_PINGPONG_PATTERN_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace regcache_pingpong {

// Default distance between stamped words: 16 per 4 KiB page.
inline constexpr size_t kDefaultStampStride = 256;

// The word at `offset` of message `seq`.
uint64_t PatternWord(uint64_t seq, uint64_t offset);

// Writes message `seq`'s words into [buf, buf + length). `stride` is a
// multiple of 8; `length` is at least 8.
void FillPattern(void* buf, size_t length, uint64_t seq, size_t stride);

// What CheckPattern found.
struct PatternCheck {
  uint64_t bad_words = 0;  // stamped positions that differ
  uint64_t first_bad_offset = 0;
  uint64_t first_bad_found = 0;  // the word found there
  uint64_t expected_seq = 0;
  bool ok() const { return bad_words == 0; }
  // "ok", or e.g. "3 of 257 words wrong, first at offset 0: found 0 (never
  // written: the write went elsewhere)" / "... found a word of message 4".
  std::string Describe(size_t length, size_t stride) const;
};

PatternCheck CheckPattern(const void* buf, size_t length, uint64_t seq,
                          size_t stride);

// How many positions Fill/Check touch for this length and stride.
uint64_t StampedWords(size_t length, size_t stride);

}  // namespace regcache_pingpong

#endif  // REGCACHE_TOOLS_PINGPONG_PATTERN_H_
