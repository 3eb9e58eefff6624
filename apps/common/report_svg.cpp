#include "common/report_svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace app::report {
namespace {

std::string num(double v) {  // a coordinate: 3 decimals, no trailing "-0.000"
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  std::string s = buf;
  if (s == "-0.000") s = "0.000";
  return s;
}

std::string full(double v) {  // a data value in an attribute: round-trips a double
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

bool drawable(double v, bool log) { return std::isfinite(v) && (!log || v > 0); }

// The frame of a plot: margins around the plot area.
struct Frame {
  int width, height;
  double left = 64, right = 16, top = 40, bottom = 44;
  double x0() const { return left; }
  double x1() const { return width - right; }
  double y0() const { return height - bottom; }  // bottom edge (pixel y grows downward)
  double y1() const { return top; }
};

std::string open_svg(const PlotSpec& spec) {
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"" + std::to_string(spec.width) +
                  "\" height=\"" + std::to_string(spec.height) + "\" viewBox=\"0 0 " + std::to_string(spec.width) +
                  " " + std::to_string(spec.height) + "\" font-family=\"sans-serif\" font-size=\"11\">";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>";
  s += "<text x=\"8\" y=\"16\" font-size=\"13\" font-weight=\"bold\">" + xml_escape(spec.title) + "</text>";
  if (!spec.note.empty()) s += "<text x=\"8\" y=\"30\" fill=\"#555\">" + xml_escape(spec.note) + "</text>";
  return s;
}

std::string axis_attr(const char* name, const Axis& a) {
  return std::string(" data-") + name + "=\"" + full(a.lo) + " " + full(a.hi) + " " + num(a.px0) + " " + num(a.px1) +
         "\"";
}

// Grid lines, tick labels, axis titles.
std::string draw_axes(const Frame& f, const Axis& x, const Axis& y, const PlotSpec& spec, bool x_ticks) {
  std::string s = "<rect class=\"frame\" x=\"" + num(f.x0()) + "\" y=\"" + num(f.y1()) + "\" width=\"" +
                  num(f.x1() - f.x0()) + "\" height=\"" + num(f.y0() - f.y1()) +
                  "\" fill=\"none\" stroke=\"#888\" stroke-width=\"1\"/>";
  for (double t : axis_ticks(y)) {
    const double py = y.to_px(t);
    s += "<line x1=\"" + num(f.x0()) + "\" x2=\"" + num(f.x1()) + "\" y1=\"" + num(py) + "\" y2=\"" + num(py) +
         "\" stroke=\"#e4e4e4\"/>";
    s += "<text class=\"ytick\" data-value=\"" + full(t) + "\" x=\"" + num(f.x0() - 4) + "\" y=\"" + num(py + 4) +
         "\" text-anchor=\"end\">" + tick_label(t) + "</text>";
  }
  if (x_ticks) {
    for (double t : axis_ticks(x)) {
      const double px = x.to_px(t);
      s += "<line x1=\"" + num(px) + "\" x2=\"" + num(px) + "\" y1=\"" + num(f.y1()) + "\" y2=\"" + num(f.y0()) +
           "\" stroke=\"#e4e4e4\"/>";
      s += "<text class=\"xtick\" data-value=\"" + full(t) + "\" x=\"" + num(px) + "\" y=\"" + num(f.y0() + 14) +
           "\" text-anchor=\"middle\">" + tick_label(t) + "</text>";
    }
  }
  s += "<text x=\"" + num((f.x0() + f.x1()) / 2) + "\" y=\"" + num(f.height - 8.0) + "\" text-anchor=\"middle\">" +
       xml_escape(spec.x_label) + "</text>";
  s += "<text transform=\"translate(14 " + num((f.y0() + f.y1()) / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
       xml_escape(spec.y_label) + (spec.log_y ? " (log)" : "") + "</text>";
  return s;
}

// Legend entries: a row in the top margin for a few, a column at the right for many.
std::string draw_legend(const Frame& f, const std::vector<std::pair<std::string, std::string>>& items, bool column) {
  std::string s;
  if (column) {
    const double x = f.x1() + 10;
    const int fit = std::max(1, static_cast<int>((f.y0() - f.y1()) / 14));
    for (size_t i = 0; i < items.size(); ++i) {
      const double y = f.y1() + 10 + 14.0 * static_cast<double>(i);
      if (static_cast<int>(i) == fit - 1 && items.size() > static_cast<size_t>(fit)) {
        s += "<text x=\"" + num(x) + "\" y=\"" + num(y + 4) + "\" fill=\"#555\">+" +
             std::to_string(items.size() - i) + " more</text>";
        break;
      }
      s += "<rect x=\"" + num(x) + "\" y=\"" + num(y - 4) + "\" width=\"12\" height=\"8\" fill=\"" +
           items[i].second + "\"/><text x=\"" + num(x + 16) + "\" y=\"" + num(y + 4) + "\">" +
           xml_escape(items[i].first.substr(0, 18)) + "</text>";
    }
    return s;
  }
  double x = f.x1();
  for (size_t i = items.size(); i-- > 0;) {  // right-aligned row, last item rightmost
    const double w = 22 + 6.2 * static_cast<double>(items[i].first.size());
    x -= w;
    s += "<rect x=\"" + num(x) + "\" y=\"" + num(f.y1() - 14) + "\" width=\"12\" height=\"8\" fill=\"" +
         items[i].second + "\"/><text x=\"" + num(x + 16) + "\" y=\"" + num(f.y1() - 6) + "\">" +
         xml_escape(items[i].first) + "</text>";
  }
  return s;
}

}  // namespace

double Axis::to_px(double v) const {
  const double t = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo)) : (v - lo) / (hi - lo);
  return px0 + t * (px1 - px0);
}

