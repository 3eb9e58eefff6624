// The training loop's host round trips (apps/common/trainer.cpp): the losses are summed on
// the device and read back every --log-every iterations (same numbers as reading every
// step), a NaN between two reads stops the run naming the interval without touching the
// last checkpoint, and --profile N writes one profile line (counters, time per phase).
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "common/loss_meter.h"
#include "common/trainer.h"
#include "engine/counters.h"
#include "engine/ops.h"
#include "data/synth.h"
#include "engine/io/safetensors.h"
#include "synth_voc.h"
#include "temp_dir.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using test::TempDir;

namespace {

// 16 + 4 small generated images, written once per test process.
const std::string& dataset_root() {
  static const test::SynthVoc d("ssd_train_sync_data", 16, 4, 17);
  return d.root;
}

app::TrainConfig small_config(const std::string& out) {
  app::TrainConfig c;
  c.arch = "tiny_ssd";
  c.data = dataset_root();
  c.input_size = 64;
  c.batch = 4;
  c.workers = 1;
  c.log_every = 1;
  c.out = out;
  c.seed = 7;
  c.lr = 0.02;
  c.warmup = 2;
  return c;
}

std::vector<nlohmann::json> jsonl(const fs::path& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// iteration -> the training line.
std::map<int64_t, nlohmann::json> train_lines(const fs::path& path) {
  std::map<int64_t, nlohmann::json> out;
  for (const auto& j : jsonl(path))
    if (j.contains("loss") && j.contains("lr")) out[j["iteration"].get<int64_t>()] = j;
  return out;
}

std::vector<nlohmann::json> events(const fs::path& path, const std::string& name) {
  std::vector<nlohmann::json> out;
  for (const auto& j : jsonl(path))
    if (j.value("event", "") == name) out.push_back(j);
  return out;
}

const char* kPhases[] = {"data", "forward", "loss", "backward", "optimizer"};

}  // namespace

TEST_CASE("ssd_train: losses read every --log-every iterations are the means of the per-step losses",
          "[apps][ssd_train]") {
  TempDir every("ssd_train_sync_every"), third("ssd_train_sync_third");
  app::TrainConfig c = small_config(every.path.string());
  c.iters = 6;
  REQUIRE(app::train(c) == 0);
  c.out = third.path.string();
  c.log_every = 3;
  REQUIRE(app::train(c) == 0);
  const auto per_step = train_lines(every.path / "metrics.jsonl");
  const auto per_three = train_lines(third.path / "metrics.jsonl");
  REQUIRE(per_step.size() == 6);
  REQUIRE(per_three.size() == 2);
  for (int64_t end : {3, 6}) {
    for (const char* key : {"loss", "loss_cls", "loss_box"}) {
      double mean = 0;
      for (int64_t i = end - 2; i <= end; ++i) mean += per_step.at(i)[key].get<double>() / 3;
      INFO(key << " at iteration " << end);
      CHECK(per_three.at(end)[key].get<double>() == Approx(mean).epsilon(1e-5));
    }
  }
}

TEST_CASE("ssd_train: a non-finite loss between two reads names the interval and keeps the last checkpoint",
          "[apps][ssd_train]") {
  TempDir out("ssd_train_sync_nan");
  // A healthy start that saves a checkpoint at iteration 2...
  app::TrainConfig c = small_config(out.path.string());
  c.iters = 2;
  c.save_every = 2;
  REQUIRE(app::train(c) == 0);
  const fs::path last = out.path / "last.safetensors";
  const auto saved_bytes = fs::file_size(last);
  const auto saved_time = fs::last_write_time(last);
  // ... then a resumed run that diverges; the losses are read only every 4 iterations and
  // it would save every 8 (at lr 1e12 the loss is huge but finite at iterations 3-4, NaN in
  // 5-8: seed 7).
  const std::string args = "--resume '" + last.string() + "' --data '" + dataset_root() +
                           "' --input-size 64 --batch 4 --workers 1 --iters 40 --lr 1e12 --warmup 0 --log-every 4 "
                           "--save-every 8 --out '" + out.path.string() + "'";
  const test::AppRun r = test::run_app("ssd_train", args);
  INFO(r.out << r.err);
  CHECK(r.status == 1);
  const auto nan = events(out.path / "metrics.jsonl", "non-finite loss");
  REQUIRE(nan.size() == 1);
  const int64_t first = nan[0]["first_iteration"].get<int64_t>(), at = nan[0]["iteration"].get<int64_t>();
  CHECK(at % 4 == 0);         // found at a read
  CHECK(at - first + 1 <= 4);  // which covers the steps since the previous read
  CHECK(first > 2);
  const std::string where = first == at ? "at iteration " + std::to_string(at)
                                        : "in iterations " + std::to_string(first) + "-" + std::to_string(at);
  CHECK(r.out.find("ssd_train: the loss is") != std::string::npos);
  CHECK(r.out.find(where + "; stopping (the last checkpoint, if any, is untouched)") != std::string::npos);
  // The checkpoint on disk is the healthy run's: the diverged model was never saved.
  const auto ck = eng::io::load_safetensors(last.string());
  CHECK(std::stoll(ck.metadata.at("iteration")) == 2);
  CHECK(fs::file_size(last) == saved_bytes);
  CHECK(fs::last_write_time(last) == saved_time);
  int64_t non_finite = 0;
  for (const auto& [name, t] : ck.tensors) {
    if (t.dtype() != eng::DType::f32) continue;
    for (float v : t.to_vector<float>()) non_finite += std::isfinite(v) ? 0 : 1;
  }
  CHECK(non_finite == 0);
}

TEST_CASE("ssd_train: --profile N writes one profile line after N steps (cpu: wall clock, no device work)",
          "[apps][ssd_train]") {
  TempDir out("ssd_train_sync_profile");
  app::TrainConfig c = small_config(out.path.string());
  c.iters = 4;
  c.profile = 2;
  REQUIRE(app::train(c) == 0);
  const auto p = events(out.path / "metrics.jsonl", "profile");
  REQUIRE(p.size() == 1);
  CHECK(p[0]["iteration"].get<int64_t>() == 3);
  CHECK(p[0]["timer"].get<std::string>() == "wall_clock");
  double sum = 0;
  for (const char* phase : kPhases) {
    INFO(phase);
    const double ms = p[0][std::string(phase) + "_ms"].get<double>();
    CHECK(ms >= 0);
    CHECK(p[0]["host_" + std::string(phase) + "_ms"].get<double>() == ms);
    sum += ms;
  }
  CHECK(p[0]["forward_ms"].get<double>() > 0);
  CHECK(p[0]["backward_ms"].get<double>() > 0);
  CHECK(p[0]["step_ms"].get<double>() == Approx(sum));
  for (const char* k : {"launches", "host_syncs", "device_allocs", "pinned_allocs", "bytes_h2d", "bytes_d2h"})
    CHECK(p[0][k].get<uint64_t>() == 0);  // the CPU counts nothing
  REQUIRE(p[0]["phases"].size() == 5);
  for (const char* phase : kPhases) CHECK(p[0]["phases"][phase]["launches"].get<uint64_t>() == 0);

  // A run that ends first says so and writes no profile line.
  TempDir short_out("ssd_train_sync_profile_short");
  const test::AppRun r = test::run_app(
      "ssd_train", "--arch tiny_ssd --data '" + dataset_root() + "' --input-size 64 --batch 4 --workers 1 --iters 2 "
                   "--profile 2 --out '" + short_out.path.string() + "'");
  CHECK(r.status == 0);
  CHECK(r.out.find("--profile 2: the run ended after 2 steps, before the step to profile") != std::string::npos);
  CHECK(events(short_out.path / "metrics.jsonl", "profile").empty());
}

TEST_CASE("ssd_train: --profile on cuda times the phases with CUDA events and counts the step",
          "[apps][ssd_train][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  TempDir out("ssd_train_sync_profile_cuda");
  const std::string args = "--arch tiny_ssd --data '" + dataset_root() +
                           "' --input-size 64 --batch 4 --workers 1 --iters 3 --profile 2 --device cuda "
                           "--precision fp32 --out '" + out.path.string() + "'";
  const test::AppRun r = test::run_app("ssd_train", args);
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("profile of iteration 3: launches ") != std::string::npos);
  CHECK(r.out.find("device time (CUDA events): data ") != std::string::npos);
  const auto p = events(out.path / "metrics.jsonl", "profile");
  REQUIRE(p.size() == 1);
  CHECK(p[0]["timer"].get<std::string>() == "cuda_events");
  for (const char* phase : kPhases) CHECK(p[0][std::string(phase) + "_ms"].get<double>() >= 0);
  // The emulator runs kernels on the host as they are launched: device time is real time.
  CHECK(p[0]["forward_ms"].get<double>() > 0);
  CHECK(p[0]["backward_ms"].get<double>() > 0);
  CHECK(p[0]["launches"].get<uint64_t>() > 100);
  // Per phase: the launches add up to the step's, and the forward and backward launch.
  uint64_t launches = 0, syncs = 0;
  for (const char* phase : kPhases) {
    launches += p[0]["phases"][phase]["launches"].get<uint64_t>();
    syncs += p[0]["phases"][phase]["host_syncs"].get<uint64_t>();
  }
  CHECK(launches == p[0]["launches"].get<uint64_t>());
  CHECK(syncs == p[0]["host_syncs"].get<uint64_t>());
  CHECK(p[0]["phases"]["forward"]["launches"].get<uint64_t>() > 0);
  CHECK(p[0]["phases"]["backward"]["launches"].get<uint64_t>() > 0);
  CHECK(r.out.find("launches / host syncs per phase: data ") != std::string::npos);
  // The batch went up: at least the images (4 x 3 x 64 x 64 uint8 values: on CUDA they
  // travel as bytes and are normalised on the device) and the targets.
  CHECK(p[0]["bytes_h2d"].get<uint64_t>() > 4u * 3 * 64 * 64);
  // The loop itself adds no sync: the batch comes from pinned memory (data), nothing is read
  // back in the forward, backward or optimizer step.
  for (const char* phase : {"data", "forward", "backward", "optimizer"}) {
    INFO(phase);
    CHECK(p[0]["phases"][phase]["host_syncs"].get<uint64_t>() == 0);
  }
  // The loss builds its targets on the device: the whole step is free of host syncs.
  CHECK(p[0]["host_syncs"].get<uint64_t>() == 0);
}

