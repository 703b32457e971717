// SPDX-License-Identifier: BSD-2-Clause
// Writer side of the lock-free hash index (see hash_index.h). Tables are
// mmap()ed rather than malloc()ed: the index is modified under the cache
// mutex, where calling malloc/free is forbidden (free may munmap, and munmap
// may block on the userfaultfd monitor thread, which needs that mutex).
#include "core/hash_index.h"

#include <sys/mman.h>

#include <new>

namespace regcache_internal {

HashTable* HashTable::Create(size_t capacity) {
  size_t bytes = sizeof(HashTable) + (capacity - 1) * sizeof(Bucket);
  // Populated now: the table's pages would otherwise be faulted in by the
  // misses that first insert into them, one page fault at a time on the
  // miss path (under an emulator, each costs several microseconds).
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  // Anonymous memory is zero: every bucket is already kBucketEmpty/nullptr.
  auto* t = new (p) HashTable();
  t->mask = capacity - 1;
  t->map_bytes = bytes;
  return t;
}

void HashTable::Destroy(HashTable* t) {
  if (t != nullptr) munmap(t, t->map_bytes);
}

int HashIndex::Init(size_t initial_capacity) {
  size_t cap = 64;
  while (cap < initial_capacity) cap <<= 1;
  HashTable* t = HashTable::Create(cap);
  if (t == nullptr) return -ENOMEM;
  table_.store(t, std::memory_order_release);
  return 0;
}

void HashIndex::DestroyAll() { HashTable::Destroy(table_.exchange(nullptr)); }

bool HashIndex::Rebuild(size_t capacity, HashTable** retired) {
  HashTable* old = table();
  HashTable* t = HashTable::Create(capacity);
  if (t == nullptr) return false;
  for (size_t i = 0; i <= old->mask; ++i) {
    uint64_t key = old->buckets[i].key.load(std::memory_order_relaxed);
    if (key == kBucketEmpty || key == kBucketTombstone) continue;
    size_t j = HashFirst(key - 2, t->mask);
    while (t->buckets[j].key.load(std::memory_order_relaxed) != kBucketEmpty)
      j = (j + 1) & t->mask;
    t->buckets[j].entry.store(old->buckets[i].entry.load(),
                              std::memory_order_relaxed);
    t->buckets[j].last.store(old->buckets[i].last.load(),
                             std::memory_order_relaxed);
    t->buckets[j].tag.store(old->buckets[i].tag.load(),
                            std::memory_order_relaxed);
    t->buckets[j].key.store(key, std::memory_order_relaxed);
    ++t->used;
  }
  table_.store(t, std::memory_order_release);
  // Readers still probing the old table must not validate against it: an
  // entry removed from the new table would otherwise stay visible there.
  for (size_t i = 0; i <= old->mask; ++i) {
    uint64_t key = old->buckets[i].key.load(std::memory_order_relaxed);
    if (key != kBucketEmpty && key != kBucketTombstone)
      old->buckets[i].key.store(kBucketTombstone, std::memory_order_release);
  }
  old->retired_next = *retired;
  *retired = old;
  return true;
}

bool HashIndex::Insert(uint64_t first, Entry* e, uint64_t last, uint32_t access,
                       HashTable** retired) {
  HashTable* t = table();
  // Keep live + dead buckets under half the capacity: probes stay short and
  // every probe sequence reaches an empty bucket.
  if ((t->used + t->dead + 1) * 2 > t->capacity()) {
    size_t cap = t->capacity();
    if ((t->used + 1) * 4 > cap) cap <<= 1;  // mostly live: grow
    if (!Rebuild(cap, retired)) return false;
    t = table();
  }
  const uint64_t key = BucketKey(first);
  size_t i = HashFirst(first, t->mask);
  for (;;) {
    uint64_t k = t->buckets[i].key.load(std::memory_order_relaxed);
    if (k == kBucketEmpty || k == kBucketTombstone) {
      if (k == kBucketTombstone) --t->dead;
      // Data, then a new tag, then the key (see the seqlock in the header).
      Bucket& b = t->buckets[i];
      b.entry.store(e, std::memory_order_relaxed);
      b.last.store(last, std::memory_order_relaxed);
      b.tag.store(
          (next_serial_++ << kTagSerialShift) | (access & kTagAccessMask),
          std::memory_order_release);
      b.key.store(key, std::memory_order_release);
      ++t->used;
      return true;
    }
    i = (i + 1) & t->mask;
  }
}

bool HashIndex::Remove(uint64_t first, Entry* e) {
  HashTable* t = table();
  const uint64_t key = BucketKey(first);
  size_t i = HashFirst(first, t->mask);
  for (;;) {
    uint64_t k = t->buckets[i].key.load(std::memory_order_relaxed);
    if (k == kBucketEmpty) return false;
    if (k == key && t->buckets[i].entry.load(std::memory_order_relaxed) == e) {
      --t->used;
      const size_t next = (i + 1) & t->mask;
      if (t->buckets[next].key.load(std::memory_order_relaxed) !=
          kBucketEmpty) {
        t->buckets[i].key.store(kBucketTombstone, std::memory_order_release);
        ++t->dead;
        return true;
      }
      // Nothing probes past bucket i (see "Removal" in hash_index.h): it
      // becomes empty, and so do the tombstones right before it.
      t->buckets[i].key.store(kBucketEmpty, std::memory_order_release);
      for (size_t j = (i - 1) & t->mask;
           t->buckets[j].key.load(std::memory_order_relaxed) ==
           kBucketTombstone;
           j = (j - 1) & t->mask) {
        t->buckets[j].key.store(kBucketEmpty, std::memory_order_release);
        --t->dead;
      }
      return true;
    }
    i = (i + 1) & t->mask;
  }
}

Bucket* HashIndex::Find(uint64_t first, const Entry* e) const {
  HashTable* t = table();
  const uint64_t key = BucketKey(first);
  for (size_t i = HashFirst(first, t->mask);; i = (i + 1) & t->mask) {
    uint64_t k = t->buckets[i].key.load(std::memory_order_relaxed);
    if (k == kBucketEmpty) return nullptr;
    if (k == key && t->buckets[i].entry.load(std::memory_order_relaxed) == e)
      return &t->buckets[i];
  }
}

void HashIndex::Clear() {
  HashTable* t = table();
  for (size_t i = 0; i <= t->mask; ++i) {
    t->buckets[i].key.store(kBucketEmpty, std::memory_order_relaxed);
    t->buckets[i].entry.store(nullptr, std::memory_order_relaxed);
  }
  t->used = t->dead = 0;
}

}  // namespace regcache_internal
