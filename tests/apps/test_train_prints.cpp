// What ssd_train prints and logs beside the losses (common/train_progress.h, the log line of
// common/trainer.cpp): the ETA and its rate window, the data-wait share, the memory fields
// (resident set on the CPU; the caching allocator's counters on CUDA, checked on the
// emulator), and the best mAP so far, kept across a resume.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <vector>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "common/train_progress.h"
#include "common/trainer.h"
#include "engine/allocator.h"
#include "engine/io/safetensors.h"
#include "engine/tensor.h"
#include "synth_voc.h"
#include "temp_dir.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using test::TempDir;

namespace {

// 24 + 8 small generated images, written once per test process.
const std::string& dataset_root() {
  static const test::SynthVoc d("train_prints_data", 24, 8, 23);
  return d.root;
}

app::TrainConfig small_config(const std::string& out) {
  app::TrainConfig c;
  c.arch = "tiny_ssd";
  c.data = dataset_root();
  c.input_size = 64;
  c.batch = 4;
  c.workers = 1;
  c.log_every = 2;
  c.out = out;
  c.seed = 3;
  c.lr = 0.02;
  c.warmup = 2;
  return c;
}

std::vector<nlohmann::json> jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::vector<nlohmann::json> training_lines(const std::vector<nlohmann::json>& all) {
  std::vector<nlohmann::json> out;
  for (const auto& j : all)
    if (j.contains("loss") && j.contains("lr")) out.push_back(j);
  return out;
}

std::vector<nlohmann::json> eval_lines(const std::vector<nlohmann::json>& all) {
  std::vector<nlohmann::json> out;
  for (const auto& j : all)
    if (j.contains("map_voc07")) out.push_back(j);
  return out;
}

// The training seconds of each log interval, recovered from its images per second (every
// batch of the generated set is full: `images` images per interval).
std::vector<double> interval_seconds(const std::vector<nlohmann::json>& lines, double images) {
  std::vector<double> s;
  for (const auto& j : lines) s.push_back(images / j["img_per_s"].get<double>());
  return s;
}

// The rate EtaEstimator should give after interval k (0-based): the last 5 intervals after
// the first (iterations per interval all equal `its`), or the first alone.
double expected_rate(const std::vector<double>& secs, size_t k, double its) {
  if (k == 0) return secs[0] / its;
  const size_t from = k >= 5 ? k - 4 : 1;
  double sum = 0;
  for (size_t i = from; i <= k; ++i) sum += secs[i];
  return sum / (its * static_cast<double>(k - from + 1));
}

}  // namespace

TEST_CASE("train prints: h:mm:ss", "[apps][train_prints]") {
  CHECK(app::format_hms(0) == "0:00:00");
  CHECK(app::format_hms(59.4) == "0:00:59");
  CHECK(app::format_hms(59.6) == "0:01:00");
  CHECK(app::format_hms(3725) == "1:02:05");
  CHECK(app::format_hms(100000) == "27:46:40");
  CHECK(app::format_hms(-1) == "?");
  CHECK(app::format_hms(std::nan("")) == "?");
  CHECK(app::format_hms(std::numeric_limits<double>::infinity()) == "?");
  CHECK(app::format_hms(1e300) == "?");
}

TEST_CASE("train prints: evaluations left counts the periodic ones and the final one", "[apps][train_prints]") {
  // every 4 in a run of 12: evaluations at 4 and 8 (not 12: the final one is there).
  CHECK(app::evaluations_left(0, 12, 4) == 3);
  CHECK(app::evaluations_left(2, 12, 4) == 3);
  CHECK(app::evaluations_left(4, 12, 4) == 3);  // the log line comes before iteration 4's evaluation
  CHECK(app::evaluations_left(5, 12, 4) == 2);
  CHECK(app::evaluations_left(8, 12, 4) == 2);
  CHECK(app::evaluations_left(9, 12, 4) == 1);
  CHECK(app::evaluations_left(12, 12, 4) == 1);
  CHECK(app::evaluations_left(13, 12, 4) == 0);
  CHECK(app::evaluations_left(3, 12, 0) == 1);    // at the end only
  CHECK(app::evaluations_left(0, 12, 12) == 1);   // every 12 of 12: the final one only
  CHECK(app::evaluations_left(0, 13, 12) == 2);
  CHECK(app::evaluations_left(7, std::numeric_limits<int64_t>::max(), 4) == 1);  // no known length
}

