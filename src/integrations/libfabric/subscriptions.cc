// SPDX-License-Identifier: BSD-2-Clause
// The subscription table and its notifier thread (subscriptions.h has the
// protocol and the locking). The main class is Subscriptions.
#include "integrations/libfabric/subscriptions.h"

#include <errno.h>

#include <mutex>
#include <utility>

namespace regcache_fi {

using regcache_internal::MutexLock;

Subscriptions::Subscriptions(regcache_internal::Monitor* monitor,
                             size_t max_subscriptions, uint64_t page_size)
    : monitor_(monitor),
      max_(max_subscriptions == 0 ? 1 : max_subscriptions),
      page_mask_(page_size - 1) {
  MutexLock l(&mu_);
  records_.reserve(max_);
}

Subscriptions::~Subscriptions() { Stop(); }

int Subscriptions::Start(NotifyFn notify, const char* thread_name,
                         std::string* why) {
  if (started_) {
    *why = "the subscription table is already started";
    return -EINVAL;
  }
  notify_ = std::move(notify);
  {
    MutexLock l(&mu_);
    stopping_ = false;
  }
  int rc = regcache_internal::StartEventThread(
      thread_name, [this] { RunNotifier(); }, &notifier_, why);
  if (rc != 0) return rc;
  started_ = true;
  // The monitor last: its events may arrive at once.
  rc = monitor_->Start(this, nullptr, why);
  if (rc != 0) Stop();
  return rc;
}

void Subscriptions::Stop() {
  if (!started_) return;
  started_ = false;
  monitor_->Stop();  // no InvalidateRange() after this
  {
    MutexLock l(&mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (notifier_.joinable()) notifier_.join();
  // Nobody notifies any more: what is left goes without a notify (libfabric
  // stops a monitor only once no cache uses it).
  std::vector<Pending> unwatch;
  {
    MutexLock l(&mu_);
    for (auto& [range, r] : records_) {
      unwatch.push_back({r->range, r->token});
      delete r;
    }
    records_.clear();
    clock_head_ = clock_tail_ = nullptr;
    for (const Pending& p : pending_) unwatch.push_back(p);
    pending_.clear();
    in_flight_ = 0;
    counts_.records_now = counts_.pending_now = 0;
  }
  for (const Pending& p : unwatch)
    monitor_->Unwatch(p.range.first, p.range.last, p.token);
  idle_cv_.notify_all();
}

bool Subscriptions::RoundToPages(uint64_t addr, uint64_t len,
                                 Range* out) const {
  if (len == 0 || addr + (len - 1) < addr) return false;
  out->first = addr & ~page_mask_;
  out->last = (addr + (len - 1)) | page_mask_;
  return true;
}

int Subscriptions::Subscribe(uint64_t addr, uint64_t len) {
  Range range;
  if (!RoundToPages(addr, len, &range)) {
    MutexLock l(&mu_);
    ++counts_.subscribe_errors;
    return -EINVAL;
  }
  {
    MutexLock l(&mu_);
    ++counts_.subscribes;
    auto it = records_.find(range);
    if (it != records_.end()) {
      if (!Stale(*it->second)) {
        it->second->referenced = true;
        return 0;
      }
      // Registered after the change, watched by a record from before it:
      // a new watch, and the old record's entries go.
      RetireLocked(it->second);
      ++counts_.retired_stale;
    }
  }
  regcache_internal::WatchToken token;
  const int rc = monitor_->Watch(range.first, range.last, &token);
  if (rc != 0) {
    MutexLock l(&mu_);
    ++counts_.subscribe_errors;
    return rc;
  }
  if (InsertWatched(range, token)) return 0;
  // Another thread subscribed the same pages meanwhile (libfabric
  // serialises subscribe under mm_lock, but the table does not rely on it).
  monitor_->Unwatch(range.first, range.last, token);
  return 0;
}

bool Subscriptions::InsertWatched(const Range& range,
                                  const regcache_internal::WatchToken& token) {
  MutexLock l(&mu_);
  auto it = records_.find(range);
  if (it != records_.end()) {
    if (!Stale(*it->second)) {
      it->second->referenced = true;
      return false;
    }
    RetireLocked(it->second);
    ++counts_.retired_stale;
  }
  MakeRoomLocked();
  Record* r = new Record{range, token};
  r->referenced = true;
  records_.emplace(range, r);
  LinkNewestLocked(r);
  ++counts_.watches;
  counts_.records_now = records_.size();
  return true;
}

void Subscriptions::Unsubscribe(uint64_t addr, uint64_t len) {
  Range range;
  if (!RoundToPages(addr, len, &range)) return;
  MutexLock l(&mu_);
  ++counts_.unsubscribes;
  auto it = records_.find(range);
  if (it == records_.end()) return;
  if (Stale(*it->second)) {
    RetireLocked(it->second);
    ++counts_.retired_stale;
  } else {
    // Other caches may still use it (see the header): keep it, first in
    // line when the table is full.
    it->second->referenced = false;
  }
}

bool Subscriptions::Valid(uint64_t addr, uint64_t len) {
  Range range;
  const bool ok_range = RoundToPages(addr, len, &range);
  MutexLock l(&mu_);
  ++counts_.valid_calls;
  bool valid = false;
  if (ok_range) {
    auto it = records_.find(range);
    if (it != records_.end() && !Stale(*it->second) &&
        (pending_.empty() || !OverlapsPendingLocked(range))) {
      it->second->referenced = true;
      valid = true;
    }
  }
  if (!valid) ++counts_.valid_false;
  return valid;
}

void Subscriptions::InvalidateRange(uint64_t first, uint64_t last,
                                    regcache_inval_reason /*reason*/) {
  MutexLock l(&mu_);
  auto it = records_.find(Range{first, last});
  // An event for a slot unwatched since, whose pages a newer record
  // watches: the newer record's generation is authoritative.
  if (it == records_.end() || !Stale(*it->second)) return;
  RetireLocked(it->second);
  ++counts_.retired_stale;
}

bool Subscriptions::OverlapsPendingLocked(const Range& r) const {
  for (const Pending& p : pending_) {
    if (p.range.first <= r.last && r.first <= p.range.last) return true;
  }
  return false;
}

void Subscriptions::RetireLocked(Record* r) {
  records_.erase(r->range);
  UnlinkLocked(r);
  pending_.push_back({r->range, r->token});
  delete r;
  counts_.records_now = records_.size();
  counts_.pending_now = pending_.size();
  cv_.notify_one();
}

// CLOCK over the records, oldest first: a referenced record gets a second
// chance at the newest end, an unreferenced one is retired (notified, so
// libfabric drops whatever entry still relies on it).
void Subscriptions::MakeRoomLocked() {
  while (records_.size() >= max_ && clock_head_ != nullptr) {
    Record* r = clock_head_;
    if (r->referenced) {
      r->referenced = false;
      UnlinkLocked(r);
      LinkNewestLocked(r);
      continue;
    }
    RetireLocked(r);
    ++counts_.retired_full;
  }
}

void Subscriptions::LinkNewestLocked(Record* r) {
  r->newer = nullptr;
  r->older = clock_tail_;
  if (clock_tail_ != nullptr) clock_tail_->newer = r;
  clock_tail_ = r;
  if (clock_head_ == nullptr) clock_head_ = r;
}

void Subscriptions::UnlinkLocked(Record* r) {
  if (r->older != nullptr)
    r->older->newer = r->newer;
  else
    clock_head_ = r->newer;
  if (r->newer != nullptr)
    r->newer->older = r->older;
  else
    clock_tail_ = r->older;
  r->older = r->newer = nullptr;
}

void Subscriptions::RunNotifier() RC_NO_TSA {
  std::vector<Pending> batch;
  std::unique_lock<std::mutex> lock(mu_.native());
  for (;;) {
    cv_.wait(lock, [this]() RC_NO_TSA {
      return stopping_ || pending_.size() > in_flight_;
    });
    if (stopping_) return;
    in_flight_ = pending_.size();
    batch.assign(pending_.begin(), pending_.begin() + in_flight_);
    lock.unlock();
    // No lock of ours here: notify takes mm_list_rwlock and mm_lock, and
    // libfabric may call Unsubscribe() from inside it (mm_lock -> mu_).
    for (const Pending& p : batch)
      notify_(p.range.first, p.range.last - p.range.first + 1);
    for (const Pending& p : batch)
      monitor_->Unwatch(p.range.first, p.range.last, p.token);
    lock.lock();
    // Only this thread removes from pending_, always the prefix it took.
    pending_.erase(pending_.begin(), pending_.begin() + in_flight_);
    counts_.notifies += in_flight_;
    in_flight_ = 0;
    counts_.pending_now = pending_.size();
    idle_cv_.notify_all();
  }
}

void Subscriptions::WaitForNotifier() RC_NO_TSA {
  std::unique_lock<std::mutex> lock(mu_.native());
  idle_cv_.wait(lock, [this]() RC_NO_TSA {
    return pending_.empty() || stopping_ || !started_;
  });
}

SubscriptionStats Subscriptions::stats() {
  MutexLock l(&mu_);
  return counts_;
}

}  // namespace regcache_fi
