// SPDX-License-Identifier: BSD-2-Clause
// Timing of large registrations, pinned and ODP (reg_time.h).

#include "reg_time.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "posix_util.h"

namespace regcache_pingpong {
namespace {

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// One kind, `repetitions` times. False with *why when a registration
// failed (the first failure's errno text).
bool Measure(ibv_pd* pd, uint64_t size, uint32_t repetitions, bool odp,
             bool touched, RegTime::Sample* out, std::string* why) {
  const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                     (odp ? IBV_ACCESS_ON_DEMAND : 0);
  std::vector<double> reg_us, dereg_us;
  for (uint32_t i = 0; i < repetitions; ++i) {
    void* buf = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
      *why = ErrnoText("mmap(" + std::to_string(size) + ")", errno);
      return false;
    }
    if (touched) memset(buf, 0x5a, size);
    const uint64_t t0 = NowNs();
    ibv_mr* mr = ibv_reg_mr(pd, buf, size, access);
    const uint64_t t1 = NowNs();
    if (mr == nullptr) {
      *why = ErrnoText(std::string("ibv_reg_mr(") +
                           (odp ? "IBV_ACCESS_ON_DEMAND, " : "") +
                           std::to_string(size) + " bytes)",
                       errno);
      munmap(buf, size);
      return false;
    }
    const int rc = ibv_dereg_mr(mr);
    const uint64_t t2 = NowNs();
    munmap(buf, size);
    if (rc != 0) {
      *why = ErrnoText("ibv_dereg_mr", rc);
      return false;
    }
    reg_us.push_back(double(t1 - t0) / 1000);
    dereg_us.push_back(double(t2 - t1) / 1000);
  }
  out->measured = true;
  out->reg_us = Median(reg_us);
  out->reg_min_us = *std::min_element(reg_us.begin(), reg_us.end());
  out->dereg_us = Median(dereg_us);
  return true;
}

}  // namespace

void MeasureRegTime(ibv_pd* pd, uint64_t size, uint32_t repetitions,
                    RegTime* out) {
  *out = RegTime{};
  out->size = size;
  out->repetitions = repetitions;
  std::string why;
  const auto not_measured = [&](const char* kind) {
    if (!out->note.empty()) out->note += "; ";
    out->note += std::string(kind) + " not measured: " + why;
  };
  if (!Measure(pd, size, repetitions, false, false, &out->pinned_fresh, &why) ||
      !Measure(pd, size, repetitions, false, true, &out->pinned_touched, &why))
    not_measured("pinned");
  if (!Measure(pd, size, repetitions, true, false, &out->odp_fresh, &why) ||
      !Measure(pd, size, repetitions, true, true, &out->odp_touched, &why))
    not_measured("odp");
}

}  // namespace regcache_pingpong
