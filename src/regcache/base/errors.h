// SPDX-License-Identifier: BSD-2-Clause
// The calling thread's last error message (regcache_last_error()). Setting
// it never allocates: it is formatted into a thread-local buffer.
#ifndef REGCACHE_SRC_REGCACHE_BASE_ERRORS_H_
#define REGCACHE_SRC_REGCACHE_BASE_ERRORS_H_

namespace regcache_internal {

// Formats the message and returns `rc` (a negative errno), so callers can
// write `return SetError(-EINVAL, "...", ...)`.
int SetError(int rc, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));
void ClearError();
const char* LastError();

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_BASE_ERRORS_H_
