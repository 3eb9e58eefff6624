// fasterrcnn_resnet50_fpn: layout and parameter breakdown, freezing, anchors, shapes, the
// training step (losses, gradients, samplers), inference and bad input. Parity with
// torchvision is in test_fasterrcnn_parity.cpp.
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "engine/nn/layers.h"
#include "engine/optim.h"
#include "models/factories.h"
#include "models/fasterrcnn.h"
#include "models/weights.h"
#include "temp_dir.h"
#include "test_helpers.h"

using namespace eng;

namespace {

std::shared_ptr<models::FasterRCNN> make(int64_t num_classes, int64_t size, int64_t trainable = -1) {
  models::ModelConfig cfg;
  cfg.arch = "fasterrcnn_resnet50_fpn";
  cfg.num_classes = num_classes;
  cfg.input_size = size;
  cfg.trainable_backbone_layers = trainable;
  cfg.rpn_top_n_train = 300;
  cfg.rpn_top_n_test = 200;
  auto m = std::dynamic_pointer_cast<models::FasterRCNN>(models::create_model(cfg));
  REQUIRE(m != nullptr);
  return m;
}

int64_t count_prefix(const nn::Module& m, const std::string& prefix) {
  int64_t n = 0;
  for (auto& [name, t] : m.named_parameters())
    if (name.compare(0, prefix.size(), prefix) == 0) n += t.numel();
  return n;
}

models::Targets two_images_targets() {
  // Image 0: two boxes; image 1: none (the samplers take negatives only there).
  models::Targets t;
  t.boxes = from_vector<float>({20, 30, 120, 140, 150, 60, 240, 200, 0, 0, 0, 0, 0, 0, 0, 0}, {2, 2, 4});
  t.labels = from_vector<int64_t>({3, 7, 0, 0}, {2, 2});
  t.counts = from_vector<int64_t>({2, 0}, {2});
  return t;
}

}  // namespace

TEST_CASE("fasterrcnn_resnet50_fpn: parameter count and breakdown as torchvision") {
  models::ModelConfig cfg;
  cfg.arch = "fasterrcnn_resnet50_fpn";
  auto m = std::dynamic_pointer_cast<models::FasterRCNN>(models::create_model(cfg));
  REQUIRE(m != nullptr);
  CHECK(m->config().input_size == 800);
  CHECK(m->num_parameters() == 41755286);
  // The seed specs' breakdown (B5), each part computed from its layers by hand:
  //   ResNet-50 convs 23,454,912; FPN 4 x (1x1 + 3x3) = 3,344,384; RPN head 593,935;
  //   TwoMLPHead 12544*1024+1024 + 1024*1024+1024; predictor 1024*91+91 + 1024*364+364.
  CHECK(count_prefix(*m, "backbone.body.") == 23454912);
  const int64_t fpn = (256 + 512 + 1024 + 2048) * 256 + 4 * 256 + 4 * (256 * 256 * 9 + 256);
  CHECK(fpn == 3344384);
  CHECK(count_prefix(*m, "backbone.fpn.") == fpn);
  CHECK(count_prefix(*m, "rpn.") == 256 * 256 * 9 + 256 + 256 * 3 + 3 + 256 * 12 + 12);
  CHECK(count_prefix(*m, "roi_heads.box_head.") == 12544 * 1024 + 1024 + 1024 * 1024 + 1024);
  CHECK(count_prefix(*m, "roi_heads.box_predictor.") == 1024 * 91 + 91 + 1024 * 364 + 364);
  std::set<std::string> keys;
  for (auto& [name, t] : m->state_dict()) keys.insert(name);
  for (const char* k : {"backbone.body.layer1.0.downsample.1.running_var", "backbone.fpn.inner_blocks.0.0.weight",
                        "backbone.fpn.layer_blocks.3.0.bias", "rpn.head.conv.0.0.weight", "rpn.head.cls_logits.bias",
                        "rpn.head.bbox_pred.weight", "roi_heads.box_head.fc6.weight", "roi_heads.box_head.fc7.bias",
                        "roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.bbox_pred.bias"})
    CHECK(keys.count(k) == 1);
  CHECK(keys.count("backbone.fpn.extra_blocks.p6.weight") == 0);  // P6 is a max-pool: no parameters
}

