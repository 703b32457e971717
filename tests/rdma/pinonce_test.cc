// SPDX-License-Identifier: BSD-2-Clause
// Pin-once memory end to end: regcache_mem_alloc() with the real ibverbs
// registrar (rxe in the VM). An RDMA WRITE into pool memory through the
// rkey of its first get (a hit, no registration) arrives; freed and
// allocated again, the block takes writes without registering; with
// REGCACHE_MEM_HUGE the mapping is backed by hugetlb pages where the
// operator reserved them (the rig reserves 64: tests/vm/guest-run.sh) and by
// transparent huge pages where not (checked in /proc/self/smaps);
// REGCACHE_MEM_HUGE_ONLY without reserved pages fails naming
// vm.nr_hugepages; REGCACHE_MEM_CONTIG gives consecutive frames
// (/proc/self/pagemap) that take writes, with a module that has contiguous
// memory, and says why not otherwise.
//
// Needs an RDMA device; skips without one (run in the VM: ctest -L vm).
// The cases that change vm.nr_hugepages run only in the rig (REGCACHE_VM=1)
// and put it back.
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "loopback_rc.h"
#include "rdma_test_util.h"
#include "regcache/regcache.h"

namespace regcache_rdma_test {
namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kLength = 4 * kMiB;
constexpr size_t kWrite = 256 * 1024;  // per RDMA WRITE (rxe is slow)
constexpr uint32_t kSeed = 0x51ED;

// The smaps fields of the mapping that contains `p`, in kB: -1 if absent.
struct SmapsOf {
  long kernel_page_kb = -1;
  long anon_huge_kb = -1;
  long private_hugetlb_kb = -1;
  std::string header;
};
SmapsOf ReadSmaps(const void* p) {
  SmapsOf out;
  FILE* f = fopen("/proc/self/smaps", "re");
  if (f == nullptr) return out;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  char line[512];
  bool in = false;
  while (fgets(line, sizeof line, f) != nullptr) {
    unsigned long start, end;
    if (sscanf(line, "%lx-%lx ", &start, &end) == 2 &&
        strchr(line, ':') != line) {
      // A header line: "start-end perms offset dev inode path".
      if (in) break;
      in = a >= start && a < end;
      if (in) out.header = line;
      continue;
    }
    if (!in) continue;
    long v;
    if (sscanf(line, "KernelPageSize: %ld kB", &v) == 1) out.kernel_page_kb = v;
    if (sscanf(line, "AnonHugePages: %ld kB", &v) == 1) out.anon_huge_kb = v;
    if (sscanf(line, "Private_Hugetlb: %ld kB", &v) == 1)
      out.private_hugetlb_kb = v;
  }
  fclose(f);
  return out;
}

// The page frame numbers of [p, p + pages * 4 KiB) from /proc/self/pagemap
// (0 for a page not present; all 0 without CAP_SYS_ADMIN); empty when
// unreadable.
std::vector<uint64_t> Pfns(const void* p, size_t pages) {
  std::vector<uint64_t> entries(pages);
  const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  const off_t at =
      static_cast<off_t>(reinterpret_cast<uintptr_t>(p) / 4096 * 8);
  const ssize_t got = pread(fd, entries.data(), pages * 8, at);
  close(fd);
  if (got != static_cast<ssize_t>(pages * 8)) return {};
  for (uint64_t& e : entries)
    e = (e >> 63) ? (e & ((uint64_t{1} << 55) - 1)) : 0;
  return entries;
}

long NrHugepages() {
  FILE* f = fopen("/proc/sys/vm/nr_hugepages", "re");
  if (f == nullptr) return -1;
  long n = -1;
  if (fscanf(f, "%ld", &n) != 1) n = -1;
  fclose(f);
  return n;
}
bool SetNrHugepages(long n) {
  FILE* f = fopen("/proc/sys/vm/nr_hugepages", "we");
  if (f == nullptr) return false;
  const bool ok = fprintf(f, "%ld\n", n) > 0;
  return fclose(f) == 0 && ok && NrHugepages() == n;
}

class PinOnce : public ::testing::Test {
 protected:
  void SetUp() override {
    REGCACHE_OPEN_LOOPBACK_OR_SKIP(rc_);
    const int err = CreateIbverbsCache(rc_->pd(), REGCACHE_MONITOR_AUTO,
                                       &registrar_, &cache_);
    ASSERT_EQ(err, 0) << regcache_last_error();
    ASSERT_EQ(source_.Init(rc_->pd(), kWrite), "");
    ASSERT_EQ(scratch_.Init(rc_->pd(), kWrite), "");
    FillPattern(source_.data(), kWrite, kSeed);
  }
  void TearDown() override {
    if (cache_ != nullptr) {
      EXPECT_EQ(regcache_destroy(cache_), 0) << regcache_last_error();
    }
    source_.Release();
    scratch_.Release();
    if (rc_ != nullptr) {
      EXPECT_EQ(rc_->Close(), "");
    }
  }

