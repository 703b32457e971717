// SPDX-License-Identifier: BSD-2-Clause
// regcache-pingpong's targets and text/JSON renderings (report.h; the JSON
// with nlohmann-json); the SVG plot is in report_svg.cc.

#include "report.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace regcache_pingpong {
namespace {

std::string Format(const char* format, ...)
    __attribute__((format(printf, 1, 2)));
std::string Format(const char* format, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, format);
  vsnprintf(buf, sizeof(buf), format, ap);
  va_end(ap);
  return buf;
}

const PointResult* Find(const std::vector<PointResult>& points,
                        const std::string& workload, Mode mode, uint64_t size) {
  for (const PointResult& p : points) {
    if (p.workload == workload && p.mode == mode && p.size == size &&
        p.measured())
      return &p;
  }
  return nullptr;
}

// The same ratio from the fastest round trips, which a noisy host cannot
// slow down: "; fastest round trips: 1.11x" ("" if unknown).
std::string MinRatio(const PointResult& a, const PointResult& b,
                     bool percent = false) {
  if (!(a.latency_min_us > 0) || !(b.latency_min_us > 0)) return "";
  const double r = b.latency_min_us / a.latency_min_us;  // bandwidth ratio
  return percent ? Format("; fastest round trips: %.1f%%", 100 * r)
                 : Format("; fastest round trips: %.2fx", r);
}

std::string PointName(const PointResult& p) {
  return p.workload + " " + ModeName(p.mode) + " " + FormatSize(p.size);
}

std::string StatusName(PointResult::Status status) {
  switch (status) {
    case PointResult::Status::kOk:
      return "ok";
    case PointResult::Status::kNotApplicable:
      return "n/a";
    case PointResult::Status::kUnavailable:
      return "unavailable";
    case PointResult::Status::kSkipped:
      return "skipped";
  }
  return "?";
}

std::string WorkloadDescription(const std::string& name) {
  if (name == "reuse")
    return "one send and one receive buffer per endpoint, used by every "
           "message";
  if (name == "realloc")
    return "before each message its buffers are unmapped and mapped again "
           "(at the old address when the kernel allows)";
  if (name.rfind("rotate-", 0) == 0) {
    const std::string k = name.substr(7);
    return k + " send and " + k +
           " receive buffers per endpoint, used in turn (2 x " + k +
           " registrations per endpoint)";
  }
  return "";
}

// Table cells for one measured or unmeasured point.
std::string Row(const PointResult& p, bool first_of_size) {
  const std::string size = first_of_size ? FormatSize(p.size) : "";
  if (!p.measured())
    return Format("%-5s %-21s %s\n", size.c_str(), ModeName(p.mode),
                  p.note.c_str());
  const std::string hit =
      IsCacheMode(p.mode) ? Format("%.1f", 100 * p.hit_rate()) : "-";
  const double messages = 2.0 * double(p.round_trips);
  return Format(
      "%-5s %-21s %6llu %10.1f %10.1f %7.2f %7llu %6.2f %6s %9.1f %6llu  %s\n",
      size.c_str(), ModeName(p.mode),
      static_cast<unsigned long long>(2 * p.round_trips), p.latency_us,
      p.latency_min_us, p.bandwidth_mbs,
      static_cast<unsigned long long>(p.registrations),
      messages > 0 ? double(p.registrations) / messages : 0.0, hit.c_str(),
      p.reg_us_per_message, static_cast<unsigned long long>(p.data_errors),
      p.safe() ? "SAFE" : "UNSAFE");
}

}  // namespace

const char* VerdictName(TargetResult::Verdict verdict) {
  switch (verdict) {
    case TargetResult::Verdict::kPass:
      return "PASS";
    case TargetResult::Verdict::kFail:
      return "FAIL";
    case TargetResult::Verdict::kNotMeasured:
      return "N/A";
  }
  return "?";
}