TEST_CASE("ssd_train: the loss meter sums on the device and reads back once per check", "[apps][ssd_train][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  auto parts = [](float cls, float box) {
    models::LossParts p;
    p.classification = eng::scalar_tensor(cls, eng::TensorOptions().device(eng::Device::cuda()));
    p.box_regression = eng::scalar_tensor(box, eng::TensorOptions().device(eng::Device::cuda()));
    p.total = eng::add(p.classification, p.box_regression);
    return p;
  };
  const auto p1 = parts(1.5f, 0.25f), p2 = parts(2.5f, 0.75f), p3 = parts(3.0f, 1.0f);
  app::LossMeter meter;
  const eng::cuda::Counters c0 = eng::cuda::counters();
  meter.add(p1, 1);
  meter.add(p2, 2);
  meter.add(p3, 3);
  const eng::cuda::Counters added = eng::cuda::counters() - c0;
  CHECK(added.host_syncs == 0);
  CHECK(added.launches == 6);  // the first step is kept as is, then three adds per step
  CHECK(meter.pending() == 3);
  const eng::cuda::Counters c1 = eng::cuda::counters();
  const app::LossMeter::Check r = meter.check();
  const eng::cuda::Counters read = eng::cuda::counters() - c1;
  CHECK(read.host_syncs == 1);  // the three sums in one copy
  CHECK(r.finite);
  CHECK(r.first_iteration == 1);
  CHECK(r.last_iteration == 3);
  CHECK(r.loss == Approx(9.0));
  CHECK(meter.pending() == 0);
  const app::LossMeter::Interval m = meter.take_interval();
  CHECK(m.steps == 3);
  CHECK(m.loss == Approx(3.0));
  CHECK(m.cls == Approx(7.0 / 3));
  CHECK(m.box == Approx(2.0 / 3));
  // A NaN in one step of the next read makes that read non-finite; the interval restarts.
  meter.add(p1, 4);
  meter.add(parts(std::nanf(""), 1.0f), 5);
  meter.add(p2, 6);
  const app::LossMeter::Check bad = meter.check();
  CHECK_FALSE(bad.finite);
  CHECK(std::isnan(bad.loss));
  CHECK(bad.first_iteration == 4);
  CHECK(bad.last_iteration == 6);
  CHECK(meter.check().finite);  // nothing pending
}