  // Gets [p, p + kLength) (which must be a hit on the pool's registration),
  // RDMA WRITEs the pattern at `offset` through its rkey, reads it back
  // through the same rkey, and checks the memory holds it.
  void ExpectWriteArrives(char* p, size_t offset, const char* what) {
    const struct regcache_stats before = StatsOf(cache_);
    regcache_handle_t* h = nullptr;
    ASSERT_EQ(regcache_get(cache_, p, kLength, kRemoteAccess, &h), 0)
        << regcache_last_error();
    const regcache_mr* mr = regcache_handle_mr(h);
    const struct regcache_stats after = StatsOf(cache_);
    EXPECT_EQ(after.registrations, before.registrations)
        << what
        << ": the get registered instead of hitting the pool's registration";
    EXPECT_EQ(after.hits, before.hits + 1) << what;
    EXPECT_EQ(after.misses, before.misses) << what;
    memset(p + offset, 0, kWrite);
    std::string error;
    int status = rc_->Write(source_.data(), kWrite, source_.lkey(),
                            Addr(p + offset), mr->rkey, &error);
    EXPECT_EQ(status, IBV_WC_SUCCESS) << what << ": " << error;
    const long bad = MismatchAt(p + offset, kWrite, kSeed);
    EXPECT_EQ(bad, -1) << what
                       << ": the RDMA WRITE did not arrive (first wrong "
                       << "byte at offset " << bad << ")";
    memset(scratch_.data(), 0, kWrite);
    status = rc_->Read(scratch_.data(), kWrite, scratch_.lkey(),
                       Addr(p + offset), mr->rkey, &error);
    EXPECT_EQ(status, IBV_WC_SUCCESS) << what << ": " << error;
    EXPECT_EQ(MismatchAt(scratch_.data(), kWrite, kSeed), -1)
        << what << ": an RDMA READ through the rkey does not see the data";
    printf("[pinonce] %s: %p, rkey %s, RDMA WRITE of %zu bytes at +%zu %s\n",
           what, static_cast<void*>(p), Hex(mr->rkey).c_str(), kWrite, offset,
           bad == -1 ? "arrived" : "MISSED");
    fflush(stdout);
    EXPECT_EQ(regcache_put(cache_, h), 0);
  }

  std::unique_ptr<LoopbackRc> rc_;
  regcache_registrar registrar_{};
  regcache_t* cache_ = nullptr;
  DirectBuffer source_, scratch_;
};

TEST_F(PinOnce, AnRdmaWriteIntoPoolMemoryArrivesThroughItsFirstGet) {
  void* p = nullptr;
  ASSERT_EQ(regcache_mem_alloc(cache_, kLength, 0, &p), 0)
      << regcache_last_error();
  EXPECT_EQ(StatsOf(cache_).registrations, 1u);
  ExpectWriteArrives(static_cast<char*>(p), 0, "ordinary pages");
  ExpectWriteArrives(static_cast<char*>(p), kLength - kWrite,
                     "ordinary pages, its end");
  EXPECT_EQ(StatsOf(cache_).mem_pages_allocs, 1u);
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
}

TEST_F(PinOnce, FreedAndAllocatedAgainTheBlockTakesWritesWithoutRegistering) {
  void* p = nullptr;
  ASSERT_EQ(regcache_mem_alloc(cache_, kLength, 0, &p), 0)
      << regcache_last_error();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(regcache_mem_free(cache_, p), 0);
    void* q = nullptr;
    ASSERT_EQ(regcache_mem_alloc(cache_, kLength, 0, &q), 0)
        << regcache_last_error();
    ASSERT_EQ(q, p);
    ExpectWriteArrives(static_cast<char*>(q), size_t(i) * kWrite,
                       "reused block");
  }
  const struct regcache_stats s = StatsOf(cache_);
  EXPECT_EQ(s.registrations, 1u) << "free and allocate again registered";
  EXPECT_EQ(s.mem_reuses, 3u);
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
  ASSERT_EQ(regcache_mem_trim(cache_), 0);
  EXPECT_EQ(StatsOf(cache_).deregistrations, 1u);
}

TEST_F(PinOnce, HugeMemoryIsBackedByHugetlbPagesWhereReserved) {
  const long reserved = NrHugepages();
  if (reserved < long(kLength / (2 * kMiB)))
    GTEST_SKIP() << "vm.nr_hugepages is " << reserved
                 << " (the rig reserves 64)";
  void* p = nullptr;
  ASSERT_EQ(regcache_mem_alloc(cache_, kLength, REGCACHE_MEM_HUGE, &p), 0)
      << regcache_last_error();
  const struct regcache_stats s = StatsOf(cache_);
  EXPECT_EQ(s.mem_hugetlb_allocs, 1u);
  EXPECT_EQ(s.mem_hugetlb_bytes, kLength);
  EXPECT_EQ(s.mem_thp_allocs, 0u);
  const SmapsOf smaps = ReadSmaps(p);
  printf(
      "[pinonce] hugetlb mapping %s  KernelPageSize %ld kB, Private_Hugetlb "
      "%ld kB\n",
      smaps.header.c_str(), smaps.kernel_page_kb, smaps.private_hugetlb_kb);
  EXPECT_EQ(smaps.kernel_page_kb, 2048) << smaps.header;
  EXPECT_EQ(smaps.private_hugetlb_kb, long(kLength >> 10)) << smaps.header;
  ExpectWriteArrives(static_cast<char*>(p), kMiB + 4096, "hugetlb pages");
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
}

