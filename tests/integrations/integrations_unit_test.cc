// SPDX-License-Identifier: BSD-2-Clause
// Host unit tests of the integrations' logic, with a FAKE monitor (no
// kernel module here): the libfabric plug-in's subscription table and its
// settings, and the interposer's cache-or-pass-through rule and settings.
// The real module, libfabric and libibverbs are exercised in the VM
// (tests/integrations/*.sh).
#include <infiniband/verbs.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "integrations/libfabric/plugin_config.h"
#include "integrations/libfabric/subscriptions.h"
#include "integrations/preload/policy.h"

namespace {

using regcache_fi::PluginConfig;
using regcache_fi::Subscriptions;
using regcache_internal::InvalidationSink;
using regcache_internal::WatchToken;
using regcache_preload::Classify;
using regcache_preload::PassReason;

constexpr uint64_t kPage = 4096;

// A FAKE monitor: one generation word per watch, bumped by Unmap(), which
// also tells the sink the way the kmod monitor's event thread would.
class FakeMonitor final : public regcache_internal::Monitor {
 public:
  regcache_monitor_kind kind() const override { return REGCACHE_MONITOR_KMOD; }
  int Start(InvalidationSink* sink, std::atomic<uint32_t>*,
            std::string*) override {
    sink_ = sink;
    return 0;
  }
  int Watch(uint64_t first, uint64_t last, WatchToken* token) override {
    std::lock_guard<std::mutex> l(mu_);
    std::atomic<uint64_t>* gen = &words_.emplace_back(0);
    watches_.push_back({first, last, gen});
    ++watched_;
    token->generation = gen;
    token->expected = 0;
    token->cookie = watches_.size() - 1;
    return 0;
  }
  void Unwatch(uint64_t, uint64_t, const WatchToken& token) override {
    std::lock_guard<std::mutex> l(mu_);
    watches_[token.cookie].live = false;
    ++unwatched_;
  }
  void WaitForPending() override {}
  int RestartInChild(std::string*) override { return 0; }
  void Stop() override {}

  // The kernel's side: every live watch overlapping [first, last] goes
  // stale at once; the event reaches the sink afterwards (if `deliver`).
  void Unmap(uint64_t first, uint64_t last, bool deliver = true) {
    std::vector<std::pair<uint64_t, uint64_t>> hit;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (auto& w : watches_) {
        if (w.live && w.first <= last && first <= w.last) {
          w.gen->fetch_add(1);
          hit.push_back({w.first, w.last});
        }
      }
    }
    if (deliver)
      for (auto& [f, l] : hit)
        sink_->InvalidateRange(f, l, REGCACHE_INVAL_UNMAP);
  }
  int watched() {
    std::lock_guard<std::mutex> l(mu_);
    return watched_;
  }
  int unwatched() {
    std::lock_guard<std::mutex> l(mu_);
    return unwatched_;
  }

 private:
  struct W {
    uint64_t first, last;
    std::atomic<uint64_t>* gen;
    bool live = true;
  };
  std::mutex mu_;
  InvalidationSink* sink_ = nullptr;
  std::vector<W> watches_;
  std::deque<std::atomic<uint64_t>> words_;  // stable: tokens point here
  int watched_ = 0, unwatched_ = 0;
};

class SubscriptionsTest : public ::testing::Test {
 protected:
  void StartTable(size_t max) {
    table_ = std::make_unique<Subscriptions>(&monitor_, max, kPage);
    std::string why;
    ASSERT_EQ(table_->Start(
                  [this](uint64_t addr, uint64_t len) {
                    std::lock_guard<std::mutex> l(mu_);
                    notified_.push_back({addr, len});
                  },
                  "test-notify", &why),
              0)
        << why;
  }
  std::vector<std::pair<uint64_t, uint64_t>> Notified() {
    table_->WaitForNotifier();
    std::lock_guard<std::mutex> l(mu_);
    return notified_;
  }
  FakeMonitor monitor_;
  std::unique_ptr<Subscriptions> table_;
  std::mutex mu_;
  std::vector<std::pair<uint64_t, uint64_t>> notified_;
};

