// retinanet_resnet50_fpn: layout, anchors, shapes, a training step, and parity with
// torchvision (fixture from tools/export_retinanet.py: 5 classes, batch 1, 128x128 input).
#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "engine/optim.h"
#include "models/factories.h"
#include "models/parity_init.h"
#include "models/retinanet.h"
#include "models/weights.h"
#include "temp_dir.h"
#include "test_helpers.h"

using namespace eng;

namespace {

// trainable: torchvision's trainable_backbone_layers (-1: the default 3, conv1 + layer1 frozen;
// the parity fixture unfreezes everything, so its test takes 5).
std::shared_ptr<models::RetinaNet> make(int64_t num_classes, int64_t size, int64_t trainable = -1) {
  models::ModelConfig cfg;
  cfg.arch = "retinanet_resnet50_fpn";
  cfg.num_classes = num_classes;
  cfg.input_size = size;
  cfg.trainable_backbone_layers = trainable;
  auto m = std::dynamic_pointer_cast<models::RetinaNet>(models::make_retinanet(cfg));
  REQUIRE(m != nullptr);
  return m;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::fabs(v));
  return m;
}

double iou(const float* a, const float* b) {
  const double ix = std::max(0.0, double(std::min(a[2], b[2])) - std::max(a[0], b[0]));
  const double iy = std::max(0.0, double(std::min(a[3], b[3])) - std::max(a[1], b[1]));
  const double inter = ix * iy;
  const double ua = double(a[2] - a[0]) * (a[3] - a[1]) + double(b[2] - b[0]) * (b[3] - b[1]) - inter;
  return ua > 0 ? inter / ua : (inter == 0 && std::equal(a, a + 4, b) ? 1.0 : 0.0);
}

const std::string kFixture = std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/retinanet_resnet50_fpn_parity.safetensors";

}  // namespace

TEST_CASE("retinanet_resnet50_fpn: parameter count") {
  auto m = make(91, 0);
  CHECK(m->input_size() == 512);
  CHECK(m->num_parameters() == 34014999);
  auto sd = m->state_dict();
  // torchvision frozen-BN layout: 301 tensors (FrozenBN has 4 buffers, no num_batches_tracked).
  CHECK(sd.size() == 301);
  std::set<std::string> keys;
  for (auto& kv : sd) keys.insert(kv.first);
  for (const char* k : {"backbone.body.conv1.weight", "backbone.body.bn1.running_var",
                        "backbone.body.layer1.0.downsample.0.weight", "backbone.body.layer1.0.downsample.1.bias",
                        "backbone.body.layer4.2.bn3.running_mean", "backbone.fpn.inner_blocks.0.0.weight",
                        "backbone.fpn.layer_blocks.2.0.bias", "backbone.fpn.extra_blocks.p6.weight",
                        "backbone.fpn.extra_blocks.p7.bias", "head.classification_head.conv.3.0.weight",
                        "head.classification_head.cls_logits.bias", "head.regression_head.conv.0.0.bias",
                        "head.regression_head.bbox_reg.weight"})
    CHECK(keys.count(k) == 1);
  CHECK(sd.front().first == "backbone.body.conv1.weight");
  CHECK(sd.back().first == "head.regression_head.bbox_reg.bias");
  CHECK(m->find("head.classification_head.cls_logits.weight").sizes() == Shape{819, 256, 3, 3});
  CHECK(m->find("head.regression_head.bbox_reg.weight").sizes() == Shape{36, 256, 3, 3});
  // FrozenBN affine tensors are buffers: not parameters.
  for (auto& kv : m->named_parameters()) CHECK(kv.first.find("bn") == std::string::npos);
  // Head init: cls bias = -log((1 - 0.01) / 0.01); weights N(0, 0.01).
  std::vector<float> b = m->find("head.classification_head.cls_logits.bias").to_vector<float>();
  CHECK(b[0] == Approx(-std::log(99.0)).epsilon(1e-6));
  CHECK(max_abs(m->find("head.regression_head.bbox_reg.weight")) < 0.1);
  CHECK(max_abs(m->find("head.regression_head.bbox_reg.bias")) == 0.0);
}

TEST_CASE("retinanet_resnet50_fpn: state_dict keys match torchvision's frozen-BN layout") {
  INFO("fixture: " << kFixture << " (generate with tools/export_retinanet.py)");
  io::SafetensorsFile f = io::load_safetensors(kFixture);
  auto ref = nlohmann::json::parse(f.metadata.at("state_dict_keys")).get<std::vector<std::string>>();
  auto m = make(std::stoll(f.metadata.at("num_classes")), std::stoll(f.metadata.at("input_size")));
  auto sd = m->state_dict();
  REQUIRE(sd.size() == ref.size());
  for (size_t i = 0; i < ref.size(); ++i) REQUIRE(sd[i].first == ref[i]);
}

