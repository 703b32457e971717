// SPDX-License-Identifier: BSD-2-Clause
//
// regcache-pingpong: an MPI-style RDMA WRITE rendezvous ping-pong between
// two endpoints, with the payload buffers' registrations obtained per
// message, through regcache (kmod, uffd, no monitor), once up front, or
// with ODP; every message's payload is checked. By default one invocation
// forks both endpoints on one device over loopback; --server/--client run
// them on two hosts. Prints a table per workload and the targets' verdicts;
// --json and --svg write the results for tools and a plot. docs/pingpong.md
// explains what is measured and how to read it.

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "channel.h"
#include "command_line.h"
#include "options.h"
#include "pattern.h"
#include "posix_util.h"
#include "progress.h"
#include "report.h"
#include "runner.h"

namespace regcache_pingpong {
namespace {

bool WriteFile(const std::string& path, const std::string& text) {
  FILE* f = fopen(path.c_str(), "w");
  if (f == nullptr) {
    fprintf(stderr, "regcache-pingpong: %s\n", ErrnoText(path, errno).c_str());
    return false;
  }
  const bool ok = fwrite(text.data(), 1, text.size(), f) == text.size();
  return fclose(f) == 0 && ok;
}

std::string Settings(const Options& options) {
  const std::string round_trips =
      options.iterations ? std::to_string(options.iterations)
      : options.quick    ? std::string("6")
                      : std::string("~16 MiB of payload (2..100; 1 from 64M)");
  char text[700];
  snprintf(text, sizeof(text),
           "caches: entry limit %llu (REGCACHE_MAX_ENTRIES), no byte limit; "
           "payload check: %s; polling: %s; CPU: %s\n"
           "round trips per point: %s, in up to %u passes with the modes "
           "taking turns, each after %u warm-up round trips that write 4 KiB "
           "(rotate-K that fits in the cache: K); a pass stops after %.0f s",
           static_cast<unsigned long long>(options.max_entries),
           options.stamp_stride == 8 ? "every word" : "one word per 256 bytes",
           PollingName(options.polling),
           options.cpu < 0 ? "any" : std::to_string(options.cpu).c_str(),
           round_trips.c_str(), options.passes, options.warmup,
           options.seconds_per_point);
  return text;
}

// Why `path` cannot be written ("" if it can), so that a run of minutes
// does not end without its --json or --svg file. Creates nothing.
std::string CannotWrite(const std::string& path) {
  if (access(path.c_str(), F_OK) == 0)
    return access(path.c_str(), W_OK) == 0 ? "" : ErrnoText(path, errno);
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  if (access(dir.c_str(), W_OK | X_OK) == 0) return "";
  return ErrnoText(path, errno);
}

// All of `fd` until EOF (the server endpoint's error message).
std::string ReadAll(int fd) {
  std::string text;
  char buf[512];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      text.append(buf, size_t(n));
    } else if (n == 0 || errno != EINTR) {
      return text;
    }
  }
}

