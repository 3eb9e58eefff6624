// ssd_report and the report ssd_train writes (common/report_run.h): a real run on a small
// generated VOC set writes RUN_DIR/report.html at its end (plots whose coordinates map back
// to metrics.jsonl, per-class results, sample images) and on SIGINT; ssd_report regenerates
// it; bad input is one line (no metrics.jsonl, an unwritable output, bad flags) or a report
// of what was readable (a torn last line).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "common/trainer.h"
#include "report_svg_parse.h"
#include "synth_voc.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using test::TempDir;

namespace {

const std::string& dataset_root() {
  static const test::SynthVoc d("report_data", 16, 6, 23);
  return d.root;
}

app::TrainConfig small_config(const std::string& out) {
  app::TrainConfig c;
  c.arch = "tiny_ssd";
  c.data = dataset_root();
  c.val = dataset_root();
  c.input_size = 64;
  c.batch = 4;
  c.workers = 1;
  c.log_every = 1;
  c.eval_every = 3;
  c.out = out;
  c.seed = 3;
  c.lr = 0.02;
  c.warmup = 2;
  return c;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

// The <svg> element of the report whose title is `title`.
std::string chart(const std::string& html, const std::string& title) {
  const size_t t = html.find(">" + title + "</text>");
  if (t == std::string::npos) return "";
  const size_t a = html.rfind("<svg", t), b = html.find("</svg>", t);
  return html.substr(a, b + 6 - a);
}

std::vector<std::string> leftovers(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp") != std::string::npos) out.push_back(e.path().string());
  return out;
}

void check_page(const std::string& html) {
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("<script") == std::string::npos);  // no JavaScript
  CHECK(html.find("http://") == html.find("http://www.w3.org/2000/svg"));  // no network (the SVG namespace only)
  CHECK(html.find("https://") == std::string::npos);
  CHECK(html.find("</html>") != std::string::npos);
}

const char* kTwoLines = R"({"iteration":1,"loss":9.5,"loss_cls":6,"loss_box":3.5,"lr":0.001,"img_per_s":30,"elapsed_s":0.5})"
                        "\n"
                        R"({"iteration":2,"loss":8.25,"loss_cls":5,"loss_box":3.25,"lr":0.002,"img_per_s":31,"elapsed_s":1})"
                        "\n";

}  // namespace

