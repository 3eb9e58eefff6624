// The numbers behind the training report's plots (common/report_svg.h, report_html.h): every
// drawn coordinate, mapped back through the axis mapping the plot states, equals the logged
// value it stands for (linear and log axes), tick labels sit where their value maps, bars
// are as long as their value; the smoothing and the reader of metrics.jsonl.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "common/report_html.h"
#include "common/report_metrics.h"
#include "common/report_pr.h"
#include "common/report_samples.h"
#include "common/report_svg.h"
#include "report_svg_parse.h"
#include "temp_dir.h"

using namespace app::report;

namespace {

// Relative closeness for values mapped back from 3-decimal pixel coordinates.
bool close(double a, double b, double rel = 2e-4) { return std::fabs(a - b) <= rel * std::max(std::fabs(b), 1e-9); }

RunMetrics loss_run() {
  RunMetrics m;
  // Losses over three decades (100 -> 0.05), a NaN (a null in the file) and a zero (not drawable on a log axis).
  for (int i = 0; i < 40; ++i) {
    TrainPoint p;
    p.iteration = 10 * (i + 1);
    p.loss = 100.0 * std::pow(0.8, i) * (1 + 0.3 * std::sin(i));
    p.loss_cls = 0.6 * p.loss;
    p.loss_box = 0.4 * p.loss;
    p.lr = i < 5 ? 0.01 * (i + 1) / 5 : (i < 30 ? 0.01 : 0.001);
    p.img_per_s = 40 + i % 7;
    p.elapsed_s = 1.5 * (i + 1);
    m.train.push_back(p);
  }
  m.train[7].loss_box = NAN;
  m.train[9].loss_box = 0.0;
  return m;
}

}  // namespace

TEST_CASE("report svg: axis mapping round-trips, linear and log", "[apps][report]") {
  const Axis lin{-2, 8, 64, 584, false};
  const Axis lg{0.01, 1000, 256, 40, true};
  for (double v : {-2.0, 0.0, 3.3, 8.0}) CHECK(lin.from_px(lin.to_px(v)) == Approx(v).margin(1e-12));
  for (double v : {0.01, 0.5, 7.0, 1000.0}) CHECK(lg.from_px(lg.to_px(v)) == Approx(v).epsilon(1e-12));
  CHECK(lg.to_px(0.01) == Approx(256));
  CHECK(lg.to_px(1000) == Approx(40));
  CHECK(lg.to_px(1) == Approx(256 - 216.0 * 2 / 5));  // two of five decades up
  const auto t = axis_ticks(lg);
  CHECK(t == std::vector<double>{0.01, 0.1, 1, 10, 100, 1000});
  const auto fine = axis_ticks(Axis{3, 40, 0, 1, true});  // one decade: 1-2-5 ticks
  CHECK(fine == std::vector<double>{5, 10, 20});
  const auto lt = axis_ticks(Axis{0, 0.047, 0, 1, false});
  REQUIRE(lt.size() >= 3);
  CHECK(lt[0] == 0);
  CHECK(lt[1] == Approx(0.01));
}

TEST_CASE("report svg: the loss plot's dots and lines map back to the logged values on the log axis",
          "[apps][report]") {
  const RunMetrics m = loss_run();
  const std::string svg = loss_chart(m);
  const test::ParsedPlot plot = test::parse_plot(svg);
  REQUIRE(plot.found);
  CHECK(plot.y.log);
  for (const char* name : {"loss", "loss_cls", "loss_box"}) {
    INFO(name);
    std::vector<double> x, y;
    for (const TrainPoint& p : m.train) {
      const double v = std::string(name) == "loss" ? p.loss : std::string(name) == "loss_cls" ? p.loss_cls : p.loss_box;
      x.push_back(static_cast<double>(p.iteration));
      y.push_back(v);
    }
    const auto dots = test::series_values(svg, "points", name);
    // Every finite positive value is a dot, in order; NaN and 0 are not drawn on a log axis.
    std::vector<std::pair<double, double>> want;
    for (size_t i = 0; i < x.size(); ++i)
      if (std::isfinite(y[i]) && y[i] > 0) want.emplace_back(x[i], y[i]);
    REQUIRE(dots.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      CHECK(close(dots[i].first, want[i].first));
      CHECK(close(dots[i].second, want[i].second));
    }
    // The line is the EMA of the same values.
    const std::vector<double> smooth = ema_smooth(y, kSmoothing);
    const auto line = test::series_values(svg, "line", name);
    std::vector<std::pair<double, double>> want_line;
    for (size_t i = 0; i < x.size(); ++i)
      if (std::isfinite(smooth[i]) && smooth[i] > 0) want_line.emplace_back(x[i], smooth[i]);
    REQUIRE(line.size() == want_line.size());
    for (size_t i = 0; i < line.size(); ++i) CHECK(close(line[i].second, want_line[i].second));
  }
  CHECK(test::series_values(svg, "points", "loss_box").size() == m.train.size() - 2);
  // The tick labels sit where their value maps (baseline 4 px under the tick), and are powers of ten here.
  const auto ticks = test::parse_yticks(svg);
  REQUIRE(ticks.size() >= 3);
  for (const auto& t : ticks) {
    CHECK(close(plot.y.from_px(t.py - 4), t.value, 1e-4));
    CHECK(std::stod(t.text) == Approx(t.value));
    const double e = std::log10(t.value);
    CHECK(e == Approx(std::round(e)).margin(1e-12));
  }
}