TEST_F(SubscriptionsTest, ValidUntilTheRangeIsUnmappedThenNotifiedOnce) {
  StartTable(64);
  const uint64_t a = 0x10000010;  // not page aligned, as libfabric's iovs
  ASSERT_EQ(table_->Subscribe(a, 100000), 0);
  EXPECT_TRUE(table_->Valid(a, 100000));
  monitor_.Unmap(0x10001000, 0x10001fff);  // one page in the middle
  EXPECT_FALSE(table_->Valid(a, 100000));
  const auto n = Notified();
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(n[0].first, 0x10000000u);  // the page-rounded range
  EXPECT_EQ(n[0].second,
            ((a + 100000 + kPage - 1) & ~(kPage - 1)) - 0x10000000u);
  EXPECT_EQ(monitor_.unwatched(), 1);
}

TEST_F(SubscriptionsTest, StaleBeforeTheEventArrivesIsAlreadyInvalid) {
  StartTable(64);
  ASSERT_EQ(table_->Subscribe(0x20000000, kPage), 0);
  monitor_.Unmap(0x20000000, 0x20000fff, /*deliver=*/false);
  // The generation word says so without any event: no stale hit.
  EXPECT_FALSE(table_->Valid(0x20000000, kPage));
  // A new subscription of the same pages gets a fresh watch and the old
  // record is retired (notified), not reused.
  ASSERT_EQ(table_->Subscribe(0x20000000, kPage), 0);
  EXPECT_EQ(monitor_.watched(), 2);
  EXPECT_EQ(Notified().size(), 1u);
  EXPECT_TRUE(table_->Valid(0x20000000, kPage));
}

TEST_F(SubscriptionsTest, ANewerRecordIsNotValidWhileAnOlderNotifyIsPending) {
  // Two caches used the same pages: cache A's entry must not be validated
  // against the record cache B made after the change, before notify() has
  // removed A's entry.
  StartTable(64);
  const uint64_t a = 0x30000000;
  ASSERT_EQ(table_->Subscribe(a, kPage), 0);
  // Hold the notifier: subscribe under our lock, then unmap.
  std::unique_lock<std::mutex> hold(mu_);
  monitor_.Unmap(a, a + kPage - 1);
  ASSERT_EQ(table_->Subscribe(a, kPage), 0);  // cache B's new entry
  EXPECT_FALSE(table_->Valid(a, kPage));      // pending: nobody hits yet
  hold.unlock();
  table_->WaitForNotifier();
  EXPECT_TRUE(table_->Valid(a, kPage));
}

TEST_F(SubscriptionsTest, UnsubscribeKeepsALiveRecordForOtherCaches) {
  StartTable(64);
  ASSERT_EQ(table_->Subscribe(0x40000000, kPage), 0);
  ASSERT_EQ(table_->Subscribe(0x40000000, kPage), 0);  // a second cache
  table_->Unsubscribe(0x40000000, kPage);
  EXPECT_TRUE(table_->Valid(0x40000000, kPage));
  EXPECT_EQ(monitor_.watched(), 1);
}

TEST_F(SubscriptionsTest, TheTableIsBoundedAndWhatItDropsIsNotified) {
  StartTable(16);
  for (uint64_t i = 0; i < 100; ++i)
    ASSERT_EQ(table_->Subscribe(0x50000000 + i * 2 * kPage, kPage), 0);
  const auto st = table_->stats();
  EXPECT_LE(st.records_now, 16u);
  EXPECT_EQ(st.retired_full, 100u - st.records_now);
  EXPECT_EQ(Notified().size(), st.retired_full);
  // The dropped ones are no longer valid; the newest still are.
  EXPECT_FALSE(table_->Valid(0x50000000, kPage));
  EXPECT_TRUE(table_->Valid(0x50000000 + 99 * 2 * kPage, kPage));
}

TEST_F(SubscriptionsTest, BadRangesAreRefusedAndNeverValid) {
  StartTable(16);
  EXPECT_EQ(table_->Subscribe(0x1000, 0), -EINVAL);
  EXPECT_EQ(table_->Subscribe(UINT64_MAX - 10, 100), -EINVAL);
  EXPECT_FALSE(table_->Valid(0x1000, 0));
  EXPECT_FALSE(table_->Valid(0x6000000, kPage));  // never subscribed
  table_->Unsubscribe(0x6000000, kPage);          // harmless
}

std::map<std::string, std::string> g_env;
const char* TestEnv(const char* name) {
  auto it = g_env.find(name);
  return it == g_env.end() ? nullptr : it->second.c_str();
}