TEST_CASE("ssd_train writes report.html at the end: plots of its metrics, per-class results, samples",
          "[apps][report]") {
  TempDir out("report_train");
  app::TrainConfig c = small_config(out.path.string());
  c.iters = 6;
  REQUIRE(app::train(c) == 0);
  const std::string html = read_text(out / "report.html");
  check_page(html);
  CHECK(leftovers(out.path).empty());
  // Every evaluation line carries the per-class summary the page draws.
  int evals = 0;
  std::ifstream in(out / "metrics.jsonl");
  std::vector<std::pair<int64_t, double>> logged;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("map_voc07")) {
      ++evals;
      REQUIRE(j.contains("per_class"));
      CHECK(j["per_class"].size() == 3);
      CHECK(j["per_class"][0]["name"] == "circle");
      // The logged curves are those of the evaluation: each class's envelope read at VOC07's
      // 11 recall points gives its AP (to the 4 decimals logged), their mean the line's mAP.
      double sum = 0;
      int classes = 0;
      for (const auto& c : j["per_class"]) {
        if (c["num_gt"].get<int>() == 0) continue;
        double ap = 0;
        for (int t = 0; t <= 10; ++t) {
          double p = 0;
          for (const auto& pt : c["pr"])
            if (pt[0].get<double>() >= t / 10.0 - 1e-9) p = std::max(p, pt[1].get<double>());
          ap += p / 11;
        }
        CHECK(ap == Approx(c["ap_voc07"].get<double>()).margin(2e-4));
        sum += c["ap_voc07"].get<double>();
        ++classes;
      }
      REQUIRE(classes > 0);
      CHECK(sum / classes == Approx(j["map_voc07"].get<double>()).margin(1e-12));
    }
    if (j.contains("loss") && j.contains("lr")) logged.emplace_back(j["iteration"].get<int64_t>(), j["loss"].get<double>());
  }
  CHECK(evals == 2);  // iterations 3 and 6
  // The loss dots of the page are the logged losses.
  const std::string loss = chart(html, "Training loss");
  const auto dots = test::series_values(loss, "points", "loss");
  REQUIRE(logged.size() == 6);
  REQUIRE(dots.size() == logged.size());
  for (size_t i = 0; i < dots.size(); ++i) {
    CHECK(dots[i].first == Approx(static_cast<double>(logged[i].first)).margin(1e-3));
    CHECK(dots[i].second == Approx(logged[i].second).epsilon(1e-4));
  }
  CHECK(count(html, "<rect class=\"bar\"") >= 3);
  CHECK(html.find("evaluation at iteration 6") != std::string::npos);
  CHECK(count(html, "src=\"data:image/jpeg;base64,/9j/") == 6);  // the 6 held-out images (JPEG SOI in base64)

  // ssd_report regenerates it from the folder (best.safetensors) and the held-out set.
  const std::string again = out / "again.html";
  const auto r = test::run_app("ssd_report", "'" + out.path.string() + "' --data '" + dataset_root() +
                                                 "' --samples 4 --out '" + again + "'");
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.err.empty());
  const std::string html2 = read_text(again);
  check_page(html2);
  CHECK(count(html2, "src=\"data:image/jpeg;base64,") == 4);
  CHECK(html2.find("best.safetensors") != std::string::npos);
  CHECK(test::series_values(chart(html2, "Training loss"), "points", "loss").size() == 6);

  // Without --data: the held-out set the run recorded (report_inputs.json, absolute paths).
  const auto j = nlohmann::json::parse(read_text(out / "report_inputs.json"));
  CHECK(fs::path(j["data"].get<std::string>()).is_absolute());
  CHECK(j["split"] == "test");
  const auto plain = test::run_app("ssd_report", "'" + out.path.string() + "' --samples 2 --out '" + again + "'");
  CHECK(plain.status == 0);
  CHECK(plain.err.empty());
  CHECK(count(read_text(again), "src=\"data:image/jpeg;base64,") == 2);
  // A malformed record costs the samples only.
  std::ofstream(out / "report_inputs.json") << "{\"data\": 5}";
  const auto bad = test::run_app("ssd_report", "'" + out.path.string() + "' --out '" + again + "'");
  CHECK(bad.status == 0);
  REQUIRE(test::split_lines(bad.err).size() == 1);
  CHECK(bad.err.find("report_inputs.json") != std::string::npos);
  CHECK(count(read_text(again), "src=\"data:image/jpeg;base64,") == 0);

  // Without per-class results in the metrics, ssd_report evaluates the checkpoint on --data.
  TempDir bare("report_bare");
  std::ofstream(bare / "metrics.jsonl") << kTwoLines;
  fs::copy_file(out / "last.safetensors", bare / "last.safetensors");
  const auto e = test::run_app("ssd_report", "'" + bare.path.string() + "' --data '" + dataset_root() + "'");
  CHECK(e.status == 0);
  const std::string html3 = read_text(bare / "report.html");
  CHECK(html3.find("evaluated now") != std::string::npos);
  CHECK(count(html3, "<rect class=\"bar\"") + count(html3, "fill=\"#888\">-</text>") == 6);  // 3 classes x 2 APs
}

