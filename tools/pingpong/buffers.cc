// SPDX-License-Identifier: BSD-2-Clause
// Message buffers and their free-and-reallocate (buffers.h).

#include "buffers.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "posix_util.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace regcache_pingpong {
namespace {

void* MapAnonymous(void* hint, size_t length, int extra_flags) {
  return mmap(hint, length, PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
}

}  // namespace

void Buffers::Release() {
  std::string ignored;
  for (void* p : buffers_) {
    if (allocator_ != nullptr)
      allocator_->Free(p, &ignored);
    else
      munmap(p, mapped_);
  }
  buffers_.clear();
}

bool Buffers::Map(uint32_t count, size_t size, std::string* error,
                  BufferAllocator* allocator) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  mapped_ = (size + page - 1) / page * page;
  allocator_ = allocator;
  for (uint32_t i = 0; i < count; ++i) {
    if (allocator_ != nullptr) {
      void* p = nullptr;
      if (!allocator_->Allocate(mapped_, &p, error)) return false;
      buffers_.push_back(p);
      continue;
    }
    void* p = MapAnonymous(nullptr, mapped_, 0);
    if (p == MAP_FAILED) {
      *error = ErrnoText("mmap(" + std::to_string(mapped_) + ")", errno);
      return false;
    }
    buffers_.push_back(p);
  }
  return true;
}

bool Buffers::Remap(uint32_t i, bool* same_address, std::string* error) {
  void* old = buffers_[i];
  if (allocator_ != nullptr) {
    void* p = nullptr;
    if (!allocator_->Free(old, error)) return false;
    if (!allocator_->Allocate(mapped_, &p, error)) {
      buffers_.erase(buffers_.begin() + i);  // freed already
      return false;
    }
    buffers_[i] = p;
    *same_address = p == old;
    return true;
  }
  if (munmap(old, mapped_) != 0) {
    *error = ErrnoText("munmap", errno);
    return false;
  }
  void* p = MapAnonymous(old, mapped_, MAP_FIXED_NOREPLACE);
  if (p == MAP_FAILED) p = MapAnonymous(nullptr, mapped_, 0);
  if (p == MAP_FAILED) {
    buffers_.erase(buffers_.begin() + i);  // nothing to unmap any more
    *error = ErrnoText("mmap(" + std::to_string(mapped_) + ")", errno);
    return false;
  }
  buffers_[i] = p;
  *same_address = p == old;
  return true;
}

}  // namespace regcache_pingpong
