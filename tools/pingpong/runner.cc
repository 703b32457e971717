// SPDX-License-Identifier: BSD-2-Clause
// The rendezvous ping-pong (runner.h): per point, both ends map their
// buffers and make the mode's registrations, say "ready", run the round
// trips, and the server reports its counters to the client.

#include "runner.h"

#include <dirent.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "buffers.h"
#include "pattern.h"
#include "posix_util.h"
#include "reg_time.h"
#include "regcache/regcache.h"
#include "registrations.h"

namespace regcache_pingpong {
namespace {

constexpr double kArrivalTimeout = 120;   // seconds for one control message
constexpr double kChannelTimeout = 1800;  // seconds for a point's counters
constexpr uint32_t kMinMeasuredRounds = 2;

// CPU time, in nanoseconds, of each thread of this process but the calling
// one (the endpoint's own): the cache's monitor and reaper threads, since
// the tool starts none. Empty if /proc cannot say.
std::map<pid_t, uint64_t> OtherThreadsCpuNs() {
  std::map<pid_t, uint64_t> cpu;
  const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return cpu;
  while (const dirent* d = readdir(dir)) {
    const pid_t tid = static_cast<pid_t>(atoi(d->d_name));
    if (tid <= 0 || tid == self) continue;
    // schedstat: time on a CPU (ns), time waiting for one, timeslices.
    std::ifstream f(std::string("/proc/self/task/") + d->d_name + "/schedstat");
    uint64_t on_cpu = 0;
    if (f >> on_cpu) cpu[tid] = on_cpu;
  }
  closedir(dir);
  return cpu;
}

// What the threads in `before` and those started since used from then on.
uint64_t CpuNsSince(const std::map<pid_t, uint64_t>& before) {
  uint64_t ns = 0;
  for (const auto& [tid, now] : OtherThreadsCpuNs()) {
    const auto it = before.find(tid);
    const uint64_t then = it == before.end() ? 0 : it->second;
    if (now > then) ns += now - then;
  }
  return ns;
}

// One endpoint's counters for a point.
struct SideStats {
  RegCounters regs;  // over the measured round trips
  uint64_t reg_ns = 0;
  uint64_t remap_ns = 0;             // realloc's munmap + mmap (Buffers::Remap)
  uint64_t other_threads_ns = 0;     // CPU of the threads but the endpoint's
  uint64_t checked = 0, errors = 0;  // over every message received
  uint64_t reallocations = 0, same_address = 0;
  std::string first_error;

  std::string ToText() const {
    std::ostringstream out;
    out << "stats " << regs.registrations << ' ' << regs.gets << ' '
        << regs.hits << ' ' << regs.uncached << ' ' << reg_ns << ' ' << remap_ns
        << ' ' << other_threads_ns << ' ' << checked << ' ' << errors << ' '
        << reallocations << ' ' << same_address << ' ' << first_error;
    return out.str();
  }
  static bool FromText(const std::string& text, SideStats* out) {
    std::istringstream in(text);
    std::string word;
    SideStats s;
    if (!(in >> word >> s.regs.registrations >> s.regs.gets >> s.regs.hits >>
          s.regs.uncached >> s.reg_ns >> s.remap_ns >> s.other_threads_ns >>
          s.checked >> s.errors >> s.reallocations >> s.same_address) ||
        word != "stats")
      return false;
    std::getline(in, s.first_error);
    if (!s.first_error.empty() && s.first_error[0] == ' ')
      s.first_error.erase(0, 1);
    *out = s;
    return true;
  }
};

const char* CtrlName(uint32_t type) {
  switch (type) {
    case Ctrl::kRts:
      return "RTS";
    case Ctrl::kCts:
      return "CTS";
    case Ctrl::kStop:
      return "STOP";
  }
  return "?";
}

// One point at one endpoint.
class PointRun {
 public:
  PointRun(Endpoint* endpoint, const PointSpec& spec, size_t stride)
      : endpoint_(endpoint), spec_(spec), stride_(stride) {}
  ~PointRun() {
    // Buffers from the registrations' allocator (regcache-pool) go back to
    // it before it is destroyed; mmap()ed ones after the registrations.
    if (regs_ != nullptr && regs_->Allocator() != nullptr) {
      send_.Release();
      recv_.Release();
    }
  }

