// Training stays stable on awkward data (issue 18 item 6): tiny_ssd trained with the demo's
// learning rate on the "awkward" synthetic preset (small faint objects that the zoom-out makes
// sub-pixel, an image without objects, zero-area, past-border and tiny difficult boxes) has no
// step whose loss exceeds a few times the running median of the steps before it; every log
// line carries the interval's largest gradient norm; --clip-grad-norm bounds the update.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/loss_meter.h"
#include "common/trainer.h"
#include "data/synth_awkward.h"
#include "engine/io/safetensors.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "models/detection_model.h"
#include "temp_dir.h"
#include "test_helpers.h"

using test::TempDir;

namespace {

// 48 awkward images of 320x240 with 3 classes, written once per test process.
const std::string& awkward_root() {
  static TempDir dir("stability_data");
  static const bool written = [] {
    data::write_awkward_voc_dataset(dir.path.string(), 48, 0, 7, 320, 240, 3);
    return true;
  }();
  (void)written;
  static const std::string root = dir.path.string();
  return root;
}

std::vector<nlohmann::json> training_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("loss") && j.contains("lr")) out.push_back(j);
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

app::TrainConfig awkward_config(const std::string& out) {
  app::TrainConfig c;
  c.arch = "tiny_ssd";
  c.data = awkward_root();
  c.input_size = 64;  // 128 in the report; 64 keeps the test fast and makes the boxes smaller still
  c.batch = 16;
  c.lr = 0.05;        // the demo's recipe
  c.workers = 1;
  c.log_every = 1;    // one line per step: the per-step loss
  c.save_every = 0;
  c.seed = 3;
  c.out = out;
  return c;
}

}  // namespace

TEST_CASE("training stability: no step's loss exceeds 3x the running median on awkward data", "[apps][train]") {
  TempDir out("stability_run");
  app::TrainConfig c = awkward_config(out.path.string());
  c.iters = 120;
  REQUIRE(app::train(c) == 0);
  const std::vector<nlohmann::json> lines = training_lines(out / "metrics.jsonl");
  REQUIRE(lines.size() == 120);
  std::vector<double> loss;
  for (const auto& j : lines) {
    REQUIRE(j.contains("grad_norm_max"));
    REQUIRE(j["grad_norm_max"].is_number());  // null would mean a non-finite norm
    const double g = j["grad_norm_max"].get<double>();
    CHECK(std::isfinite(g));
    CHECK(g > 0);
    loss.push_back(j["loss"].get<double>());
    REQUIRE(std::isfinite(loss.back()));
  }
  constexpr size_t kWindow = 20;
  double worst = 0;
  for (size_t i = kWindow; i < loss.size(); ++i) {
    const double m = median(std::vector<double>(loss.begin() + static_cast<long>(i - kWindow), loss.begin() + static_cast<long>(i)));
    worst = std::max(worst, loss[i] / m);
    INFO("iteration " << i + 1 << ": loss " << loss[i] << ", running median " << m);
    CHECK(loss[i] <= 3 * m);
  }
  WARN("largest loss / running median of the 20 steps before: " << worst);
  // And it learned something (not a run whose loss is flat because nothing trains). The ratio
  // of the last 20 steps' median to the first 20's is a noisy figure on this chaotic recipe:
  // 0.83 with the default CPU convolutions (Winograd on the 3x3 layers it takes), lower with
  // ENGINE_CPU_CONV=im2col; a run that does not train stays near 1.
  CHECK(median(std::vector<double>(loss.end() - 20, loss.end())) < 0.9 * median(std::vector<double>(loss.begin(), loss.begin() + 20)));
}

