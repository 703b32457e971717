// SPDX-License-Identifier: BSD-2-Clause
// The structs that cross the library boundary can grow (regcache.h,
// "Compatibility"): a caller's struct is read and written at the caller's
// size, a larger one is refused unless the unknown fields are zero, a
// smaller one than any version is refused; and the public headers work in
// C++11 (headers_cxx11.cc, compiled with -std=c++11 and called here).
#include <errno.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "abi.h"
#include "gtest/gtest.h"
#include "regcache/regcache.h"

int RegcacheHeadersCxx11Check();  // headers_cxx11.cc

namespace {

using regcache_internal::kConfigSizeV0_1;
using regcache_internal::kStatsSizeV0_1;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

regcache_registrar Fake() {
  regcache_registrar r{};
  EXPECT_EQ(regcache_registrar_fake(0, &r), 0);
  return r;
}

// A caller's config struct `extra` bytes larger than this library's, as a
// program built against a newer header would pass.
std::vector<unsigned char> GrownConfig(size_t extra) {
  std::vector<unsigned char> bytes(sizeof(regcache_config) + extra, 0);
  regcache_config config;
  EXPECT_EQ(regcache_config_init(&config), 0);
  config.monitor = REGCACHE_MONITOR_NONE;
  memcpy(bytes.data(), &config, sizeof config);
  return bytes;
}

TEST(Abi, ConfigInitZeroesFieldsItDoesNotKnow) {
  std::vector<unsigned char> bytes(sizeof(regcache_config) + 24, 0xAB);
  ASSERT_EQ(regcache_config_init_sz(
                reinterpret_cast<regcache_config*>(bytes.data()), bytes.size()),
            0);
  for (size_t i = sizeof(regcache_config); i < bytes.size(); ++i)
    ASSERT_EQ(bytes[i], 0) << "byte " << i << " of a larger caller struct";
}

TEST(Abi, ConfigInitRefusesAStructSmallerThanAnyVersion) {
  std::vector<unsigned char> bytes(kConfigSizeV0_1, 0xAB);
  EXPECT_EQ(
      regcache_config_init_sz(reinterpret_cast<regcache_config*>(bytes.data()),
                              kConfigSizeV0_1 - 4),
      -EINVAL);
  EXPECT_TRUE(Contains(regcache_last_error(), "smaller than any version's"))
      << regcache_last_error();
  for (unsigned char b : bytes) ASSERT_EQ(b, 0xAB) << "nothing is written";
}

TEST(Abi, CreateAcceptsALargerConfigWhoseUnknownFieldsAreZero) {
  const regcache_registrar r = Fake();
  std::vector<unsigned char> bytes = GrownConfig(16);
  regcache_t* cache = nullptr;
  ASSERT_EQ(
      regcache_create_sz(&r, reinterpret_cast<regcache_config*>(bytes.data()),
                         bytes.size(), &cache),
      0)
      << regcache_last_error();
  struct regcache_stats s;
  ASSERT_EQ(regcache_stats(cache, &s), 0);
  EXPECT_EQ(s.monitor, REGCACHE_MONITOR_NONE) << "the known fields were read";
  EXPECT_EQ(regcache_destroy(cache), 0);
}

TEST(Abi, CreateRefusesFieldsItDoesNotKnow) {
  const regcache_registrar r = Fake();
  std::vector<unsigned char> bytes = GrownConfig(16);
  bytes[sizeof(regcache_config) + 3] = 1;  // a newer header's field, set
  regcache_t* cache = nullptr;
  EXPECT_EQ(
      regcache_create_sz(&r, reinterpret_cast<regcache_config*>(bytes.data()),
                         bytes.size(), &cache),
      -EINVAL);
  EXPECT_EQ(cache, nullptr);
  EXPECT_TRUE(Contains(regcache_last_error(), "does not know"))
      << regcache_last_error();
}

TEST(Abi, CreateRefusesAConfigSmallerThanAnyVersion) {
  const regcache_registrar r = Fake();
  regcache_config config;
  ASSERT_EQ(regcache_config_init(&config), 0);
  regcache_t* cache = nullptr;
  EXPECT_EQ(regcache_create_sz(&r, &config, kConfigSizeV0_1 - 8, &cache),
            -EINVAL);
  EXPECT_TRUE(Contains(regcache_last_error(), "smaller than any version's"))
      << regcache_last_error();
}

TEST(Abi, StatsAreWrittenAtTheCallersSize) {
  const regcache_registrar r = Fake();
  regcache_config config;
  ASSERT_EQ(regcache_config_init(&config), 0);
  config.monitor = REGCACHE_MONITOR_NONE;
  regcache_t* cache = nullptr;
  ASSERT_EQ(regcache_create(&r, &config, &cache), 0) << regcache_last_error();

  std::vector<unsigned char> bytes(sizeof(struct regcache_stats) + 32, 0xAB);
  ASSERT_EQ(regcache_stats_sz(
                cache, reinterpret_cast<struct regcache_stats*>(bytes.data()),
                bytes.size()),
            0);
  for (size_t i = sizeof(struct regcache_stats); i < bytes.size(); ++i)
    ASSERT_EQ(bytes[i], 0) << "byte " << i << " of a larger caller struct";

  std::vector<unsigned char> small(kStatsSizeV0_1, 0xAB);
  EXPECT_EQ(regcache_stats_sz(
                cache, reinterpret_cast<struct regcache_stats*>(small.data()),
                kStatsSizeV0_1 - 1),
            -EINVAL);
  for (unsigned char b : small) ASSERT_EQ(b, 0xAB) << "nothing is written";
  EXPECT_EQ(regcache_destroy(cache), 0);
}

TEST(Abi, StatsOfVersion0_1AreAPrefixTheMemoryPoolsFieldsFollow) {
  // The pool's fields (newer than 0.1) come after every 0.1 field, and a
  // caller built against 0.1 gets exactly its bytes, the pool's left out.
  static_assert(offsetof(struct regcache_stats, mem_allocs) >= kStatsSizeV0_1,
                "new fields go after version 0.1's");
  const regcache_registrar r = Fake();
  regcache_config config;
  ASSERT_EQ(regcache_config_init(&config), 0);
  config.monitor = REGCACHE_MONITOR_NONE;
  config.max_bytes = 0;
  regcache_t* cache = nullptr;
  ASSERT_EQ(regcache_create(&r, &config, &cache), 0) << regcache_last_error();
  void* p = nullptr;
  ASSERT_EQ(regcache_mem_alloc(cache, 4096, 0, &p), 0) << regcache_last_error();

  std::vector<unsigned char> old(sizeof(struct regcache_stats), 0xAB);
  ASSERT_EQ(regcache_stats_sz(
                cache, reinterpret_cast<struct regcache_stats*>(old.data()),
                kStatsSizeV0_1),
            0);
  for (size_t i = kStatsSizeV0_1; i < old.size(); ++i)
    ASSERT_EQ(old[i], 0xAB) << "byte " << i << " is past a 0.1 caller's struct";
  struct regcache_stats full;
  ASSERT_EQ(regcache_stats(cache, &full), 0);
  EXPECT_EQ(
      memcmp(old.data(), &full, offsetof(struct regcache_stats, mode_reason)),
      0);
  EXPECT_EQ(full.mem_allocs, 1u);
  EXPECT_EQ(full.entries_now, 1u);
  EXPECT_EQ(regcache_mem_free(cache, p), 0);
  EXPECT_EQ(regcache_destroy(cache), 0);
}

TEST(Abi, PublicHeadersWorkInCxx11) {
  EXPECT_EQ(RegcacheHeadersCxx11Check(), 0);
}

}  // namespace