// Sets vm.nr_hugepages to 0 for the test and back after it.
class PinOnceWithoutHugetlb : public PinOnce {
 protected:
  void SetUp() override {
    if (getenv("REGCACHE_VM") == nullptr)
      GTEST_SKIP()
          << "changes vm.nr_hugepages: runs only in the rig (REGCACHE_VM=1)";
    saved_ = NrHugepages();
    if (saved_ < 0 || !SetNrHugepages(0))
      GTEST_SKIP() << "cannot set vm.nr_hugepages (needs root): "
                   << strerror(errno);
    PinOnce::SetUp();
  }
  void TearDown() override {
    PinOnce::TearDown();
    if (saved_ >= 0) {
      EXPECT_TRUE(SetNrHugepages(saved_))
          << "vm.nr_hugepages not restored to " << saved_;
    }
  }
  long saved_ = -1;
};

TEST_F(PinOnceWithoutHugetlb, HugeOnlyFailsNamingVmNrHugepages) {
  void* p = nullptr;
  EXPECT_EQ(regcache_mem_alloc(cache_, kLength, REGCACHE_MEM_HUGE_ONLY, &p),
            -ENOMEM);
  EXPECT_NE(strstr(regcache_last_error(), "vm.nr_hugepages"), nullptr)
      << regcache_last_error();
  printf("[pinonce] REGCACHE_MEM_HUGE_ONLY with vm.nr_hugepages=0: %s\n",
         regcache_last_error());
  EXPECT_EQ(p, nullptr);
  const struct regcache_stats s = StatsOf(cache_);
  EXPECT_EQ(s.mem_allocs, 0u);
  EXPECT_EQ(s.registrations, 0u);
}

TEST_F(PinOnceWithoutHugetlb, HugeFallsBackToTransparentHugePages) {
  void* p = nullptr;
  const int rc = regcache_mem_alloc(cache_, kLength, REGCACHE_MEM_HUGE, &p);
  if (rc == -ENOMEM &&
      strstr(regcache_last_error(), "transparent huge pages are off"))
    GTEST_SKIP() << regcache_last_error();
  ASSERT_EQ(rc, 0) << regcache_last_error();
  const struct regcache_stats s = StatsOf(cache_);
  EXPECT_EQ(s.mem_thp_allocs, 1u);
  EXPECT_EQ(s.mem_hugetlb_allocs, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (2 * kMiB), 0u);
  const SmapsOf smaps = ReadSmaps(p);
  printf("[pinonce] THP mapping %s  AnonHugePages %ld kB\n",
         smaps.header.c_str(), smaps.anon_huge_kb);
  EXPECT_GT(smaps.anon_huge_kb, 0)
      << "no transparent huge page backs it: " << smaps.header;
  ExpectWriteArrives(static_cast<char*>(p), 3 * kMiB - 8192,
                     "transparent huge pages");
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
}

TEST_F(PinOnce, ContigMemoryTakesWritesOrSaysWhyItIsUnavailable) {
  void* p = nullptr;
  const int rc = regcache_mem_alloc(cache_, kLength, REGCACHE_MEM_CONTIG, &p);
  if (rc == -EOPNOTSUPP) {
    EXPECT_NE(strstr(regcache_last_error(),
                     "REGCACHE_MEM_CONTIG needs the regcache kernel module"),
              nullptr)
        << regcache_last_error();
    GTEST_SKIP() << regcache_last_error();
  }
  ASSERT_EQ(rc, 0) << regcache_last_error();
  const struct regcache_stats s = StatsOf(cache_);
  EXPECT_EQ(s.mem_contig_allocs, 1u);
  EXPECT_EQ(s.mem_contig_bytes, kLength);
  // Physically contiguous: consecutive frames (readable as root, as in the
  // rig).
  const std::vector<uint64_t> pfns = Pfns(p, kLength / 4096);
  if (!pfns.empty() && pfns[0] != 0) {
    size_t gap = 0;
    while (gap < pfns.size() && pfns[gap] == pfns[0] + gap) ++gap;
    EXPECT_EQ(gap, pfns.size())
        << "frames stop being consecutive at page " << gap;
    printf(
        "[pinonce] contiguous memory: pfn 0x%llx .. 0x%llx, %zu consecutive "
        "frames\n",
        static_cast<unsigned long long>(pfns.front()),
        static_cast<unsigned long long>(pfns.back()), gap);
  } else {
    printf(
        "[pinonce] contiguous memory: /proc/self/pagemap shows no frames here "
        "(not root), contiguity not checked\n");
  }
  ExpectWriteArrives(static_cast<char*>(p), kMiB, "contiguous memory");
  EXPECT_EQ(regcache_mem_free(cache_, p), 0);
  ASSERT_EQ(regcache_mem_trim(cache_), 0);
}

}  // namespace
}  // namespace regcache_rdma_test
