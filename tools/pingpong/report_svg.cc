// SPDX-License-Identifier: BSD-2-Clause
// The SVG plot (report.h's RenderSvg): one panel per workload, bandwidth
// (linear, shared scale) against message size (log2 scale), one polyline
// per mode that has measurements, a legend, axis labels and a title.
// Hand-written SVG 1.1: no plotting library, renders in any browser.

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>

#include "report.h"

namespace regcache_pingpong {
namespace {

std::string Format(const char* format, ...)
    __attribute__((format(printf, 1, 2)));
std::string Format(const char* format, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, format);
  vsnprintf(buf, sizeof(buf), format, ap);
  va_end(ap);
  return buf;
}

std::string Escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

struct Style {
  const char* color;
  const char* dash;  // stroke-dasharray, "" for solid
};

Style StyleOf(Mode mode) {
  switch (mode) {
    case Mode::kPerMessage:
      return {"#d62728", ""};
    case Mode::kKmod:
      return {"#1f77b4", ""};
    case Mode::kUffd:
      return {"#2ca02c", "6,3"};
    case Mode::kNone:
      return {"#7f7f7f", "2,3"};
    case Mode::kOnce:
      return {"#000000", "10,4"};
    case Mode::kOdp:
      return {"#9467bd", ""};
    case Mode::kPool:
      return {"#8c564b", "4,2"};
  }
  return {"#000000", ""};
}

// The smallest of {1, 2, 2.5, 5} x 10^k that is >= value.
double NiceCeil(double value) {
  if (!(value > 0)) return 1;
  const double base = std::pow(10.0, std::floor(std::log10(value)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (m * base >= value * (1 - 1e-9)) return m * base;
  }
  return 10 * base;
}

std::string TickLabel(double value) {
  if (value == std::floor(value)) return Format("%.0f", value);
  return Format("%g", value);
}

constexpr int kWidth = 1000;
constexpr int kPanelWidth = 490, kPanelHeight = 330;
constexpr int kLeft = 70, kRight = 20, kTop = 34, kBottom = 56;
constexpr int kHeader = 74;

}  // namespace

std::string RenderSvg(const Report& report) {
  const size_t panels = std::max<size_t>(report.workloads.size(), 1);
  const size_t cols = std::min<size_t>(panels, 2);
  const size_t rows = (panels + cols - 1) / cols;
  const int legend_rows = static_cast<int>((report.modes.size() + 2) / 3) + 1;
  const int height = kHeader + static_cast<int>(rows) * kPanelHeight + 20 +
                     legend_rows * 22 + 10;

  double max_bw = 0;
  for (const PointResult& p : report.points) {
    if (p.measured()) max_bw = std::max(max_bw, p.bandwidth_mbs);
  }
  const double y_max = NiceCeil(max_bw * 1.05);
  double x_lo = 0, x_hi = 1;
  if (!report.sizes.empty()) {
    const auto [lo, hi] =
        std::minmax_element(report.sizes.begin(), report.sizes.end());
    x_lo = std::log2(double(*lo));
    x_hi = std::log2(double(*hi));
  }
  if (x_hi - x_lo < 1e-9) {
    x_lo -= 1;
    x_hi += 1;
  }

  std::string out;
  out += Format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" "
      "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n",
      kWidth, height, kWidth, height);
  out += Format(
      "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
      kWidth, height);
  out += Format(
      "<text x=\"%d\" y=\"26\" text-anchor=\"middle\" font-size=\"18\" "
      "font-weight=\"bold\">regcache-pingpong: RDMA WRITE rendezvous bandwidth "
      "against message size</text>\n",
      kWidth / 2);
  out += Format("<text x=\"%d\" y=\"48\" text-anchor=\"middle\">%s</text>\n",
                kWidth / 2, Escape(report.device).c_str());
  out += Format(
      "<text x=\"%d\" y=\"66\" text-anchor=\"middle\" font-size=\"11\">"
      "one-way bandwidth = size / (round trip / 2); registrations obtained "
      "per message as the mode says; x marks an UNSAFE point (data "
      "errors)</text>\n",
      kWidth / 2);