TEST_CASE("retinanet_resnet50_fpn: anchors") {
  auto m = make(91, 512);
  Tensor a = m->anchors(Device::cpu());
  CHECK(a.sizes() == Shape{49104, 4});
  CHECK(m->level_fmap_sizes() == std::vector<int64_t>{64, 32, 16, 8, 4});
  CHECK(m->level_sizes() == std::vector<int64_t>{36864, 9216, 2304, 576, 144});
  // First anchor: ratio 0.5 (h / w), size 32, centre (0, 0): w = 32 / sqrt(0.5) -> 45.25 / 2 rounded.
  std::vector<float> v = a.narrow(0, 0, 9).to_vector<float>();
  CHECK(v[0] == -23.0f);
  CHECK(v[1] == -11.0f);
  CHECK(v[3 * 4 + 2] == 16.0f);  // ratio 1, size 32
  CHECK(m->pixel_mean()[0] == Approx(0.485 * 255));
  CHECK(m->pixel_std()[2] == Approx(0.225 * 255));
}

TEST_CASE("retinanet_resnet50_fpn: head output shapes") {
  auto m = make(91, 128);
  auto shapes = m->block_shapes();
  REQUIRE(shapes.size() == 10);
  CHECK(shapes[0].second == Shape{1, 512, 16, 16});
  CHECK(shapes[1].second == Shape{1, 1024, 8, 8});
  CHECK(shapes[2].second == Shape{1, 2048, 4, 4});
  CHECK(shapes[3].second == Shape{1, 256, 16, 16});
  CHECK(shapes[6].second == Shape{1, 256, 2, 2});
  CHECK(shapes[7].second == Shape{1, 256, 1, 1});
  const int64_t A = (256 + 64 + 16 + 4 + 1) * 9;
  CHECK(A == m->anchors(Device::cpu()).size(0));
  CHECK(shapes[8].second == Shape{1, A, 91});
  CHECK(shapes[9].second == Shape{1, A, 4});
}

TEST_CASE("retinanet_resnet50_fpn: forward, backward and an SGD step", "[slow]") {
  manual_seed(3);
  auto m = make(5, 128);
  Tensor x = randn({1, 3, 128, 128});
  models::Targets t;
  t.boxes = from_vector(std::vector<float>{10, 12, 70, 80, 50, 40, 120, 110}, {1, 2, 4});
  t.labels = from_vector(std::vector<int64_t>{1, 3}, {1, 2});
  t.counts = from_vector(std::vector<int64_t>{2}, {1});
  optim::SGDOptions o;
  o.lr = 0.01;
  optim::SGD opt(m->named_parameters(), o);
  Tensor w = m->find("head.classification_head.cls_logits.weight");
  Tensor before = w.clone().detach();
  opt.zero_grad();
  auto heads = m->forward_heads(x);
  auto l = m->loss(heads, t);
  REQUIRE(std::isfinite(l.total.item()));
  REQUIRE(std::isfinite(l.classification.item()));
  REQUIRE(l.box_regression.item() > 0);
  l.total.backward();
  REQUIRE(w.grad().defined());
  // conv1 and layer1 are frozen by default (torchvision's trainable_backbone_layers 3).
  CHECK_FALSE(m->find("backbone.body.conv1.weight").grad().defined());
  CHECK_FALSE(m->find("backbone.body.layer1.0.conv1.weight").grad().defined());
  REQUIRE(m->find("backbone.body.layer2.0.conv1.weight").grad().defined());
  REQUIRE(std::isfinite(max_abs(m->find("backbone.body.layer2.0.conv1.weight").grad())));
  opt.step();
  CHECK(max_abs(w.detach() - before) > 0);
  auto d = m->postprocess(heads);
  CHECK(d.boxes.size(0) == 1);
  // An image without objects: everything is background, no box loss, never NaN.
  t.counts = from_vector(std::vector<int64_t>{0}, {1});
  auto l0 = m->loss(m->forward_heads(x), t);
  CHECK(std::isfinite(l0.classification.item()));
  CHECK(l0.classification.item() > 0);
  CHECK(l0.box_regression.item() == 0.0);
}