TEST_CASE("fasterrcnn_resnet50_fpn: conv1 and layer1 frozen by default, trainable_backbone_layers as torchvision") {
  auto frozen_prefixes = [](const nn::Module& m) {
    std::set<std::string> out;
    for (auto& [name, t] : m.named_parameters())
      if (!t.requires_grad()) out.insert(name.substr(0, name.find('.', std::string("backbone.body.").size())));
    return out;
  };
  CHECK(frozen_prefixes(*make(5, 128)) == std::set<std::string>{"backbone.body.conv1", "backbone.body.layer1"});
  CHECK(frozen_prefixes(*make(5, 128, 5)).empty());
  CHECK(frozen_prefixes(*make(5, 128, 1)) ==
        std::set<std::string>{"backbone.body.conv1", "backbone.body.layer1", "backbone.body.layer2", "backbone.body.layer3"});
  CHECK(frozen_prefixes(*make(5, 128, 0)).count("backbone.body.layer4") == 1);
  // RetinaNet follows the same rule (torchvision's retinanet_resnet50_fpn with pretrained weights).
  models::ModelConfig rc;
  rc.arch = "retinanet_resnet50_fpn";
  rc.num_classes = 5;
  CHECK(frozen_prefixes(*models::create_model(rc)) == std::set<std::string>{"backbone.body.conv1", "backbone.body.layer1"});
  // Only the ResNet-FPN models have the setting; out-of-range values are one line.
  models::ModelConfig bad = rc;
  bad.trainable_backbone_layers = 6;
  CHECK_THROWS_WITH(models::create_model(bad), Catch::Contains("must be in 0..5"));
  bad.arch = "tiny_ssd";
  bad.trainable_backbone_layers = 2;
  CHECK_THROWS_WITH(models::create_model(bad), Catch::Contains("only the ResNet-FPN models"));
}

TEST_CASE("fasterrcnn_resnet50_fpn: anchors as torchvision's rpn AnchorGenerator") {
  auto m = make(5, 800);
  CHECK(m->level_fmap_sizes() == std::vector<int64_t>{200, 100, 50, 25, 13});
  Tensor a = m->anchors(Device::cpu());
  CHECK(a.size(0) == 3 * (200 * 200 + 100 * 100 + 50 * 50 + 25 * 25 + 13 * 13));
  // Size 32 at P2, ratios 0.5, 1, 2 (h / w), rounded base boxes centred at (0, 0).
  std::vector<float> v = a.narrow(0, 0, 4).to_vector<float>();
  CHECK(v == std::vector<float>{-23, -11, 23, 11, -16, -16, 16, 16, -11, -23, 11, 23, -19, -11, 27, 11});
  // First anchor of P6 (size 512, stride 800 // 13 = 61).
  const int64_t p6 = 3 * (200 * 200 + 100 * 100 + 50 * 50 + 25 * 25);
  std::vector<float> w = a.narrow(0, p6 + 4, 1).to_vector<float>();  // (y 0, x 1, ratio 1)
  CHECK(w == std::vector<float>{61 - 256, -256, 61 + 256, 256});
}

