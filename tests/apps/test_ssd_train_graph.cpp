// ssd_train --cuda-graph (apps/common/graphed_train_step.h, trainer.cpp): the training step
// of each input size captured into a CUDA graph after eager warm-ups and replayed. On the
// emulator: the same losses and the same final weights as the eager loop, a replayed step
// costs one launch and no host sync or driver allocation, an image with more boxes than
// --max-gt is a one-line error naming it; on the CPU the flag is refused.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "common/graphed_train_step.h"
#include "common/loss_meter.h"
#include "common/trainer.h"
#include "data/synth.h"
#include "engine/counters.h"
#include "engine/cuda_context.h"
#include "engine/io/safetensors.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "step_cost.h"
#include "temp_dir.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using eng::Tensor;
using test::TempDir;

namespace {

// 12 small generated training images (and 3 in the "test" split) with 1 to 4 objects each,
// written once per test process.
const std::string& dataset_root() {
  static TempDir dir("ssd_train_graph_data");
  static const bool written = [] {
    data::SynthOptions o;
    o.width = 96;
    o.height = 80;
    o.num_classes = 3;
    o.min_objects = 1;
    o.max_objects = 4;
    data::write_synth_dataset(dir.path.string(), data::SynthFormat::Voc, 12, 3, 23, o);
    return true;
  }();
  (void)written;
  static const std::string root = dir.path.string();
  return root;
}

app::TrainConfig config(const std::string& out, bool graph) {
  app::TrainConfig c;
  c.arch = "tiny_ssd";
  c.data = dataset_root();
  c.input_size = 64;
  c.batch = 2;
  c.iters = 6;
  c.workers = 0;
  c.log_every = 1;
  c.save_every = 0;
  c.out = out;
  c.seed = 5;
  c.lr = 0.02;
  c.warmup = 4;  // the lr changes at every step of the run: replays must follow it
  c.device = "cuda";
  c.precision = "fp32";
  // Deterministic algorithms: otherwise cuDNN's algorithm search (timed, also on the
  // emulator) may pick different algorithms in two runs of one process, and two EAGER runs
  // already differ in the last bits.
  c.deterministic = true;
  c.cuda_graph = graph;
  return c;
}

// iteration -> {loss, loss_cls, loss_box, lr}.
std::map<int64_t, std::vector<double>> losses(const fs::path& metrics) {
  std::map<int64_t, std::vector<double>> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("loss") || !j.contains("lr")) continue;
    out[j["iteration"].get<int64_t>()] = {j["loss"].get<double>(), j["loss_cls"].get<double>(),
                                          j["loss_box"].get<double>(), j["lr"].get<double>()};
  }
  return out;
}

// A pinned host tensor holding `values`.
template <typename T>
Tensor pinned(const std::vector<T>& values, const eng::Shape& shape, eng::DType dt) {
  Tensor t = eng::empty_pinned(shape, dt);
  std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t;
}

}  // namespace

namespace {

// Trains with and without --cuda-graph and requires the same metrics and checkpoint.
void check_same_as_eager(const std::vector<int>& multiscale, int64_t iters, const std::string& precision = "fp32",
                         int64_t eval_every = 0) {
  TempDir eager_dir("train_graph_eager"), graph_dir("train_graph_replay");
  app::TrainConfig ce = config(eager_dir.path.string(), false), cg = config(graph_dir.path.string(), true);
  if (eval_every > 0) {
    ce.val = cg.val = dataset_root();
    ce.eval_every = cg.eval_every = eval_every;
  }
  ce.multiscale = cg.multiscale = multiscale;
  ce.precision = cg.precision = precision;
  ce.iters = cg.iters = iters;
  REQUIRE(app::train(ce) == 0);
  REQUIRE(app::train(cg) == 0);

  const auto want = losses(eager_dir.path / "metrics.jsonl");
  const auto got = losses(graph_dir.path / "metrics.jsonl");
  REQUIRE(want.size() == static_cast<size_t>(iters));
  REQUIRE(got.size() == static_cast<size_t>(iters));
  for (const auto& [it, w] : want) {
    INFO("iteration " << it);
    REQUIRE(got.count(it) == 1);
    CHECK(got.at(it) == w);  // exact: the same kernels on the same values
  }
  CHECK(want.at(1)[3] != want.at(iters)[3]);  // the lr did change during the run

  const auto a = eng::io::load_safetensors((eager_dir.path / "last.safetensors").string());
  const auto b = eng::io::load_safetensors((graph_dir.path / "last.safetensors").string());
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    INFO(name);
    REQUIRE(b.contains(name));
    CHECK(b.get(name).to_vector<double>() == t.to_vector<double>());  // exact, optimizer state included
  }
}

}  // namespace