// Named loss components (Faster R-CNN's four losses) are summed beside the three parts and
// read in the same copy: still one host sync per check, their interval means by name.
TEST_CASE("ssd_train: the loss meter's named components sum on the device and read back in the same copy",
          "[apps][ssd_train][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const auto on = eng::TensorOptions().device(eng::Device::cuda());
  auto parts = [&](float a, float b, float c, float d) {
    models::LossParts p;
    const eng::Tensor ta = eng::scalar_tensor(a, on), tb = eng::scalar_tensor(b, on);
    const eng::Tensor tc = eng::scalar_tensor(c, on), td = eng::scalar_tensor(d, on);
    p.classification = eng::add(ta, tc);
    p.box_regression = eng::add(tb, td);
    p.total = eng::add(p.classification, p.box_regression);
    p.components = {{"loss_objectness", ta}, {"loss_rpn_box_reg", tb}, {"loss_classifier", tc}, {"loss_box_reg", td}};
    return p;
  };
  const auto p1 = parts(1, 2, 3, 4), p2 = parts(0.5f, 0.25f, 0.125f, 2), p3 = parts(2, 0, 1, 1);
  app::LossMeter meter;
  const eng::cuda::Counters c0 = eng::cuda::counters();
  meter.add(p1, 1);
  meter.add(p2, 2);
  meter.add(p3, 3);
  const eng::cuda::Counters added = eng::cuda::counters() - c0;
  CHECK(added.host_syncs == 0);
  CHECK(added.launches == 14);  // the first step is kept as is, then 3 + 4 adds per step
  const eng::cuda::Counters c1 = eng::cuda::counters();
  const app::LossMeter::Check r = meter.check();
  CHECK((eng::cuda::counters() - c1).host_syncs == 1);  // parts and components in one copy
  CHECK(r.finite);
  CHECK(r.loss == Approx(10 + 2.875 + 4));
  const app::LossMeter::Interval m = meter.take_interval();
  REQUIRE(m.components.size() == 4);
  CHECK(m.components[0].first == "loss_objectness");
  CHECK(m.components[0].second == Approx(3.5 / 3));
  CHECK(m.components[1].second == Approx(2.25 / 3));
  CHECK(m.components[2].first == "loss_classifier");
  CHECK(m.components[2].second == Approx(4.125 / 3));
  CHECK(m.components[3].second == Approx(7.0 / 3));
  double sum = 0;
  for (const auto& kv : m.components) sum += kv.second;
  CHECK(sum == Approx(m.loss));
  // The next interval starts from zero; a step without the run's components is refused, as
  // are device-summed (graphed) steps, which carry none.
  meter.add(p2, 4);
  meter.check();
  const app::LossMeter::Interval m2 = meter.take_interval();
  REQUIRE(m2.components.size() == 4);
  CHECK(m2.components[3].second == Approx(2.0));
  models::LossParts plain = p1;
  plain.components.clear();
  CHECK_THROWS_WITH(meter.add(plain, 5), Catch::Contains("0 loss components") && Catch::Contains("had 4"));
  models::LossParts renamed = p1;
  renamed.components[1].first = "loss_rpn";
  CHECK_THROWS_WITH(meter.add(renamed, 5), Catch::Contains("'loss_rpn'") && Catch::Contains("'loss_rpn_box_reg'"));
  CHECK_THROWS_WITH(meter.add_sums(eng::zeros({3}, on), 5, 6), Catch::Contains("carry none"));
}
