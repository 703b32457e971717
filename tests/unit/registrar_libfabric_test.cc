// SPDX-License-Identifier: BSD-2-Clause
// Tests of regcache_registrar_libfabric() through a real provider on the
// host. The first of verbs (only in the qemu+rxe rig), tcp, udp, shm,
// sockets whose domain registers memory without an endpoint is used (a
// loopback domain where the provider has one); nothing is sent. Without such a
// provider the tests that need a domain skip with the reasons each provider
// gave.
#include <errno.h>
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "regcache/libfabric.h"
#include "regcache/regcache.h"

namespace {

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

// A fabric and domain of one provider. Opened once for the whole binary.
struct Domain {
  std::string provider;  // fi_info's prov_name, e.g. "tcp;ofi_rxm"
  fi_info* info = nullptr;
  fid_fabric* fabric = nullptr;
  fid_domain* domain = nullptr;
};

void CloseDomain(Domain* d) {
  if (d->domain != nullptr) fi_close(&d->domain->fid);
  if (d->fabric != nullptr) fi_close(&d->fabric->fid);
  if (d->info != nullptr) fi_freeinfo(d->info);
  *d = Domain{};
}

// Opens `provider`'s domain, asking for the loopback interface when `node`
// is set, and checks that fi_mr_reg() works on it. Returns false with *why.
bool OpenDomain(const char* provider, const char* node, Domain* out,
                std::string* why) {
  fi_info* hints = fi_allocinfo();
  if (hints == nullptr) {
    *why = "fi_allocinfo failed";
    return false;
  }
  hints->caps = FI_RMA;
  hints->fabric_attr->prov_name = strdup(provider);
  // Every mode bit the registrar copes with; leaving out FI_MR_ENDPOINT
  // and FI_MR_RAW filters out providers that need them.
  hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR |
                                FI_MR_ALLOCATED | FI_MR_PROV_KEY |
                                FI_MR_MMU_NOTIFY;
  hints->domain_attr->threading = FI_THREAD_SAFE;
  fi_info* info = nullptr;
  int ret = fi_getinfo(FI_VERSION(1, 17), node, nullptr,
                       node != nullptr ? FI_SOURCE : 0, hints, &info);
  fi_freeinfo(hints);
  if (ret != 0) {
    *why = std::string("fi_getinfo: ") + fi_strerror(-ret);
    return false;
  }
  Domain d;
  d.info = info;
  d.provider = info->fabric_attr->prov_name;
  ret = fi_fabric(info->fabric_attr, &d.fabric, nullptr);
  if (ret == 0) ret = fi_domain(d.fabric, info, &d.domain, nullptr);
  if (ret != 0) {
    *why = std::string("fi_fabric/fi_domain: ") + fi_strerror(-ret);
    CloseDomain(&d);
    return false;
  }
  // Does this domain register memory without an endpoint?
  static char probe[4096];
  fid_mr* mr = nullptr;
  ret = fi_mr_reg(d.domain, probe, sizeof(probe), FI_SEND | FI_RECV, 0,
                  /*requested_key=*/0xfeed, 0, &mr, nullptr);
  if (ret != 0) {
    *why = std::string("fi_mr_reg: ") + fi_strerror(-ret);
    CloseDomain(&d);
    return false;
  }
  fi_close(&mr->fid);
  *out = d;
  return true;
}

class RegistrarLibfabric : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // regcache is the cache: turn off the provider's own (libfabric reads
    // this when the domain opens).
    setenv("FI_MR_CACHE_MAX_COUNT", "0", /*overwrite=*/1);
    std::string reasons;
    for (const char* provider : {"verbs", "tcp", "udp", "shm", "sockets"}) {
      for (const char* node :
           {"127.0.0.1", static_cast<const char*>(nullptr)}) {
        std::string why;
        if (OpenDomain(provider, node, &domain_, &why)) {
          printf("using libfabric provider %s (domain %s, mr_mode 0x%llx)\n",
                 domain_.provider.c_str(), domain_.info->domain_attr->name,
                 static_cast<unsigned long long>(
                     domain_.info->domain_attr->mr_mode));
          return;
        }
        reasons += std::string(provider) + (node ? " on " : " on any node") +
                   (node ? node : "") + ": " + why + "; ";
      }
    }
    skip_reason_ = "no libfabric provider registers memory here: " + reasons;
  }
  static void TearDownTestSuite() { CloseDomain(&domain_); }

  void SetUp() override {
    if (domain_.domain == nullptr) GTEST_SKIP() << skip_reason_;
    ASSERT_EQ(regcache_registrar_libfabric(
                  domain_.domain, domain_.info->domain_attr->mr_mode, &r_),
              0);
    buffer_ =
        static_cast<char*>(mmap(nullptr, 16 * kPage, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(buffer_, MAP_FAILED);
  }
  void TearDown() override {
    if (buffer_ != nullptr && buffer_ != MAP_FAILED)
      munmap(buffer_, 16 * kPage);
  }

  // reg as the cache calls it: the cache fills addr/length/access, then reg.
  int Reg(void* addr, size_t length, uint32_t access, regcache_mr* mr) {
    *mr = regcache_mr{};
    mr->addr = addr;
    mr->length = length;
    mr->access = access;
    return r_.reg(r_.ctx, addr, length, access, mr);
  }
  bool ProviderKeys() const {
    return (domain_.info->domain_attr->mr_mode & FI_MR_PROV_KEY) != 0;
  }

  static Domain domain_;
  static std::string skip_reason_;
  regcache_registrar r_{};
  char* buffer_ = nullptr;
};

Domain RegistrarLibfabric::domain_;
std::string RegistrarLibfabric::skip_reason_;

TEST_F(RegistrarLibfabric, RegistersAndDeregistersThroughARealProvider) {
  EXPECT_STREQ(r_.name, "libfabric");
  regcache_mr mr;
  const uint32_t access = REGCACHE_ACCESS_LOCAL_WRITE |
                          REGCACHE_ACCESS_REMOTE_READ |
                          REGCACHE_ACCESS_REMOTE_WRITE;
  ASSERT_EQ(Reg(buffer_, 4 * kPage, access, &mr), 0)
      << "provider " << domain_.provider;
  ASSERT_NE(mr.backend, nullptr);
  auto* fid = static_cast<fid_mr*>(mr.backend);
  EXPECT_EQ(mr.key, fi_mr_key(fid));
  EXPECT_NE(mr.key, FI_KEY_NOTAVAIL);
  EXPECT_EQ(mr.desc, fi_mr_desc(fid));
  EXPECT_EQ(mr.lkey, 0u);
  EXPECT_EQ(mr.rkey, 0u);
  EXPECT_EQ(mr.access, access) << "nothing to widen";
  EXPECT_EQ(r_.dereg(r_.ctx, &mr), 0);
  EXPECT_EQ(mr.backend, nullptr);
}

TEST_F(RegistrarLibfabric, ReadOnlyRegistrationWorks) {
  regcache_mr mr;
  ASSERT_EQ(Reg(buffer_, kPage, 0, &mr), 0);
  EXPECT_EQ(mr.access, 0u);
  EXPECT_EQ(r_.dereg(r_.ctx, &mr), 0);
}

TEST_F(RegistrarLibfabric, RemoteAtomicIsWidenedToBothRemoteRights) {
  regcache_mr mr;
  ASSERT_EQ(Reg(buffer_, kPage, REGCACHE_ACCESS_REMOTE_ATOMIC, &mr), 0);
  EXPECT_EQ(mr.access, static_cast<uint32_t>(REGCACHE_ACCESS_REMOTE_ATOMIC |
                                             REGCACHE_ACCESS_REMOTE_READ |
                                             REGCACHE_ACCESS_REMOTE_WRITE));
  EXPECT_EQ(r_.dereg(r_.ctx, &mr), 0);
}

// Each reg is its own fid_mr, deregistered on its own, and (on user-key
// domains) has its own key. With the provider's MR cache on (verbs caches by
// default) overlapping regions would share one cached fid_mr and key; the
// suite turns it off as regcache users should.
TEST_F(RegistrarLibfabric, OverlappingRegistrationsAreSeparateRegions) {
  std::set<uint64_t> keys;
  std::set<void*> regions;
  regcache_mr mrs[8];
  for (int i = 0; i < 8; ++i) {
    // All overlap page 7; two are the very same range.
    const int first = i == 7 ? 0 : i;
    ASSERT_EQ(Reg(buffer_ + first * kPage, (8 - first) * kPage,
                  REGCACHE_ACCESS_ALL, &mrs[i]),
              0);
    keys.insert(mrs[i].key);
    regions.insert(mrs[i].backend);
  }
  EXPECT_EQ(regions.size(), 8u);
  if (!ProviderKeys()) {
    EXPECT_EQ(keys.size(), 8u) << "requested keys collide";
  }
  for (auto& mr : mrs) EXPECT_EQ(r_.dereg(r_.ctx, &mr), 0);
}

// On user-key domains the registrar requests keys from its counter; a key
// the application already uses must be skipped, not reported as an error.
TEST_F(RegistrarLibfabric, KeyTakenByTheApplicationIsSkipped) {
  if (ProviderKeys()) GTEST_SKIP() << "FI_MR_PROV_KEY: the provider picks keys";
  regcache_mr first;
  ASSERT_EQ(Reg(buffer_, kPage, 0, &first), 0);
  // The registrar's counter will offer first.key + 1 next (no other thread
  // registers here); take that key behind its back.
  fid_mr* squatter = nullptr;
  ASSERT_EQ(fi_mr_reg(domain_.domain, buffer_ + kPage, kPage, FI_SEND, 0,
                      first.key + 1, 0, &squatter, nullptr),
            0);
  if (fi_mr_key(squatter) != first.key + 1) {
    fi_close(&squatter->fid);
    r_.dereg(r_.ctx, &first);
    GTEST_SKIP() << "provider " << domain_.provider
                 << " does not honour requested keys";
  }
  regcache_mr second;
  const int ret = Reg(buffer_ + 2 * kPage, kPage, 0, &second);
  if (ret == 0) {
    EXPECT_NE(second.key, first.key + 1) << "duplicate key handed out";
    EXPECT_EQ(r_.dereg(r_.ctx, &second), 0);
  } else {
    ADD_FAILURE() << "reg after a taken key: " << fi_strerror(-ret);
  }
  fi_close(&squatter->fid);
  EXPECT_EQ(r_.dereg(r_.ctx, &first), 0);
}

TEST_F(RegistrarLibfabric, RejectsUnknownAccessBits) {
  regcache_mr mr;
  EXPECT_EQ(Reg(buffer_, kPage, 1u << 30, &mr), -EINVAL);
  EXPECT_EQ(mr.backend, nullptr);
}

TEST(RegistrarLibfabricCreate, RejectsNullDomainAndOutput) {
  regcache_registrar r;
  EXPECT_EQ(regcache_registrar_libfabric(nullptr, 0, &r), -EINVAL);
  auto* not_dereferenced = reinterpret_cast<fid_domain*>(uintptr_t{0x1000});
  EXPECT_EQ(regcache_registrar_libfabric(not_dereferenced, 0, nullptr),
            -EINVAL);
}

TEST(RegistrarLibfabricCreate, RefusesDomainsThatBindRegionsToEndpoints) {
  regcache_registrar r{};
  // Creation only inspects mr_mode; the domain is not dereferenced.
  auto* not_dereferenced = reinterpret_cast<fid_domain*>(uintptr_t{0x1000});
  EXPECT_EQ(regcache_registrar_libfabric(not_dereferenced,
                                         FI_MR_ENDPOINT | FI_MR_LOCAL, &r),
            -EOPNOTSUPP);
  EXPECT_NE(std::string(regcache_last_error()).find("FI_MR_ENDPOINT"),
            std::string::npos)
      << "message: " << regcache_last_error();
  EXPECT_EQ(r.reg, nullptr) << "out must be left alone on failure";
  EXPECT_EQ(regcache_registrar_libfabric(not_dereferenced, FI_MR_RAW, &r),
            -EOPNOTSUPP);
  EXPECT_NE(std::string(regcache_last_error()).find("FI_MR_RAW"),
            std::string::npos)
      << "message: " << regcache_last_error();
}

}  // namespace