TEST_CASE("ssd_train --cuda-graph: same losses and final weights as the eager loop", "[apps][ssd_train][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // Iterations 1-2 are the eager warm-ups, 3 is captured (and replayed once), 4-6 replay.
  check_same_as_eager({}, 6);
}

TEST_CASE("ssd_train --cuda-graph: same losses and final weights as the eager loop in bf16",
          "[apps][ssd_train][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_same_as_eager({}, 5, "bf16");  // ssd_train's default precision on CUDA
}

TEST_CASE("ssd_train --cuda-graph: evaluations between replays change nothing", "[apps][ssd_train][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // The evaluation runs the model eagerly (eval mode, the base size) between replays.
  check_same_as_eager({}, 6, "fp32", /*eval_every=*/2);
}

TEST_CASE("ssd_train --cuda-graph: the NaN stop names the same iterations as the eager loop",
          "[apps][ssd_train][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  std::vector<nlohmann::json> events[2];
  for (int graph = 0; graph < 2; ++graph) {
    TempDir out(graph ? "train_graph_nan_g" : "train_graph_nan_e");
    app::TrainConfig c = config(out.path.string(), graph == 1);
    c.lr = 1e12;  // diverges within a few steps
    c.warmup = 0;
    c.iters = 12;
    c.log_every = 4;
    REQUIRE(app::train(c) == 1);
    std::ifstream in(out.path / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const auto j = nlohmann::json::parse(line);
      if (j.value("event", "") == "non-finite loss") events[graph].push_back(j);
    }
    CHECK_FALSE(fs::exists(out.path / "last.safetensors"));  // the diverged model is never saved
  }
  REQUIRE(events[0].size() == 1);
  REQUIRE(events[1].size() == 1);
  CHECK(events[1][0]["iteration"] == events[0][0]["iteration"]);
  CHECK(events[1][0]["first_iteration"] == events[0][0]["first_iteration"]);
}

TEST_CASE("ssd_train --cuda-graph: multiscale, one graph per input size, same as the eager loop",
          "[apps][ssd_train][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_same_as_eager({64, 80}, 10);
}

namespace {

// `arch` (tiny_ssd by default) at `size` on CUDA with SGD, a pinned batch of 2 images and
// targets padded to 100.
struct SmallSetup {
  static constexpr int64_t batch = 2, max_gt = 100;
  int64_t size;
  std::shared_ptr<models::DetectionModel> model;
  std::unique_ptr<eng::optim::SGD> opt;
  Tensor images;
  models::Targets targets;

  explicit SmallSetup(int64_t s, const std::string& arch = "tiny_ssd") : size(s) {
    eng::manual_seed(3);
    models::ModelConfig mc;
    mc.arch = arch;
    mc.num_classes = 4;
    mc.input_size = size;
    mc.anchor_preset = "voc";
    model = models::create_model(mc);
    model->to(eng::Device::cuda());
    model->train();
    eng::optim::SGDOptions o;
    o.lr = 1e-3;
    o.momentum = 0.9;
    o.weight_decay = 5e-4;
    opt = std::make_unique<eng::optim::SGD>(model->named_parameters(), o);
    images = make_images(size);
    std::vector<float> boxes(static_cast<size_t>(batch * max_gt * 4), 0.0f);
    std::vector<int64_t> labels(static_cast<size_t>(batch * max_gt), 0), counts = {2, 1};
    const float box[2][4] = {{6, 9, 38, 45}, {25, 19, 60, 58}};  // at 64 pixels
    const float k = static_cast<float>(size) / 64.0f;
    for (int64_t i = 0; i < batch; ++i) {
      for (int64_t j = 0; j < counts[static_cast<size_t>(i)]; ++j) {
        for (int c = 0; c < 4; ++c) boxes[static_cast<size_t>((i * max_gt + j) * 4 + c)] = box[j][c] * k;
        labels[static_cast<size_t>(i * max_gt + j)] = 1 + (i + j) % 3;
      }
    }
    targets = {pinned(boxes, {batch, max_gt, 4}, eng::DType::f32), pinned(labels, {batch, max_gt}, eng::DType::i64),
               pinned(counts, {batch}, eng::DType::i64)};
  }
  static Tensor make_images(int64_t size) {
    return pinned(eng::randn({batch, 3, size, size}).to_vector<float>(), {batch, 3, size, size}, eng::DType::f32);
  }
};

}  // namespace

