// The GluonCV SSD presets through the apps: ssd_detect --summary (blocks, parameters,
// anchors), a few ssd_train iterations with an exact resume and ssd_detect on the
// checkpoint, and a [slow] learning run of ssd300_mobilenet0_25 on generated shapes.
#include <cmath>
#include <filesystem>
#include <fstream>
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
  static const test::SynthVoc d("gluon_ssd_train_data", 8, 2, 17);
  return d.root;
}

app::TrainConfig small_config(const std::string& out) {
  app::TrainConfig c;
  c.arch = "ssd300_mobilenet0_25";
  c.data = dataset_root();
  c.input_size = 96;  // maps 6, 3, 2, 1, 1, 1
  c.batch = 2;
  c.workers = 1;
  c.log_every = 1;
  c.out = out;
  c.seed = 5;
  c.lr = 0.01;
  c.warmup = 1;
  return c;
}

}  // namespace

TEST_CASE("ssd_detect --summary: the GluonCV presets' blocks, parameters and anchors", "[apps][gluon_ssd]") {
  auto r = test::run_app("ssd_detect", "--summary --arch ssd300_mobilenet0_25 --num-classes 21");
  INFO(r.err);
  REQUIRE(r.status == 0);
  REQUIRE(r.out.find("backbone (mobilenet0.25) source 0 (map 0): [1, 128, 19, 19]") != std::string::npos);
  REQUIRE(r.out.find("expand.3 (map 5): [1, 128, 1, 1]") != std::string::npos);
  REQUIRE(r.out.find("parameters: 3252542") != std::string::npos);
  REQUIRE(r.out.find("anchors: 2268") != std::string::npos);
  r = test::run_app("ssd_detect", "--summary --arch ssd512_mobilenet1_0 --num-classes 21");
  INFO(r.err);
  REQUIRE(r.status == 0);
  REQUIRE(r.out.find("anchors: 6132") != std::string::npos);
  r = test::run_app("ssd_detect", "--summary --arch ssd512_mobilenet0_25 --num-classes 21");
  REQUIRE(r.status != 0);
  REQUIRE(r.err.find("ssd300_mobilenet0_25") != std::string::npos);  // the known names are listed
}

TEST_CASE("ssd_train: ssd300_mobilenet0_25 trains, resumes exactly, and ssd_detect runs the checkpoint",
          "[apps][ssd_train][gluon_ssd]") {
  TempDir straight("gluon_straight"), halves("gluon_halves"), det("gluon_detect");
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
    CHECK(lb.at(it) == loss);
  }
  auto wa = eng::io::load_safetensors(straight / "last.safetensors");
  auto wb = eng::io::load_safetensors(halves / "last.safetensors");
  REQUIRE(wa.tensors.size() == wb.tensors.size());
  for (size_t i = 0; i < wa.tensors.size(); ++i) {
    INFO(wa.tensors[i].first);
    CHECK(wa.tensors[i].first == wb.tensors[i].first);
    CHECK(wa.tensors[i].second.to(eng::DType::f64).to_vector<double>() ==
          wb.tensors[i].second.to(eng::DType::f64).to_vector<double>());
  }
  const std::string image = (fs::path(dataset_root()) / "JPEGImages").string();
  auto r = test::run_app("ssd_detect", "--weights '" + (straight / "last.safetensors") + "' --input '" + image +
                                           "' --out '" + det.path.string() + "' --workers 1");
  INFO(r.err);
  REQUIRE(r.status == 0);
  REQUIRE(fs::exists(det / "detections.json"));
}

TEST_CASE("ssd_train: ssd300_mobilenet0_25 learns to detect generated shapes", "[apps][ssd_train][gluon_ssd][slow]") {
  // 200 images of generated shapes (192 x 144, objects 15-55% of the short side), 400
  // iterations at input 256, batch 16, from scratch. The anchor sizes are the ones
  // `ssd_data anchors --data D --arch ssd300_mobilenet0_25 --input-size 256` proposes for this
  // data (95.4% of the boxes reach IoU 0.5); custom sizes also replace GluonCV's quirky steps
  // (docs/gluon_ssd.md). Measured on 2 cores (about 5 minutes): VOC07 mAP 0.109 on the 50
  // held-out images. With the preset's own anchors at input 128 only 2.2% of the boxes can be
  // matched and 1000 iterations reached 0.017. A broken loss, matcher or expander stays near 0.01.
  // Measured with GluonCV's every-box crop rule (pinned here) and the torchvision matcher
  // (pinned: the preset's default is GluonCV's bipartite matcher); under the reference crop
  // rule the same run gave 0.0865.
  TempDir data_dir("gluon_learn_data"), out("gluon_learn");
  data::SynthOptions o;
  o.width = 192;
  o.height = 144;
  data::write_synth_dataset(data_dir.path.string(), data::SynthFormat::Voc, 200, 50, 21, o);
  app::TrainConfig c;
  c.arch = "ssd300_mobilenet0_25";
  c.data = c.val = data_dir.path.string();
  c.input_size = 256;
  c.anchor_sizes = "0.1529,0.2854,0.3253,0.3577,0.4849,0.6279,0.8335";
  c.crop_rule = "every";
  c.matcher = "ssd";
  c.batch = 16;
  c.iters = 400;
  c.lr = 0.05;
  c.warmup = 20;
  c.steps = {300, 370};
  c.workers = 1;
  c.log_every = 100;
  c.out = out.path.string();
  REQUIRE(app::train(c) == 0);
  const double map = test::final_voc07_map(out / "metrics.jsonl");
  INFO("VOC07 mAP after 400 iterations: " << map);
  CHECK(map > 0.05);
}

TEST_CASE("ssd_train: every GluonCV ResNet preset trains two steps (bipartite matcher) and ssd_detect runs it",
          "[apps][ssd_train][gluon_ssd]") {
  for (const char* arch : {"ssd512_resnet18_v1", "ssd512_resnet101_v2"}) {
    INFO(arch);
    TempDir out("gluon_resnet_train"), det("gluon_resnet_detect");
    app::TrainConfig c = small_config(out.path.string());
    c.arch = arch;
    c.input_size = 64;  // sources 4 x 4 and 2 x 2, then 1 x 1 maps
    c.iters = 2;
    REQUIRE(app::train(c) == 0);
    const auto l = test::losses_by_iteration(out / "metrics.jsonl");
    REQUIRE(l.size() == 2);
    for (const auto& [it, loss] : l) REQUIRE(std::isfinite(loss));
    auto w = eng::io::load_safetensors(out / "last.safetensors");
    REQUIRE(w.metadata.count("arch"));
    CHECK(w.metadata.at("arch") == arch);
    const std::string image = (fs::path(dataset_root()) / "JPEGImages").string();
    auto r = test::run_app("ssd_detect", "--weights '" + (out / "last.safetensors") + "' --input '" + image +
                                             "' --out '" + det.path.string() + "' --workers 1");
    INFO(r.err);
    REQUIRE(r.status == 0);
    REQUIRE(fs::exists(det / "detections.json"));
  }
}