TEST_CASE("training: --clip-grad-norm bounds the update, the logged norm is the one before clipping", "[apps][train]") {
  // Two steps with lr 0.05, no warmup, no weight decay: clipped to 1e-9 the parameters move by
  // at most lr * (1 + 0.9) * 1e-9 (momentum 0.9); unclipped they move visibly.
  auto run = [](double clip, const std::string& dir) {
    app::TrainConfig c = awkward_config(dir);
    c.iters = 2;
    c.warmup = 0;
    c.wd = 0;
    c.clip_grad_norm = clip;
    REQUIRE(app::train(c) == 0);
    return training_lines(dir + "/metrics.jsonl");
  };
  TempDir clipped("stability_clip"), free_run("stability_noclip");
  const auto lc = run(1e-9, clipped.path.string());
  const auto lf = run(0, free_run.path.string());
  REQUIRE(lc.size() == 2);
  REQUIRE(lf.size() == 2);
  // Step 1 is the same computation in both runs: the same norm is logged (before clipping).
  CHECK(lc[0]["grad_norm_max"].get<double>() == lf[0]["grad_norm_max"].get<double>());
  CHECK(lc[0]["grad_norm_max"].get<double>() > 1e-3);

  // The initial weights: what Run::setup_model makes for this configuration.
  models::ModelConfig mc;
  mc.arch = "tiny_ssd";
  mc.num_classes = 4;
  mc.anchor_preset = "voc";
  mc.input_size = 64;
  eng::manual_seed(3);
  const auto model = models::create_model(mc);
  std::map<std::string, eng::Tensor> saved_c, saved_f;
  for (auto& [name, t] : eng::io::load_safetensors(clipped / "last.safetensors").tensors) saved_c[name] = t;
  for (auto& [name, t] : eng::io::load_safetensors(free_run / "last.safetensors").tensors) saved_f[name] = t;
  double moved_clipped = 0, moved_free = 0;
  for (const auto& [name, p] : model->named_parameters()) {
    INFO(name);
    REQUIRE(saved_c.count(name) == 1);
    REQUIRE(saved_f.count(name) == 1);
    const std::vector<double> p0 = p.to(eng::DType::f64).to_vector<double>();
    const std::vector<double> pc = saved_c[name].to(eng::DType::f64).to_vector<double>();
    const std::vector<double> pf = saved_f[name].to(eng::DType::f64).to_vector<double>();
    for (size_t i = 0; i < p0.size(); ++i) {
      moved_clipped = std::max(moved_clipped, std::fabs(pc[i] - p0[i]));
      moved_free = std::max(moved_free, std::fabs(pf[i] - p0[i]));
    }
  }
  CHECK(moved_clipped <= 1e-7);  // float rounding of p - lr * tiny
  CHECK(moved_free > 1e-4);
}

TEST_CASE("training: --clip-grad-norm must be finite and >= 0", "[apps][train]") {
  TempDir out("stability_bad_clip");
  app::TrainConfig c = awkward_config(out.path.string());
  c.iters = 1;
  for (double bad : {-1.0, std::nan(""), static_cast<double>(INFINITY)}) {
    c.clip_grad_norm = bad;
    INFO("--clip-grad-norm " << bad);
    // app::check (apps/common/config_check.h), which app::train calls first.
    REQUIRE_THROWS_WITH(app::train(c), Catch::Matchers::Contains("--clip-grad-norm: ") &&
                                           Catch::Matchers::Contains("is not a finite number >= 0"));
  }
}

// The graphed step clips and measures inside the graph: the same norms and losses as the
// eager step on the same device, exactly (the graph replays the same kernels).
TEST_CASE("training: --clip-grad-norm and grad_norm_max under --cuda-graph follow the eager cuda step",
          "[apps][train][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  auto run = [](bool graph, const std::string& dir) {
    app::TrainConfig c = awkward_config(dir);
    c.device = "cuda";
    c.precision = "fp32";
    c.batch = 4;
    c.iters = 5;
    c.warmup = 0;
    c.clip_grad_norm = 0.5;
    c.cuda_graph = graph;
    c.deterministic = true;  // two eager runs otherwise differ in the last bits (cuDNN's timed algorithm search)
    REQUIRE(app::train(c) == 0);
    return training_lines(dir + "/metrics.jsonl");
  };
  TempDir eager("stability_eager"), graphed("stability_graphed");
  const auto le = run(false, eager.path.string()), lg = run(true, graphed.path.string());
  REQUIRE(le.size() == 5);
  REQUIRE(lg.size() == 5);
  for (size_t i = 0; i < le.size(); ++i) {
    INFO("iteration " << i + 1);
    const double ge = le[i]["grad_norm_max"].get<double>(), gg = lg[i]["grad_norm_max"].get<double>();
    CHECK(ge > 0.5);  // clipping is active: the norm before clipping is above the limit
    CHECK(gg == ge);  // exact: the same kernels on the same values
    CHECK(lg[i]["loss"].get<double>() == le[i]["loss"].get<double>());
  }
}