TEST_CASE("ssd_train writes report.html on SIGINT too", "[apps][report]") {
  TempDir out("report_sigint");
  app::TrainConfig c = small_config(out.path.string());
  c.iters = 100000;
  c.eval_every = 0;
  c.time_limit = 60;  // a safety net
  auto run = std::async(std::launch::async, [&] { return app::train(c); });
  for (int i = 0; i < 600 && !fs::exists(out / "last.safetensors"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (fs::exists(out / "metrics.jsonl") && fs::file_size(out / "metrics.jsonl") > 400) break;
  }
  ::kill(::getpid(), SIGINT);
  REQUIRE(run.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
  CHECK(run.get() == 130);
  const std::string html = read_text(out / "report.html");
  check_page(html);
  CHECK(test::series_values(chart(html, "Training loss"), "points", "loss").size() >= 1);
}

TEST_CASE("ssd_report: no metrics.jsonl is one line and exit 1", "[apps][report]") {
  TempDir d("report_nometrics");
  const auto r = test::run_app("ssd_report", "'" + d.path.string() + "'");
  CHECK(r.status == 1);
  REQUIRE(test::split_lines(r.err).size() == 1);
  CHECK(r.err.find("metrics.jsonl") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "report.html"));
  const auto none = test::run_app("ssd_report", "'" + (d / "no_such_run") + "'");
  CHECK(none.status == 1);
  CHECK(test::split_lines(none.err).size() == 1);
}

TEST_CASE("ssd_report: a torn last line gives a report of the rest and one warning naming the line",
          "[apps][report]") {
  TempDir d("report_torn_app");
  std::ofstream(d / "metrics.jsonl") << kTwoLines << R"({"iteration":3,"loss":7.)";
  const auto r = test::run_app("ssd_report", "'" + d.path.string() + "'");
  CHECK(r.status == 0);
  const auto lines = test::split_lines(r.err);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("warning") != std::string::npos);
  CHECK(lines[0].find("line 3") != std::string::npos);
  const std::string html = read_text(d / "report.html");
  check_page(html);
  const auto dots = test::series_values(chart(html, "Training loss"), "points", "loss");
  REQUIRE(dots.size() == 2);
  CHECK(dots[1].second == Approx(8.25).epsilon(1e-4));
  CHECK(html.find("line 3") != std::string::npos);  // the warning is on the page too
  CHECK(html.find("no checkpoint") != std::string::npos);
  CHECK(leftovers(d.path).empty());
}

TEST_CASE("ssd_report: an unwritable output and bad flags are one line and exit 1", "[apps][report]") {
  TempDir d("report_unwritable");
  std::ofstream(d / "metrics.jsonl") << kTwoLines;
  const auto r = test::run_app("ssd_report", "'" + d.path.string() + "' --out '" + (d / "missing/dir/r.html") + "'");
  CHECK(r.status == 1);
  REQUIRE(test::split_lines(r.err).size() == 1);
  CHECK(r.err.find("missing/dir/r.html") != std::string::npos);
  fs::create_directories(d / "a_dir");
  const auto dir = test::run_app("ssd_report", "'" + d.path.string() + "' --out '" + (d / "a_dir") + "'");
  CHECK(dir.status == 1);
  CHECK(test::split_lines(dir.err).size() == 1);
  CHECK(leftovers(d.path).empty());
  CHECK(leftovers(d.path / "a_dir").empty());
  for (const std::string bad : {"--samples 65", "--samples -1", "--score-thresh nan", "--device tpu"}) {
    INFO(bad);
    const auto b = test::run_app("ssd_report", "'" + d.path.string() + "' " + bad);
    CHECK(b.status == 1);
    CHECK(test::split_lines(b.err).size() == 1);
  }
  const auto missing = test::run_app("ssd_report", "");
  CHECK(missing.status == 1);
  // A checkpoint that cannot be read costs the samples only (a warning), not the report.
  std::ofstream(d / "best.safetensors") << "not a safetensors file";
  const auto bad_ckpt = test::run_app("ssd_report", "'" + d.path.string() + "'");
  CHECK(bad_ckpt.status == 0);
  REQUIRE(test::split_lines(bad_ckpt.err).size() == 1);
  CHECK(bad_ckpt.err.find("best.safetensors") != std::string::npos);
}