  for (size_t w = 0; w < report.workloads.size(); ++w) {
    const std::string& workload = report.workloads[w];
    const int px = static_cast<int>(w % cols) * kPanelWidth + 10;
    const int py = kHeader + static_cast<int>(w / cols) * kPanelHeight;
    const int x0 = px + kLeft, x1 = px + kPanelWidth - kRight;
    const int y0 = py + kPanelHeight - kBottom, y1 = py + kTop;
    auto sx = [&](uint64_t size) {
      return x0 + (std::log2(double(size)) - x_lo) / (x_hi - x_lo) * (x1 - x0);
    };
    auto sy = [&](double bw) { return y0 - bw / y_max * (y0 - y1); };

    out += Format("<g class=\"panel\" id=\"panel-%s\">\n",
                  Escape(workload).c_str());
    out += Format(
        "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"14\" "
        "font-weight=\"bold\">%s</text>\n",
        (x0 + x1) / 2, py + 22, Escape(workload).c_str());
    // Grid and ticks.
    for (int i = 0; i <= 5; ++i) {
      const double v = y_max * i / 5;
      const double y = sy(v);
      out += Format(
          "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
          "stroke=\"#dddddd\"/>\n",
          x0, y, x1, y);
      out += Format("<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                    x0 - 6, y + 4, TickLabel(v).c_str());
    }
    for (uint64_t size : report.sizes) {
      const double x = sx(size);
      out += Format(
          "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" "
          "stroke=\"#dddddd\"/>\n",
          x, y0, x, y1);
      out +=
          Format("<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                 x, y0 + 16, FormatSize(size).c_str());
    }
    out += Format(
        "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
        "stroke=\"black\"/>\n",
        x0, y1, x1 - x0, y0 - y1);
    out += Format(
        "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">message size (bytes, "
        "log scale)</text>\n",
        (x0 + x1) / 2, y0 + 36);
    out += Format(
        "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" "
        "transform=\"rotate(-90 %d %d)\">bandwidth (MB/s)</text>\n",
        px + 18, (y0 + y1) / 2, px + 18, (y0 + y1) / 2);
    // One polyline per mode with measurements.
    for (Mode mode : report.modes) {
      std::string points_attr, markers;
      for (uint64_t size : report.sizes) {
        for (const PointResult& p : report.points) {
          if (p.workload != workload || p.mode != mode || p.size != size ||
              !p.measured())
            continue;
          const double x = sx(size), y = sy(p.bandwidth_mbs);
          points_attr +=
              Format("%s%.1f,%.1f", points_attr.empty() ? "" : " ", x, y);
          markers +=
              Format("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                     x, y, StyleOf(mode).color);
          if (!p.safe()) {
            markers += Format(
                "<path class=\"unsafe\" d=\"M%.1f %.1fL%.1f %.1fM%.1f "
                "%.1fL%.1f "
                "%.1f\" stroke=\"#ff7f0e\" stroke-width=\"2.5\"/>\n",
                x - 6, y - 6, x + 6, y + 6, x - 6, y + 6, x + 6, y - 6);
          }
        }
      }
      if (points_attr.empty()) continue;
      const Style style = StyleOf(mode);
      out += Format(
          "<polyline class=\"mode\" data-mode=\"%s\" fill=\"none\" "
          "stroke=\"%s\" stroke-width=\"2\"%s%s%s points=\"",
          ModeName(mode), style.color,
          *style.dash ? " stroke-dasharray=\"" : "", style.dash,
          *style.dash ? "\"" : "");
      out += points_attr + "\"/>\n" + markers;
    }
    out += "</g>\n";
  }

  // Legend: every mode, with why it is missing if it is.
  const int ly = kHeader + static_cast<int>(rows) * kPanelHeight + 20;
  out += "<g class=\"legend\">\n";
  for (size_t i = 0; i < report.modes.size(); ++i) {
    const Mode mode = report.modes[i];
    const Style style = StyleOf(mode);
    const int lx = 20 + static_cast<int>(i % 3) * 310;
    const int y = ly + static_cast<int>(i / 3) * 22;
    std::string label = ModeName(mode);
    bool any = false;
    std::string note;
    for (const PointResult& p : report.points) {
      if (p.mode != mode) continue;
      if (p.measured())
        any = true;
      else if (p.status == PointResult::Status::kUnavailable)
        note = p.note;
    }
    if (!any && !note.empty())  // the note may already name the mode
      label =
          note.rfind(label + ":", 0) == 0 ? note : label + " (" + note + ")";
    out += Format(
        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
        "stroke-width=\"2\"%s%s%s/>\n",
        lx, y, lx + 30, y, style.color,
        *style.dash ? " stroke-dasharray=\"" : "", style.dash,
        *style.dash ? "\"" : "");
    out += Format("<text x=\"%d\" y=\"%d\">%s</text>\n", lx + 38, y + 4,
                  Escape(label).c_str());
  }
  const int uy = ly + static_cast<int>((report.modes.size() + 2) / 3) * 22;
  out += Format(
      "<path d=\"M%d %dL%d %dM%d %dL%d %d\" stroke=\"#ff7f0e\" "
      "stroke-width=\"2.5\"/>\n",
      39, uy - 6, 51, uy + 6, 39, uy + 6, 51, uy - 6);
  out += Format(
      "<text x=\"%d\" y=\"%d\">UNSAFE: data errors (the write used a "
      "stale registration)</text>\n",
      68, uy + 4);
  out += "</g>\n</svg>\n";
  return out;
}

}  // namespace regcache_pingpong