TEST_CASE("fasterrcnn_resnet50_fpn: shapes, losses, gradients and the samplers") {
  manual_seed(1);
  auto m = make(9, 256);
  Tensor x = randn({2, 3, 256, 256});
  models::HeadOutputs h = m->forward_heads(x);
  const int64_t A = 3 * (64 * 64 + 32 * 32 + 16 * 16 + 8 * 8 + 4 * 4);
  CHECK(h.class_logits.sizes() == Shape{2, A, 1});
  CHECK(h.box_regression.sizes() == Shape{2, A, 4});
  REQUIRE(h.features.size() == 4);
  CHECK(h.features[0].sizes() == Shape{2, 256, 64, 64});
  CHECK(h.features[3].sizes() == Shape{2, 256, 8, 8});

  const models::Targets t = two_images_targets();
  m->begin_step(11);
  models::LossParts p = m->loss(h, t);
  REQUIRE(p.components.size() == 4);
  for (auto& [name, v] : p.components) {
    INFO(name);
    CHECK(std::isfinite(v.item()));
    CHECK(v.item() >= 0);
  }
  // (Exact values against torchvision: test_fasterrcnn_parity.cpp.)
  CHECK(p.total.item() == Approx(p.classification.item() + p.box_regression.item()));
  p.total.backward();
  auto grad_of = [&](const std::string& n) { return m->find(n).grad(); };
  CHECK_FALSE(grad_of("backbone.body.conv1.weight").defined());
  CHECK_FALSE(grad_of("backbone.body.layer1.0.conv1.weight").defined());
  CHECK(grad_of("backbone.body.layer2.0.conv1.weight").defined());
  CHECK(grad_of("rpn.head.cls_logits.weight").defined());
  CHECK(grad_of("roi_heads.box_head.fc6.weight").defined());
  CHECK(grad_of("roi_heads.box_predictor.bbox_pred.weight").defined());

  // The samplers draw from begin_step's seed: the same seed gives the same loss, another
  // seed another sample.
  NoGradGuard ng;
  m->begin_step(11);
  const double again = m->loss(h, t).total.item();
  CHECK(again == p.total.item());
  m->begin_step(12);
  CHECK(m->loss(h, t).total.item() != p.total.item());
}

TEST_CASE("fasterrcnn_resnet50_fpn: RoI sampling appends the GT, takes 512 at 0.25 and negatives only without GT") {
  manual_seed(2);
  auto m = make(9, 256);
  // Proposals: 40 boxes on image 0, 10 on image 1 (padded to 40).
  std::vector<float> boxes;
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < 40; ++i) {
      const float o = static_cast<float>(3 * i);
      const std::vector<float> box = b == 1 && i >= 10 ? std::vector<float>{0, 0, 0, 0}
                                                       : std::vector<float>{o, o, o + 100, o + 110};
      boxes.insert(boxes.end(), box.begin(), box.end());
    }
  Tensor pb = from_vector(boxes, {2, 40, 4});
  Tensor pc = from_vector<int64_t>({40, 10}, {2});
  m->begin_step(5);
  models::RoITargets r = m->roi_targets(pb, pc, two_images_targets());
  // Every proposal is taken (fewer than 512): 40 + 2 GT on image 0, 10 on image 1.
  REQUIRE(r.rois.size(0) == 52);
  std::vector<float> rois = r.rois.to_vector<float>();
  std::vector<int64_t> labels = r.labels.to_vector<int64_t>();
  int positives = 0;
  for (int64_t i = 0; i < 52; ++i) {
    CHECK(rois[5 * i] == (i < 42 ? 0.0f : 1.0f));
    if (i >= 42) CHECK(labels[i] == 0);
    positives += labels[i] > 0;
  }
  // The GT rows come after the image's proposals and carry their labels (IoU 1).
  CHECK(rois[5 * 40 + 1] == 20.0f);
  CHECK(labels[40] == 3);
  CHECK(labels[41] == 7);
  CHECK(positives >= 2);
  // The positive quota is int(512 * 0.25) = 128: with 300 positives only 128 are taken.
  std::vector<float> many;  // 300 near the GT (IoU > 0.9), 500 far from it (IoU 0)
  for (int i = 0; i < 800; ++i)
  {
    const std::vector<float> box = i < 300 ? std::vector<float>{20.0f + static_cast<float>(i % 5), 30, 120, 140}
                                           : std::vector<float>{150, 150, 250, 250};
    many.insert(many.end(), box.begin(), box.end());
  }
  models::Targets one;
  one.boxes = from_vector<float>({20, 30, 120, 140}, {1, 1, 4});
  one.labels = from_vector<int64_t>({4}, {1, 1});
  one.counts = from_vector<int64_t>({1}, {1});
  models::RoITargets q = m->roi_targets(from_vector(many, {1, 800, 4}), from_vector<int64_t>({800}, {1}), one);
  int pos = 0, neg = 0;
  for (int64_t l : q.labels.to_vector<int64_t>()) (l > 0 ? pos : neg)++;
  CHECK(pos == 128);
  CHECK(neg == 512 - 128);
  // With only 100 negatives the sample is smaller (torchvision does not top it up).
  const std::vector<float> first400(many.begin(), many.begin() + 400 * 4);
  models::RoITargets few = m->roi_targets(from_vector(first400, {1, 400, 4}), from_vector<int64_t>({400}, {1}), one);
  CHECK(few.rois.size(0) == 128 + 100);
}