TEST_CASE("ssd_train --cuda-graph: a replayed step is one launch, no host sync, no driver allocation",
          "[apps][ssd_train][cuda][step_cost]") {
  REQUIRE_CUDA_OR_SKIP();
  SmallSetup su(64);
  const int64_t batch = su.batch, size = su.size, max_gt = su.max_gt;
  eng::optim::SGD& opt = *su.opt;
  const Tensor& images = su.images;
  const models::Targets& targets = su.targets;
  app::GraphedTrainStep step(*su.model, opt);
  std::vector<app::GraphedTrainStep::Mode> modes;
  int64_t iteration = 0;
  const eng::cuda::Counters c = test::step_cost(
      [&] {
        opt.set_lr(1e-3 * static_cast<double>(iteration + 1));
        modes.push_back(step.step(images, targets, ++iteration));
      },
      /*warmup=*/3);
  using M = app::GraphedTrainStep::Mode;
  REQUIRE(modes == std::vector<M>{M::eager, M::eager, M::captured, M::replayed});
  CHECK(step.graphs() == 1);
  WARN("replayed tiny_ssd step at 64, batch 2: " << c.str());
  CHECK(c.launches == 1);  // the graph launch
  CHECK(c.host_syncs == 0);
  CHECK(c.driver_allocs() == 0);
  CHECK(c.bytes_d2h == 0);
  // Uploaded: the images, the padded targets and the optimizer's lr and step.
  const uint64_t inputs = static_cast<uint64_t>(batch * 3 * size * size * 4 + batch * max_gt * (16 + 8) + batch * 8);
  CHECK(c.bytes_h2d == inputs + sizeof(kern::OptimScalars));

  // The sums of the four steps reach the meter: finite, and covering iterations 1-4.
  app::LossMeter meter;
  step.flush(meter);
  const app::LossMeter::Check r = meter.check();
  CHECK(r.finite);
  CHECK(r.first_iteration == 1);
  CHECK(r.last_iteration == 4);
  CHECK(meter.take_interval().steps == 4);
}

TEST_CASE("ssd_train --cuda-graph: a batch of another size runs eagerly beside the graph",
          "[apps][ssd_train][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  SmallSetup su(64);
  app::GraphedTrainStep step(*su.model, *su.opt);
  using M = app::GraphedTrainStep::Mode;
  for (int64_t it = 1; it <= 3; ++it) step.step(su.images, su.targets, it);  // eager, eager, captured
  // One image (another left out as unreadable): eager, with the same gradients.
  const Tensor one_image = su.images.narrow(0, 0, 1).contiguous();
  const models::Targets one{su.targets.boxes.narrow(0, 0, 1).contiguous(),
                            su.targets.labels.narrow(0, 0, 1).contiguous(),
                            su.targets.counts.narrow(0, 0, 1).contiguous()};
  CHECK(step.step(one_image, one, 4) == M::eager);
  CHECK(step.step(su.images, su.targets, 5) == M::replayed);
  // Images already on the device (as an upload on another path gives them): a device copy
  // into the static input, then the replay.
  const Tensor on_device = su.images.to(eng::Device::cuda());
  CHECK(step.step(on_device, su.targets, 6) == M::replayed);
  CHECK(step.graphs() == 1);
  app::LossMeter meter;
  step.flush(meter);
  const app::LossMeter::Check r = meter.check();
  CHECK(r.finite);
  CHECK(r.last_iteration == 6);
}

TEST_CASE("ssd_train --cuda-graph: a graph keeps its size's anchors alive across a size change",
          "[apps][ssd_train][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  SmallSetup su(64);
  app::GraphedTrainStep step(*su.model, *su.opt);
  using M = app::GraphedTrainStep::Mode;
  for (int64_t it = 1; it <= 3; ++it) step.step(su.images, su.targets, it);  // eager, eager, captured
  REQUIRE(step.graphs() == 1);
  app::LossMeter meter;
  step.flush(meter);
  REQUIRE(meter.check().finite);
  // Another size replaces the model's cached anchors (the 64 ones are dropped from its
  // cache); NaN tensors of the same size then take any block that was freed.
  const eng::Shape anchor_shape = su.model->cached_anchors(eng::Device::cuda()).sizes();
  su.model->set_input_size(80);
  (void)su.model->cached_anchors(eng::Device::cuda());
  std::vector<Tensor> junk;
  for (int k = 0; k < 8; ++k) {
    junk.push_back(eng::empty(anchor_shape, eng::TensorOptions().device(eng::Device::cuda())));
    junk.back().fill_(std::nan(""));
  }
  su.model->set_input_size(64);
  REQUIRE(step.step(su.images, su.targets, 4) == M::replayed);
  step.flush(meter);
  CHECK(meter.check().finite);  // the replay read the 64 anchors, not a reused block
}

