// SPDX-License-Identifier: BSD-2-Clause
// CheckingFakeRegistrar: a fake registrar for cache tests. It registers
// nothing; it records every registration, can refuse with -ENOMEM past a
// byte budget (as ibv_reg_mr does at RLIMIT_MEMLOCK), and counts a violation
// whenever the cache deregisters a registration that a test still holds
// (tests mark holds with Hold()/Unhold() around their use of a handle).
#ifndef REGCACHE_TESTS_UNIT_FAKE_REGISTRAR_H_
#define REGCACHE_TESTS_UNIT_FAKE_REGISTRAR_H_

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "regcache/regcache.h"

namespace regcache_test {

class CheckingFakeRegistrar {
 public:
  struct Record {
    uint64_t serial;  // registration order, from 1
    uint64_t addr;
    size_t length;
    std::atomic<int> holders{0};
    std::atomic<bool> live{true};
  };

  regcache_registrar registrar() {
    regcache_registrar r{};
    r.name = "checking-fake";
    r.reg = &Reg;
    r.dereg = &Dereg;
    r.ctx = this;
    return r;
  }

  // Registrations beyond this many live bytes fail with -ENOMEM (0: none).
  void set_budget(size_t bytes) { budget_ = bytes; }

  static Record* RecordOf(const regcache_mr* mr) {
    return static_cast<Record*>(mr->backend);
  }
  static void Hold(const regcache_mr* mr) { RecordOf(mr)->holders++; }
  static void Unhold(const regcache_mr* mr) { RecordOf(mr)->holders--; }

  uint64_t regs() const { return regs_.load(); }
  // The serial the next registration will get minus one: a registration
  // made after this call has a larger serial.
  uint64_t last_serial() {
    std::lock_guard<std::mutex> l(mu_);
    return serial_;
  }
  uint64_t deregs() const { return deregs_.load(); }
  uint64_t live() const { return regs_.load() - deregs_.load(); }
  size_t live_bytes() const { return live_bytes_.load(); }
  uint64_t violations() const { return violations_.load(); }
  uint64_t failures() const { return failures_.load(); }
  // The most registrations, and bytes, that were ever live at once.
  uint64_t peak_live() const { return peak_live_.load(); }
  size_t peak_live_bytes() const { return peak_live_bytes_.load(); }

  // Records are kept (never freed) so handles stay inspectable.
  ~CheckingFakeRegistrar() {
    for (auto& [serial, rec] : records_) delete rec;
  }

 private:
  static int Reg(void* ctx, void* addr, size_t length, uint32_t access,
                 regcache_mr* out) {
    auto* self = static_cast<CheckingFakeRegistrar*>(ctx);
    std::lock_guard<std::mutex> l(self->mu_);
    if (self->budget_ != 0 && self->live_bytes_ + length > self->budget_) {
      self->failures_++;
      return -ENOMEM;
    }
    auto* rec = new Record();
    rec->serial = ++self->serial_;
    rec->addr = reinterpret_cast<uint64_t>(addr);
    rec->length = length;
    self->records_[rec->serial] = rec;
    self->live_bytes_ += length;
    self->regs_++;
    if (self->live() > self->peak_live_) self->peak_live_ = self->live();
    if (self->live_bytes_ > self->peak_live_bytes_)
      self->peak_live_bytes_ = self->live_bytes_.load();
    out->lkey = uint32_t(rec->serial);
    out->rkey = uint32_t(rec->serial) | 0x80000000u;
    out->backend = rec;
    (void)access;
    return 0;
  }

  static int Dereg(void* ctx, regcache_mr* mr) {
    auto* self = static_cast<CheckingFakeRegistrar*>(ctx);
    std::lock_guard<std::mutex> l(self->mu_);
    Record* rec = RecordOf(mr);
    if (rec->holders.load() != 0 || !rec->live.load()) self->violations_++;
    rec->live = false;
    self->live_bytes_ -= rec->length;
    self->deregs_++;
    return 0;
  }

  std::mutex mu_;
  std::unordered_map<uint64_t, Record*> records_;
  uint64_t serial_ = 0;
  size_t budget_ = 0;
  std::atomic<size_t> live_bytes_{0}, peak_live_bytes_{0};
  std::atomic<uint64_t> peak_live_{0};
  std::atomic<uint64_t> regs_{0}, deregs_{0}, violations_{0}, failures_{0};
};

}  // namespace regcache_test

#endif  // REGCACHE_TESTS_UNIT_FAKE_REGISTRAR_H_