std::vector<TargetResult> EvaluateTargets(
    const std::vector<PointResult>& points, uint64_t reference_size) {
  std::vector<TargetResult> targets;
  const std::string ref = FormatSize(reference_size);
  const PointResult* per_message =
      Find(points, "reuse", Mode::kPerMessage, reference_size);
  const PointResult* once = Find(points, "reuse", Mode::kOnce, reference_size);

  for (Mode mode : {Mode::kKmod, Mode::kUffd}) {
    const PointResult* cached = Find(points, "reuse", mode, reference_size);
    TargetResult ratio;
    ratio.name = Format("%s reuse: %s bandwidth >= 10x register-per-message",
                        ref.c_str(), ModeName(mode));
    if (cached == nullptr || per_message == nullptr) {
      ratio.detail = "not measured";
    } else {
      const double x = cached->bandwidth_mbs / per_message->bandwidth_mbs;
      ratio.verdict =
          x >= 10 ? TargetResult::Verdict::kPass : TargetResult::Verdict::kFail;
      ratio.detail = Format(
          "%.2fx (%.2f vs %.2f MB/s); registering costs %.1f us of a %.1f us "
          "message",
          x, cached->bandwidth_mbs, per_message->bandwidth_mbs,
          per_message->reg_us_per_message, per_message->latency_us);
      if (once != nullptr) {
        ratio.detail +=
            Format(", so no cache can do better than register-once's %.2fx",
                   once->bandwidth_mbs / per_message->bandwidth_mbs);
      }
      ratio.detail += MinRatio(*cached, *per_message);
    }
    targets.push_back(ratio);

    TargetResult near;
    near.name = Format("%s reuse: %s bandwidth within 5%% of register-once",
                       ref.c_str(), ModeName(mode));
    if (cached == nullptr || once == nullptr) {
      near.detail = "not measured";
    } else {
      const double r = cached->bandwidth_mbs / once->bandwidth_mbs;
      near.verdict = r >= 0.95 ? TargetResult::Verdict::kPass
                               : TargetResult::Verdict::kFail;
      near.detail = Format("%.1f%% of it (%.2f vs %.2f MB/s)", 100 * r,
                           cached->bandwidth_mbs, once->bandwidth_mbs);
      near.detail += MinRatio(*cached, *once, /*percent=*/true);
    }
    targets.push_back(near);
  }

  // Pin-once memory: buffers freed and allocated again between messages
  // cost the pool no registration, so realloc should run as fast as
  // register-once's reuse.
  {
    const PointResult* pool =
        Find(points, "realloc", Mode::kPool, reference_size);
    TargetResult near;
    near.name = Format(
        "%s realloc: regcache-pool bandwidth within 5%% of register-once in "
        "reuse",
        ref.c_str());
    if (pool == nullptr || once == nullptr) {
      near.detail = "not measured";
    } else {
      const double r = pool->bandwidth_mbs / once->bandwidth_mbs;
      near.verdict = r >= 0.95 ? TargetResult::Verdict::kPass
                               : TargetResult::Verdict::kFail;
      const double messages = 2.0 * double(pool->round_trips);
      near.detail = Format(
          "%.1f%% of it (%.2f vs %.2f MB/s); %.2f registrations per message",
          100 * r, pool->bandwidth_mbs, once->bandwidth_mbs,
          messages > 0 ? double(pool->registrations) / messages : 0.0);
      near.detail += MinRatio(*pool, *once, /*percent=*/true);
    }
    targets.push_back(near);
  }
  // ODP: registrations that are never stale need no invalidation, so a
  // buffer freed and reallocated costs a fresh registration without a
  // monitor's work; and in reuse the cache's hit path is all that remains.
  const auto odp_not_measured = [&](const std::string& workload) {
    for (const PointResult& p : points) {
      if (p.workload == workload && p.mode == Mode::kOdp &&
          p.size == reference_size && !p.note.empty())
        return "not measured (" + p.note + ")";
    }
    return std::string("not measured");
  };
  {
    const PointResult* odp =
        Find(points, "realloc", Mode::kOdp, reference_size);
    const PointResult* realloc_per_message =
        Find(points, "realloc", Mode::kPerMessage, reference_size);
    TargetResult t;
    t.name = Format("%s realloc: odp bandwidth >= register-per-message",
                    ref.c_str());
    if (odp == nullptr || realloc_per_message == nullptr) {
      t.detail = odp_not_measured("realloc");
    } else {
      const double x = odp->bandwidth_mbs / realloc_per_message->bandwidth_mbs;
      t.verdict =
          x >= 1 ? TargetResult::Verdict::kPass : TargetResult::Verdict::kFail;
      t.detail = Format(
          "%.2fx (%.2f vs %.2f MB/s); reg us per message %.1f "
          "vs %.1f",
          x, odp->bandwidth_mbs, realloc_per_message->bandwidth_mbs,
          odp->reg_us_per_message, realloc_per_message->reg_us_per_message);
      t.detail += MinRatio(*odp, *realloc_per_message);
    }
    targets.push_back(t);
  }
  {
    const PointResult* odp = Find(points, "reuse", Mode::kOdp, reference_size);
    TargetResult t;
    t.name = Format("%s reuse: odp bandwidth within 10%% of register-once",
                    ref.c_str());
    if (odp == nullptr || once == nullptr) {
      t.detail = odp_not_measured("reuse");
    } else {
      const double r = odp->bandwidth_mbs / once->bandwidth_mbs;
      t.verdict = r >= 0.90 ? TargetResult::Verdict::kPass
                            : TargetResult::Verdict::kFail;
      t.detail = Format("%.1f%% of it (%.2f vs %.2f MB/s)", 100 * r,
                        odp->bandwidth_mbs, once->bandwidth_mbs);
      t.detail += MinRatio(*odp, *once, /*percent=*/true);
    }
    targets.push_back(t);
  }

  // Correctness: every mode that invalidates (or never caches) is clean.
  TargetResult clean;
  clean.name = "no data errors in any mode with invalidation";
  clean.correctness = true;
  uint64_t checked = 0, errors = 0, measured = 0;
  std::vector<std::string> bad;
  for (const PointResult& p : points) {
    if (!p.measured() || !HasInvalidation(p.mode)) continue;
    ++measured;
    checked += p.messages_checked;
    errors += p.data_errors;
    if (p.data_errors > 0)
      bad.push_back(PointName(p) + ": " + std::to_string(p.data_errors) + " (" +
                    p.first_error + ")");
  }
  if (measured > 0) {
    clean.verdict = errors == 0 ? TargetResult::Verdict::kPass
                                : TargetResult::Verdict::kFail;
    clean.detail = Format("%llu bad of %llu messages checked in %llu points",
                          static_cast<unsigned long long>(errors),
                          static_cast<unsigned long long>(checked),
                          static_cast<unsigned long long>(measured));
    for (size_t i = 0; i < bad.size() && i < 3; ++i)
      clean.detail += "; " + bad[i];
  } else {
    clean.detail = "not measured";
  }
  targets.push_back(clean);

  // Correctness of the harness: the unsafe control must be caught.
  TargetResult control;
  control.name = "regcache-none in realloc shows data errors (UNSAFE)";
  control.correctness = true;
  uint64_t control_points = 0, reused_points = 0;
  std::vector<std::string> missed;
  std::string counts;
  for (const PointResult& p : points) {
    if (!p.measured() || p.mode != Mode::kNone || p.workload != "realloc")
      continue;
    ++control_points;
    counts += Format("%s%s: %llu/%llu", counts.empty() ? "" : ", ",
                     FormatSize(p.size).c_str(),
                     static_cast<unsigned long long>(p.data_errors),
                     static_cast<unsigned long long>(p.messages_checked));
    if (p.same_address == 0) continue;
    ++reused_points;
    if (p.data_errors == 0) missed.push_back(FormatSize(p.size));
  }
  if (control_points == 0) {
    control.detail = "not measured";
  } else if (reused_points == 0) {
    control.detail =
        "realloc never got the old address back, so nothing was "
        "stale (" +
        counts + " bad messages)";
  } else if (missed.empty()) {
    control.verdict = TargetResult::Verdict::kPass;
    control.detail = "bad messages per size: " + counts;
  } else {
    control.verdict = TargetResult::Verdict::kFail;
    control.detail = "no errors at";
    for (const std::string& s : missed) control.detail += " " + s;
    control.detail += " although the address was reused (" + counts + ")";
  }
  targets.push_back(control);
  return targets;
}