TEST_CASE("train prints: the ETA rate leaves out the first interval and keeps the last five", "[apps][train_prints]") {
  app::EtaEstimator e(5);
  CHECK(std::isnan(e.seconds_per_iteration()));
  CHECK(std::isnan(e.eta(10, 0)));
  e.add_interval(10, 50.0);  // warm-up: 5 s per iteration
  CHECK(e.seconds_per_iteration() == Approx(5.0));  // the only interval
  e.add_interval(10, 10.0);
  CHECK(e.seconds_per_iteration() == Approx(1.0));  // the first one left out
  e.add_interval(30, 60.0);
  CHECK(e.seconds_per_iteration() == Approx(70.0 / 40));  // weighted by iterations
  for (int i = 0; i < 5; ++i) e.add_interval(10, 3.0);
  CHECK(e.seconds_per_iteration() == Approx(0.3));  // the window holds the last five only
  e.add_interval(0, 100.0);                         // empty and bad intervals are ignored
  e.add_interval(10, std::nan(""));
  e.add_interval(10, -1);
  CHECK(e.seconds_per_iteration() == Approx(0.3));
  CHECK(e.eta(100, 0) == Approx(30.0));
  CHECK(e.eta(100, 2) == Approx(30.0));  // no evaluation seen: not counted
  e.add_evaluation(4.0);
  e.add_evaluation(6.0);
  e.add_evaluation(-3);  // ignored
  CHECK(e.mean_evaluation_seconds() == Approx(5.0));
  CHECK(e.eta(100, 2) == Approx(40.0));
  CHECK(e.eta(-5, 0) == 0.0);
}

TEST_CASE("train prints: run ETA with a length, a time limit, or both", "[apps][train_prints]") {
  const int64_t open = std::numeric_limits<int64_t>::max();
  app::EtaEstimator e;
  CHECK(std::isnan(app::run_eta(e, 0, 100, 0, 0, 0, false)));  // no rate yet
  e.add_interval(10, 10.0);
  e.add_interval(10, 10.0);  // 1 s per iteration
  e.add_evaluation(5.0);
  CHECK(app::run_eta(e, 20, 100, 0, 30, 0, false) == Approx(80.0));
  CHECK(app::run_eta(e, 20, 100, 0, 30, 0, true) == Approx(85.0));         // the final evaluation
  CHECK(app::run_eta(e, 20, 100, 0, 30, 25, true) == Approx(80.0 + 4 * 5));  // 25, 50, 75 + final
  CHECK(app::run_eta(e, 100, 100, 0, 130, 25, false) == 0.0);
  CHECK(app::run_eta(e, 100, 100, 0, 130, 25, true) == Approx(5.0));       // the final one is still to run
  // A time limit that ends the run first: the clock's time left, and the evaluations up to
  // the iteration it stops at (50 s more: iteration 70, evaluations at 25 and 50 + final).
  CHECK(app::run_eta(e, 20, 100, 80, 30, 25, true) == Approx(50.0 + 3 * 5));
  CHECK(app::run_eta(e, 20, 100, 500, 30, 0, false) == Approx(80.0));  // the length ends it first
  CHECK(app::run_eta(e, 20, open, 80, 30, 0, false) == Approx(50.0));   // time limit only
  CHECK(app::run_eta(e, 20, open, 80, 100, 0, true) == Approx(5.0));    // time up: the final evaluation
  CHECK(std::isnan(app::run_eta(e, 20, open, 0, 30, 0, false)));        // no end known
}

TEST_CASE("train prints: the process's resident set", "[apps][train_prints]") {
  const app::ProcessMemory before = app::process_memory();
  CHECK(before.rss_mb > 1);
  CHECK(before.rss_peak_mb >= before.rss_mb);
  {
    // 64 MiB touched: the resident set grows by about that much.
    std::vector<char> big(64u << 20, 1);
    const app::ProcessMemory during = app::process_memory();
    CHECK(during.rss_mb > before.rss_mb + 48);
    CHECK(during.rss_peak_mb >= during.rss_mb);
    CHECK(static_cast<int>(big[12345]) == 1);
  }
  CHECK(app::process_memory().rss_peak_mb >= before.rss_mb + 48);  // the peak stays
}