TEST_CASE("loss meter: the interval's largest gradient norm, NaN-sticky", "[apps][train]") {
  auto scalar = [](double v) { return eng::full({}, v, eng::TensorOptions(eng::DType::f32)); };
  auto step = [&](app::LossMeter& m, int64_t it, double norm) {
    models::LossParts p;
    p.total = scalar(1), p.classification = scalar(0.5), p.box_regression = scalar(0.5);
    m.add(p, it);
    m.add_grad_norm(scalar(norm));
  };
  app::LossMeter meter;
  step(meter, 1, 3);
  step(meter, 2, 7);
  REQUIRE(meter.check().finite);
  step(meter, 3, 5);  // a second read in the same interval
  REQUIRE(meter.check().finite);
  app::LossMeter::Interval r = meter.take_interval();
  CHECK(r.steps == 3);
  CHECK(r.has_grad_norm);
  CHECK(r.grad_norm_max == 7);
  // The next interval starts afresh; a non-finite norm (NaN or inf) makes it NaN, whatever follows.
  step(meter, 4, 2);
  step(meter, 5, std::numeric_limits<double>::infinity());
  step(meter, 6, 9);
  REQUIRE(meter.check().finite);  // the losses themselves are finite
  r = meter.take_interval();
  CHECK(std::isnan(r.grad_norm_max));
  step(meter, 7, std::nan(""));
  REQUIRE(meter.check().finite);
  step(meter, 8, 4);
  REQUIRE(meter.check().finite);
  CHECK(std::isnan(meter.take_interval().grad_norm_max));
  // running_max itself: max of the pair; NaN once either side is non-finite.
  CHECK(app::running_max(scalar(2), scalar(3)).item<double>() == 3);
  CHECK(app::running_max(scalar(3), scalar(2)).item<double>() == 3);
  CHECK(std::isnan(app::running_max(scalar(std::nan("")), scalar(2)).item<double>()));
  CHECK(std::isnan(app::running_max(scalar(1), scalar(std::numeric_limits<double>::infinity())).item<double>()));
  // No norm added: none reported.
  app::LossMeter plain;
  models::LossParts p;
  p.total = scalar(1), p.classification = scalar(0.5), p.box_regression = scalar(0.5);
  plain.add(p, 1);
  REQUIRE(plain.check().finite);
  CHECK_FALSE(plain.take_interval().has_grad_norm);
}

// A batch whose images have no training box left (all dropped as sub-pixel, or none
// annotated): no positive, so no hard negative either; the normaliser is 1 / max(1, 0) = 1
// and the loss and its gradients are 0, never 0 / 0.
TEST_CASE("training: tiny_ssd's loss on a batch without positives is 0 with zero gradients", "[apps][train]") {
  models::ModelConfig mc;
  mc.arch = "tiny_ssd";
  mc.num_classes = 4;
  mc.input_size = 64;
  eng::manual_seed(1);
  const auto model = models::create_model(mc);
  model->train();
  const eng::Tensor images = test::random_f32({2, 3, 64, 64}, 7);
  const models::HeadOutputs heads = models::forward_heads_f32(*model, images);
  models::Targets t;
  t.boxes = eng::zeros({2, 1, 4}, eng::TensorOptions(eng::DType::f32));
  t.labels = eng::zeros({2, 1}, eng::TensorOptions(eng::DType::i64));
  t.counts = eng::zeros({2}, eng::TensorOptions(eng::DType::i64));
  const models::LossParts parts = model->loss(heads, t);
  CHECK(parts.total.item<double>() == 0);
  CHECK(parts.classification.item<double>() == 0);
  CHECK(parts.box_regression.item<double>() == 0);
  parts.total.backward();
  const eng::Tensor norm = eng::optim::grad_norm(model->named_parameters());
  CHECK(norm.item<double>() == 0);
}