bool AnyCorrectnessFailure(const std::vector<TargetResult>& targets) {
  for (const TargetResult& t : targets) {
    if (t.correctness && t.verdict == TargetResult::Verdict::kFail) return true;
  }
  return false;
}

std::string RenderTargets(const std::vector<TargetResult>& targets) {
  std::string out = "targets:\n";
  for (const TargetResult& t : targets) {
    out +=
        Format("  %-4s %-13s %s: ", VerdictName(t.verdict),
               t.correctness ? "[correctness]" : "[reported]", t.name.c_str());
    out += t.detail + "\n";
  }
  return out;
}

std::string RenderRegTime(const RegTime& t) {
  if (t.size == 0) return "";
  std::string out = Format(
      "registration of %s (ibv_reg_mr, ibv_dereg_mr; medians of %u, the "
      "fastest ibv_reg_mr in brackets):\n",
      FormatSize(t.size).c_str(), t.repetitions);
  const struct {
    const char* name;
    const RegTime::Sample& sample;
  } rows[] = {{"pinned, fresh memory", t.pinned_fresh},
              {"pinned, touched memory", t.pinned_touched},
              {"odp, fresh memory", t.odp_fresh},
              {"odp, touched memory", t.odp_touched}};
  for (const auto& row : rows) {
    if (!row.sample.measured) continue;
    out +=
        Format("  %-23s reg %12.1f us (%12.1f)  dereg %12.1f us\n", row.name,
               row.sample.reg_us, row.sample.reg_min_us, row.sample.dereg_us);
  }
  if (!t.note.empty()) out += "  " + t.note + "\n";
  if (t.odp_fresh.measured && t.pinned_fresh.measured &&
      t.odp_fresh.reg_us > 0) {
    out += Format(
        "  ibv_reg_mr, fresh memory: odp takes %.4fx the time of pinned "
        "(pinned %.1fx odp)\n",
        t.odp_fresh.reg_us / t.pinned_fresh.reg_us,
        t.pinned_fresh.reg_us / t.odp_fresh.reg_us);
  }
  return out;
}