TEST_CASE("ssd_train --cuda-graph --profile: a replayed step is three launches with no host sync",
          "[apps][ssd_train][cuda][step_cost]") {
  REQUIRE_CUDA_OR_SKIP();
  TempDir out("train_graph_profile");
  app::TrainConfig c = config(out.path.string(), true);
  c.iters = 5;
  c.profile = 3;  // steps 1-2 eager, 3 captured, 4 (the profiled one) replayed
  REQUIRE(app::train(c) == 0);
  std::vector<nlohmann::json> profiles;
  std::ifstream in(out.path / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    if (j.value("event", "") == "profile") profiles.push_back(j);
  }
  REQUIRE(profiles.size() == 1);
  const auto& p = profiles[0];
  INFO(p.dump());
  CHECK(p["iteration"].get<int64_t>() == 4);
  // ssd_train sends uint8 images: the data phase normalises them on the device (1 launch),
  // then step() copies them into the graph's static input (1) and replays the graph (1).
  CHECK(p["launches"].get<int64_t>() == 3);
  CHECK(p["host_syncs"].get<int64_t>() == 0);
  CHECK(p["device_allocs"].get<int64_t>() == 0);
  CHECK(p["bytes_d2h"].get<int64_t>() == 0);
  CHECK(p["phases"]["data"]["launches"].get<int64_t>() == 1);     // normalise_images
  CHECK(p["phases"]["forward"]["launches"].get<int64_t>() == 2);  // the copy and the whole graph
}

namespace {

// The graphed step of `arch`: eager, eager, captured, then a replayed step that costs one
// launch, no host sync, no driver allocation and reads nothing back.
void check_graphed_step(const std::string& arch, int64_t size) {
  SmallSetup su(size, arch);
  app::GraphedTrainStep step(*su.model, *su.opt);
  int64_t iteration = 0;
  std::vector<app::GraphedTrainStep::Mode> modes;
  const eng::cuda::Counters c = test::step_cost(
      [&] { modes.push_back(step.step(su.images, su.targets, ++iteration)); }, /*warmup=*/3);
  using M = app::GraphedTrainStep::Mode;
  REQUIRE(modes == std::vector<M>{M::eager, M::eager, M::captured, M::replayed});
  WARN("replayed " << arch << " step at " << size << ", batch 2: " << c.str());
  CHECK(c.launches == 1);
  CHECK(c.host_syncs == 0);
  CHECK(c.driver_allocs() == 0);
  CHECK(c.bytes_d2h == 0);
  app::LossMeter meter;
  step.flush(meter);
  CHECK(meter.check().finite);
}

}  // namespace

// Four steps of a ResNet-50 model: about 30 s on the emulator.
TEST_CASE("ssd_train --cuda-graph: retinanet_resnet50_fpn's step captures and replays as one launch",
          "[apps][ssd_train][cuda][step_cost]") {
  REQUIRE_CUDA_OR_SKIP();
  check_graphed_step("retinanet_resnet50_fpn", 128);
}

// Four steps of VGG16 at 268, batch 2: about 3.5 min on the emulator.
TEST_CASE("ssd_train --cuda-graph: ssd300_vgg16's step captures and replays as one launch",
          "[apps][ssd_train][cuda][step_cost][slow]") {
  REQUIRE_CUDA_OR_SKIP();
  check_graphed_step("ssd300_vgg16", 268);  // its smallest input
}

TEST_CASE("ssd_train --cuda-graph: more boxes than --max-gt is a one-line error naming the image",
          "[apps][ssd_train][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  TempDir out("train_graph_maxgt");
  app::TrainConfig c = config(out.path.string(), true);
  c.max_gt = 1;  // the generated images have up to 4 objects
  try {
    app::train(c);
    FAIL("no error");
  } catch (const eng::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find(".jpg: ") != std::string::npos);
    CHECK(msg.find("training boxes, more than --max-gt 1") != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
}

TEST_CASE("ssd_train --cuda-graph: refused on the cpu with one line", "[apps][ssd_train]") {
  TempDir out("train_graph_cpu");
  app::TrainConfig c = config(out.path.string(), true);
  c.device = "cpu";
  c.precision = "";
  REQUIRE_THROWS_WITH(app::train(c), Catch::Contains("--cuda-graph needs --device cuda"));
}