TEST(PluginConfig, DefaultsAndValidValues) {
  g_env = {};
  PluginConfig c;
  std::string error;
  EXPECT_TRUE(regcache_fi::ReadPluginConfig(&c, &error, TestEnv));
  EXPECT_TRUE(c.enabled);
  EXPECT_EQ(c.max_subscriptions, regcache_fi::kDefaultMaxSubscriptions);
  g_env = {{"REGCACHE_FI", "0"},
           {"REGCACHE_FI_MAX_SUBSCRIPTIONS", "4096"},
           {"REGCACHE_STATS", "1"}};
  EXPECT_TRUE(regcache_fi::ReadPluginConfig(&c, &error, TestEnv));
  EXPECT_FALSE(c.enabled);
  EXPECT_EQ(c.max_subscriptions, 4096u);
  EXPECT_TRUE(c.print_stats);
}

TEST(PluginConfig, BadValuesKeepTheDefaultAndAreNamed) {
  for (const char* bad : {"", "x", "-5", "15", "99999999999", "12abc"}) {
    g_env = {{"REGCACHE_FI_MAX_SUBSCRIPTIONS", bad}, {"REGCACHE_FI", "yes"}};
    PluginConfig c;
    std::string error;
    EXPECT_FALSE(regcache_fi::ReadPluginConfig(&c, &error, TestEnv)) << bad;
    EXPECT_EQ(c.max_subscriptions, regcache_fi::kDefaultMaxSubscriptions);
    EXPECT_TRUE(c.enabled);
    EXPECT_NE(error.find("REGCACHE_FI_MAX_SUBSCRIPTIONS='"), std::string::npos);
    EXPECT_NE(error.find("REGCACHE_FI='yes'"), std::string::npos);
  }
}

TEST(PreloadPolicy, PlainRegistrationsAreCachedWithTheirAccess) {
  char buf[64] = {};
  uint32_t access = 0;
  EXPECT_EQ(Classify(buf, sizeof buf, reinterpret_cast<uintptr_t>(buf),
                     IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
                         IBV_ACCESS_HUGETLB,
                     true, &access),
            PassReason::kCached);
  EXPECT_EQ(access, REGCACHE_ACCESS_LOCAL_WRITE | REGCACHE_ACCESS_REMOTE_READ);
}

TEST(PreloadPolicy, WhatPassesThroughAndWhy) {
  char buf[64] = {};
  const uint64_t va = reinterpret_cast<uintptr_t>(buf);
  uint32_t a;
  EXPECT_EQ(Classify(buf, 64, va, IBV_ACCESS_ON_DEMAND, true, &a),
            PassReason::kOnDemand);
  EXPECT_EQ(Classify(buf, 64, va, IBV_ACCESS_ZERO_BASED, true, &a),
            PassReason::kZeroBased);
  EXPECT_EQ(Classify(buf, 64, va, IBV_ACCESS_MW_BIND, true, &a),
            PassReason::kMwBind);
  EXPECT_EQ(Classify(buf, 64, va + 4096, 0, true, &a), PassReason::kIova);
  EXPECT_EQ(Classify(buf, 64, va, IBV_ACCESS_RELAXED_ORDERING, true, &a),
            PassReason::kOptionalAccess);
  EXPECT_EQ(Classify(buf, 64, va, 1u << 12, true, &a),
            PassReason::kUnknownAccess);
  EXPECT_EQ(
      Classify(buf, 64, va, IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE,
               false, &a),
      PassReason::kRemote);
  EXPECT_EQ(Classify(buf, 64, va, IBV_ACCESS_LOCAL_WRITE, false, &a),
            PassReason::kCached);
  EXPECT_EQ(Classify(nullptr, 64, 0, 0, true, &a), PassReason::kBadArgument);
  EXPECT_EQ(Classify(buf, 0, va, 0, true, &a), PassReason::kBadArgument);
}

TEST(PreloadConfig, BadValuesKeepTheDefaultsAndAreNamed) {
  g_env = {{"REGCACHE_PRELOAD", "2"}, {"REGCACHE_PRELOAD_REMOTE", "no"}};
  regcache_preload::PreloadConfig c;
  std::string error;
  EXPECT_FALSE(regcache_preload::ReadPreloadConfig(&c, &error, TestEnv));
  EXPECT_TRUE(c.enabled);
  EXPECT_TRUE(c.cache_remote);
  EXPECT_NE(error.find("REGCACHE_PRELOAD='2'"), std::string::npos);
  EXPECT_NE(error.find("REGCACHE_PRELOAD_REMOTE='no'"), std::string::npos);
  g_env = {{"REGCACHE_PRELOAD_REMOTE", "0"}};
  EXPECT_TRUE(regcache_preload::ReadPreloadConfig(&c, &error, TestEnv));
  EXPECT_FALSE(c.cache_remote);
}

}  // namespace
