// SPDX-License-Identifier: BSD-2-Clause
// raii: regcache from C++ (regcache/regcache.hpp). regcache::Cache owns the
// cache and regcache::Registration one handle: each releases what it holds
// when it goes out of scope, so a registration cannot be leaked on an early
// return. The program opens an RDMA device (the first, or the one named on
// the command line), caches registrations of a set of buffers on its PD,
// sends "messages" from them in turn (here: it only takes and drops their
// registrations, as a transfer would around its work requests), and shows
// that after the first round every get is a hit.
//
// Build (any C++ standard from C++11 on):
//   c++ -o raii raii.cc $(pkg-config --cflags --libs regcache) -libverbs
// Usage: raii [DEVICE]
// Exit status: 0 when every get after the first round was a hit, 1
// otherwise, 2 when there is no RDMA device.
#include <infiniband/verbs.h>
#include <regcache/ibverbs.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <regcache/regcache.hpp>
#include <vector>

namespace {

constexpr size_t kBuffers = 8;
constexpr size_t kBufferSize = 256 << 10;
constexpr int kRounds = 10;

// One transfer from `buf`: a registration for as long as the transfer
// runs, released at the end of the scope.
int Send(regcache::Cache& cache, const char* buf, uint32_t* lkey) {
  regcache::Registration reg;
  int rc = cache.Get(buf, kBufferSize, REGCACHE_ACCESS_LOCAL_WRITE, &reg);
  if (rc != 0) {
    std::fprintf(stderr, "Get: %s\n", regcache_last_error());
    return rc;
  }
  *lkey = reg.lkey();  // ibv_post_send() with reg.lkey(), wait for completion
  return 0;            // reg is put here
}

// Sends kRounds rounds of messages from kBuffers buffers through a cache on
// `pd`. True when every get after the first round was a hit.
bool Run(ibv_pd* pd, const char* device) {
  regcache_registrar registrar;
  regcache_registrar_ibverbs(pd, &registrar);
  regcache::Cache cache;  // destroyed at return, before the caller frees pd
  if (regcache::Cache::Create(registrar, nullptr, &cache) != 0) {
    std::fprintf(stderr, "Create: %s\n", regcache_last_error());
    return false;
  }
  std::vector<std::unique_ptr<char[]>> buffers;
  for (size_t i = 0; i < kBuffers; ++i) {
    buffers.emplace_back(new char[kBufferSize]());
  }
  std::vector<uint32_t> first_lkey(kBuffers);
  for (int round = 0; round < kRounds; ++round) {
    for (size_t i = 0; i < kBuffers; ++i) {
      uint32_t lkey = 0;
      if (Send(cache, buffers[i].get(), &lkey) != 0) return false;
      if (round == 0) first_lkey[i] = lkey;
      if (lkey != first_lkey[i]) return false;  // not the cached registration
    }
  }
  struct regcache_stats stats = cache.Stats();
  std::printf(
      "%s, monitor %s: %zu buffers, %d rounds: ibv_reg_mr calls %llu, "
      "hits %llu\n",
      device, regcache_monitor_name(stats.monitor), kBuffers, kRounds,
      (unsigned long long)stats.registrations, (unsigned long long)stats.hits);
  return stats.registrations == kBuffers &&
         stats.hits == kBuffers * (kRounds - 1);
}

}  // namespace

int main(int argc, char** argv) {
  int n = 0;
  ibv_device** devices = ibv_get_device_list(&n);
  ibv_device* device = nullptr;
  for (int i = 0; i < n; ++i) {
    if (argc < 2 ||
        std::strcmp(ibv_get_device_name(devices[i]), argv[1]) == 0) {
      device = devices[i];
      break;
    }
  }
  if (device == nullptr) {
    std::fprintf(stderr, "raii: no RDMA device %s\n", argc > 1 ? argv[1] : "");
    return 2;
  }
  ibv_context* context = ibv_open_device(device);
  ibv_pd* pd = context != nullptr ? ibv_alloc_pd(context) : nullptr;
  if (pd == nullptr) {
    std::perror("raii: ibv_open_device/ibv_alloc_pd");
    return 1;
  }
  bool ok = Run(pd, ibv_get_device_name(device));
  ibv_dealloc_pd(pd);
  ibv_close_device(context);
  ibv_free_device_list(devices);
  return ok ? 0 : 1;
}