  // Maps the buffers and creates the mode's registrations. False with *why
  // when this mode or point cannot run here.
  bool Setup(const CacheSettings& settings, std::string* why) {
    const uint32_t k = spec_.workload.buffers;
    regs_ = MakeRegistrations(spec_.mode, endpoint_->pd(), settings,
                              endpoint_->odp_unavailable(),
                              endpoint_->odp_defect(), why);
    if (regs_ == nullptr) return false;
    BufferAllocator* allocator = regs_->Allocator();
    if (!send_.Map(k, spec_.size, why, allocator) ||
        !recv_.Map(k, spec_.size, why, allocator))
      return false;
    if (spec_.mode == Mode::kOnce) {
      for (Buffers* set : {&send_, &recv_}) {
        for (uint32_t i = 0; i < k; ++i) {
          if (!regs_->Prepare(set->at(i), set->mapped_size(), why))
            return false;
        }
      }
    }
    return true;
  }

  void StartMeasuring() {
    measuring_ = true;
    at_start_ = regs_->Counters();
    threads_at_start_ = OtherThreadsCpuNs();
  }
  void StopMeasuring() {
    if (!measuring_) return;
    measuring_ = false;
    stats_.other_threads_ns = CpuNsSince(threads_at_start_);
    const RegCounters now = regs_->Counters();
    stats_.regs.registrations = now.registrations - at_start_.registrations;
    stats_.regs.gets = now.gets - at_start_.gets;
    stats_.regs.hits = now.hits - at_start_.hits;
    stats_.regs.uncached = now.uncached - at_start_.uncached;
  }

  // S's half of one message of `bytes` (the whole buffer is registered).
  bool SendMessage(uint32_t seq, uint32_t index, uint64_t bytes,
                   std::string* error) {
    if (!Reallocate(&send_, index, error)) return false;
    void* buf = send_.at(index);
    FillPattern(buf, bytes, seq, stride_);
    Held held;
    const uint64_t t0 = NowNs();
    if (!regs_->Acquire(buf, spec_.size, 0, &held, error)) return false;
    const uint64_t t1 = NowNs();
    Ctrl rts;
    rts.type = Ctrl::kRts;
    rts.seq = seq;
    rts.size = bytes;
    if (!endpoint_->Send(rts, error)) return false;
    Ctrl cts;
    if (!Expect(Ctrl::kCts, seq, &cts, error)) return false;
    if (!DefectAvoided(buf, cts.addr, error)) return false;
    if (!endpoint_->WriteWithImm(buf, bytes, held.lkey, cts.addr, cts.rkey, seq,
                                 kArrivalTimeout, error))
      return false;
    const uint64_t t2 = NowNs();
    if (!regs_->Release(&held, error)) return false;
    if (measuring_) stats_.reg_ns += (t1 - t0) + (NowNs() - t2);
    return true;
  }

  // R's half of one message of `bytes`, after its RTS arrived.
  bool ReceiveMessage(const Ctrl& rts, uint32_t index, uint64_t bytes,
                      std::string* error) {
    if (rts.size != bytes) {
      *error = "RTS for " + std::to_string(rts.size) + " bytes, expected " +
               std::to_string(bytes);
      return false;
    }
    if (!Reallocate(&recv_, index, error)) return false;
    void* buf = recv_.at(index);
    Held held;
    const uint64_t t0 = NowNs();
    if (!regs_->Acquire(
            buf, spec_.size,
            REGCACHE_ACCESS_REMOTE_WRITE | REGCACHE_ACCESS_LOCAL_WRITE, &held,
            error))
      return false;
    const uint64_t t1 = NowNs();
    Ctrl cts;
    cts.type = Ctrl::kCts;
    cts.seq = rts.seq;
    cts.addr = reinterpret_cast<uintptr_t>(buf);
    cts.rkey = held.rkey;
    if (!endpoint_->Send(cts, error)) return false;
    Arrival arrival;
    if (!endpoint_->Next(&arrival, kArrivalTimeout, error)) return false;
    if (!arrival.is_data || arrival.imm != rts.seq || arrival.bytes != bytes) {
      *error =
          "expected the payload of message " + std::to_string(rts.seq) +
          ", got " +
          (arrival.is_data ? "payload " + std::to_string(arrival.imm) + " (" +
                                 std::to_string(arrival.bytes) + " bytes)"
                           : std::string(CtrlName(arrival.ctrl.type)));
      return false;
    }
    const uint64_t t2 = NowNs();
    if (!regs_->Release(&held, error)) return false;
    if (measuring_) stats_.reg_ns += (t1 - t0) + (NowNs() - t2);
    const PatternCheck check = CheckPattern(buf, bytes, rts.seq, stride_);
    ++stats_.checked;
    if (!check.ok()) {
      if (stats_.errors++ == 0)
        stats_.first_error = check.Describe(bytes, stride_);
    }
    return true;
  }