TEST_CASE("train prints: metrics.jsonl holds ETA, data wait and memory, the ETA follows its rate window",
          "[apps][train_prints]") {
  TempDir out("train_prints_eta");
  app::TrainConfig c = small_config(out.path.string());
  c.iters = 16;  // 8 log intervals: the window of 5 slides
  REQUIRE(app::train(c) == 0);
  const auto lines = training_lines(jsonl(out / "metrics.jsonl"));
  REQUIRE(lines.size() == 8);
  const std::vector<double> secs = interval_seconds(lines, 2.0 * 4);
  for (size_t k = 0; k < lines.size(); ++k) {
    const nlohmann::json& j = lines[k];
    INFO(j.dump());
    const int64_t it = j["iteration"].get<int64_t>();
    CHECK(j["data_wait"].get<double>() >= 0.0);
    CHECK(j["data_wait"].get<double>() <= 1.0);
    CHECK(j["rss_mb"].get<double>() > 0.0);
    CHECK(j["rss_peak_mb"].get<double>() >= j["rss_mb"].get<double>());
    CHECK(j["memory_mb"].get<double>() > 0.0);  // the CPU allocator's peak (tensor bytes)
    CHECK_FALSE(j.contains("mem_allocated_mb"));  // CUDA only
    CHECK_FALSE(j.contains("best_map"));          // no evaluation
    REQUIRE(j.contains("eta_s"));
    // No evaluation: ETA = iterations left x the window's rate, exactly.
    const double want = static_cast<double>(16 - it) * expected_rate(secs, k, 2.0);
    CHECK(j["eta_s"].get<double>() == Approx(want).epsilon(1e-9).margin(1e-12));
  }
  CHECK(lines.back()["eta_s"].get<double>() == 0.0);
  CHECK(lines.front()["eta_s"].get<double>() > 0.0);
}

TEST_CASE("train prints: with evaluations the ETA adds their mean time, best_map is the running max",
          "[apps][train_prints]") {
  TempDir out("train_prints_eval");
  app::TrainConfig c = small_config(out.path.string());
  c.val = dataset_root();
  c.iters = 12;
  c.eval_every = 4;  // evaluations at 4 and 8, and the final one at 12
  REQUIRE(app::train(c) == 0);
  const auto all = jsonl(out / "metrics.jsonl");
  const auto lines = training_lines(all);
  const auto evals = eval_lines(all);
  REQUIRE(lines.size() == 6);
  REQUIRE(evals.size() == 3);
  const std::vector<double> secs = interval_seconds(lines, 2.0 * 4);
  // Lines at 2 and 4 come before any evaluation: the training part alone. From 6 on the
  // evaluations left (6, 8: two; 10, 12: one) times the mean time of those run so far;
  // at 6 and 8 that is the one at 4, so both lines give the same mean.
  std::vector<double> mean_eval(lines.size(), 0.0);
  for (size_t k = 0; k < lines.size(); ++k) {
    const nlohmann::json& j = lines[k];
    INFO(j.dump());
    const int64_t it = j["iteration"].get<int64_t>();
    const double train_part = static_cast<double>(12 - it) * expected_rate(secs, k, 2.0);
    const int64_t left = app::evaluations_left(it, 12, 4);
    const double eta = j["eta_s"].get<double>();
    if (it <= 4) {
      CHECK(eta == Approx(train_part).epsilon(1e-9));
    } else {
      mean_eval[k] = (eta - train_part) / static_cast<double>(left);
      CHECK(mean_eval[k] > 0.0);
    }
  }
  CHECK(mean_eval[2] == Approx(mean_eval[3]).epsilon(1e-6));  // iterations 6 and 8
  CHECK(mean_eval[4] == Approx(mean_eval[5]).epsilon(1e-6));  // 10 and 12: the two at 4 and 8
  // The last line's ETA is the final evaluation's expected time, about what one took.
  const double last = lines.back()["eta_s"].get<double>();
  double max_eval = 0;
  for (const auto& e : evals) max_eval = std::max(max_eval, e["eval_seconds"].get<double>());
  CHECK(last > 0.0);
  CHECK(last < 5 * max_eval + 2.0);

  double best = -1;
  int64_t best_it = -1;
  for (const auto& e : evals) {
    INFO(e.dump());
    if (e["map_voc07"].get<double>() > best) {
      best = e["map_voc07"].get<double>();
      best_it = e["iteration"].get<int64_t>();
    }
    CHECK(e["best_map"].get<double>() == best);
    CHECK(e["best_iteration"].get<int64_t>() == best_it);
    CHECK(e["best_metric"] == "map_voc07");
  }
  const auto meta = eng::io::load_safetensors(out / "last.safetensors").metadata;
  CHECK(nlohmann::json::parse(meta.at("best_metric")).get<double>() == best);
  CHECK(std::stoll(meta.at("best_iteration")) == best_it);
}