TEST_CASE("report svg: learning rate, images/s and mAP map back on linear axes", "[apps][report]") {
  RunMetrics m = loss_run();
  const std::string lr = lr_chart(m);
  CHECK_FALSE(test::parse_plot(lr).y.log);
  const auto lrv = test::series_values(lr, "line", "lr");
  REQUIRE(lrv.size() == m.train.size());
  for (size_t i = 0; i < lrv.size(); ++i) {
    CHECK(lrv[i].first == Approx(static_cast<double>(m.train[i].iteration)).margin(0.01));
    CHECK(lrv[i].second == Approx(m.train[i].lr).margin(1e-6));
  }
  const std::string speed = speed_chart(m);  // against the elapsed seconds
  const auto sv = test::series_values(speed, "points", "img_per_s");
  REQUIRE(sv.size() == m.train.size());
  for (size_t i = 0; i < sv.size(); ++i) {
    CHECK(sv[i].first == Approx(m.train[i].elapsed_s).margin(1e-3));
    CHECK(sv[i].second == Approx(m.train[i].img_per_s).margin(1e-3));
  }
  m.evals = {{100, 0.12, 0.05}, {200, 0.31, 0.14}, {400, 0.45, NAN}};
  const std::string map = map_chart(m);
  const auto voc = test::series_values(map, "line", "map_voc07");
  const auto coco = test::series_values(map, "line", "map_coco");
  REQUIRE(voc.size() == 3);
  REQUIRE(coco.size() == 2);  // the NaN is not drawn
  CHECK(voc[2].first == Approx(400).margin(1e-3));
  CHECK(voc[1].second == Approx(0.31).margin(1e-5));
  CHECK(coco[1].second == Approx(0.14).margin(1e-5));
}

TEST_CASE("report svg: per-class AP bars and PR curves map back", "[apps][report]") {
  RunMetrics m;
  m.classes_iteration = 500;
  m.classes.push_back({"cat", 10, 0.75, 0.40, {0, 0.5, 0.8}, {1, 0.9, 0.6}});
  m.classes.push_back({"dog <&>", 4, 0.25, 0.1, {0, 0.25}, {0.5, 0.5}});
  m.classes.push_back({"bird", 0, -1, -1, {}, {}});
  const std::string bars = class_ap_chart(m);
  const test::ParsedPlot plot = test::parse_plot(bars);
  REQUIRE(plot.found);
  const auto b = test::parse_bars(bars);
  REQUIRE(b.size() == 4);  // bird has no ground truth: no bars
  CHECK(b[0].label == "cat");
  CHECK(b[0].series == "AP VOC07");
  CHECK(b[2].label == "dog &lt;&amp;&gt;");  // escaped
  for (const auto& bar : b) {
    CHECK(plot.x.from_px(bar.x + bar.width) == Approx(bar.value).margin(1e-5));
  }
  CHECK(b[0].value == 0.75);
  CHECK(b[1].value == 0.40);
  CHECK(b[3].value == 0.1);
  const std::string pr = pr_chart(m);
  const auto cat = test::series_values(pr, "line", "cat");
  REQUIRE(cat.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(cat[i].first == Approx(m.classes[0].recall[i]).margin(1e-5));
    CHECK(cat[i].second == Approx(m.classes[0].precision[i]).margin(1e-5));
  }
}

TEST_CASE("report svg: a plot without drawable values says so", "[apps][report]") {
  RunMetrics m;
  const std::string svg = loss_chart(m);
  CHECK(svg.find("no data") != std::string::npos);
  CHECK_FALSE(test::parse_plot(svg).found);
  TrainPoint p;
  p.iteration = 5;
  p.loss = 2.0;  // a single value still draws (a dot)
  m.train.push_back(p);
  const auto one = test::series_values(loss_chart(m), "line", "loss");
  REQUIRE(one.size() == 1);
  CHECK(one[0].second == Approx(2.0).epsilon(1e-4));
}

