// SPDX-License-Identifier: BSD-2-Clause
// The message buffers of one endpoint: `count` anonymous mappings of one
// size, each its own mmap (as a large malloc gets), and the realloc
// workload's free-and-allocate: munmap, then mmap again, asking for the old
// address with MAP_FIXED_NOREPLACE (which never replaces a mapping someone
// else made there meanwhile: then the buffer lands elsewhere, is counted as
// moved, and nothing can be stale). Every buffer starts on a page boundary
// (mmap), so every message does: the odp mode relies on it on a device
// whose ODP misplaces data that starts inside a page (odp_defect.h).
#ifndef REGCACHE_TOOLS_PINGPONG_BUFFERS_H_
#define REGCACHE_TOOLS_PINGPONG_BUFFERS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace regcache_pingpong {

class Buffers {
 public:
  Buffers() = default;
  ~Buffers();
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;

  bool Map(uint32_t count, size_t size, std::string* error);
  void* at(uint32_t i) const { return buffers_[i]; }
  uint32_t count() const { return static_cast<uint32_t>(buffers_.size()); }
  size_t mapped_size() const { return mapped_; }
  // Frees buffer i and maps a new one; *same_address says where it went.
  bool Remap(uint32_t i, bool* same_address, std::string* error);

 private:
  std::vector<void*> buffers_;
  size_t mapped_ = 0;
};

}  // namespace regcache_pingpong

#endif  // REGCACHE_TOOLS_PINGPONG_BUFFERS_H_