TEST_CASE("train prints: a resumed run continues from the checkpoint's best mAP", "[apps][train_prints]") {
  TempDir a("train_prints_resume_a"), b("train_prints_resume_b");
  app::TrainConfig c = small_config(a.path.string());
  c.val = dataset_root();
  c.iters = 6;
  c.eval_every = 2;
  REQUIRE(app::train(c) == 0);

  // A copy of the checkpoint whose recorded best is higher than any this run reaches: the
  // resumed run must keep it (and its iteration), not start its best afresh.
  {
    eng::io::SafetensorsFile f = eng::io::load_safetensors(a / "last.safetensors");
    f.metadata["best_metric"] = "0.987";
    f.metadata["best_iteration"] = "5";
    eng::io::save_safetensors(b / "last.safetensors", f.tensors, f.metadata);
  }
  TempDir low("train_prints_resume_low");
  {
    eng::io::SafetensorsFile f = eng::io::load_safetensors(a / "last.safetensors");
    f.metadata["best_metric"] = "-0.5";
    f.metadata["best_iteration"] = "1";
    eng::io::save_safetensors(low / "last.safetensors", f.tensors, f.metadata);
  }
  // The plain resume: best_map stays the maximum of every map logged in the file.
  c.iters = 10;
  c.resume = a / "last.safetensors";
  REQUIRE(app::train(c) == 0);
  const auto evals = eval_lines(jsonl(a / "metrics.jsonl"));
  REQUIRE(evals.size() == 5);  // 2, 4, 6, then 8 and 10 after the resume
  double best = -1;
  for (const auto& e : evals) {
    INFO(e.dump());
    best = std::max(best, e["map_voc07"].get<double>());
    CHECK(e["best_map"].get<double>() == best);
  }

  app::TrainConfig d = c;
  d.out = b.path.string();
  d.resume = b / "last.safetensors";
  REQUIRE(app::train(d) == 0);
  const auto evals_b = eval_lines(jsonl(b / "metrics.jsonl"));
  REQUIRE(evals_b.size() == 2);
  for (const auto& e : evals_b) {
    INFO(e.dump());
    REQUIRE(e["map_voc07"].get<double>() < 0.987);  // else the test shows nothing
    CHECK(e["best_map"].get<double>() == 0.987);
    CHECK(e["best_iteration"].get<int64_t>() == 5);
  }
  const auto meta = eng::io::load_safetensors(b / "last.safetensors").metadata;
  CHECK(meta.at("best_metric") == "0.987");
  CHECK(meta.at("best_iteration") == "5");

  // A recorded best below every mAP (as if an earlier evaluation had scored lower): the
  // first evaluation after the resume improves on it and becomes the best.
  app::TrainConfig e = c;
  e.out = low.path.string();
  e.resume = low / "last.safetensors";
  REQUIRE(app::train(e) == 0);
  const auto evals_low = eval_lines(jsonl(low / "metrics.jsonl"));
  REQUIRE(evals_low.size() == 2);
  CHECK(evals_low[0]["best_map"].get<double>() == evals_low[0]["map_voc07"].get<double>());
  CHECK(evals_low[0]["best_iteration"].get<int64_t>() == 8);
}

TEST_CASE("train prints: the progress line shows img/s, data wait, memory, best mAP and ETA", "[apps][train_prints]") {
  TempDir out("train_prints_line");
  const auto r = test::run_app("ssd_train", "--arch tiny_ssd --data '" + dataset_root() + "' --val '" + dataset_root() +
                                                "' --input-size 64 --batch 4 --workers 0 --iters 4 --log-every 2 "
                                                "--eval-every 2 --warmup 2 --out '" + out.path.string() + "'");
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  const std::regex first(R"(^it 2/4  loss [0-9.]+ \(cls [0-9.]+, box [0-9.]+\)  grad norm max \S+  lr \S+  )"
                         R"([0-9.]+ img/s  data [0-9]+%  rss [0-9]+ MB \(peak [0-9]+\)  ETA [0-9]+:[0-9]{2}:[0-9]{2}$)");
  const std::regex last(R"(^it 4/4  .* img/s  data [0-9]+%  rss [0-9]+ MB \(peak [0-9]+\)  best [0-9.]+ @2  )"
                        R"(ETA [0-9]+:[0-9]{2}:[0-9]{2}$)");
  const std::regex eval(R"(^eval at iteration 2: mAP VOC07 [0-9.]+ .*  best mAP VOC07 [0-9.]+ at iteration 2 \(new\)$)");
  int seen_first = 0, seen_last = 0, seen_eval = 0;
  for (const std::string& l : test::split_lines(r.out)) {
    seen_first += std::regex_match(l, first) ? 1 : 0;
    seen_last += std::regex_match(l, last) ? 1 : 0;
    seen_eval += std::regex_match(l, eval) ? 1 : 0;
  }
  CHECK(seen_first == 1);
  CHECK(seen_last == 1);
  CHECK(seen_eval == 1);
  // --workers 0: every batch is decoded and augmented inside the loader's next(), so the
  // loop measurably waits for it (a measurement that always said 0 would fail here).
  const auto lines = training_lines(jsonl(out / "metrics.jsonl"));
  REQUIRE(lines.size() == 2);
  for (const auto& j : lines) {
    INFO(j.dump());
    CHECK(j["data_wait"].get<double>() > 0.0);
    CHECK(j["data_wait"].get<double>() < 1.0);
  }
}

