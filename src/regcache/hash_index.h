// SPDX-License-Identifier: BSD-2-Clause
// The hit path's index: page number -> entries, readable without locks.
//
// An open-addressing table (linear probing) keyed by the first page of a
// range. Each entry is published under its own first page, plus up to
// kMaxAliases "alias" pages: first pages of requests that the slow path
// served from inside the entry (a superset hit that does not start where
// the entry starts), so that the next such request hits without a lock.
//
// Writers (Insert/Remove/Grow) hold the cache mutex. Readers (Lookup) hold
// nothing: a bucket is only ever a hint, because the reader re-validates
// the entry it names against the entry's own fields and seq. Buckets are
// removed by writing a tombstone, never moved, so a reader racing with a
// writer can at worst miss (and fall back to the slow path).
//
// Tables are replaced, not resized in place; a reader announces the table
// it is reading in its ThreadState (table hazard) and a replaced table is
// unmapped only when no thread announces it (see Cache::ReclaimTables()).
#ifndef REGCACHE_SRC_REGCACHE_HASH_INDEX_H_
#define REGCACHE_SRC_REGCACHE_HASH_INDEX_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "entry.h"

namespace regcache_internal {

inline constexpr uint64_t kBucketEmpty = 0;
inline constexpr uint64_t kBucketTombstone = 1;
// Keys are page numbers + 2, so the two markers never collide with a page.
inline uint64_t BucketKey(uint64_t page) { return page + 2; }

struct Bucket {
  std::atomic<uint64_t> key{kBucketEmpty};
  std::atomic<Entry*> entry{nullptr};
};

struct HashTable {
  size_t mask = 0;     // capacity - 1; capacity is a power of two
  size_t used = 0;     // live buckets (writers only)
  size_t dead = 0;     // tombstones (writers only)
  size_t map_bytes = 0;
  HashTable* retired_next = nullptr;
  Bucket buckets[1];   // capacity buckets follow (allocated with mmap)

  static HashTable* Create(size_t capacity);  // nullptr on failure
  static void Destroy(HashTable* t);
  size_t capacity() const { return mask + 1; }
};

inline size_t HashPage(uint64_t page, size_t mask) {
  return static_cast<size_t>((page * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

// Writer side, all under the cache mutex.
class HashIndex {
 public:
  int Init(size_t initial_capacity);
  void DestroyAll();

  HashTable* table() const { return table_.load(std::memory_order_acquire); }
  const std::atomic<HashTable*>* table_word() const { return &table_; }

  // Publish `e` under `page`. May replace the table (the old one is
  // returned through *retired for the caller to free later). Returns false
  // if a bigger table could not be mapped (the entry is then simply not
  // indexed and is found by the slow path's tree lookup).
  bool Insert(uint64_t page, Entry* e, HashTable** retired);
  // Remove the bucket(s) for (page, e). Returns true if one was found.
  bool Remove(uint64_t page, Entry* e);
  // Drop every bucket (fork child).
  void Clear();

 private:
  bool Rebuild(size_t capacity, HashTable** retired);
  std::atomic<HashTable*> table_{nullptr};
};

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_HASH_INDEX_H_
