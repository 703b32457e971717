// SPDX-License-Identifier: BSD-2-Clause
// libregcache-fi.so: the regcache kernel module as libfabric's memory
// monitor, for programs that do not know regcache exists.
//
// libfabric (>= 1.13) loads every lib*-fi.so in FI_PROVIDER_PATH inside
// fi_ini(), after its default monitors are set up, and calls its
// fi_prov_ini(). Ours imports a struct fid_mem_monitor (rdma/fi_ext.h,
// fi_import(FI_VERSION(1,13), "mr_cache", ...)) and returns NULL: it is no
// provider. libfabric dlclose()s such a library, so it is linked with
// -z nodelete and stays. Without /dev/regcache it imports nothing and says
// why once, at warn level (FI_LOG_LEVEL=warn shows it).
//
// The monitor's operations map onto the subscription table
// (subscriptions.h, which has the protocol): subscribe -> a kmod watch,
// valid -> one generation load, and the table's notifier thread calls
// libfabric's notify() outside every lock (libfabric issue 9003 is a
// monitor calling notify while libfabric held mm_lock).
//
// Threading: libfabric calls start/stop under its mm_state_lock and
// subscribe/unsubscribe/valid under its mm_lock, so the process state
// (g_state) is only ever replaced by one thread at a time. A fork child
// abandons the parent's state (its threads do not exist, its locks may be
// held for ever) and builds its own on the next call: a new /dev/regcache
// context, a new notifier. Until then valid() says no.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_ext.h>
#include <rdma/providers/fi_log.h>
#include <rdma/providers/fi_prov.h>

#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <memory>
#include <string>

#include "integrations/libfabric/plugin_config.h"
#include "integrations/libfabric/subscriptions.h"
#include "monitor/fds.h"
#include "monitor/monitor.h"

