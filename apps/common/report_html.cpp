#include "common/report_html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "common/report_svg.h"

namespace app::report {
namespace {

const char* const kBlue = "#1f77b4";
const char* const kOrange = "#ff7f0e";
const char* const kGreen = "#2ca02c";
const char* const kRed = "#d62728";
const char* const kPurple = "#9467bd";

// A colour per class for the PR curves (a fixed 10-colour cycle).
std::string class_colour(size_t i) {
  static const char* const c[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return c[i % 10];
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

PlotSpec spec_of(const std::string& title, const std::string& x_label, const std::string& y_label, bool log_y = false) {
  PlotSpec s;
  s.title = title;
  s.x_label = x_label;
  s.y_label = y_label;
  s.log_y = log_y;
  return s;
}

std::vector<double> iterations(const RunMetrics& m) {
  std::vector<double> x;
  for (const TrainPoint& p : m.train) x.push_back(static_cast<double>(p.iteration));
  return x;
}

template <class F>
std::vector<double> column(const RunMetrics& m, F f) {
  std::vector<double> v;
  for (const TrainPoint& p : m.train) v.push_back(f(p));
  return v;
}

// The raw values as dots and their moving average as a line, under one name.
void add_smoothed(std::vector<Series>& out, const std::string& name, const std::string& colour,
                  const std::vector<double>& x, const std::vector<double>& y) {
  Series raw{name, colour, x, y};
  raw.points = true;
  raw.line = false;
  raw.in_legend = false;
  out.push_back(raw);
  Series smooth{name, colour, x, ema_smooth(y, kSmoothing)};
  out.push_back(smooth);
}

std::string smoothing_note() { return "dots: logged values; lines: EMA " + fmt("%.2g", kSmoothing) + " (debiased)"; }

// The classes shown in the PR plot: those with ground truth, most first, at most 20.
std::vector<size_t> pr_classes(const RunMetrics& m) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < m.classes.size(); ++i)
    if (m.classes[i].num_gt > 0 && !m.classes[i].recall.empty()) idx.push_back(i);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return m.classes[a].num_gt > m.classes[b].num_gt; });
  if (idx.size() > 20) idx.resize(20);
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::string summary(const ReportPage& page) {
  const RunMetrics& m = page.metrics;
  std::vector<std::string> rows = page.facts;
  if (!m.train.empty()) {
    const TrainPoint& last = m.train.back();
    rows.push_back("iterations logged: " + std::to_string(m.train.size()) + " lines, up to iteration " +
                   std::to_string(last.iteration));
    if (std::isfinite(last.loss)) rows.push_back("last loss: " + fmt("%.4g", last.loss));
    if (std::isfinite(last.elapsed_s)) rows.push_back("elapsed: " + fmt("%.0f", last.elapsed_s) + " s");
  }
  const EvalPoint* best = nullptr;
  for (const EvalPoint& e : m.evals)
    if (std::isfinite(e.map_voc07) && (!best || e.map_voc07 > best->map_voc07)) best = &e;
  if (best)
    rows.push_back("best mAP VOC07: " + fmt("%.4f", best->map_voc07) + " at iteration " +
                   std::to_string(best->iteration) +
                   (std::isfinite(best->map_coco) ? " (COCO AP " + fmt("%.4f", best->map_coco) + ")" : ""));
  std::string s = "<ul class=\"facts\">";
  for (const std::string& r : rows) s += "<li>" + xml_escape(r) + "</li>";
  return s + "</ul>";
}

}  // namespace

std::string loss_chart(const RunMetrics& m) {
  PlotSpec spec = spec_of("Training loss", "iteration", "loss", true);
  spec.note = smoothing_note();
  const auto x = iterations(m);
  std::vector<Series> s;
  add_smoothed(s, "loss", kBlue, x, column(m, [](const TrainPoint& p) { return p.loss; }));
  add_smoothed(s, "loss_cls", kOrange, x, column(m, [](const TrainPoint& p) { return p.loss_cls; }));
  add_smoothed(s, "loss_box", kGreen, x, column(m, [](const TrainPoint& p) { return p.loss_box; }));
  return line_plot_svg(spec, s);
}

std::string lr_chart(const RunMetrics& m) {
  PlotSpec spec = spec_of("Learning rate", "iteration", "lr");
  Series s{"lr", kPurple, iterations(m), column(m, [](const TrainPoint& p) { return p.lr; })};
  return line_plot_svg(spec, {s});
}

std::string map_chart(const RunMetrics& m) {
  PlotSpec spec = spec_of("Held-out mAP", "iteration", "AP");
  spec.note = "VOC07: 11-point mAP at IoU 0.5; COCO: AP@[.5:.95]";
  std::vector<double> x, voc, coco;
  for (const EvalPoint& e : m.evals) {
    x.push_back(static_cast<double>(e.iteration));
    voc.push_back(e.map_voc07);
    coco.push_back(e.map_coco);
  }
  Series a{"map_voc07", kRed, x, voc}, b{"map_coco", kBlue, x, coco};
  a.points = b.points = true;
  return line_plot_svg(spec, {a, b});
}