TEST_CASE("report: EMA smoothing is debiased and passes over NaN", "[apps][report]") {
  const auto s = ema_smooth({4, NAN, 4, 4}, 0.9);
  CHECK(s[0] == Approx(4));
  CHECK(std::isnan(s[1]));
  CHECK(s[3] == Approx(4));
  const auto t = ema_smooth({0, 10}, 0.9);
  // (0.9 * 0.1 * 0 + 0.1 * 10) / (1 - 0.81)
  CHECK(t[1] == Approx(1.0 / 0.19));
}

TEST_CASE("report: PR curves agree with the VOC07 AP of data::evaluate", "[apps][report]") {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<data::GroundTruth> gt;
  std::vector<data::Detection> dets;
  for (int im = 0; im < 30; ++im) {
    const std::string key = "img" + std::to_string(im);
    for (int k = 0; k < 4; ++k) {
      data::GroundTruth g;
      g.image = key;
      g.category = 1 + k % 3;
      const double x = 200 * u(rng), y = 200 * u(rng);
      g.box = {x, y, x + 20 + 40 * u(rng), y + 20 + 40 * u(rng)};
      g.difficult = u(rng) < 0.1;
      gt.push_back(g);
      for (int d = 0; d < 3; ++d) {  // near hits, duplicates and misses
        const double j = d == 2 ? 30 : 4 * u(rng);
        dets.push_back({key, {g.box.x1 + j, g.box.y1 + j, g.box.x2 + j, g.box.y2}, u(rng) < 0.8 ? g.category : 1 + d % 3,
                        u(rng)});
      }
    }
  }
  const std::vector<int> cats{1, 2, 3};
  const data::EvalResult r = data::evaluate(gt, dets, cats);
  const auto curves = voc_pr_curves(gt, dets, cats);
  REQUIRE(curves.size() == 3);
  for (size_t c = 0; c < 3; ++c) {
    INFO("class " << c);
    CHECK(curves[c].num_gt == r.per_class[c].num_gt);
    CHECK(data::voc07_ap(curves[c].recall, curves[c].precision) == Approx(r.per_class[c].ap_voc07).margin(1e-12));
    CHECK(data::voc_area_ap(curves[c].recall, curves[c].precision) == Approx(r.per_class[c].ap_voc_area).margin(1e-12));
    const PrCurve e = pr_envelope(curves[c]);
    REQUIRE(e.recall.size() >= 2);
    CHECK(e.recall.front() == 0);
    CHECK(e.recall.back() == Approx(*std::max_element(curves[c].recall.begin(), curves[c].recall.end())));
    for (size_t i = 1; i < e.precision.size(); ++i) CHECK(e.precision[i] <= e.precision[i - 1]);
    // The envelope read at VOC07's 11 recall points gives its AP (points past the highest recall count 0).
    double ap = 0;
    for (int t = 0; t <= 10; ++t) {
      double p = 0;
      for (size_t i = 0; i < e.recall.size(); ++i)
        if (e.recall[i] >= t / 10.0 - 1e-12) p = std::max(p, e.precision[i]);
      ap += p / 11;
    }
    CHECK(ap == Approx(r.per_class[c].ap_voc07).margin(1e-9));
  }
}

TEST_CASE("report: base64 of the sample JPEGs (RFC 4648 test vectors)", "[apps][report]") {
  auto b64 = [](const std::string& s) { return base64(std::vector<uint8_t>(s.begin(), s.end())); };
  CHECK(b64("") == "");
  CHECK(b64("f") == "Zg==");
  CHECK(b64("fo") == "Zm8=");
  CHECK(b64("foo") == "Zm9v");
  CHECK(b64("foob") == "Zm9vYg==");
  CHECK(b64("fooba") == "Zm9vYmE=");
  CHECK(b64("foobar") == "Zm9vYmFy");
  CHECK(base64({0xff, 0xd8, 0xff}) == "/9j/");
}

TEST_CASE("report svg: flat, tiny-span and huge values still give a finite plot", "[apps][report]") {
  for (const std::vector<double>& ys : std::vector<std::vector<double>>{
           {3, 3, 3}, {1, 1 + 1e-15, 1}, {0, 0}, {-1e308, 1e308}, {1e-300, 1e300}, {5e-324, 1}}) {
    for (bool log : {false, true}) {
      INFO("log " << log << " first " << ys.front() << " second " << ys[1]);
      PlotSpec spec;
      spec.log_y = log;
      Series s{"v", "#000", {1, 2, 3}, ys};
      s.points = true;
      const std::string svg = line_plot_svg(spec, {s});
      CHECK(svg.find("nan") == std::string::npos);
      CHECK(svg.find("inf") == std::string::npos);
      const auto ticks = test::parse_yticks(svg);
      CHECK(ticks.size() <= 101);
      const auto back = test::series_values(svg, "points", "v");
      for (size_t i = 0; i < back.size(); ++i) CHECK(std::isfinite(back[i].second));
    }
  }
}
