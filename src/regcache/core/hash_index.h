// SPDX-License-Identifier: BSD-2-Clause
// The hit path's index: first page -> entries, readable without locks.
//
// An open-addressing table (linear probing) keyed by the first page of a
// range. Each entry is published under its own first page, plus up to
// kMaxAliases "alias" pages: first pages of requests that the slow path
// served from inside the entry (a superset hit that does not start where
// the entry starts), so that the next such request hits without a lock.
//
// A bucket carries what a hit needs to decide (the entry's last byte and
// access bits), so a hit reads the bucket and never the entry's own cache
// line: one cache miss per random lookup instead of two. A bucket is a small
// seqlock whose version is the pair (key, tag):
//
//   Writer (cache mutex held)            Reader (no lock)
//   remove: key = TOMBSTONE or EMPTY     k1 = key (acquire); t1 = tag (acquire)
//           (release; see Removal)
//   insert into an empty/tombstone       e = entry; l = last
//   bucket: entry = e; last = l;         ... take a hold on e, fence ...
//           tag = new serial (release);  k2 = key (acquire); t2 = tag (acquire)
//           key = K (release)            valid iff k1 == k2 == K && t1 == t2
//
// Serials never repeat, so a bucket rewritten between the two reads always
// shows a different tag or key. An entry is removed from the index (its
// buckets tombstoned or emptied) before it is marked a zombie and before the
// reclaimer's HeavyFence(), which is what the hold protocol in cache_hit.h
// needs.
//
// Removal. A probe for a key stops at the first empty bucket, so the
// INVARIANT is that no live key sits past an empty bucket in its probe
// sequence. Remove() therefore tombstones a bucket whose successor is not
// empty, and empties one whose successor is, together with the run of
// tombstones before it: no probe sequence can pass an empty successor to
// reach a key beyond. A range freed and registered again and again (realloc
// at one address) thus leaves its bucket empty, and the next get of the
// range stops at its first bucket instead of probing past a tombstone. For
// a reader, a bucket that turns from K to empty is a changed key, like one
// turned to a tombstone.
//
// Writers (Insert/Remove/Rebuild) hold the cache mutex; the reader is the
// hit path in cache_hit.h. Buckets are never moved; a reader racing with a
// writer can at worst miss and fall back to the slow path.
//
// Tables are replaced, not resized in place; a reader announces the table
// it is reading in its ThreadState (table hazard) and a replaced table is
// unmapped only when no thread announces it (see Cache::ReclaimTables()).
#ifndef REGCACHE_SRC_REGCACHE_CORE_HASH_INDEX_H_
#define REGCACHE_SRC_REGCACHE_CORE_HASH_INDEX_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/entry.h"

namespace regcache_internal {

inline constexpr uint64_t kBucketEmpty = 0;
inline constexpr uint64_t kBucketTombstone = 1;
// A key is the address of a range's first page + 2: page-aligned addresses
// are multiples of 4096, so neither marker is ever a key.
inline uint64_t BucketKey(uint64_t first) { return first + 2; }

// tag = (serial << kTagSerialShift) | kTagReferenced? | access bits.
inline constexpr uint64_t kTagAccessMask = 0xF;
inline constexpr uint64_t kTagReferenced = 1u << 4;  // CLOCK reference bit
inline constexpr int kTagSerialShift = 8;
inline uint64_t TagVersion(uint64_t tag) { return tag & ~kTagReferenced; }

struct alignas(32) Bucket {
  std::atomic<uint64_t> key{kBucketEmpty};
  std::atomic<uint64_t> tag{0};
  std::atomic<Entry*> entry{nullptr};
  std::atomic<uint64_t> last{0};  // the entry's last byte
};

struct HashTable {
  size_t mask = 0;  // capacity - 1; capacity is a power of two
  size_t used = 0;  // live buckets (writers only)
  size_t dead = 0;  // tombstones (writers only)
  size_t map_bytes = 0;
  HashTable* retired_next = nullptr;
  Bucket buckets[1];  // capacity buckets follow (allocated with mmap)

  static HashTable* Create(size_t capacity);  // nullptr on failure
  static void Destroy(HashTable* t);
  size_t capacity() const { return mask + 1; }
  // &buckets[i], computed so that the compiler folds the array's offset
  // into the loads' displacement.
  Bucket& bucket(size_t i) {
    return *reinterpret_cast<Bucket*>(reinterpret_cast<char*>(this) +
                                      offsetof(HashTable, buckets) +
                                      i * sizeof(Bucket));
  }
};

// The page number times 2^64 / golden ratio, its high bits folded into the
// low ones, masked. Keys real workloads produce are runs of buffers at a
// fixed stride (consecutive pages, 2 MiB-aligned slabs); these land in
// buckets like random keys do (about 80 % in a bucket of their own at the
// half load the index keeps; hash_index_test checks strides 1 to 4096
// pages). The plain top or middle bits of the product do better on some
// strides and collapse on others (its top bits or bits 40 and up: 17-52 %
// distinct 2 MiB apart; bits 32 and up, used before: 17 % two pages
// apart, 46 % for consecutive pages at twice the table). The page
// shift is the smallest page size's, a constant: with larger pages the low
// bits of first >> 12 are zero and the multiply mixes them in.
inline size_t HashFirst(uint64_t first, size_t mask) {
  uint64_t h = (first >> 12) * 0x9E3779B97F4A7C15ull;
  h ^= h >> 29;
  return static_cast<size_t>(h) & mask;
}

// Writer side, all under the cache mutex.
class HashIndex {
 public:
  int Init(size_t initial_capacity);
  void DestroyAll();

  HashTable* table() const { return table_.load(std::memory_order_acquire); }
  const std::atomic<HashTable*>* table_word() const { return &table_; }

  // Publish `e` (covering up to byte `last`, with `access`) under the page
  // that starts at `first`.
  // May replace the table (the old one is returned through *retired for
  // the caller to free later). Returns false if a bigger table could not be
  // mapped (the entry is then simply not indexed and is found by the slow
  // path's tree lookup).
  bool Insert(uint64_t first, Entry* e, uint64_t last, uint32_t access,
              HashTable** retired);
  // Remove the bucket for (first, e). Returns true if one was found.
  bool Remove(uint64_t first, Entry* e);
  // The bucket for (first, e) in the current table, or nullptr.
  Bucket* Find(uint64_t first, const Entry* e) const;
  // Drop every bucket (fork child).
  void Clear();

 private:
  bool Rebuild(size_t capacity, HashTable** retired);
  std::atomic<HashTable*> table_{nullptr};
  uint64_t next_serial_ = 1;
};

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_CORE_HASH_INDEX_H_
