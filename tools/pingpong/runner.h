// SPDX-License-Identifier: BSD-2-Clause
// The rendezvous ping-pong itself. The client walks the plan and, per
// point, drives round trips; the server follows (it learns the plan from
// the client, and every round trip starts with the client's RTS). One
// message, from sender S to receiver R, is what an MPI's RDMA WRITE
// rendezvous does:
//
//   S: fill buffer, obtain its registration (local access)
//   S -> R  RTS {seq, size}                 (SEND, control slot)
//   R: obtain the receive buffer's registration (REMOTE_WRITE|LOCAL_WRITE)
//   R -> S  CTS {seq, addr, rkey}           (SEND, control slot)
//   S -> R  payload                          (RDMA WRITE with immediate = seq)
//   S: write completed -> release;  R: arrival -> release, check the pattern
//
// then the same back from R to S (the pong). The client times the round
// trips after the warm-up; both ends count registrations, time spent
// obtaining and releasing them, and bad messages.
#ifndef REGCACHE_TOOLS_PINGPONG_RUNNER_H_
#define REGCACHE_TOOLS_PINGPONG_RUNNER_H_

#include <functional>
#include <string>
#include <vector>

#include "channel.h"
#include "endpoint.h"
#include "options.h"
#include "progress.h"
#include "report.h"

namespace regcache_pingpong {

// Runs the server side to completion. Returns 0, or 3 with *error set.
int RunServer(Channel* channel, const DeviceOptions& device,
              std::string* error);

// Runs `plan` as the client and fills `report` (points, device). Each
// point about to run goes to `progress` (may be empty). Returns false with
// *error set when the run itself failed (the report then holds the points so
// far).
bool RunClient(Channel* channel, const DeviceOptions& device, const Plan& plan,
               const std::function<void(const ProgressStep&)>& progress,
               Report* report, std::string* error);

}  // namespace regcache_pingpong

#endif  // REGCACHE_TOOLS_PINGPONG_RUNNER_H_