namespace regcache_fi {
namespace {

// Only for fi_log()'s prefix and filters; never registered as a provider.
fi_provider g_log_provider = {
    .version = FI_VERSION(0, 1),
    .fi_version = FI_VERSION(1, 13),
    .context = {},
    .name = "regcache",
    .getinfo = nullptr,
    .fabric = nullptr,
    .cleanup = nullptr,
};

__attribute__((format(printf, 2, 3))) void Log(fi_log_level level,
                                               const char* fmt, ...) {
  if (!fi_log_enabled(&g_log_provider, level, FI_LOG_MR)) return;
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  fi_log(&g_log_provider, level, FI_LOG_MR, "regcache-fi", 0, "%s\n", text);
}

// What one process has: a kmod monitor and the table fed by it. Never
// destroyed while libfabric may call in (a stopped state stays, empty).
struct State {
  pid_t pid;
  std::unique_ptr<regcache_internal::Monitor> monitor;
  std::unique_ptr<Subscriptions> table;
  bool running = false;
};

struct Plugin {
  fid_mem_monitor monitor{};
  fi_ops_mem_monitor ops{};
  PluginConfig config;
  uint64_t page_size = 0;
  std::atomic<State*> state{nullptr};
  std::atomic<bool> child_warned{false};
};
Plugin* g_plugin = nullptr;  // set once in fi_prov_ini, never freed

void Notify(uint64_t addr, uint64_t len) {
  fid_mem_monitor* m = &g_plugin->monitor;
  if (m->import_ops != nullptr && m->import_ops->notify != nullptr)
    m->import_ops->notify(m, reinterpret_cast<const void*>(addr),
                          static_cast<size_t>(len));
}

State* NewState(std::unique_ptr<regcache_internal::Monitor> monitor) {
  auto* s = new State;
  s->pid = regcache_internal::PrepareCurrentPid();
  s->monitor = std::move(monitor);
  s->table = std::make_unique<Subscriptions>(s->monitor.get(),
                                             g_plugin->config.max_subscriptions,
                                             g_plugin->page_size);
  return s;
}

int StartState(State* s) {
  if (s->running) return 0;
  std::string why;
  const int rc = s->table->Start(Notify, "regcache-fi", &why);
  if (rc != 0) {
    Log(FI_LOG_WARN, "cannot start the regcache monitor: %s", why.c_str());
    return rc;
  }
  s->running = true;
  return 0;
}

// The state of this process, rebuilt in a fork child. nullptr when the
// child could not open its own context (then nothing is cached there).
State* CurrentState() {
  State* s = g_plugin->state.load(std::memory_order_acquire);
  if (s == nullptr || s->pid == regcache_internal::CurrentPid()) return s;
  // A fork child: the parent's state is abandoned, never touched again.
  std::string why;
  auto monitor = regcache_internal::CreateKmodMonitor(&why);
  if (monitor == nullptr) {
    if (!g_plugin->child_warned.exchange(true))
      Log(FI_LOG_WARN, "fork child %d: %s; its registrations are not cached",
          static_cast<int>(regcache_internal::CurrentPid()), why.c_str());
    return nullptr;
  }
  const bool was_running = s->running;
  State* fresh = NewState(std::move(monitor));
  if (was_running && StartState(fresh) != 0) return nullptr;
  g_plugin->state.store(fresh, std::memory_order_release);
  Log(FI_LOG_INFO, "fork child %d: watching with its own /dev/regcache context",
      static_cast<int>(fresh->pid));
  return fresh;
}

int MonitorStart(fid_mem_monitor*) {
  State* s = CurrentState();
  if (s == nullptr) return -FI_ENODEV;
  const int rc = StartState(s);
  return rc == 0 ? FI_SUCCESS : -FI_ENODEV;
}

void MonitorStop(fid_mem_monitor*) {
  State* s = CurrentState();
  if (s == nullptr || !s->running) return;
  s->table->Stop();
  s->running = false;
}

int MonitorSubscribe(fid_mem_monitor*, const void* addr, size_t len) {
  State* s = CurrentState();
  if (s == nullptr) return -FI_ENODEV;
  if (!s->running && StartState(s) != 0) return -FI_ENODEV;
  const int rc = s->table->Subscribe(reinterpret_cast<uint64_t>(addr), len);
  if (rc == 0) return FI_SUCCESS;
  // -EOPNOTSUPP: the module is out of slots (max_ranges) or the memory
  // cannot be watched; libfabric then keeps this registration uncached.
  return rc == -EINVAL ? -FI_EINVAL : -FI_ENOSPC;
}

void MonitorUnsubscribe(fid_mem_monitor*, const void* addr, size_t len) {
  State* s = CurrentState();
  if (s != nullptr)
    s->table->Unsubscribe(reinterpret_cast<uint64_t>(addr), len);
}

bool MonitorValid(fid_mem_monitor*, const void* addr, size_t len) {
  State* s = CurrentState();
  return s != nullptr && s->running &&
         s->table->Valid(reinterpret_cast<uint64_t>(addr), len);
}

int CloseMonitorFid(fid_t) { return FI_SUCCESS; }

fi_ops g_fid_ops = {
    .size = sizeof(fi_ops),
    .close = CloseMonitorFid,
    .bind = nullptr,
    .control = nullptr,
    .ops_open = nullptr,
    .tostr = nullptr,
    .ops_set = nullptr,
};

void PrintStatsAtExit() {
  State* s = g_plugin->state.load(std::memory_order_acquire);
  if (s == nullptr || s->pid != regcache_internal::CurrentPid()) return;
  const SubscriptionStats st = s->table->stats();
  fprintf(stderr,
          "regcache-fi: pid %d: subscribe %llu (new watches %llu, errors "
          "%llu), unsubscribe %llu, valid %llu (not valid %llu), retired "
          "%llu stale + %llu for room, notify %llu, records %llu (max %zu)\n",
          static_cast<int>(s->pid),
          static_cast<unsigned long long>(st.subscribes),
          static_cast<unsigned long long>(st.watches),
          static_cast<unsigned long long>(st.subscribe_errors),
          static_cast<unsigned long long>(st.unsubscribes),
          static_cast<unsigned long long>(st.valid_calls),
          static_cast<unsigned long long>(st.valid_false),
          static_cast<unsigned long long>(st.retired_stale),
          static_cast<unsigned long long>(st.retired_full),
          static_cast<unsigned long long>(st.notifies),
          static_cast<unsigned long long>(st.records_now),
          s->table->max_subscriptions());
}

// Imports the monitor once per process. Returns nothing: whatever happens,
// fi_prov_ini() is no provider.
void ImportOnce() {
  static bool done = false;  // fi_ini() runs us once, under its lock
  if (done) return;
  done = true;

  PluginConfig config;
  std::string config_error;
  if (!ReadPluginConfig(&config, &config_error))
    Log(FI_LOG_WARN, "%s", config_error.c_str());
  if (!config.enabled) {
    Log(FI_LOG_INFO, "REGCACHE_FI=0: no memory monitor imported");
    return;
  }
  std::string why;
  auto monitor = regcache_internal::CreateKmodMonitor(&why);
  if (monitor == nullptr) {
    Log(FI_LOG_WARN,
        "not importing a memory monitor: %s; libfabric keeps its own",
        why.c_str());
    return;
  }
  g_plugin = new Plugin;
  g_plugin->config = config;
  g_plugin->page_size = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  g_plugin->state.store(NewState(std::move(monitor)));

  g_plugin->ops = {
      .size = sizeof(fi_ops_mem_monitor),
      .start = MonitorStart,
      .stop = MonitorStop,
      .subscribe = MonitorSubscribe,
      .unsubscribe = MonitorUnsubscribe,
      .valid = MonitorValid,
  };
  fid_mem_monitor& m = g_plugin->monitor;
  m.fid.fclass = FI_CLASS_MEM_MONITOR;
  m.fid.context = nullptr;
  m.fid.ops = &g_fid_ops;
  m.export_ops = &g_plugin->ops;
  const int rc =
      fi_import(FI_VERSION(1, 13), "mr_cache", nullptr, 0, 0, &m.fid, nullptr);
  if (rc != 0) {
    // -FI_EBUSY: the program imported a monitor of its own before
    // libfabric initialised; libfabric uses that one, ours stays unused.
    Log(FI_LOG_WARN, "fi_import of the regcache memory monitor failed: %s%s",
        fi_strerror(-rc),
        rc == -FI_EBUSY ? " (the program imported a monitor of its own "
                          "first; libfabric uses that one)"
                        : "");
    return;
  }
  Log(FI_LOG_INFO,
      "imported the regcache memory monitor (/dev/regcache, at most %zu "
      "subscriptions)",
      config.max_subscriptions);
  if (config.print_stats) atexit(PrintStatsAtExit);
}

}  // namespace
}  // namespace regcache_fi

extern "C" __attribute__((visibility("default"))) fi_provider* fi_prov_ini(
    void) {
  regcache_fi::ImportOnce();
  return nullptr;
}