TEST_CASE("fasterrcnn_resnet50_fpn: inference gives at most 100 detections per image inside the image") {
  manual_seed(3);
  auto m = make(4, 256);
  m->eval();
  NoGradGuard ng;
  models::HeadOutputs h = m->forward_heads(randn({2, 3, 256, 256}));
  det::PostprocessOptions o = m->postprocess_options();
  CHECK(o.max_per_image == 100);
  CHECK(o.score_threshold == 0.05);
  CHECK(o.topk_candidates == 200);  // the config's test proposals
  o.score_threshold = 0.0;  // an untrained head scores every class about 1/4
  det::Detections d = m->postprocess(h, o);
  CHECK(d.boxes.sizes() == Shape{2, 100, 4});
  std::vector<int64_t> counts = d.counts.to_vector<int64_t>();
  std::vector<float> b = d.boxes.to_vector<float>();
  std::vector<int64_t> l = d.labels.to_vector<int64_t>();
  for (int i = 0; i < 2; ++i) {
    CHECK(counts[i] > 0);
    CHECK(counts[i] <= 100);
    for (int64_t k = 0; k < counts[i]; ++k) {
      CHECK(l[i * 100 + k] >= 1);
      CHECK(l[i * 100 + k] < 4);
      for (int c = 0; c < 4; ++c) {
        CHECK(b[(i * 100 + k) * 4 + c] >= 0.0f);
        CHECK(b[(i * 100 + k) * 4 + c] <= 256.0f);
      }
    }
  }
}

TEST_CASE("fasterrcnn_resnet50_fpn: bad configurations are one line") {
  models::ModelConfig c;
  c.arch = "fasterrcnn_resnet50_fpn";
  c.input_size = 300;
  CHECK_THROWS_WITH(models::create_model(c), Catch::Contains("multiple of 32"));
  c.input_size = 256;
  c.matcher = "ssd";
  CHECK_THROWS_WITH(models::create_model(c), Catch::Contains("has its own matchers"));
  c.matcher.clear();
  c.arch = "ssd300_vgg16";
  c.input_size = 0;
  c.rpn_top_n_train = 10;
  CHECK_THROWS_WITH(models::create_model(c), Catch::Contains("have an RPN"));
  auto m = make(3, 128);
  CHECK_THROWS_WITH(m->forward_heads(zeros({1, 3, 160, 160})), Catch::Contains("expected images [B, 3, 128, 128]"));
}

