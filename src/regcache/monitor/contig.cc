// SPDX-License-Identifier: BSD-2-Clause
// MapKmodContig(): physically contiguous memory from the regcache kernel
// module, mapped at REGCACHE_MMAP_CONTIG_OFFSET of a /dev/regcache fd
// (regcache/kmod_uapi.h). The fd is opened for the one mmap() and closed:
// the mapping keeps what it needs of the context. Built without that
// offset in kmod_uapi.h, every call says REGCACHE_MEM_CONTIG is not
// available.
#include "monitor/contig.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "regcache/kmod_uapi.h"

namespace regcache_internal {

int MapKmodContig(size_t length, uint64_t* base, std::string* why) {
#ifndef REGCACHE_MMAP_CONTIG_OFFSET
  (void)length;
  (void)base;
  *why =
      "REGCACHE_MEM_CONTIG needs the regcache kernel module's contiguous "
      "memory, which this build of libregcache does not have (its "
      "regcache/kmod_uapi.h has no REGCACHE_MMAP_CONTIG_OFFSET)";
  return -EOPNOTSUPP;
#else
  const int fd = open(REGCACHE_KMOD_DEVICE_PATH, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    *why =
        std::string("REGCACHE_MEM_CONTIG needs the regcache kernel module: ") +
        REGCACHE_KMOD_DEVICE_PATH + ": " + strerror(err) +
        (err == ENOENT || err == ENODEV || err == ENXIO
             ? " (is the module loaded? see docs/operators.md)"
         : err == EACCES ? " (who may open it: docs/operators.md)"
                         : "");
    return -EOPNOTSUPP;
  }
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                 off_t(REGCACHE_MMAP_CONTIG_OFFSET));
  const int err = p == MAP_FAILED ? errno : 0;
  close(fd);
  if (p != MAP_FAILED) {
    *base = reinterpret_cast<uintptr_t>(p);
    return 0;
  }
  const std::string what = "mmap of " + std::to_string(length) +
                           " contiguous bytes from " +
                           REGCACHE_KMOD_DEVICE_PATH + ": " + strerror(err);
  switch (err) {
    case EINVAL:
    case ENODEV:
      *why = what +
             " (the loaded module has no contiguous memory: load a "
             "module as new as this library)";
      return -EOPNOTSUPP;
    case EPERM:
      *why = what + " (RLIMIT_MEMLOCK is 0 and the process lacks CAP_IPC_LOCK)";
      return -EPERM;
    case EAGAIN:
      *why = what + " (over RLIMIT_MEMLOCK: raise it, docs/operators.md)";
      return -EAGAIN;
    case ENOMEM:
      *why = what +
             " (no contiguous block of that size, or over the module's "
             "contig_max_per_process_mb/contig_max_total_mb)";
      return -ENOMEM;
    default:
      *why = what;
      return -err;
  }
#endif
}

}  // namespace regcache_internal
