// SPDX-License-Identifier: BSD-2-Clause
// FakeVerbs: a fake verbs layer for testing the ODP code (src/odp/) without
// a device. It is NOT libibverbs: it fills a regcache_internal::VerbsOps
// table whose ibv_query_device_ex reports configurable ODP capabilities,
// whose ibv_reg_mr hands out fresh ibv_mr objects with increasing keys (or
// fails with a configurable errno), whose ibv_advise_mr returns a
// configurable result, and which records every call with its arguments and
// flags. The protection domain, context and device it hands out are plain
// structs that only FakeVerbs' own calls ever look at: never pass them to
// libibverbs. Header-only; thread-safe.
#ifndef REGCACHE_TESTS_UNIT_ODP_FAKE_VERBS_H_
#define REGCACHE_TESTS_UNIT_ODP_FAKE_VERBS_H_

#include <errno.h>
#include <infiniband/verbs.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <set>
#include <vector>

#include "odp/verbs_ops.h"

namespace regcache_test {

class FakeVerbs {
 public:
  enum class Op { kQueryDeviceEx, kRegMr, kDeregMr, kAdviseMr };
  struct Call {
    Op op = Op::kQueryDeviceEx;
    void* addr = nullptr;        // reg_mr
    size_t length = 0;           // reg_mr
    int access = 0;              // reg_mr: IBV_ACCESS_* as passed
    const ibv_mr* mr = nullptr;  // reg_mr's result, dereg_mr's argument
    int advice = -1;             // advise_mr: IBV_ADVISE_MR_ADVICE_*
    uint32_t flags = 0;          // advise_mr: IBV_ADVISE_MR_FLAG_*
    std::vector<ibv_sge> sges;   // advise_mr
  };

  // RC bits of a typical ConnectX ODP device.
  static constexpr uint32_t kRcAll =
      IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_RECV | IBV_ODP_SUPPORT_WRITE |
      IBV_ODP_SUPPORT_READ | IBV_ODP_SUPPORT_ATOMIC | IBV_ODP_SUPPORT_SRQ_RECV;

  explicit FakeVerbs(const char* device_name) {
    strncpy(device_.name, device_name, sizeof device_.name - 1);
    context_.device = &device_;
    pd_.context = &context_;
    ops_ = regcache_internal::VerbsOps{"FakeVerbs", QueryDeviceEx, RegMr,
                                       DeregMr,     AdviseMr,      this};
  }
  ~FakeVerbs() {
    for (ibv_mr* mr : live_) delete mr;
  }
  FakeVerbs(const FakeVerbs&) = delete;
  FakeVerbs& operator=(const FakeVerbs&) = delete;

  // ---- Configuration (set before use) ----
  // Like rxe in Linux 6.1: odp_caps all zero.
  void SetNoOdp() {
    odp_ = ibv_odp_caps{};
    xrc_caps_ = 0;
  }
  // ODP with the given RC (and UD) bits; implicit adds
  // IBV_ODP_SUPPORT_IMPLICIT.
  void SetOdp(uint32_t rc, bool implicit, uint32_t ud = 0) {
    odp_ = ibv_odp_caps{};
    odp_.general_caps =
        IBV_ODP_SUPPORT | (implicit ? IBV_ODP_SUPPORT_IMPLICIT : 0);
    odp_.per_transport_caps.rc_odp_caps = rc;
    odp_.per_transport_caps.ud_odp_caps = ud;
  }
  void set_xrc_caps(uint32_t bits) { xrc_caps_ = bits; }
  // orig_attr.vendor_id / vendor_part_id (default 0, 0: no known device).
  void set_vendor(uint32_t id, uint32_t part_id) {
    vendor_id_ = id;
    vendor_part_id_ = part_id;
  }
  void ClearCalls() { calls_.clear(); }  // forget the calls recorded so far
  void set_query_result(int positive_errno) { query_result_ = positive_errno; }
  void set_reg_errno(int e) { reg_errno_ = e; }          // 0: reg_mr succeeds
  void set_advise_result(int r) { advise_result_ = r; }  // positive errno

  // ---- What the code under test uses ----
  const regcache_internal::VerbsOps* ops() const { return &ops_; }
  ibv_pd* pd() { return &pd_; }
  ibv_context* context() { return &context_; }