TEST_CASE("fasterrcnn_resnet50_fpn: --backbone-norm batch is torchvision's build without weights") {
  models::ModelConfig cfg;
  cfg.arch = "fasterrcnn_resnet50_fpn";
  cfg.backbone_norm = "batch";
  auto m = models::create_model(cfg);
  // BatchNorm2d's affine values are parameters: 53 layers, 2 x their channels (the fixture
  // tool measured 41,808,406 and 348 entries on torchvision's weights=None model).
  CHECK(m->num_parameters() == 41808406);
  CHECK(m->state_dict().size() == 348);
  for (auto& [name, t] : m->named_parameters()) {
    INFO(name);
    CHECK(t.requires_grad());  // trainable_backbone_layers defaults to 5 then
  }
  cfg.trainable_backbone_layers = 3;
  auto f = models::create_model(cfg);
  CHECK_FALSE(f->find("backbone.body.bn1.weight").requires_grad());
  CHECK(f->find("backbone.body.layer2.0.bn1.weight").requires_grad());
  cfg.backbone_norm = "group";
  CHECK_THROWS_WITH(models::create_model(cfg), Catch::Contains("not one of frozen, batch"));
  cfg.backbone_norm = "batch";
  cfg.arch = "tiny_ssd";
  cfg.trainable_backbone_layers = -1;
  CHECK_THROWS_WITH(models::create_model(cfg), Catch::Contains("only the ResNet-FPN models"));
}

TEST_CASE("fasterrcnn_resnet50_fpn: a file's frozen_bn_eps reaches every FrozenBatchNorm2d") {
  test::TempDir dir("frcnn_eps");
  auto m = make(3, 128);
  const std::string path = (dir.path / "w.safetensors").string();
  auto eps_of = [](const nn::Module& mod) {
    std::set<double> out;
    for (auto& [name, child] : const_cast<nn::Module&>(mod).named_modules())
      if (auto* f = dynamic_cast<nn::FrozenBatchNorm2d*>(child)) out.insert(f->eps);
    return out;
  };
  CHECK(eps_of(*m) == std::set<double>{1e-5});
  CHECK(models::frozen_bn_metadata(*m).empty());
  models::save_model_weights(*m, path);
  // torchvision's COCO weights carry eps 0 (overwrite_eps): written by the conversion tool.
  auto f = io::load_safetensors(path);
  f.metadata["frozen_bn_eps"] = "0";
  io::save_safetensors(path, f.tensors, f.metadata);
  auto n = make(3, 128);
  models::load_model_weights(*n, path);
  CHECK(eps_of(*n) == std::set<double>{0.0});
  CHECK(models::frozen_bn_metadata(*n).at("frozen_bn_eps") == "0");
  // ... and our own files keep it.
  models::save_model_weights(*n, path);
  CHECK(io::load_safetensors(path).metadata.at("frozen_bn_eps") == "0");
  for (const char* bad : {"-1", "nan", "1e400", "abc", "2"}) {
    INFO(bad);
    auto g = io::load_safetensors(path);
    g.metadata["frozen_bn_eps"] = bad;
    io::save_safetensors(path, g.tensors, g.metadata);
    CHECK_THROWS_WITH(models::load_model_weights(*n, path), Catch::Contains("frozen_bn_eps"));
  }
}

TEST_CASE("fasterrcnn_resnet50_fpn: boxes outside the image and more proposals than anchors") {
  manual_seed(4);
  models::ModelConfig cfg;
  cfg.arch = "fasterrcnn_resnet50_fpn";
  cfg.num_classes = 4;
  cfg.input_size = 64;  // 3 (16^2 + 8^2 + 4^2 + 2^2 + 1) = 1023 anchors
  cfg.rpn_top_n_train = cfg.rpn_top_n_test = 100000;
  auto m = std::dynamic_pointer_cast<models::FasterRCNN>(models::create_model(cfg));
  REQUIRE(m != nullptr);
  models::HeadOutputs h = m->forward_heads(randn({2, 3, 64, 64}));
  CHECK(h.class_logits.size(1) == 1023);
  models::Targets t;
  // Image 0: a box half outside and one entirely outside; image 1: a box larger than the image.
  t.boxes = from_vector<float>({40, 40, 90, 90, 100, 100, 140, 150, -20, -30, 120, 110, 0, 0, 0, 0}, {2, 2, 4});
  t.labels = from_vector<int64_t>({1, 2, 3, 0}, {2, 2});
  t.counts = from_vector<int64_t>({2, 1}, {2});
  m->begin_step(1);
  models::LossParts p = m->loss(h, t);
  for (auto& [name, v] : p.components) {
    INFO(name);
    CHECK(std::isfinite(v.item()));
  }
  p.total.backward();
  NoGradGuard ng;
  auto [boxes, counts] = m->proposals(h, m->rpn_top_n(false));
  CHECK(boxes.size(1) == 1023);  // padded to what can survive: every anchor
  for (int64_t c : counts.to_vector<int64_t>()) {
    CHECK(c >= 1);
    CHECK(c <= 1023);
  }
  det::PostprocessOptions o = m->postprocess_options();
  o.score_threshold = 0.0;
  det::Detections d = m->postprocess(h, o);
  for (int64_t c : d.counts.to_vector<int64_t>()) CHECK(c <= 100);
}

