// SPDX-License-Identifier: BSD-2-Clause
// The modes' ways of obtaining registrations (registrations.h).

#include "registrations.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "odp_defect.h"
#include "posix_util.h"
#include "regcache/ibverbs.h"
#include "regcache/regcache.h"

namespace regcache_pingpong {
namespace {

int ToVerbsAccess(uint32_t access) {
  int flags = 0;
  if (access & REGCACHE_ACCESS_LOCAL_WRITE) flags |= IBV_ACCESS_LOCAL_WRITE;
  // Verbs wants local write with remote write.
  if (access & REGCACHE_ACCESS_REMOTE_WRITE)
    flags |= IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE;
  if (access & REGCACHE_ACCESS_REMOTE_READ) flags |= IBV_ACCESS_REMOTE_READ;
  return flags;
}

std::string RegError(const char* what, size_t length, int err) {
  return ErrnoText(std::string(what) + "(" + std::to_string(length) + " bytes)",
                   err);
}

// Sends what this process writes to stderr (fd 2) to /dev/null while it
// lives: libregcache warns on stderr at every regcache_create() in ODP mode
// on a device with a known ODP defect, which this tool reports once itself.
// Errors are not lost: the library returns them (regcache_last_error()).
// One thread per process makes caches here, and nothing else writes then.
class StderrSilenced {
 public:
  StderrSilenced() {
    fflush(stderr);
    const int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null_fd < 0) return;
    saved_ = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
    if (saved_ >= 0 && dup2(null_fd, STDERR_FILENO) < 0) {
      close(saved_);
      saved_ = -1;
    }
    close(null_fd);
  }
  ~StderrSilenced() {
    if (saved_ < 0) return;
    fflush(stderr);
    dup2(saved_, STDERR_FILENO);
    close(saved_);
  }
  StderrSilenced(const StderrSilenced&) = delete;
  StderrSilenced& operator=(const StderrSilenced&) = delete;

 private:
  int saved_ = -1;
};

// register-per-message: what an MPI without a cache does.
class PerMessage : public Registrations {
 public:
  explicit PerMessage(ibv_pd* pd) : pd_(pd) {}
  bool Acquire(void* addr, size_t length, uint32_t access, Held* out,
               std::string* error) override {
    ++counters_.gets;
    ibv_mr* mr = ibv_reg_mr(pd_, addr, length, ToVerbsAccess(access));
    if (mr == nullptr) {
      *error = RegError("ibv_reg_mr", length, errno);
      return false;
    }
    ++counters_.registrations;
    *out = {mr->lkey, mr->rkey, mr};
    return true;
  }
  bool Release(Held* held, std::string* error) override {
    if (const int rc = ibv_dereg_mr(static_cast<ibv_mr*>(held->token));
        rc != 0) {
      *error = ErrnoText("ibv_dereg_mr", rc);
      return false;
    }
    held->token = nullptr;
    return true;
  }
  RegCounters Counters() override { return counters_; }

 private:
  ibv_pd* pd_;
  RegCounters counters_;
};

// register-once: every buffer registered before the first message.
class Once : public Registrations {
 public:
  explicit Once(ibv_pd* pd) : pd_(pd) {}
  ~Once() override {
    for (ibv_mr* mr : mrs_) ibv_dereg_mr(mr);
  }
  bool Prepare(void* addr, size_t length, std::string* error) override {
    ibv_mr* mr = ibv_reg_mr(pd_, addr, length,
                            IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
    if (mr == nullptr) {
      *error = RegError("ibv_reg_mr", length, errno);
      return false;
    }
    ++counters_.registrations;
    mrs_.push_back(mr);
    return true;
  }
  bool Acquire(void* addr, size_t length, uint32_t access, Held* out,
               std::string* error) override {
    ++counters_.gets;
    const auto first = reinterpret_cast<uintptr_t>(addr);
    for (ibv_mr* mr : mrs_) {
      const auto start = reinterpret_cast<uintptr_t>(mr->addr);
      if (first >= start && first + length <= start + mr->length) {
        ++counters_.hits;
        *out = {mr->lkey, mr->rkey, nullptr};
        return true;
      }
    }
    *error = "register-once: the buffer was not registered up front";
    return false;
  }
  bool Release(Held*, std::string*) override { return true; }
  RegCounters Counters() override { return counters_; }

 private:
  ibv_pd* pd_;
  std::vector<ibv_mr*> mrs_;
  RegCounters counters_;
};

// regcache: a cache over the ibverbs registrar, pinned (with the mode's
// monitor) or, for odp, in the library's ODP mode; public C API only.
class Cached : public Registrations {
 public:
  ~Cached() override {
    if (cache_ != nullptr) regcache_destroy(cache_);
  }
  // `quiet`: no warning from the library on stderr (see StderrSilenced).
  bool Create(const regcache_registrar& registrar,
              regcache_monitor_kind monitor, regcache_mode mode,
              const CacheSettings& settings, bool quiet, std::string* why) {
    regcache_config config;
    if (regcache_config_init(&config) != 0) {
      *why = regcache_last_error();
      return false;
    }
    config.monitor = monitor;
    // Forced, whatever REGCACHE_MODE says: the pinned modes must not turn
    // into ODP on a device that has it.
    config.mode = mode;
    config.max_entries = settings.max_entries;
    config.max_bytes = 0;  // the entry limit is the one this run studies
    config.print_stats_at_exit = 0;
    int rc;
    if (quiet) {
      StderrSilenced silenced;
      rc = regcache_create(&registrar, &config, &cache_);
    } else {
      rc = regcache_create(&registrar, &config, &cache_);
    }
    if (rc != 0) {
      *why = regcache_last_error();
      cache_ = nullptr;
      return false;
    }
    return true;
  }
  std::string ModeReason() {
    struct regcache_stats stats {};
    ::regcache_stats(cache_, &stats);
    return stats.mode_reason;
  }
  bool Acquire(void* addr, size_t length, uint32_t access, Held* out,
               std::string* error) override {
    regcache_handle_t* handle = nullptr;
    if (const int rc = regcache_get(cache_, addr, length, access, &handle);
        rc != 0) {
      *error = std::string("regcache_get: ") + regcache_last_error();
      return false;
    }
    const regcache_mr* mr = regcache_handle_mr(handle);
    *out = {mr->lkey, mr->rkey, handle};
    return true;
  }
  bool Release(Held* held, std::string* error) override {
    if (regcache_put(cache_, static_cast<regcache_handle_t*>(held->token)) !=
        0) {
      *error = std::string("regcache_put: ") + regcache_last_error();
      return false;
    }
    held->token = nullptr;
    return true;
  }
  RegCounters Counters() override {
    struct regcache_stats stats {};
    ::regcache_stats(cache_, &stats);
    RegCounters c;
    c.registrations = stats.registrations;
    c.hits = stats.hits;
    c.gets = stats.hits + stats.misses;
    c.uncached = stats.uncached_churn + stats.uncached_admission;
    return c;
  }