std::string RenderTables(const Report& report) {
  std::string out;
  out += "regcache-pingpong: RDMA WRITE rendezvous ping-pong on " +
         report.device + "\n";
  if (!report.settings.empty()) out += report.settings + "\n";
  // Where odp was measured, what the device's ODP note says (a known defect
  // and why it cannot strike); where it was not, its rows say why.
  const bool odp_measured = std::any_of(
      report.points.begin(), report.points.end(), [](const PointResult& p) {
        return p.mode == Mode::kOdp && p.measured();
      });
  if (odp_measured && !report.odp_note.empty()) out += report.odp_note + "\n";
  out +=
      "lat = median one-way latency (round trip / 2), min = the fastest; "
      "MB/s = size / lat "
      "(10^6 bytes); regs (r/msg), hit%, reg us (per message) = both "
      "endpoints over the measured round trips; errors = bad messages of "
      "all received (warm-up included)\n";
  for (const std::string& workload : report.workloads) {
    out += "\n== " + workload + ": " + WorkloadDescription(workload) + "\n";
    out += Format("%-5s %-21s %6s %10s %10s %7s %7s %6s %6s %9s %6s  %s\n",
                  "size", "mode", "msgs", "lat(us)", "min(us)", "MB/s", "regs",
                  "r/msg", "hit%", "reg us", "errors", "safety");
    // A mode unavailable at every size it could run at is said once,
    // below; a size every mode skips is one line.
    std::vector<Mode> collapsed;
    for (Mode mode : report.modes) {
      bool all_same = true, any = false;
      std::string note;
      for (const PointResult& p : report.points) {
        if (p.workload != workload || p.mode != mode ||
            p.status == PointResult::Status::kSkipped)
          continue;
        if (!any) note = p.note;
        any = true;
        if (p.status != PointResult::Status::kUnavailable || p.note != note)
          all_same = false;
      }
      if (any && all_same) collapsed.push_back(mode);
    }
    uint64_t reallocations = 0, same = 0;
    for (uint64_t size : report.sizes) {
      std::vector<const PointResult*> rows;
      bool all_skipped = true;
      for (const PointResult& p : report.points) {
        if (p.workload != workload || p.size != size) continue;
        if (p.status != PointResult::Status::kSkipped ||
            (!rows.empty() && p.note != rows.front()->note))
          all_skipped = false;
        rows.push_back(&p);
      }
      if (rows.empty()) continue;
      if (all_skipped) {
        out += Format("%-5s %-21s %s\n", FormatSize(size).c_str(),
                      "(every mode)", rows.front()->note.c_str());
        continue;
      }
      bool first = true;
      for (const PointResult* p : rows) {
        if (std::find(collapsed.begin(), collapsed.end(), p->mode) !=
            collapsed.end())
          continue;
        out += Row(*p, first);
        first = false;
        reallocations += p->reallocations;
        same += p->same_address;
      }
    }
    for (Mode mode : collapsed) {
      for (const PointResult& p : report.points) {
        if (p.workload == workload && p.mode == mode &&
            p.status == PointResult::Status::kUnavailable) {
          out += Format("%-5s %-21s %s (all sizes)\n", "", ModeName(mode),
                        p.note.c_str());
          break;
        }
      }
    }
    if (reallocations > 0) {
      out += Format(
          "addresses: %llu of %llu reallocated buffers came back at "
          "the same address (%.1f%%)\n",
          static_cast<unsigned long long>(same),
          static_cast<unsigned long long>(reallocations),
          100.0 * double(same) / double(reallocations));
    }
  }
  const std::string reg_time = RenderRegTime(report.reg_time);
  if (!reg_time.empty()) out += "\n" + reg_time;
  out += "\n" + RenderTargets(report.targets);
  return out;
}