  // The next control message, which must be `type` for `seq`.
  bool Expect(uint32_t type, uint32_t seq, Ctrl* out, std::string* error) {
    Arrival arrival;
    if (!endpoint_->Next(&arrival, kArrivalTimeout, error)) return false;
    if (arrival.is_data || arrival.ctrl.type != type ||
        arrival.ctrl.seq != seq) {
      *error = std::string("expected ") + CtrlName(type) + " " +
               std::to_string(seq) + ", got " +
               (arrival.is_data ? "a payload"
                                : std::string(CtrlName(arrival.ctrl.type)) +
                                      " " + std::to_string(arrival.ctrl.seq));
      return false;
    }
    *out = arrival.ctrl;
    return true;
  }

  const SideStats& stats() const { return stats_; }

 private:
  // ODP on a device with a known defect runs only because every transfer
  // starts on a page boundary at both ends (odp_defect.h); a buffer that
  // did not would fail the run here rather than move data wrongly.
  bool DefectAvoided(const void* local, uint64_t remote, std::string* error) {
    if (spec_.mode != Mode::kOdp || endpoint_->odp_defect().empty())
      return true;
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    if (reinterpret_cast<uintptr_t>(local) % page == 0 && remote % page == 0)
      return true;
    *error = "odp on a device with the known defect " +
             endpoint_->odp_defect() + ": a transfer from " +
             std::to_string(reinterpret_cast<uintptr_t>(local)) + " to " +
             std::to_string(remote) + " does not start on a page boundary";
    return false;
  }

  bool Reallocate(Buffers* set, uint32_t index, std::string* error) {
    if (spec_.workload.kind != Workload::Kind::kRealloc) return true;
    bool same = false;
    const uint64_t t0 = NowNs();
    if (!set->Remap(index, &same, error)) return false;
    if (measuring_) stats_.remap_ns += NowNs() - t0;
    ++stats_.reallocations;
    if (same) ++stats_.same_address;
    return true;
  }