 protected:
  regcache_t* cache_ = nullptr;
};

// regcache-pool: a cache (monitor auto: kmod where the module is loaded)
// whose buffers are pin-once memory. Each buffer is registered when it is
// allocated, every get inside it is a hit, and the realloc workload's
// free-and-allocate gives the block back to the pool and takes it again,
// without registering. No entry limit: the pool's blocks are the working
// set, and each counts as an entry.
class Pooled : public Cached, public BufferAllocator {
 public:
  BufferAllocator* Allocator() override { return this; }
  bool Allocate(size_t size, void** out, std::string* error) override {
    if (regcache_mem_alloc(cache_, size, 0, out) != 0) {
      *error = std::string("regcache_mem_alloc: ") + regcache_last_error();
      return false;
    }
    return true;
  }
  bool Free(void* p, std::string* error) override {
    if (regcache_mem_free(cache_, p) != 0) {
      *error = std::string("regcache_mem_free: ") + regcache_last_error();
      return false;
    }
    return true;
  }
};

}  // namespace

std::unique_ptr<Registrations> MakeRegistrations(
    Mode mode, ibv_pd* pd, const CacheSettings& settings,
    const std::string& odp_unavailable, const std::string& odp_defect,
    std::string* why) {
  switch (mode) {
    case Mode::kPerMessage:
      return std::make_unique<PerMessage>(pd);
    case Mode::kPool: {
      regcache_registrar registrar;
      regcache_registrar_ibverbs(pd, &registrar);
      CacheSettings unlimited = settings;
      unlimited.max_entries = 0;
      auto pooled = std::make_unique<Pooled>();
      if (!pooled->Create(registrar, REGCACHE_MONITOR_AUTO, REGCACHE_MODE_PIN,
                          unlimited, /*quiet=*/false, why))
        return nullptr;
      return pooled;
    }
    case Mode::kOnce:
      return std::make_unique<Once>(pd);
    case Mode::kKmod:
    case Mode::kUffd:
    case Mode::kNone:
    case Mode::kOdp: {
      if (mode == Mode::kOdp && !odp_unavailable.empty()) {
        *why = odp_unavailable;  // the endpoint's own probe says why
        return nullptr;
      }
      regcache_registrar registrar;
      regcache_registrar_ibverbs(pd, &registrar);
      const regcache_monitor_kind monitor =
          mode == Mode::kKmod   ? REGCACHE_MONITOR_KMOD
          : mode == Mode::kUffd ? REGCACHE_MONITOR_UFFD
                                : REGCACHE_MONITOR_NONE;
      // odp: the library's ODP mode, whose MRs follow the page tables, so
      // they are never stale and need no monitor.
      const regcache_mode cache_mode =
          mode == Mode::kOdp ? REGCACHE_MODE_ODP : REGCACHE_MODE_PIN;
      auto cached = std::make_unique<Cached>();
      const bool quiet = mode == Mode::kOdp && !odp_defect.empty();
      if (!cached->Create(registrar, monitor, cache_mode, settings, quiet, why))
        return nullptr;
      return cached;
    }
  }
  *why = "unknown mode";
  return nullptr;
}

bool ProbeLibraryOdp(ibv_pd* pd, std::string* defect, std::string* why) {
  regcache_registrar registrar;
  regcache_registrar_ibverbs(pd, &registrar);
  Cached probe;
  if (!probe.Create(registrar, REGCACHE_MONITOR_NONE, REGCACHE_MODE_ODP,
                    CacheSettings{}, /*quiet=*/true, why))
    return false;
  *defect = OdpDefectIn(probe.ModeReason());
  return true;
}

}  // namespace regcache_pingpong