TEST_CASE("train prints: the caching allocator's allocated, reserved and peak counters", "[apps][train_prints][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  eng::cuda::alloc::empty_cache();
  eng::cuda::alloc::reset_peak();
  const app::DeviceMemory base = app::cuda_memory();
  CHECK(base.reserved_mb == base.allocated_mb);  // nothing cached after empty_cache
  CHECK(base.peak_mb == base.allocated_mb);      // reset_peak: the peak is the current use
  const auto on_cuda = eng::TensorOptions(eng::DType::f32).device(eng::Device::cuda());
  app::DeviceMemory m;
  {
    eng::Tensor a = eng::empty({1 << 20}, on_cuda);  // 4 MiB (blocks of 1 MiB or more round to 2 MiB)
    eng::Tensor b = eng::empty({3 << 17}, on_cuda);  // 1.5 MiB -> 2 MiB
    m = app::cuda_memory();
    CHECK(m.allocated_mb == base.allocated_mb + 6);
    CHECK(m.reserved_mb == base.reserved_mb + 6);
    CHECK(m.peak_mb == base.allocated_mb + 6);
    a = eng::Tensor();  // freed: cached, still reserved
    m = app::cuda_memory();
    CHECK(m.allocated_mb == base.allocated_mb + 2);
    CHECK(m.reserved_mb == base.reserved_mb + 6);
    CHECK(m.peak_mb == base.allocated_mb + 6);
    eng::Tensor c = eng::empty({1 << 20}, on_cuda);  // reuses a's cached block: nothing new reserved
    eng::Tensor d = eng::empty({1 << 17}, on_cuda);  // 512 KiB (below 1 MiB: rounded to 512 bytes), new
    m = app::cuda_memory();
    CHECK(m.allocated_mb == base.allocated_mb + 6.5);
    CHECK(m.reserved_mb == base.reserved_mb + 6.5);
    CHECK(m.peak_mb == base.allocated_mb + 6.5);
  }
  m = app::cuda_memory();
  CHECK(m.allocated_mb == base.allocated_mb);
  CHECK(m.reserved_mb == base.reserved_mb + 6.5);
  CHECK(m.peak_mb == base.allocated_mb + 6.5);
  eng::cuda::alloc::reset_peak();
  CHECK(app::cuda_memory().peak_mb == base.allocated_mb);
  eng::cuda::alloc::empty_cache();
  m = app::cuda_memory();
  CHECK(m.reserved_mb == m.allocated_mb);
  CHECK(m.reserved_mb == base.reserved_mb);
}

TEST_CASE("train prints: a cuda run logs the device memory fields", "[apps][train_prints][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  TempDir out("train_prints_cuda");
  app::TrainConfig c = small_config(out.path.string());
  c.device = "cuda";
  c.precision = "fp32";
  c.iters = 2;
  c.log_every = 1;
  REQUIRE(app::train(c) == 0);
  const auto lines = training_lines(jsonl(out / "metrics.jsonl"));
  REQUIRE(lines.size() == 2);
  for (const auto& j : lines) {
    INFO(j.dump());
    const double alloc = j["mem_allocated_mb"].get<double>(), reserved = j["mem_reserved_mb"].get<double>(),
                 peak = j["mem_peak_mb"].get<double>();
    CHECK(alloc > 0.0);
    CHECK(reserved >= alloc);
    CHECK(peak >= alloc);
    CHECK(j["memory_mb"].get<double>() == peak);  // the compatible field: the run's peak
    CHECK(j["rss_mb"].get<double>() > 0.0);
    CHECK(j["data_wait"].get<double>() >= 0.0);
    CHECK(j["data_wait"].get<double>() <= 1.0);
  }
  CHECK(lines.back()["eta_s"].get<double>() == 0.0);
}
