// SPDX-License-Identifier: BSD-2-Clause
// Pin-once memory (regcache_mem_alloc): the blocks of the cache's memory
// pool and how their memory is mapped. The pool's logic, which registers a
// block once and publishes it as a pinned cache entry, is Cache::MemAlloc()
// and its neighbours in pool.cc; mapping and unmapping the memory of each
// kind (ordinary pages, hugetlb, transparent huge pages, the kernel
// module's contiguous memory) is here and in pool_map.cc.
#ifndef REGCACHE_SRC_REGCACHE_CORE_POOL_H_
#define REGCACHE_SRC_REGCACHE_CORE_POOL_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace regcache_internal {

struct Entry;

// What backs a block. Stats report allocations per kind.
enum class PoolKind : uint8_t {
  kPages = 0,  // ordinary anonymous memory
  kHugetlb,    // MAP_HUGETLB from the system's pool (vm.nr_hugepages)
  kThp,        // anonymous, 2 MiB aligned, MADV_HUGEPAGE
  kContig,     // the kernel module's physically contiguous memory
};
inline constexpr int kPoolKinds = 4;
const char* PoolKindName(PoolKind kind);  // "pages", "hugetlb", "thp", "contig"

// One mapping of the pool: allocated, or freed and kept for reuse.
struct PoolBlock {
  uint64_t base = 0;  // what regcache_mem_alloc() returned
  size_t length = 0;  // bytes mapped and registered (whole pages)
  PoolKind kind = PoolKind::kPages;
  // The block's cache entry and its seq while valid: the registration is
  // the pool's as long as entry->seq == entry_seq. Anything else (an
  // invalidation by the monitor, regcache_invalidate(), a fork) means the
  // memory was changed behind the pool's back: the block is lost, and the
  // pool never unmaps it (the address may belong to someone else now).
  Entry* entry = nullptr;
  uint64_t entry_seq = 0;
  bool allocated = false;
};

// The memory a request of `length` bytes and `kind` maps. Filled by
// MapPoolMemory().
struct PoolMapping {
  uint64_t base = 0;
  size_t length = 0;  // rounded up to the kind's page size
  PoolKind kind = PoolKind::kPages;
};

// Maps `length` bytes for regcache_mem_alloc() `flags` (validated by the
// caller), populated and ready to register: ordinary pages; for
// REGCACHE_MEM_HUGE hugetlb pages, else transparent huge pages; for
// REGCACHE_MEM_HUGE_ONLY hugetlb pages only; for REGCACHE_MEM_CONTIG the
// kernel module's contiguous memory. Returns 0, or -errno with *why saying
// what was tried and what the operator can do (vm.nr_hugepages, THP).
int MapPoolMemory(size_t length, uint32_t flags, PoolMapping* out,
                  std::string* why);
// Unmaps what MapPoolMemory() mapped.
void UnmapPoolMemory(uint64_t base, size_t length);

// The size of the system's default hugetlb page (Hugepagesize in
// /proc/meminfo), and of a transparent huge page (hpage_pmd_size); 2 MiB
// when unreadable.
size_t HugetlbPageSize();
size_t ThpPageSize();

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_CORE_POOL_H_
