// SPDX-License-Identifier: BSD-2-Clause
// Thread-local error messages for regcache_last_error().
#include "base/errors.h"

#include <cstdarg>
#include <cstdio>

namespace regcache_internal {

namespace {
thread_local char t_message[768];
}  // namespace

int SetError(int rc, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_message, sizeof t_message, fmt, ap);
  va_end(ap);
  return rc;
}

void ClearError() { t_message[0] = '\0'; }

const char* LastError() { return t_message; }

}  // namespace regcache_internal
