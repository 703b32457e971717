// SPDX-License-Identifier: BSD-2-Clause
// Mapping the pool's memory, one function per kind: ordinary pages,
// hugetlb pages (MAP_HUGETLB, from the pages the operator reserved with
// vm.nr_hugepages), transparent huge pages (a THP-aligned anonymous mapping
// with MADV_HUGEPAGE) and the kernel module's contiguous memory
// (monitor/contig.h). Every kind is populated before it is returned, so
// the registration that follows pins pages that are already there.
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "core/pool.h"
#include "monitor/contig.h"
#include "regcache/regcache.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

namespace regcache_internal {
namespace {

constexpr size_t kDefaultHugeSize = size_t{2} << 20;
// Requests beyond this are refused before any rounding can overflow.
constexpr size_t kMaxLength = size_t{1} << 46;

size_t PageSize() { return size_t(sysconf(_SC_PAGESIZE)); }

size_t RoundUp(size_t n, size_t unit) { return (n + unit - 1) / unit * unit; }

// A "Name:   123 kB" or "Name:   123" line of /proc/meminfo; -1 if absent.
long long MeminfoValue(const char* name) {
  FILE* f = fopen("/proc/meminfo", "re");
  if (f == nullptr) return -1;
  char line[256];
  long long value = -1;
  const size_t n = strlen(name);
  while (fgets(line, sizeof line, f) != nullptr) {
    if (strncmp(line, name, n) == 0 && line[n] == ':') {
      value = strtoll(line + n + 1, nullptr, 10);
      break;
    }
  }
  fclose(f);
  return value;
}

// The first line of a sysfs file, without the newline; "" if unreadable.
std::string ReadLine(const char* path) {
  FILE* f = fopen(path, "re");
  if (f == nullptr) return "";
  char line[256] = "";
  if (fgets(line, sizeof line, f) == nullptr) line[0] = '\0';
  fclose(f);
  line[strcspn(line, "\n")] = '\0';
  return line;
}

constexpr const char* kThpEnabled =
    "/sys/kernel/mm/transparent_hugepage/enabled";

// Whether MADV_HUGEPAGE gets huge pages: THP "always" or "madvise".
bool ThpAvailable(std::string* setting) {
  *setting = ReadLine(kThpEnabled);
  return setting->find("[always]") != std::string::npos ||
         setting->find("[madvise]") != std::string::npos;
}

// Writes every page, for kernels without MADV_POPULATE_WRITE.
void Touch(uint64_t base, size_t length, size_t step) {
  for (size_t off = 0; off < length; off += step)
    reinterpret_cast<volatile char*>(base)[off] = 0;
}

int Populate(uint64_t base, size_t length, std::string* why) {
  if (madvise(reinterpret_cast<void*>(base), length, MADV_POPULATE_WRITE) == 0)
    return 0;
  const int err = errno;
  if (err == EINVAL) {  // older kernel
    Touch(base, length, PageSize());
    return 0;
  }
  *why = std::string("populating ") + std::to_string(length) +
         " bytes: madvise(MADV_POPULATE_WRITE): " + strerror(err);
  return -err;
}

int MapPages(size_t length, PoolMapping* out, std::string* why) {
  const size_t len = RoundUp(length, PageSize());
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    *why = "mmap of " + std::to_string(len) + " bytes: " + strerror(err);
    return -err;
  }
  *out = PoolMapping{reinterpret_cast<uintptr_t>(p), len, PoolKind::kPages};
  return 0;
}

// hugetlb pages. A private MAP_HUGETLB mapping reserves its pages at mmap()
// time, so it fails here (ENOMEM) rather than with SIGBUS at first touch
// when the system's pool is short.
int MapHugetlb(size_t length, PoolMapping* out, std::string* why) {
  const size_t huge = HugetlbPageSize();
  const size_t len = RoundUp(length, huge);
  void* p =
      mmap(nullptr, len, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    const long long total = MeminfoValue("HugePages_Total");
    const long long free_pages = MeminfoValue("HugePages_Free");
    const long long rsvd = MeminfoValue("HugePages_Rsvd");
    char text[400];
    snprintf(text, sizeof text,
             "no hugetlb pages for %zu bytes (mmap MAP_HUGETLB: %s; "
             "HugePages_Total %lld, HugePages_Free %lld, HugePages_Rsvd %lld, "
             "Hugepagesize %zu kB): the operator reserves them with "
             "sysctl vm.nr_hugepages=N (docs/pinonce.md)",
             len, strerror(err), total, free_pages, rsvd, huge >> 10);
    *why = text;
    return -ENOMEM;
  }
  *out = PoolMapping{reinterpret_cast<uintptr_t>(p), len, PoolKind::kHugetlb};
  return 0;
}

// Transparent huge pages: a mapping aligned to the THP size (over-map by
// one huge page, cut the ends off) and advised MADV_HUGEPAGE before its
// first touch, so each aligned 2 MiB faults in as one huge page when the
// kernel has one free.
int MapThp(size_t length, PoolMapping* out, std::string* why) {
  std::string setting;
  if (!ThpAvailable(&setting)) {
    *why = std::string("transparent huge pages are off (") + kThpEnabled +
           ": " + (setting.empty() ? "unreadable" : setting) + ")";
    return -ENOMEM;
  }
  const size_t huge = ThpPageSize();
  const size_t len = RoundUp(length, huge);
  void* p = mmap(nullptr, len + huge, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    *why = "mmap of " + std::to_string(len + huge) + " bytes: " + strerror(err);
    return -err;
  }
  const uint64_t start = reinterpret_cast<uintptr_t>(p);
  const uint64_t base = RoundUp(start, huge);
  if (base != start) munmap(p, base - start);
  const uint64_t tail = base + len;
  if (tail != start + len + huge)
    munmap(reinterpret_cast<void*>(tail), start + len + huge - tail);
  int rc = 0;
  if (madvise(reinterpret_cast<void*>(base), len, MADV_HUGEPAGE) != 0) {
    rc = -errno;
    *why = std::string("madvise(MADV_HUGEPAGE): ") + strerror(-rc);
  } else {
    rc = Populate(base, len, why);
  }
  if (rc != 0) {
    munmap(reinterpret_cast<void*>(base), len);
    return rc;
  }
  *out = PoolMapping{base, len, PoolKind::kThp};
  return 0;
}

int MapContig(size_t length, PoolMapping* out, std::string* why) {
  const size_t len = RoundUp(length, PageSize());
  uint64_t base = 0;
  const int rc = MapKmodContig(len, &base, why);
  if (rc != 0) return rc;
  *out = PoolMapping{base, len, PoolKind::kContig};
  return 0;
}

size_t HugeSizeFrom(long long kib) {
  if (kib <= 0) return kDefaultHugeSize;
  const size_t bytes = size_t(kib) << 10;
  return (bytes & (bytes - 1)) == 0 ? bytes : kDefaultHugeSize;
}

}  // namespace

