// SPDX-License-Identifier: BSD-2-Clause
// The socket channel between the endpoints (channel.h).

#include "channel.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "posix_util.h"

namespace regcache_pingpong {

Channel::~Channel() {
  if (fd_ >= 0) close(fd_);
}

std::unique_ptr<Channel> Channel::Listen(uint16_t port, std::string* error) {
  const int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = ErrnoText("socket", errno);
    return nullptr;
  }
  const int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_any;
  addr.sin6_port = htons(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 1) != 0) {
    *error = ErrnoText("listen on port " + std::to_string(port), errno);
    close(fd);
    return nullptr;
  }
  const int conn = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
  const int saved = errno;
  close(fd);
  if (conn < 0) {
    *error = ErrnoText("accept", saved);
    return nullptr;
  }
  return std::make_unique<Channel>(conn);
}

std::unique_ptr<Channel> Channel::Connect(const std::string& host,
                                          uint16_t port, double timeout_s,
                                          std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
      rc != 0) {
    *error = host + ": " + gai_strerror(rc);
    return nullptr;
  }
  const double deadline = Now() + timeout_s;
  std::string last = "no address";
  for (;;) {
    for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
      const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                            ai->ai_protocol);
      if (fd < 0) continue;
      if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        freeaddrinfo(list);
        return std::make_unique<Channel>(fd);
      }
      last = strerror(errno);
      close(fd);
    }
    if (Now() > deadline) break;
    usleep(200 * 1000);  // the server may not be listening yet
  }
  freeaddrinfo(list);
  *error = "connect to " + host + ":" + service + ": " + last;
  return nullptr;
}

bool Channel::SendLine(const std::string& line, std::string* error) {
  const std::string data = line + "\n";
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n =
        send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = std::string("the peer is gone (send: ") + strerror(errno) + ")";
      return false;
    }
    done += size_t(n);
  }
  return true;
}

bool Channel::Fill(double deadline, std::string* error) {
  for (;;) {
    const double left = deadline - Now();
    if (left <= 0) {
      *error = "the peer said nothing in time";
      return false;
    }
    pollfd p{fd_, POLLIN, 0};
    const int rc = poll(&p, 1, static_cast<int>(left * 1000) + 1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) {
      *error = ErrnoText("poll", errno);
      return false;
    }
    if (rc == 0) continue;
    char buf[4096];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error =
          n == 0 ? "the peer closed the connection" : ErrnoText("recv", errno);
      return false;
    }
    buffered_.append(buf, size_t(n));
    return true;
  }
}

bool Channel::RecvLine(std::string* line, double timeout_s,
                       std::string* error) {
  const double deadline = Now() + timeout_s;
  size_t eol;
  while ((eol = buffered_.find('\n')) == std::string::npos) {
    if (!Fill(deadline, error)) return false;
  }
  *line = buffered_.substr(0, eol);
  buffered_.erase(0, eol + 1);
  return true;
}

bool Channel::SendBlock(const std::string& text, std::string* error) {
  return SendLine("block " + std::to_string(text.size()) + "\n" + text, error);
}

bool Channel::RecvBlock(std::string* text, double timeout_s,
                        std::string* error) {
  std::string header;
  if (!RecvLine(&header, timeout_s, error)) return false;
  if (header.rfind("block ", 0) != 0) {
    *error = "expected a block, got '" + header + "'";
    return false;
  }
  const size_t size = strtoull(header.c_str() + 6, nullptr, 10);
  const double deadline = Now() + timeout_s;
  while (buffered_.size() < size + 1) {  // + the '\n' SendLine added
    if (!Fill(deadline, error)) return false;
  }
  *text = buffered_.substr(0, size);
  buffered_.erase(0, size + 1);
  return true;
}

}  // namespace regcache_pingpong
