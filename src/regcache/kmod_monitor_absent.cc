// SPDX-License-Identifier: BSD-2-Clause
// Fallback used only while kmod_monitor.cc is not part of the build: a weak
// CreateKmodMonitor() that reports the kmod monitor as unavailable, so
// `auto` falls through to uffd. The real definition overrides it.
#include "monitor.h"

namespace regcache_internal {

__attribute__((weak)) std::unique_ptr<Monitor> CreateKmodMonitor(
    std::string* why) {
  *why = "this build of libregcache has no kmod monitor";
  return nullptr;
}

}  // namespace regcache_internal
