// Reading the report's SVG charts back (tests only): the axis mapping a plot states in its
// data-x / data-y / data-ylog attributes (common/report_svg.h), and the coordinates of its
// paths, bars and tick labels, mapped back to data values through that mapping.
#pragma once
#include <cstdlib>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "common/report_svg.h"

namespace test {

struct ParsedPlot {
  app::report::Axis x, y;
  bool found = false;
};

inline app::report::Axis parse_axis(const std::string& text, bool log) {
  std::istringstream in(text);
  app::report::Axis a;
  in >> a.lo >> a.hi >> a.px0 >> a.px1;
  a.log = log;
  return a;
}

// The first plot of `svg` (one chart).
inline ParsedPlot parse_plot(const std::string& svg) {
  ParsedPlot p;
  std::smatch m;
  if (!std::regex_search(svg, m, std::regex("<g class=\"plot\" data-x=\"([^\"]*)\"( data-y=\"([^\"]*)\")?( data-ylog=\"1\")?>")))
    return p;
  p.found = true;
  const bool log = m[4].matched;
  p.x = parse_axis(m[1].str(), false);
  if (m[3].matched) p.y = parse_axis(m[3].str(), log);
  return p;
}

// The pixel points of a path's d attribute ("M x y h0 M x y h0 ..." or "M x y L x y ...").
inline std::vector<std::pair<double, double>> path_points(const std::string& d) {
  std::vector<std::pair<double, double>> out;
  const std::regex pt("[ML](-?[0-9.]+) (-?[0-9.]+)");
  for (auto it = std::sregex_iterator(d.begin(), d.end(), pt); it != std::sregex_iterator(); ++it)
    out.emplace_back(std::atof((*it)[1].str().c_str()), std::atof((*it)[2].str().c_str()));
  return out;
}

// The d attribute of the path of class `cls` ("points" or "line") of series `name`; "" if none.
inline std::string path_of(const std::string& svg, const std::string& cls, const std::string& name) {
  std::smatch m;
  const std::regex re("<path class=\"" + cls + "\" data-series=\"" + name + "\" d=\"([^\"]*)\"");
  return std::regex_search(svg, m, re) ? m[1].str() : std::string();
}

// A series' drawn values, mapped back to data through the plot's axes.
inline std::vector<std::pair<double, double>> series_values(const std::string& svg, const std::string& cls,
                                                            const std::string& name) {
  const ParsedPlot p = parse_plot(svg);
  std::vector<std::pair<double, double>> out;
  for (const auto& [px, py] : path_points(path_of(svg, cls, name))) out.emplace_back(p.x.from_px(px), p.y.from_px(py));
  return out;
}

struct ParsedBar {
  std::string series, label;
  double value = 0, x = 0, width = 0;
};

inline std::vector<ParsedBar> parse_bars(const std::string& svg) {
  std::vector<ParsedBar> out;
  const std::regex re(
      "<rect class=\"bar\" data-series=\"([^\"]*)\" data-label=\"([^\"]*)\" data-value=\"([^\"]*)\" x=\"([^\"]*)\" "
      "y=\"[^\"]*\" width=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back({(*it)[1].str(), (*it)[2].str(), std::atof((*it)[3].str().c_str()), std::atof((*it)[4].str().c_str()),
                   std::atof((*it)[5].str().c_str())});
  return out;
}

// The y tick labels: (value attribute, label text, pixel y of the text baseline).
struct ParsedTick {
  double value = 0, py = 0;
  std::string text;
};
inline std::vector<ParsedTick> parse_yticks(const std::string& svg) {
  std::vector<ParsedTick> out;
  const std::regex re("<text class=\"ytick\" data-value=\"([^\"]*)\" x=\"[^\"]*\" y=\"([^\"]*)\"[^>]*>([^<]*)</text>");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back({std::atof((*it)[1].str().c_str()), std::atof((*it)[2].str().c_str()), (*it)[3].str()});
  return out;
}

}  // namespace test
