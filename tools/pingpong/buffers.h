// SPDX-License-Identifier: BSD-2-Clause
// The message buffers of one endpoint: `count` anonymous mappings of one
// size, each its own mmap (as a large malloc gets), and the realloc
// workload's free-and-allocate: munmap, then mmap again, asking for the old
// address with MAP_FIXED_NOREPLACE (which never replaces a mapping someone
// else made there meanwhile: then the buffer lands elsewhere, is counted as
// moved, and nothing can be stale). Every buffer starts on a page boundary
// (mmap), so every message does: the odp mode relies on it on a device
// whose ODP misplaces data that starts inside a page (odp_defect.h). With an
// allocator (the regcache-pool mode's regcache_mem_alloc, page aligned too),
// the buffers are its and the free-and-allocate is its free and allocate.
#ifndef REGCACHE_TOOLS_PINGPONG_BUFFERS_H_
#define REGCACHE_TOOLS_PINGPONG_BUFFERS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace regcache_pingpong {

// Where buffers come from when not from mmap().
class BufferAllocator {
 public:
  virtual ~BufferAllocator() = default;
  virtual bool Allocate(size_t size, void** out, std::string* error) = 0;
  virtual bool Free(void* p, std::string* error) = 0;
};

class Buffers {
 public:
  Buffers() = default;
  ~Buffers() { Release(); }
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;

  // `allocator`: null for mmap(); else it must outlive the buffers (or
  // Release() them first).
  bool Map(uint32_t count, size_t size, std::string* error,
           BufferAllocator* allocator = nullptr);
  // Frees every buffer now.
  void Release();
  void* at(uint32_t i) const { return buffers_[i]; }
  uint32_t count() const { return static_cast<uint32_t>(buffers_.size()); }
  size_t mapped_size() const { return mapped_; }
  // Frees buffer i and maps a new one; *same_address says where it went.
  bool Remap(uint32_t i, bool* same_address, std::string* error);

 private:
  std::vector<void*> buffers_;
  size_t mapped_ = 0;
  BufferAllocator* allocator_ = nullptr;
};

}  // namespace regcache_pingpong

#endif  // REGCACHE_TOOLS_PINGPONG_BUFFERS_H_
