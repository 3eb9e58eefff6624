// Inline SVG charts for the training report (ssd_report): line plots with a linear or
// logarithmic y axis, and horizontal grouped bar charts. Plain text out, no JavaScript.
//
// Every plot area is a <g class="plot"> carrying its axis mapping as attributes, so a test
// (or a curious reader) can map any drawn coordinate back to data:
//   data-x="lo hi px0 px1"   x data range [lo, hi] drawn from pixel px0 to px1
//   data-y="lo hi px0 px1"   y data range; px0 is the bottom (larger pixel value)
//   data-ylog="1"            the y axis is log10: pixel = px0 + (log10 v - log10 lo) /
//                            (log10 hi - log10 lo) * (px1 - px0)
// A series is one <path class="points" data-series="NAME" d="M x y h0 M x y h0 ..."> (round
// dots, one per value) and/or one <path class="line" data-series="NAME" d="M x y L x y ...">;
// bars are <rect class="bar" data-series=.. data-label=.. data-value=..> whose width maps
// back through data-x. Coordinates are written with 3 decimals.
#pragma once
#include <string>
#include <vector>

namespace app::report {

// A data range drawn onto a pixel range (linear or log10).
struct Axis {
  double lo = 0, hi = 1;      // data range (log: both > 0)
  double px0 = 0, px1 = 1;    // where lo and hi are drawn
  bool log = false;
  double to_px(double v) const;
  double from_px(double p) const;
};

// Tick values inside [lo, hi]: linear axes 1/2/5 x 10^k steps (about `target` ticks); log
// axes the powers of ten, plus 2x and 5x when the range spans less than two decades, and
// the range ends when fewer than two of those fall inside.
std::vector<double> axis_ticks(const Axis& axis, int target = 5);
// A tick label: up to 3 significant digits, exponent form for very large or small values.
std::string tick_label(double v);

// The data range a series set needs: [min, max] of the finite values (and, on a log axis,
// only the positive ones), widened a little (and to a unit span when all values are equal).
// false when there is no such value.
bool data_range(const std::vector<std::vector<double>>& values, bool log, double& lo, double& hi);

struct Series {
  std::string name;
  std::string colour;           // any SVG colour, e.g. "#1f77b4"
  std::vector<double> x, y;     // same length; non-finite (or, on a log axis, <= 0) values are skipped
  bool points = false;          // dots at each value
  bool line = true;             // a polyline through the values
  double width = 1.6;           // line width
  bool in_legend = true;
};

struct PlotSpec {
  std::string title, x_label, y_label;
  bool log_y = false;
  int width = 580, height = 290;
  // Fixed ranges (when lo < hi); otherwise taken from the data.
  double x_lo = 0, x_hi = 0, y_lo = 0, y_hi = 0;
  std::string note;             // small text under the title (e.g. the smoothing used)
};

// An <svg> element; a plot with no drawable value says "no data" in its frame.
std::string line_plot_svg(const PlotSpec& spec, const std::vector<Series>& series);

struct BarGroup {
  std::string label;             // the row's label (a class name)
  std::vector<double> values;    // one per bar series; < 0 or non-finite: not drawn ("-")
};
// Horizontal bars, one row per group, one bar per series (names and colours), x range
// [spec.x_lo, spec.x_hi] (default [0, 1]).
std::string bar_chart_svg(const PlotSpec& spec, const std::vector<std::string>& series_names,
                          const std::vector<std::string>& colours, const std::vector<BarGroup>& groups);

// Text made safe inside XML/HTML content and attribute values.
std::string xml_escape(const std::string& s);

}  // namespace app::report
