// ssdlite320_mobilenet_v3_large through the apps: ssd_detect --summary, a few ssd_train
// iterations on generated data (with BatchNorm in train mode), an exact resume from the
// checkpoint, and ssd_detect running the trained checkpoint.
#include <filesystem>
#include <fstream>
#include <cmath>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "metrics_jsonl.h"
#include "common/trainer.h"
#include "data/synth.h"
#include "engine/io/safetensors.h"
#include "synth_voc.h"
#include "temp_dir.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using test::TempDir;

namespace {

const std::string& dataset_root() {
  static const test::SynthVoc d("ssdlite_train_data", 8, 2, 13);
  return d.root;
}

app::TrainConfig small_config(const std::string& out) {
  app::TrainConfig c;
  c.arch = "ssdlite320_mobilenet_v3_large";
  c.data = dataset_root();
  c.input_size = 96;  // maps 6, 3, 2, 1, 1, 1
  c.batch = 2;
  c.workers = 1;
  c.log_every = 1;
  c.out = out;
  c.seed = 7;
  c.lr = 0.01;
  c.warmup = 1;
  return c;
}

}  // namespace

TEST_CASE("ssd_detect --summary: ssdlite320_mobilenet_v3_large blocks, parameters, anchors", "[apps][ssdlite]") {
  auto r = test::run_app("ssd_detect", "--summary --arch ssdlite320_mobilenet_v3_large --num-classes 91");
  INFO(r.err);
  REQUIRE(r.status == 0);
  REQUIRE(r.out.find("backbone.features.0 (C4 expansion, map 0): [1, 672, 20, 20]") != std::string::npos);
  REQUIRE(r.out.find("backbone.extra.3 (map 5): [1, 128, 1, 1]") != std::string::npos);
  REQUIRE(r.out.find("parameters: 3440060") != std::string::npos);
  REQUIRE(r.out.find("anchors: 3234") != std::string::npos);
}

TEST_CASE("ssd_train: ssdlite320_mobilenet_v3_large trains, resumes exactly, and ssd_detect runs the checkpoint",
          "[apps][ssd_train][ssdlite]") {
  TempDir straight("ssdlite_straight"), halves("ssdlite_halves"), det("ssdlite_detect");
  app::TrainConfig a = small_config(straight.path.string());
  a.iters = 4;
  REQUIRE(app::train(a) == 0);
  app::TrainConfig b = small_config(halves.path.string());
  b.iters = 2;
  REQUIRE(app::train(b) == 0);
  b.iters = 4;
  b.resume = halves / "last.safetensors";
  REQUIRE(app::train(b) == 0);

  const auto la = test::losses_by_iteration(straight / "metrics.jsonl"), lb = test::losses_by_iteration(halves / "metrics.jsonl");
  REQUIRE(la.size() == 4);
  REQUIRE(lb.size() == 4);
  for (const auto& [it, loss] : la) {
    INFO("iteration " << it);
    REQUIRE(std::isfinite(loss));
    CHECK(lb.at(it) == loss);  // same batches, optimizer state and BN running statistics
  }
  auto wa = eng::io::load_safetensors(straight / "last.safetensors");
  auto wb = eng::io::load_safetensors(halves / "last.safetensors");
  REQUIRE(wa.tensors.size() == wb.tensors.size());
  bool bn_moved = false;
  for (size_t i = 0; i < wa.tensors.size(); ++i) {
    INFO(wa.tensors[i].first);
    CHECK(wa.tensors[i].first == wb.tensors[i].first);
    const auto va = wa.tensors[i].second.to(eng::DType::f64).to_vector<double>();
    CHECK(va == wb.tensors[i].second.to(eng::DType::f64).to_vector<double>());
    if (wa.tensors[i].first == "backbone.features.0.0.1.running_mean")
      for (double v : va) bn_moved = bn_moved || v != 0.0;
  }
  CHECK(bn_moved);  // train-mode BatchNorm updated its running statistics

  // ssd_detect loads the checkpoint (architecture from its metadata) and writes detections.
  const std::string image = (fs::path(dataset_root()) / "JPEGImages").string();
  auto r = test::run_app("ssd_detect", "--weights '" + (straight / "last.safetensors") + "' --input '" +
                                           image + "' --out '" + det.path.string() + "' --workers 1");
  INFO(r.err);
  REQUIRE(r.status == 0);
  REQUIRE(fs::exists(det / "detections.json"));
}

TEST_CASE("ssd_train: ssdlite320_mobilenet_v3_large learns to detect generated shapes", "[apps][ssd_train][ssdlite][slow]") {
  // The tiny_ssd learning test's data (200 images, 50 held out), 250 iterations at input 256,
  // batch 16, lr 0.02, from scratch. Measured on 2 cores (7 minutes while other builds ran):
  // VOC07 mAP 0.377; 400 iterations reached 0.741. At input 128 (maps 8, 4, 2, 1, 1, 1) the
  // same model learned little: 0.057 after 300 iterations. A broken loss, matcher or
  // BatchNorm stays at 0.01 or below. The crop is pinned to GluonCV's every-box rule, the one
  // these figures were measured with (under the reference rule the 128-px run fell to 0.024).
  TempDir data_dir("ssdlite_learn_data"), out("ssdlite_learn");
  data::SynthOptions o;
  o.width = 192;
  o.height = 144;
  data::write_synth_dataset(data_dir.path.string(), data::SynthFormat::Voc, 200, 50, 21, o);
  app::TrainConfig c;
  c.arch = "ssdlite320_mobilenet_v3_large";
  c.data = c.val = data_dir.path.string();
  c.input_size = 256;
  c.batch = 16;
  c.iters = 250;
  c.lr = 0.02;
  c.warmup = 20;
  c.crop_rule = "every";
  c.steps = {190, 235};
  c.workers = 1;
  c.log_every = 50;
  c.out = out.path.string();
  REQUIRE(app::train(c) == 0);
  const double map = test::final_voc07_map(out / "metrics.jsonl");
  INFO("VOC07 mAP after 250 iterations: " << map);
  CHECK(map > 0.15);
}