std::string speed_chart(const RunMetrics& m) {
  bool timed = !m.train.empty();
  for (const TrainPoint& p : m.train) timed = timed && std::isfinite(p.elapsed_s);
  PlotSpec spec = spec_of("Throughput", timed ? "elapsed (s)" : "iteration", "images/s");
  spec.note = smoothing_note();
  std::vector<Series> s;
  add_smoothed(s, "img_per_s", kGreen,
               timed ? column(m, [](const TrainPoint& p) { return p.elapsed_s; }) : iterations(m),
               column(m, [](const TrainPoint& p) { return p.img_per_s; }));
  return line_plot_svg(spec, s);
}

std::string class_ap_chart(const RunMetrics& m) {
  PlotSpec spec = spec_of("Per-class AP", "AP", "");
  spec.note = m.classes_iteration >= 0 ? "evaluation at iteration " + std::to_string(m.classes_iteration) : "";
  std::vector<BarGroup> groups;
  for (const ClassSummary& c : m.classes) groups.push_back({c.name, {c.ap_voc07, c.ap_coco}});
  return bar_chart_svg(spec, {"AP VOC07", "AP COCO"}, {kRed, kBlue}, groups);
}

std::string pr_chart(const RunMetrics& m) {
  PlotSpec spec = spec_of("Precision-recall (VOC, IoU 0.5)", "recall", "precision");
  spec.x_lo = 0;
  spec.x_hi = 1;
  spec.y_lo = 0;
  spec.y_hi = 1.02;
  spec.note = "precision envelope; " + (m.classes_iteration >= 0
                                            ? "evaluation at iteration " + std::to_string(m.classes_iteration)
                                            : std::string("no evaluation logged"));
  std::vector<Series> s;
  for (size_t i : pr_classes(m)) s.push_back({m.classes[i].name, class_colour(i), m.classes[i].recall, m.classes[i].precision});
  return line_plot_svg(spec, s);
}

std::string report_html(const ReportPage& page) {
  const RunMetrics& m = page.metrics;
  char when[64] = "";
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  if (gmtime_r(&now, &tm)) std::strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>" + xml_escape(page.title) + "</title><style>"
      "body{font-family:sans-serif;margin:20px;color:#222;background:#fafafa;max-width:1220px}"
      "h1{font-size:20px}h2{font-size:16px;margin-top:24px}"
      ".grid{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #ddd;background:#fff}"
      ".warn{background:#fff4e0;border:1px solid #e0b060;padding:6px 10px;font-size:13px}"
      ".samples{display:flex;flex-wrap:wrap;gap:8px}.samples figure{margin:0;font-size:12px}"
      ".samples img{display:block;border:1px solid #ccc}.facts{font-size:14px}"
      "</style></head><body>\n";
  h += "<h1>Training report: " + xml_escape(page.title) + "</h1>\n";
  h += "<p style=\"font-size:12px;color:#666\">written " + std::string(when) + " by ssd_report</p>\n";
  if (!page.warnings.empty()) {
    h += "<div class=\"warn\">";
    for (const std::string& w : page.warnings) h += xml_escape(w) + "<br>";
    h += "</div>\n";
  }
  h += summary(page);
  h += "<h2>Training and evaluation</h2><div class=\"grid\">" + loss_chart(m) + map_chart(m) + lr_chart(m) +
       speed_chart(m) + "</div>\n";
  h += "<h2>Last evaluation</h2>\n";
  if (!m.classes.empty()) {
    h += "<div class=\"grid\">" + class_ap_chart(m) + pr_chart(m) + "</div>\n";
  } else {
    h += "<p>No per-class results: no evaluation line with \"per_class\" in metrics.jsonl (give ssd_report "
         "--data with the held-out set to evaluate the checkpoint).</p>\n";
  }
  h += "<h2>Held-out samples</h2>\n";
  if (!page.samples_note.empty()) h += "<p>" + xml_escape(page.samples_note) + "</p>\n";
  if (!page.samples.empty()) {
    h += "<div class=\"samples\">";
    for (const SampleImage& s : page.samples)
      h += "<figure><img width=\"" + std::to_string(s.width) + "\" height=\"" + std::to_string(s.height) +
           "\" alt=\"" + xml_escape(s.name) + "\" src=\"data:image/jpeg;base64," + s.jpeg_base64 +
           "\"><figcaption>" + xml_escape(s.name) + ": " + std::to_string(s.num_gt) + " GT, " +
           std::to_string(s.num_detections) + " detections</figcaption></figure>";
    h += "</div>\n";
  }
  return h + "</body></html>\n";
}

}  // namespace app::report