double Axis::from_px(double p) const {
  const double t = (p - px0) / (px1 - px0);
  return log ? std::pow(10.0, std::log10(lo) + t * (std::log10(hi) - std::log10(lo))) : lo + t * (hi - lo);
}

std::vector<double> axis_ticks(const Axis& a, int target) {
  std::vector<double> out;
  if (!(a.hi > a.lo) || !std::isfinite(a.lo) || !std::isfinite(a.hi)) return out;
  const double eps = 1e-9 * (a.hi - a.lo);
  if (a.log) {
    const double d0 = std::floor(std::log10(a.lo)), d1 = std::ceil(std::log10(a.hi));
    if (!(a.lo > 0) || !(d0 >= -400 && d1 <= 400)) return out;  // checked before the conversion
    const int k0 = static_cast<int>(d0), k1 = static_cast<int>(d1);
    const bool fine = std::log10(a.hi) - std::log10(a.lo) < 2;
    const int every = std::max(1, (k1 - k0) / 8);  // wide ranges: every few decades
    for (int k = k0; k <= k1; ++k) {
      if ((k - k0) % every != 0) continue;
      for (double m : {1.0, 2.0, 5.0}) {
        if (m != 1.0 && !fine) continue;
        const double v = m * std::pow(10.0, k);
        if (v >= a.lo * (1 - 1e-12) && v <= a.hi * (1 + 1e-12)) out.push_back(v);
      }
    }
    if (out.size() < 2) out = {a.lo, a.hi};
    return out;
  }
  const double raw = (a.hi - a.lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  // Integer tick indices: no accumulated rounding, and a range too narrow for its magnitude
  // (steps under the values' resolution) cannot loop without end.
  const double k0 = std::ceil((a.lo - eps) / step), k1 = std::floor((a.hi + eps) / step);
  if (!std::isfinite(k0) || !std::isfinite(k1) || k1 - k0 > 100) return {a.lo, a.hi};
  for (double k = k0; k <= k1; ++k) out.push_back(k == 0 ? 0.0 : k * step);
  return out;
}

std::string tick_label(double v) {
  char buf[32];
  const double m = std::fabs(v);
  std::snprintf(buf, sizeof buf, (m != 0 && (m >= 1e5 || m < 1e-3)) ? "%.2g" : "%.3g", v);
  return buf;
}

bool data_range(const std::vector<std::vector<double>>& values, bool log, double& lo, double& hi) {
  lo = INFINITY;
  hi = -INFINITY;
  for (const auto& vs : values)
    for (double v : vs)
      if (drawable(v, log)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
  if (!(lo <= hi)) return false;
  if (log) {
    const double a = std::log10(lo), b = std::log10(hi);
    const double pad = b - a > 1e-9 ? 0.04 * (b - a) : 0.5;
    // Kept inside [1e-300, 1e300]: a padded end must not underflow to 0 or overflow.
    lo = std::max(std::pow(10.0, a - pad), 1e-300);
    hi = std::min(std::pow(10.0, b + pad), 1e300);
    if (!(hi > lo)) hi = lo * 10;
  } else {
    // Equal values (or a span below the values' resolution): a span of their magnitude.
    const bool flat = !(hi - lo > 1e-9 * std::max(std::fabs(lo), std::fabs(hi)));
    const double pad = !flat ? 0.04 * (hi - lo) : (lo != 0 ? 0.5 * std::fabs(lo) : 0.5);
    lo -= pad;
    hi += pad;
  }
  if (!std::isfinite(lo) || !std::isfinite(hi)) {  // values near the double range's ends
    lo = std::max(lo, -1e300);
    hi = std::min(hi, 1e300);
  }
  return true;
}

std::string line_plot_svg(const PlotSpec& spec, const std::vector<Series>& series) {
  std::vector<std::pair<std::string, std::string>> legend;
  for (const Series& s : series)
    if (s.in_legend) legend.emplace_back(s.name, s.colour);
  const bool column = legend.size() > 4;
  Frame f{spec.width, spec.height};
  if (column) f.right = 150;
  std::string svg = open_svg(spec);
  std::vector<std::vector<double>> xs, ys;
  for (const Series& s : series) {
    std::vector<double> x, y;  // the values actually drawn (both coordinates drawable)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (drawable(s.x[i], false) && drawable(s.y[i], spec.log_y)) {
        x.push_back(s.x[i]);
        y.push_back(s.y[i]);
      }
    xs.push_back(x);
    ys.push_back(y);
  }
  Axis x{0, 1, f.x0(), f.x1(), false}, y{0, 1, f.y0(), f.y1(), spec.log_y};
  bool have = data_range(xs, false, x.lo, x.hi) && data_range(ys, spec.log_y, y.lo, y.hi);
  if (spec.x_hi > spec.x_lo) {
    x.lo = spec.x_lo;
    x.hi = spec.x_hi;
  }
  if (spec.y_hi > spec.y_lo && (!spec.log_y || spec.y_lo > 0)) {
    y.lo = spec.y_lo;
    y.hi = spec.y_hi;
  }
  if (!have) {
    svg += "<rect x=\"" + num(f.x0()) + "\" y=\"" + num(f.y1()) + "\" width=\"" + num(f.x1() - f.x0()) +
           "\" height=\"" + num(f.y0() - f.y1()) + "\" fill=\"none\" stroke=\"#888\"/>";
    svg += "<text x=\"" + num((f.x0() + f.x1()) / 2) + "\" y=\"" + num((f.y0() + f.y1()) / 2) +
           "\" text-anchor=\"middle\" fill=\"#888\">no data</text></svg>";
    return svg;
  }
  svg += "<g class=\"plot\"" + axis_attr("x", x) + axis_attr("y", y) + (spec.log_y ? " data-ylog=\"1\"" : "") + ">";
  svg += draw_axes(f, x, y, spec, true);
  for (size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    if (xs[k].empty()) continue;
    const std::string name = xml_escape(s.name);
    if (s.points) {
      std::string d;
      for (size_t i = 0; i < xs[k].size(); ++i)
        d += (i ? " M" : "M") + num(x.to_px(xs[k][i])) + " " + num(y.to_px(ys[k][i])) + " h0";
      svg += "<path class=\"points\" data-series=\"" + name + "\" d=\"" + d + "\" stroke=\"" + s.colour +
             "\" stroke-opacity=\"0.35\" stroke-width=\"3\" stroke-linecap=\"round\" fill=\"none\"/>";
    }
    if (s.line) {
      std::string d;
      for (size_t i = 0; i < xs[k].size(); ++i)
        d += (i ? " L" : "M") + num(x.to_px(xs[k][i])) + " " + num(y.to_px(ys[k][i]));
      if (xs[k].size() == 1) d += " h0";  // a single value: still a visible dot
      svg += "<path class=\"line\" data-series=\"" + name + "\" d=\"" + d + "\" stroke=\"" + s.colour +
             "\" stroke-width=\"" + num(s.width) + "\" stroke-linecap=\"round\" stroke-linejoin=\"round\" fill=\"none\"/>";
    }
  }
  svg += "</g>";
  svg += draw_legend(f, legend, column);
  return svg + "</svg>";
}

std::string bar_chart_svg(const PlotSpec& spec, const std::vector<std::string>& series_names,
                          const std::vector<std::string>& colours, const std::vector<BarGroup>& groups) {
  const double row = 8.0 * static_cast<double>(std::max<size_t>(1, series_names.size())) + 8;
  PlotSpec sp = spec;
  sp.height = static_cast<int>(40 + 44 + row * static_cast<double>(std::max<size_t>(1, groups.size())));
  Frame f{sp.width, sp.height};
  f.left = 110;
  std::string svg = open_svg(sp);
  Axis x{sp.x_hi > sp.x_lo ? sp.x_lo : 0.0, sp.x_hi > sp.x_lo ? sp.x_hi : 1.0, f.x0(), f.x1(), false};
  Axis y{0, static_cast<double>(std::max<size_t>(1, groups.size())), f.y1(), f.y0(), false};  // rows downward
  svg += "<g class=\"plot\"" + axis_attr("x", x) + ">";
  svg += "<rect class=\"frame\" x=\"" + num(f.x0()) + "\" y=\"" + num(f.y1()) + "\" width=\"" + num(f.x1() - f.x0()) +
         "\" height=\"" + num(f.y0() - f.y1()) + "\" fill=\"none\" stroke=\"#888\"/>";
  for (double t : axis_ticks(x)) {
    const double px = x.to_px(t);
    svg += "<line x1=\"" + num(px) + "\" x2=\"" + num(px) + "\" y1=\"" + num(f.y1()) + "\" y2=\"" + num(f.y0()) +
           "\" stroke=\"#e4e4e4\"/><text class=\"xtick\" data-value=\"" + full(t) + "\" x=\"" + num(px) + "\" y=\"" +
           num(f.y0() + 14) + "\" text-anchor=\"middle\">" + tick_label(t) + "</text>";
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    const double top = y.to_px(static_cast<double>(g)) + 4;
    svg += "<text x=\"" + num(f.x0() - 4) + "\" y=\"" + num(top + row / 2) + "\" text-anchor=\"end\">" +
           xml_escape(groups[g].label.substr(0, 16)) + "</text>";
    for (size_t k = 0; k < groups[g].values.size() && k < series_names.size(); ++k) {
      const double v = groups[g].values[k];
      const double by = top + 8.0 * static_cast<double>(k);
      if (!std::isfinite(v) || v < 0) {
        svg += "<text x=\"" + num(f.x0() + 3) + "\" y=\"" + num(by + 7) + "\" fill=\"#888\">-</text>";
        continue;
      }
      const double w = x.to_px(std::min(v, x.hi)) - x.to_px(x.lo);
      svg += "<rect class=\"bar\" data-series=\"" + xml_escape(series_names[k]) + "\" data-label=\"" +
             xml_escape(groups[g].label) + "\" data-value=\"" + full(v) + "\" x=\"" + num(x.to_px(x.lo)) + "\" y=\"" +
             num(by) + "\" width=\"" + num(w) + "\" height=\"7\" fill=\"" + colours[k % colours.size()] +
             "\"><title>" + xml_escape(groups[g].label + " " + series_names[k] + " " + tick_label(v)) +
             "</title></rect>";
    }
  }
  svg += "</g>";
  std::vector<std::pair<std::string, std::string>> legend;
  for (size_t k = 0; k < series_names.size(); ++k) legend.emplace_back(series_names[k], colours[k % colours.size()]);
  svg += draw_legend(f, legend, false);
  svg += "<text x=\"" + num((f.x0() + f.x1()) / 2) + "\" y=\"" + num(sp.height - 8.0) + "\" text-anchor=\"middle\">" +
         xml_escape(sp.x_label) + "</text>";
  return svg + "</svg>";
}

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        // control characters would make the XML invalid
        out += (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') ? '?' : c;
    }
  }
  return out;
}

}  // namespace app::report