TEST_CASE("fasterrcnn_resnet50_fpn: trains and detects under bf16 autocast (the CPU twin of the CUDA path)") {
  manual_seed(6);
  auto m = make(9, 128);
  Tensor x = randn({2, 3, 128, 128});
  const models::Targets t = two_images_targets();
  m->begin_step(3);
  const double fp32 = m->loss(models::forward_heads_f32(*m, x), t).total.item();
  m->zero_grad();
  autocast::Guard bf16(true, /*cpu_twin=*/true);
  models::HeadOutputs h = models::forward_heads_f32(*m, x);
  for (const Tensor& f : h.features) CHECK(f.dtype() == DType::f32);  // the pooler takes f32
  m->begin_step(3);
  models::LossParts p = m->loss(h, t);
  CHECK(p.total.dtype() == DType::f32);
  CHECK(std::isfinite(p.total.item()));
  CHECK(p.total.item() == Approx(fp32).epsilon(0.1));  // bf16 rounding, same samples
  p.total.backward();
  CHECK(m->find("roi_heads.box_head.fc6.weight").grad().defined());
  NoGradGuard ng;
  m->eval();
  det::PostprocessOptions o = m->postprocess_options();
  o.score_threshold = 0.0;
  det::Detections d = m->postprocess(models::forward_heads_f32(*m, x), o);
  CHECK(d.scores.dtype() == DType::f32);
  for (int64_t c : d.counts.to_vector<int64_t>()) CHECK(c > 0);
}

TEST_CASE("fasterrcnn_resnet50_fpn: torchvision's min / max size limits of the aspect-keeping fit") {
  models::ModelConfig cfg;
  cfg.arch = "fasterrcnn_resnet50_fpn";
  cfg.input_size = 1344;
  cfg.min_size = 800;
  cfg.max_size = 1333;
  auto m = models::create_model(cfg);
  CHECK(m->keep_aspect_ratio());
  const data::AspectLimits l = m->aspect_limits();
  CHECK(l.min_size == 800);
  CHECK(l.max_size == 1333);
  CHECK(l.side == 1344);
  // Recorded with the weights and read back.
  test::TempDir dir("frcnn_limits");
  const std::string path = (dir.path / "w.safetensors").string();
  models::ModelConfig small = cfg;
  small.input_size = 128;
  small.min_size = 96;
  small.max_size = 0;
  models::save_model_weights(*models::create_model(small), path);
  CHECK(io::load_safetensors(path).metadata.at("resize_min_max") == "96,0");
  const models::ModelConfig back = models::read_model_config(path);
  CHECK(back.min_size == 96);
  CHECK(back.max_size == 0);
  // Defaults: min_size = max_size = S.
  models::ModelConfig d;
  d.arch = "fasterrcnn_resnet50_fpn";
  CHECK(models::create_model(d)->aspect_limits().min_size == 0);
  // Bad values: one line each.
  cfg.max_size = 1400;
  CHECK_THROWS_WITH(models::create_model(cfg), Catch::Contains("--min-size / --max-size"));
  cfg.max_size = 0;
  cfg.arch = "ssd300_vgg16";
  cfg.input_size = 0;
  CHECK_THROWS_WITH(models::create_model(cfg), Catch::Contains("only models that keep the aspect ratio"));
}
