// SPDX-License-Identifier: BSD-2-Clause
// libregcache-preload.so: the exported ibverbs symbols an unmodified program
// registers memory through, interposed with LD_PRELOAD and served from a
// regcache per protection domain (pd_caches.h; docs/integrations.md).
//
// rdma-core 44 exports ibv_reg_mr (IBVERBS_1.0 and 1.1), ibv_reg_mr_iova
// (1.7), ibv_reg_mr_iova2 (1.8; its headers route non-constant access
// flags there, and its own ibv_reg_mr calls it through the PLT),
// ibv_dereg_mr (1.0, 1.1), ibv_rereg_mr, ibv_dealloc_pd and
// ibv_close_device (1.1). Each is defined here with the same version
// (libregcache-preload.map), so a program's reference binds to ours, and
// ours reach libibverbs' through dlvsym(RTLD_NEXT, name, version). Every
// registration path calls the real ibv_reg_mr_iova2 directly, never the
// real ibv_reg_mr, which would come back here. The 1.0 entry points take
// the old compatibility structures: they go to libibverbs' 1.0 code
// untouched (which calls the 1.1 functions, ours).
//
// Thread safety: as libibverbs'. The real symbols are resolved once
// (pthread_once) on the first call; the state is made then and never freed.
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <infiniband/verbs.h>

#include <string>

#include "integrations/preload/pd_caches.h"
#include "integrations/preload/policy.h"

namespace regcache_preload {
namespace {

pthread_once_t g_once = PTHREAD_ONCE_INIT;
PdCaches* g_caches = nullptr;
void* g_reg_mr_1_0 = nullptr;
void* g_dereg_mr_1_0 = nullptr;

void* Next(const char* name, const char* version) {
  void* f = dlvsym(RTLD_NEXT, name, version);
  if (f == nullptr) {
    fprintf(stderr,
            "regcache-preload: libibverbs has no %s@%s (%s); is "
            "libibverbs.so.1 loaded?\n",
            name, version, dlerror());
  }
  return f;
}

void PrintAtExit() { g_caches->PrintSummary("exit"); }

void Init() {
  RealVerbs real;
  real.reg_mr_iova2 = reinterpret_cast<decltype(real.reg_mr_iova2)>(
      Next("ibv_reg_mr_iova2", "IBVERBS_1.8"));
  real.dereg_mr = reinterpret_cast<decltype(real.dereg_mr)>(
      Next("ibv_dereg_mr", "IBVERBS_1.1"));
  real.rereg_mr = reinterpret_cast<decltype(real.rereg_mr)>(
      Next("ibv_rereg_mr", "IBVERBS_1.1"));
  real.dealloc_pd = reinterpret_cast<decltype(real.dealloc_pd)>(
      Next("ibv_dealloc_pd", "IBVERBS_1.1"));
  real.close_device = reinterpret_cast<decltype(real.close_device)>(
      Next("ibv_close_device", "IBVERBS_1.1"));
  g_reg_mr_1_0 = dlvsym(RTLD_NEXT, "ibv_reg_mr", "IBVERBS_1.0");
  g_dereg_mr_1_0 = dlvsym(RTLD_NEXT, "ibv_dereg_mr", "IBVERBS_1.0");
  if (!real.reg_mr_iova2 || !real.dereg_mr || !real.rereg_mr ||
      !real.dealloc_pd || !real.close_device) {
    // Without libibverbs' own functions nothing can be forwarded: this
    // process cannot have registered anything, and would crash calling a
    // null pointer. Stop with the reason instead.
    fprintf(stderr, "regcache-preload: cannot continue without libibverbs\n");
    abort();
  }
  PreloadConfig config;
  std::string error;
  if (!ReadPreloadConfig(&config, &error))
    fprintf(stderr, "regcache-preload: %s\n", error.c_str());
  g_caches = new PdCaches(real, config);
  if (config.print_stats) atexit(PrintAtExit);
}

PdCaches* Caches() {
  pthread_once(&g_once, Init);
  return g_caches;
}

}  // namespace

PdCaches* Instance() { return Caches(); }

}  // namespace regcache_preload

using regcache_preload::Caches;

#define RC_EXPORT extern "C" __attribute__((visibility("default")))

// IBVERBS_1.8: where rdma-core's headers and its own ibv_reg_mr send every
// virtual-address registration.
RC_EXPORT ibv_mr* rc_ibv_reg_mr_iova2(ibv_pd* pd, void* addr, size_t length,
                                      uint64_t iova, unsigned int access) {
  return Caches()->Register(pd, addr, length, iova, access);
}
__asm__(".symver rc_ibv_reg_mr_iova2, ibv_reg_mr_iova2@@IBVERBS_1.8");

RC_EXPORT ibv_mr* rc_ibv_reg_mr_iova(ibv_pd* pd, void* addr, size_t length,
                                     uint64_t iova, int access) {
  return Caches()->Register(pd, addr, length, iova,
                            static_cast<unsigned int>(access));
}
__asm__(".symver rc_ibv_reg_mr_iova, ibv_reg_mr_iova@@IBVERBS_1.7");

RC_EXPORT ibv_mr* rc_ibv_reg_mr_1_1(ibv_pd* pd, void* addr, size_t length,
                                    int access) {
  return Caches()->Register(pd, addr, length, reinterpret_cast<uintptr_t>(addr),
                            static_cast<unsigned int>(access));
}
__asm__(".symver rc_ibv_reg_mr_1_1, ibv_reg_mr@@IBVERBS_1.1");

RC_EXPORT void* rc_ibv_reg_mr_1_0(void* pd, void* addr, size_t length,
                                  int access) {
  Caches();
  using Fn = void* (*)(void*, void*, size_t, int);
  auto fn = reinterpret_cast<Fn>(regcache_preload::g_reg_mr_1_0);
  if (fn == nullptr) {
    errno = ENOSYS;
    return nullptr;
  }
  return fn(pd, addr, length, access);
}
__asm__(".symver rc_ibv_reg_mr_1_0, ibv_reg_mr@IBVERBS_1.0");

RC_EXPORT int rc_ibv_dereg_mr_1_1(ibv_mr* mr) {
  return Caches()->Deregister(mr);
}
__asm__(".symver rc_ibv_dereg_mr_1_1, ibv_dereg_mr@@IBVERBS_1.1");

RC_EXPORT int rc_ibv_dereg_mr_1_0(void* mr) {
  Caches();
  using Fn = int (*)(void*);
  auto fn = reinterpret_cast<Fn>(regcache_preload::g_dereg_mr_1_0);
  return fn == nullptr ? ENOSYS : fn(mr);
}
__asm__(".symver rc_ibv_dereg_mr_1_0, ibv_dereg_mr@IBVERBS_1.0");

RC_EXPORT int rc_ibv_rereg_mr(ibv_mr* mr, int flags, ibv_pd* pd, void* addr,
                              size_t length, int access) {
  return Caches()->Rereg(mr, flags, pd, addr, length, access);
}
__asm__(".symver rc_ibv_rereg_mr, ibv_rereg_mr@@IBVERBS_1.1");

RC_EXPORT int rc_ibv_dealloc_pd(ibv_pd* pd) { return Caches()->DeallocPd(pd); }
__asm__(".symver rc_ibv_dealloc_pd, ibv_dealloc_pd@@IBVERBS_1.1");

RC_EXPORT int rc_ibv_close_device(ibv_context* context) {
  return Caches()->CloseDevice(context);
}
__asm__(".symver rc_ibv_close_device, ibv_close_device@@IBVERBS_1.1");