int Main(int argc, char** argv) {
  const char* program = "regcache-pingpong";
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  Options options;
  std::string error;
  if (!ParseArgs(args, &options, &error)) {
    fprintf(stderr, "%s: %s\nTry '%s --help'.\n", program, error.c_str(),
            program);
    return 2;
  }
  if (options.help || options.version) {
    const std::string text =
        options.help ? Usage(program) : regcache_tools::VersionText(program);
    fputs(text.c_str(), stdout);
    return fflush(stdout) == 0 ? 0 : 1;
  }
  for (const auto& [option, path] : {std::pair{"--json", options.json_path},
                                     std::pair{"--svg", options.svg_path}}) {
    const std::string why = path.empty() ? "" : CannotWrite(path);
    if (!why.empty()) {
      fprintf(stderr, "%s: %s %s\n", program, option, why.c_str());
      return 2;
    }
  }
  if (options.cpu >= 0) {
    // Before the fork: the server endpoint and every thread inherit it.
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(options.cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
      fprintf(stderr, "%s: %s\n", program,
              ErrnoText("--cpu " + std::to_string(options.cpu), errno).c_str());
      return 2;
    }
  }
  const DeviceOptions device{options.device, options.ib_port, options.gid_index,
                             options.polling, options.spin_us};

  if (options.role == Role::kServer) {
    fprintf(stderr, "%s: waiting for a client on port %u\n", program,
            options.tcp_port);
    std::unique_ptr<Channel> channel =
        Channel::Listen(options.tcp_port, &error);
    int status = channel ? RunServer(channel.get(), device, &error) : 3;
    if (status != 0)
      fprintf(stderr, "%s (server): %s\n", program, error.c_str());
    return status;
  }

  std::unique_ptr<Channel> channel;
  pid_t server = -1;
  int server_error_pipe[2] = {-1, -1};
  if (options.role == Role::kClient) {
    channel = Channel::Connect(options.host, options.tcp_port, 30, &error);
    if (!channel) {
      fprintf(stderr, "%s: %s\n", program, error.c_str());
      return 3;
    }
  } else {
    // Both endpoints from one invocation: fork before any verbs call. The
    // server endpoint hands its error to this process, which says it once
    // (both ends often fail alike, e.g. without a device).
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0 ||
        pipe2(server_error_pipe, O_CLOEXEC) != 0) {
      fprintf(stderr, "%s: %s\n", program,
              ErrnoText("socketpair/pipe", errno).c_str());
      return 3;
    }
    fflush(nullptr);
    server = fork();
    if (server < 0) {
      fprintf(stderr, "%s: %s\n", program, ErrnoText("fork", errno).c_str());
      return 3;
    }
    if (server == 0) {
      close(fds[0]);
      close(server_error_pipe[0]);
      Channel peer(fds[1]);
      const int status = RunServer(&peer, device, &error);
      if (status != 0 &&
          write(server_error_pipe[1], error.data(), error.size()) < 0) {
        fprintf(stderr, "%s (server endpoint): %s\n", program, error.c_str());
      }
      fflush(nullptr);
      _exit(status);
    }
    close(fds[1]);
    close(server_error_pipe[1]);
    channel = std::make_unique<Channel>(fds[0]);
  }

  const double start = Now();
  const Plan plan = MakePlan(options);
  Report report;
  report.settings = Settings(options);
  for (const Workload& w : options.workloads)
    report.workloads.push_back(w.Name());
  report.sizes = options.sizes;
  report.modes = options.modes;
  ProgressPrinter progress(stderr, isatty(STDERR_FILENO) == 1,
                           std::string(program) + ": ");
  const bool ok = RunClient(
      channel.get(), device, plan,
      [&progress](const ProgressStep& step) { progress.Step(step); }, &report,
      &error);
  progress.Finish();
  channel.reset();  // the server sees EOF if it still waits
  int server_status = 0;
  std::string server_error;
  if (server > 0) {
    server_error = ReadAll(server_error_pipe[0]);
    close(server_error_pipe[0]);
    int wstatus = 0;
    while (waitpid(server, &wstatus, 0) < 0 && errno == EINTR) {
    }
    server_status =
        WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
  }
  report.wall_seconds = Now() - start;
  report.targets = EvaluateTargets(report.points);
  // The server endpoint's own error, unless it is the client's.
  if (!server_error.empty() && (ok || server_error != error)) {
    fprintf(stderr, "%s (server endpoint): %s\n", program,
            server_error.c_str());
  }

  if (!ok && report.points.empty()) {
    fprintf(stderr, "%s: %s\n", program, error.c_str());
    return 3;
  }
  fputs(RenderTables(report).c_str(), stdout);
  printf("wall time: %.1f s\n", report.wall_seconds);
  fflush(stdout);
  bool files_ok = true;
  if (!options.json_path.empty())
    files_ok &= WriteFile(options.json_path, RenderJson(report));
  if (!options.svg_path.empty())
    files_ok &= WriteFile(options.svg_path, RenderSvg(report));
  if (!ok) {
    fprintf(stderr, "%s: the run failed: %s\n", program, error.c_str());
    return 3;
  }
  if (server_status != 0) {
    fprintf(stderr, "%s: the server endpoint exited with status %d\n", program,
            server_status);
    return 3;
  }
  if (AnyCorrectnessFailure(report.targets)) {
    fprintf(stderr, "%s: FAIL: a correctness target failed (see targets)\n",
            program);
    return 1;
  }
  return files_ok ? 0 : 3;
}

}  // namespace
}  // namespace regcache_pingpong

int main(int argc, char** argv) { return regcache_pingpong::Main(argc, argv); }
