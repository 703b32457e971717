// SPDX-License-Identifier: BSD-2-Clause
// The out-of-band channel between the two endpoints, as perftest has one:
// a stream socket (a socketpair when one invocation forks both ends, TCP
// between two hosts) carrying text lines: the plan, the QP numbers and
// GIDs, a "ready" per point and the server's counters after it. Nothing on
// the measured path uses it.
#ifndef REGCACHE_TOOLS_PINGPONG_CHANNEL_H_
#define REGCACHE_TOOLS_PINGPONG_CHANNEL_H_

#include <cstdint>
#include <memory>
#include <string>

namespace regcache_pingpong {

class Channel {
 public:
  explicit Channel(int fd) : fd_(fd) {}
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // TCP: the server accepts one client on `port` (any local address); the
  // client connects, retrying for `timeout_s` while the server starts.
  static std::unique_ptr<Channel> Listen(uint16_t port, std::string* error);
  static std::unique_ptr<Channel> Connect(const std::string& host,
                                          uint16_t port, double timeout_s,
                                          std::string* error);

  bool SendLine(const std::string& line, std::string* error);  // adds '\n'
  bool RecvLine(std::string* line, double timeout_s, std::string* error);
  // Several lines at once ("block N" then N bytes).
  bool SendBlock(const std::string& text, std::string* error);
  bool RecvBlock(std::string* text, double timeout_s, std::string* error);

 private:
  bool Fill(double deadline, std::string* error);
  int fd_;
  std::string buffered_;
};

}  // namespace regcache_pingpong

#endif  // REGCACHE_TOOLS_PINGPONG_CHANNEL_H_