const char* PoolKindName(PoolKind kind) {
  switch (kind) {
    case PoolKind::kPages:
      return "pages";
    case PoolKind::kHugetlb:
      return "hugetlb";
    case PoolKind::kThp:
      return "thp";
    case PoolKind::kContig:
      return "contig";
  }
  return "unknown";
}

size_t HugetlbPageSize() {
  static const size_t size = HugeSizeFrom(MeminfoValue("Hugepagesize"));
  return size;
}

size_t ThpPageSize() {
  static const size_t size = [] {
    const std::string text =
        ReadLine("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
    const long long bytes =
        text.empty() ? 0 : strtoll(text.c_str(), nullptr, 10);
    return bytes > 0 && (bytes & (bytes - 1)) == 0 ? size_t(bytes)
                                                   : kDefaultHugeSize;
  }();
  return size;
}

int MapPoolMemory(size_t length, uint32_t flags, PoolMapping* out,
                  std::string* why) {
  if (length > kMaxLength) {
    *why =
        "length " + std::to_string(length) + " is beyond any machine's memory";
    return -ENOMEM;
  }
  if (flags & REGCACHE_MEM_CONTIG) return MapContig(length, out, why);
  if (!(flags & (REGCACHE_MEM_HUGE | REGCACHE_MEM_HUGE_ONLY)))
    return MapPages(length, out, why);
  std::string hugetlb_why;
  int rc = MapHugetlb(length, out, &hugetlb_why);
  if (rc == 0) return 0;
  if (flags & REGCACHE_MEM_HUGE_ONLY) {
    *why = "REGCACHE_MEM_HUGE_ONLY: " + hugetlb_why;
    return rc;
  }
  std::string thp_why;
  rc = MapThp(length, out, &thp_why);
  if (rc == 0) return 0;
  *why = "REGCACHE_MEM_HUGE: " + hugetlb_why + "; and " + thp_why +
         "; reserve hugetlb pages with vm.nr_hugepages or enable "
         "transparent huge pages";
  return rc;
}

void UnmapPoolMemory(uint64_t base, size_t length) {
  munmap(reinterpret_cast<void*>(base), length);
}

}  // namespace regcache_internal