  // ---- What happened ----
  std::vector<Call> calls() const {
    std::lock_guard<std::mutex> l(mu_);
    return calls_;
  }
  std::vector<Call> calls(Op op) const {
    std::vector<Call> out;
    for (const Call& c : calls()) {
      if (c.op == op) out.push_back(c);
    }
    return out;
  }
  size_t count(Op op) const { return calls(op).size(); }
  size_t live_mrs() const {
    std::lock_guard<std::mutex> l(mu_);
    return live_.size();
  }
  size_t bad_deregs() const {  // dereg of an MR that is not live
    std::lock_guard<std::mutex> l(mu_);
    return bad_deregs_;
  }

 private:
  static FakeVerbs* Self(void* self) { return static_cast<FakeVerbs*>(self); }
  static Call NewCall(Op op) {
    Call c;
    c.op = op;
    return c;
  }

  static int QueryDeviceEx(void* self, ibv_context* context,
                           ibv_device_attr_ex* attr) {
    FakeVerbs* f = Self(self);
    std::lock_guard<std::mutex> l(f->mu_);
    f->calls_.push_back(NewCall(Op::kQueryDeviceEx));
    if (context != &f->context_) return EINVAL;
    if (f->query_result_ != 0) return f->query_result_;
    memset(attr, 0, sizeof *attr);
    attr->orig_attr.max_mr_size = uint64_t{1} << 40;
    attr->orig_attr.vendor_id = f->vendor_id_;
    attr->orig_attr.vendor_part_id = f->vendor_part_id_;
    attr->odp_caps = f->odp_;
    attr->xrc_odp_caps = f->xrc_caps_;
    return 0;
  }

  static ibv_mr* RegMr(void* self, ibv_pd* pd, void* addr, size_t length,
                       int access) {
    FakeVerbs* f = Self(self);
    std::lock_guard<std::mutex> l(f->mu_);
    Call c = NewCall(Op::kRegMr);
    c.addr = addr;
    c.length = length;
    c.access = access;
    if (pd != &f->pd_ || f->reg_errno_ != 0) {
      f->calls_.push_back(c);
      errno = pd != &f->pd_ ? EINVAL : f->reg_errno_;
      return nullptr;
    }
    auto* mr = new ibv_mr{};
    mr->context = &f->context_;
    mr->pd = pd;
    mr->addr = addr;
    mr->length = length;
    mr->lkey = f->next_key_++;
    mr->rkey = f->next_key_++;
    f->live_.insert(mr);
    c.mr = mr;
    f->calls_.push_back(c);
    return mr;
  }

  static int DeregMr(void* self, ibv_mr* mr) {
    FakeVerbs* f = Self(self);
    std::lock_guard<std::mutex> l(f->mu_);
    Call c = NewCall(Op::kDeregMr);
    c.mr = mr;
    f->calls_.push_back(c);
    if (f->live_.erase(mr) == 0) {
      ++f->bad_deregs_;
      return EINVAL;
    }
    delete mr;
    return 0;
  }

  static int AdviseMr(void* self, ibv_pd* pd, ibv_advise_mr_advice advice,
                      uint32_t flags, ibv_sge* sg_list, uint32_t num_sge) {
    FakeVerbs* f = Self(self);
    std::lock_guard<std::mutex> l(f->mu_);
    Call c = NewCall(Op::kAdviseMr);
    c.advice = int(advice);
    c.flags = flags;
    c.sges.assign(sg_list, sg_list + num_sge);
    f->calls_.push_back(c);
    if (pd != &f->pd_) return EINVAL;
    return f->advise_result_;
  }

  ibv_device device_{};
  ibv_context context_{};
  ibv_pd pd_{};
  regcache_internal::VerbsOps ops_{};

  ibv_odp_caps odp_{};
  uint32_t xrc_caps_ = 0;
  uint32_t vendor_id_ = 0, vendor_part_id_ = 0;
  int query_result_ = 0;
  int reg_errno_ = 0;
  int advise_result_ = 0;

  mutable std::mutex mu_;
  std::vector<Call> calls_;
  std::set<ibv_mr*> live_;
  size_t bad_deregs_ = 0;
  uint32_t next_key_ = 0x100;
};

}  // namespace regcache_test

#endif  // REGCACHE_TESTS_UNIT_ODP_FAKE_VERBS_H_