namespace {

using Json = nlohmann::ordered_json;

// A measurement with 3 decimals (as the tables show them, and no more
// digits than mean something); 0 when it is not finite.
double Rounded(double value) {
  return std::isfinite(value) ? std::round(value * 1000) / 1000 : 0;
}

Json PointJson(const PointResult& p) {
  return {
      {"workload", p.workload},
      {"mode", ModeName(p.mode)},
      {"size", p.size},
      {"status", StatusName(p.status)},
      {"note", p.note},
      {"round_trips", p.round_trips},
      {"latency_us", Rounded(p.latency_us)},
      {"latency_min_us", Rounded(p.latency_min_us)},
      {"latency_mean_us", Rounded(p.latency_mean_us)},
      {"bandwidth_mbs", Rounded(p.bandwidth_mbs)},
      {"registrations", p.registrations},
      {"gets", p.gets},
      {"hits", p.hits},
      {"uncached", p.uncached},
      {"hit_rate", IsCacheMode(p.mode) && p.measured()
                       ? Json(Rounded(p.hit_rate()))
                       : Json(nullptr)},
      {"reg_us_per_message", Rounded(p.reg_us_per_message)},
      {"remap_us_per_message", p.reallocations != 0
                                   ? Json(Rounded(p.remap_us_per_message))
                                   : Json(nullptr)},
      {"other_threads_us_per_message", Rounded(p.other_threads_us_per_message)},
      {"messages_checked", p.messages_checked},
      {"data_errors", p.data_errors},
      {"safe", p.safe()},
      {"first_error", p.first_error},
      {"reallocations", p.reallocations},
      {"same_address", p.same_address}};
}

}  // namespace

std::string RenderJson(const Report& report) {
  Json j = Json::object();
  j["tool"] = "regcache-pingpong";
  j["device"] = report.device;
  j["odp"] = report.odp_note;
  j["settings"] = report.settings;
  j["wall_seconds"] = Rounded(report.wall_seconds);
  j["units"] = {{"latency_us", "median one-way, round trip / 2"},
                {"bandwidth_mbs", "10^6 bytes per second"}};
  j["workloads"] = report.workloads;
  j["sizes"] = report.sizes;
  Json modes = Json::array();
  for (Mode mode : report.modes) modes.push_back(ModeName(mode));
  j["modes"] = modes;
  Json points = Json::array();
  for (const PointResult& p : report.points) points.push_back(PointJson(p));
  j["points"] = points;
  Json targets = Json::array();
  for (const TargetResult& t : report.targets) {
    targets.push_back({{"name", t.name},
                       {"verdict", VerdictName(t.verdict)},
                       {"correctness", t.correctness},
                       {"detail", t.detail}});
  }
  j["targets"] = targets;
  const RegTime& t = report.reg_time;
  if (t.size == 0) {
    j["reg_time"] = nullptr;
  } else {
    const auto sample = [](const RegTime::Sample& s) {
      return s.measured ? Json{{"reg_us", Rounded(s.reg_us)},
                               {"reg_min_us", Rounded(s.reg_min_us)},
                               {"dereg_us", Rounded(s.dereg_us)}}
                        : Json(nullptr);
    };
    j["reg_time"] = {{"size", t.size},
                     {"repetitions", t.repetitions},
                     {"pinned_fresh", sample(t.pinned_fresh)},
                     {"pinned_touched", sample(t.pinned_touched)},
                     {"odp_fresh", sample(t.odp_fresh)},
                     {"odp_touched", sample(t.odp_touched)},
                     {"note", t.note}};
  }
  j["correctness_failure"] = AnyCorrectnessFailure(report.targets);
  // Device names and error texts are not ours: invalid UTF-8 becomes
  // U+FFFD rather than an exception.
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace regcache_pingpong