TEST_CASE("retinanet_resnet50_fpn: parity with torchvision") {
  INFO("fixture: " << kFixture << " (generate with tools/export_retinanet.py)");
  io::SafetensorsFile f = io::load_safetensors(kFixture);  // throws (fails) when missing
  const int64_t C = std::stoll(f.metadata.at("num_classes")), S = std::stoll(f.metadata.at("input_size"));
  auto m = make(C, S, 5);  // the fixture trains every layer (it compares conv1's gradient)
  models::parity_init(*m);

  Tensor ref_anchors = f.get("anchors");
  REQUIRE_CLOSE(m->anchors(Device::cpu()), ref_anchors, 1e-4, 1e-6);
  CHECK(m->level_sizes() == f.get("level_sizes").to_vector<int64_t>());

  auto heads = m->forward_heads(f.get("input"));
  // Deep-net float accumulation: atol 2e-4 * max|ref| plus rtol 1e-4. Against a float64
  // run of torchvision both sides err alike (max ~6e-6 here, about 1e-4 * max|ref| each),
  // so the float32 difference between them needs twice that.
  Tensor ref_cls = f.get("cls_logits"), ref_reg = f.get("bbox_regression");
  REQUIRE_CLOSE(heads.class_logits, ref_cls, 2e-4 * max_abs(ref_cls), 1e-4);
  REQUIRE_CLOSE(heads.box_regression, ref_reg, 2e-4 * max_abs(ref_reg), 1e-4);

  models::Targets t;
  Tensor gtb = f.get("gt_boxes");
  const int64_t G = gtb.size(0);
  t.boxes = gtb.reshape({1, G, 4});
  t.labels = f.get("gt_labels").reshape({1, G});
  t.counts = from_vector(std::vector<int64_t>{G}, {1});
  m->zero_grad();
  auto l = m->loss(heads, t);
  CHECK(l.classification.item() == Approx(f.get("loss_classification").item()).epsilon(1e-4));
  CHECK(l.box_regression.item() == Approx(f.get("loss_bbox_regression").item()).epsilon(1e-4));
  l.total.backward();
  auto names = nlohmann::json::parse(f.metadata.at("grad_names")).get<std::vector<std::string>>();
  REQUIRE(names.size() >= 4);
  for (const std::string& n : names) {
    INFO("grad of " << n);
    Tensor ref = f.get("grad." + n);
    Tensor g = m->find(n).grad();
    REQUIRE(g.defined());
    REQUIRE_CLOSE(g, ref, 1e-4 * max_abs(ref), 1e-3);
  }

  auto d = m->postprocess(heads);
  Tensor rb = f.get("det_boxes"), rs = f.get("det_scores"), rl = f.get("det_labels");
  const int64_t n = rs.size(0);
  REQUIRE(d.counts.to_vector<int64_t>()[0] == n);
  std::vector<float> ob = d.boxes.to_vector<float>(), os = d.scores.to_vector<float>();
  std::vector<int64_t> ol = d.labels.to_vector<int64_t>();
  std::vector<float> rbv = rb.to_vector<float>(), rsv = rs.to_vector<float>();
  std::vector<int64_t> rlv = rl.to_vector<int64_t>();
  // Match each reference detection to one of ours (same label, IoU > 0.999, score within
  // 1e-4): order among equal scores is not defined by either side.
  std::vector<bool> used(n, false);
  int64_t unmatched = 0;
  for (int64_t i = 0; i < n; ++i) {
    bool found = false;
    for (int64_t j = 0; j < n && !found; ++j) {
      if (used[j] || ol[j] != rlv[i] || std::fabs(os[j] - rsv[i]) > 1e-4) continue;
      if (iou(&ob[j * 4], &rbv[i * 4]) > 0.999) used[j] = found = true;
    }
    if (!found) ++unmatched;
  }
  CHECK(unmatched == 0);
}

TEST_CASE("retinanet_resnet50_fpn: checkpoints from before the freeze resume with every layer trainable") {
  // Before issue 15 RetinaNet trained conv1 and layer1: such a checkpoint has optimizer state
  // for them and no trainable_backbone_layers metadata; read_model_config gives 5 for it.
  auto m = make(5, 128, 5);
  test::TempDir dir("retinanet_old_ckpt");
  const std::string path = (dir.path / "old.safetensors").string();
  models::save_model_weights(*m, path);
  auto f = io::load_safetensors(path);
  f.metadata.erase("trainable_backbone_layers");
  io::save_safetensors(path, f.tensors, f.metadata);
  CHECK(models::read_model_config(path).trainable_backbone_layers == -1);  // weights only: the default
  f.tensors.emplace_back("optimizer.momentum_buffer.backbone.body.conv1.weight", zeros({64, 3, 7, 7}));
  io::save_safetensors(path, f.tensors, f.metadata);
  CHECK(models::read_model_config(path).trainable_backbone_layers == 5);
}