  Endpoint* endpoint_;
  const PointSpec spec_;
  const size_t stride_;
  // Declared before regs_: the registrations go first.
  Buffers send_, recv_;
  std::unique_ptr<Registrations> regs_;
  bool measuring_ = false;
  RegCounters at_start_;
  std::map<pid_t, uint64_t> threads_at_start_;
  SideStats stats_;
};

size_t Stride(const Plan& plan) {
  return plan.stamp_stride ? plan.stamp_stride : kDefaultStampStride;
}

// "ready" or "unavailable <why>", both ways; true if both ends can run.
bool ExchangeReady(Channel* channel, bool ok, const std::string& why,
                   std::string* peer_why, std::string* error) {
  if (!channel->SendLine(ok ? "ready" : "unavailable " + why, error))
    return false;
  std::string line;
  if (!channel->RecvLine(&line, kChannelTimeout, error)) return false;
  if (line == "ready") {
    peer_why->clear();
  } else if (line.rfind("unavailable ", 0) == 0) {
    *peer_why = line.substr(12);
  } else {
    *error = "unexpected '" + line + "' from the peer";
    return false;
  }
  return true;
}

// Endpoint setup common to both ends: open, swap QP info, connect.
std::unique_ptr<Endpoint> OpenAndConnect(Channel* channel,
                                         const DeviceOptions& device,
                                         bool client, std::string* peer_device,
                                         std::string* error) {
  std::string open_error;
  std::unique_ptr<Endpoint> endpoint = Endpoint::Open(device, &open_error);
  const std::string mine =
      endpoint ? endpoint->local().ToText() : "error " + open_error;
  std::string theirs, their_device;
  // The client speaks first; each sends its QP line and its description.
  auto send_mine = [&] {
    return channel->SendLine(mine, error) &&
           channel->SendLine("device " + (endpoint ? endpoint->Describe()
                                                   : std::string("none")),
                             error);
  };
  auto recv_theirs = [&] {
    return channel->RecvLine(&theirs, kChannelTimeout, error) &&
           channel->RecvLine(&their_device, kChannelTimeout, error);
  };
  if (client ? !(send_mine() && recv_theirs())
             : !(recv_theirs() && send_mine()))
    return nullptr;
  if (!endpoint) {
    *error = open_error;
    return nullptr;
  }
  if (theirs.rfind("error ", 0) == 0) {
    *error = "the peer could not open its device: " + theirs.substr(6);
    return nullptr;
  }
  QpInfo remote;
  if (!QpInfo::FromText(theirs, &remote)) {
    *error = "bad QP info from the peer: '" + theirs + "'";
    return nullptr;
  }
  if (!endpoint->Connect(remote, error)) return nullptr;
  if (peer_device != nullptr) *peer_device = their_device.substr(7);
  return endpoint;
}

}  // namespace

int RunServer(Channel* channel, const DeviceOptions& device,
              std::string* error) {
  std::string text;
  Plan plan;
  if (!channel->RecvBlock(&text, kChannelTimeout, error)) return 3;
  if (!ParsePlan(text, &plan, error)) return 3;
  std::unique_ptr<Endpoint> endpoint =
      OpenAndConnect(channel, device, /*client=*/false, nullptr, error);
  if (!endpoint) return 3;
  const CacheSettings settings{plan.max_entries};
  for (const PointSpec& spec : plan.points) {
    if (!spec.skip.empty()) continue;
    PointRun run(endpoint.get(), spec, Stride(plan));
    std::string why, peer_why;
    const bool ok = run.Setup(settings, &why);
    if (!ExchangeReady(channel, ok, why, &peer_why, error)) return 3;
    if (!ok || !peer_why.empty()) continue;
    for (uint32_t round = 0;; ++round) {
      Arrival arrival;
      if (!endpoint->Next(&arrival, kArrivalTimeout, error)) return 3;
      if (!arrival.is_data && arrival.ctrl.type == Ctrl::kStop) break;
      if (arrival.is_data || arrival.ctrl.type != Ctrl::kRts ||
          arrival.ctrl.seq != 2 * round) {
        *error = "expected RTS " + std::to_string(2 * round) + " or STOP";
        return 3;
      }
      if (round == spec.warmup) run.StartMeasuring();
      const uint64_t bytes = WireBytes(spec.size, round < spec.warmup);
      const uint32_t index = round % spec.workload.buffers;
      if (!run.ReceiveMessage(arrival.ctrl, index, bytes, error) ||
          !run.SendMessage(2 * round + 1, index, bytes, error))
        return 3;
    }
    run.StopMeasuring();
    if (!channel->SendLine(run.stats().ToText(), error)) return 3;
  }
  std::string bye;
  channel->RecvLine(&bye, kChannelTimeout, error);
  return 0;
}

bool RunClient(Channel* channel, const DeviceOptions& device, const Plan& plan,
               const std::function<void(const ProgressStep&)>& progress,
               Report* report, std::string* error) {
  if (!channel->SendBlock(SerializePlan(plan), error)) return false;
  std::string peer_device;
  std::unique_ptr<Endpoint> endpoint =
      OpenAndConnect(channel, device, /*client=*/true, &peer_device, error);
  if (!endpoint) return false;
  report->device = endpoint->Describe();
  if (peer_device != report->device) report->device += " <-> " + peer_device;
  if (!endpoint->odp_unavailable().empty())
    report->odp_note = "odp: " + endpoint->odp_unavailable();
  else if (!endpoint->odp_note().empty())
    report->odp_note = "odp: " + endpoint->odp_note();
  if (plan.reg_time_size != 0)
    MeasureRegTime(endpoint->pd(), plan.reg_time_size, kRegTimeRepetitions,
                   &report->reg_time);
  const CacheSettings settings{plan.max_entries};
  const size_t total = plan.points.size();
  // One Accumulated per (workload, mode, size), over its passes.
  struct Accumulated {
    PointResult result;
    std::vector<uint64_t> round_trip_ns;
    uint64_t wall_ns = 0;
    uint64_t reg_ns = 0;
    uint64_t remap_ns = 0;
    uint64_t other_threads_ns = 0;
  };
  std::deque<Accumulated> points;  // stable references
  auto find = [&](const PointSpec& spec) -> Accumulated& {
    const std::string name = spec.workload.Name();
    for (Accumulated& a : points) {
      if (a.result.workload == name && a.result.mode == spec.mode &&
          a.result.size == spec.size)
        return a;
    }
    points.emplace_back();
    points.back().result.workload = name;
    points.back().result.mode = spec.mode;
    points.back().result.size = spec.size;
    return points.back();
  };

  for (size_t i = 0; i < total; ++i) {
    const PointSpec& spec = plan.points[i];
    Accumulated& acc = find(spec);
    PointResult& result = acc.result;
    if (!spec.skip.empty()) {
      result.status = spec.skip.rfind("n/a", 0) == 0
                          ? PointResult::Status::kNotApplicable
                          : PointResult::Status::kSkipped;
      result.note = spec.skip;
      continue;
    }
    if (progress) {
      progress(
          {i + 1, total, result.workload, spec.mode, spec.size, spec.pass});
    }
    PointRun run(endpoint.get(), spec, Stride(plan));
    std::string why, peer_why;
    const bool ok = run.Setup(settings, &why);
    if (!ExchangeReady(channel, ok, why, &peer_why, error)) return false;
    if (!ok || !peer_why.empty()) {
      result.status = PointResult::Status::kUnavailable;
      result.note = !ok ? why : "server: " + peer_why;
      if (spec.mode == Mode::kOdp && !ok) result.note = "odp: " + why;
      continue;
    }
    const uint32_t k = spec.workload.buffers;
    uint64_t start_ns = 0;
    size_t measured = 0;
    for (uint32_t round = 0;; ++round) {
      if (round == spec.warmup) {
        run.StartMeasuring();
        start_ns = NowNs();
      }
      if (round >= spec.warmup) {
        const double elapsed = double(NowNs() - start_ns) * 1e-9;
        if (measured >= spec.iterations || (measured >= kMinMeasuredRounds &&
                                            elapsed > plan.seconds_per_point))
          break;
      }
      const uint64_t bytes = WireBytes(spec.size, round < spec.warmup);
      const uint64_t t0 = NowNs();
      if (!run.SendMessage(2 * round, round % k, bytes, error)) return false;
      Ctrl rts;
      if (!run.Expect(Ctrl::kRts, 2 * round + 1, &rts, error) ||
          !run.ReceiveMessage(rts, round % k, bytes, error))
        return false;
      if (round >= spec.warmup) {
        acc.round_trip_ns.push_back(NowNs() - t0);
        ++measured;
      }
    }
    acc.wall_ns += NowNs() - start_ns;
    run.StopMeasuring();
    Ctrl stop;
    stop.type = Ctrl::kStop;
    if (!endpoint->Send(stop, error)) return false;
    std::string line;
    SideStats server;
    if (!channel->RecvLine(&line, kChannelTimeout, error)) return false;
    if (!SideStats::FromText(line, &server)) {
      *error = "bad counters from the server: '" + line + "'";
      return false;
    }
    const SideStats& client = run.stats();
    result.registrations +=
        client.regs.registrations + server.regs.registrations;
    result.gets += client.regs.gets + server.regs.gets;
    result.hits += client.regs.hits + server.regs.hits;
    result.uncached += client.regs.uncached + server.regs.uncached;
    acc.reg_ns += client.reg_ns + server.reg_ns;
    acc.remap_ns += client.remap_ns + server.remap_ns;
    acc.other_threads_ns += client.other_threads_ns + server.other_threads_ns;
    result.messages_checked += client.checked + server.checked;
    result.data_errors += client.errors + server.errors;
    if (result.first_error.empty())
      result.first_error =
          !client.first_error.empty() ? client.first_error : server.first_error;
    result.reallocations += client.reallocations + server.reallocations;
    result.same_address += client.same_address + server.same_address;
  }

  for (Accumulated& acc : points) {
    PointResult& result = acc.result;
    std::vector<uint64_t>& rtt = acc.round_trip_ns;
    if (result.status == PointResult::Status::kOk && !rtt.empty()) {
      // One way = half a round trip; the median, as perftest's t_typical,
      // so that a descheduled round trip does not decide the point.
      std::sort(rtt.begin(), rtt.end());
      const size_t n = rtt.size();
      const double median_ns =
          n % 2 ? double(rtt[n / 2])
                : (double(rtt[n / 2 - 1]) + double(rtt[n / 2])) / 2;
      const double messages = 2.0 * double(n);
      result.round_trips = n;
      result.latency_us = median_ns / 2000.0;
      result.latency_min_us = double(rtt.front()) / 2000.0;
      result.latency_mean_us = double(acc.wall_ns) / 1000.0 / messages;
      result.bandwidth_mbs = double(result.size) / result.latency_us;
      result.reg_us_per_message = double(acc.reg_ns) / 1000.0 / messages;
      result.remap_us_per_message = double(acc.remap_ns) / 1000.0 / messages;
      result.other_threads_us_per_message =
          double(acc.other_threads_ns) / 1000.0 / messages;
    }
    report->points.push_back(result);
  }
  channel->SendLine("bye", error);
  return true;
}

}  // namespace regcache_pingpong
