// The GluonCV SSD presets (models/gluon_ssd.h): structure (parameter counts worked out here
// from the layer list, independently of the modules), anchors (counts, GluonCV's order and
// formula, no clipping, the mobilenet0.25 step quirk), custom sizes, head shapes, the fixed
// gamma of the FeatureExpander's BatchNorms, a training step and a state_dict round trip.
#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/optim.h"
#include "models/anchor_scales.h"
#include "models/detection_model.h"
#include "models/gluon_ssd.h"
#include "models/mobilenet_v1.h"
#include "test_helpers.h"

using namespace eng;

namespace {

std::shared_ptr<models::DetectionModel> make(const std::string& arch, int64_t classes, const std::string& preset = "coco") {
  models::ModelConfig c;
  c.arch = arch;
  c.num_classes = classes;
  c.anchor_preset = preset;
  return models::create_model(c);
}

int64_t count_params(const nn::Module& m) {
  int64_t n = 0;
  for (const Tensor& p : m.parameters()) n += p.numel();
  return n;
}

// MobileNet v1 truncated at relu26, from GluonCV's channel lists (int(x * m) truncates).
int64_t mobilenet_v1_params(double m) {
  const int64_t dw[13] = {32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024};
  const int64_t pw[13] = {64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024};
  const int64_t stem = int64_t(32 * m);
  int64_t n = 3 * stem * 9 + 2 * stem;  // conv (no bias) + BN gamma, beta
  for (int i = 0; i < 13; ++i) {
    const int64_t d = int64_t(dw[i] * m), p = int64_t(pw[i] * m);
    n += d * 9 + 2 * d;      // depthwise 3x3 + BN
    n += d * p + 2 * p;      // pointwise 1x1 + BN
  }
  return n;
}

// FeatureExpander blocks (BN: beta only, gamma is fixed) and the 3x3 predictors.
int64_t ssd_head_params(std::vector<int64_t> in_ch, const std::vector<int64_t>& filters, const std::vector<int64_t>& A,
                        int64_t classes) {
  int64_t n = 0;
  for (int64_t f : filters) {
    const int64_t t = std::max<int64_t>(128, f);
    n += in_ch.back() * t + t;  // 1x1 transition + BN beta
    n += t * f * 9 + f;         // 3x3 s2 + BN beta
    in_ch.push_back(f);
  }
  for (size_t k = 0; k < in_ch.size(); ++k) n += in_ch[k] * A[k] * (classes + 4) * 9 + A[k] * (classes + 4);
  return n;
}

}  // namespace

TEST_CASE("gluon ssd: unknown preset names list the known ones") {
  try {
    models::gluon_ssd_preset("ssd512_resnet34_v1");
    FAIL("no error");
  } catch (const Error& e) {
    const std::string msg = e.what();
    REQUIRE(msg.find("ssd512_resnet34_v1") != std::string::npos);
    REQUIRE(msg.find("ssd300_mobilenet0_25") != std::string::npos);
    REQUIRE(msg.find("ssd512_resnet152_v2") != std::string::npos);
  }
  REQUIRE_THROWS_WITH(make("ssd300_mobilenet_0_25", 21), Catch::Contains("known: "));
  REQUIRE_THROWS_WITH(models::MobileNetV1Backbone(0.3), Catch::Contains("multiplier"));
}

TEST_CASE("gluon ssd: mobilenet presets, parameter counts from the layer list, maps and anchor counts") {
  struct Case {
    const char* arch;
    double mult;
    std::vector<int64_t> filters, maps;
    int64_t anchors;
  };
  const std::vector<int64_t> A = {4, 6, 6, 6, 4, 4};
  const Case cases[] = {
      {"ssd512_mobilenet1_0", 1.0, {512, 512, 256, 256}, {32, 16, 8, 4, 2, 1}, 6132},
      {"ssd300_mobilenet0_25", 0.25, {256, 256, 128, 128}, {19, 10, 5, 3, 2, 1}, 2268},
  };
  for (const Case& cs : cases) {
    INFO(cs.arch);
    auto m = make(cs.arch, 21);
    auto* g = dynamic_cast<models::GluonSSD*>(m.get());
    REQUIRE(g);
    const int64_t src1 = int64_t(512 * cs.mult), src2 = int64_t(1024 * cs.mult);
    REQUIRE(g->backbone().source_channels() == std::vector<int64_t>{src1, src2});
    REQUIRE(count_params(g->backbone()) == mobilenet_v1_params(cs.mult));
    REQUIRE(count_params(*m) == mobilenet_v1_params(cs.mult) + ssd_head_params({src1, src2}, cs.filters, A, 21));
    REQUIRE(g->feature_sizes() == cs.maps);
    REQUIRE(m->anchors(Device::cpu()).size(0) == cs.anchors);
    auto shapes = m->block_shapes();
    REQUIRE(shapes.size() == 8);
    for (size_t k = 0; k < 6; ++k) REQUIRE(shapes[k].second[2] == cs.maps[k]);
    REQUIRE(shapes[6].second == Shape{1, cs.anchors, 4});
    REQUIRE(shapes[7].second == Shape{1, cs.anchors, 21});
  }
  // GluonCV's own figures for width 1.0 (the backbone without pooling and classifier).
  REQUIRE(mobilenet_v1_params(1.0) == 3206976);
}

TEST_CASE("gluon ssd: anchors follow GluonCV (pixels, order, no clip, the mobilenet0.25 steps)") {
  auto m = make("ssd300_mobilenet0_25", 21);
  std::vector<float> a = m->anchors(Device::cpu()).to_vector<float>();
  // Location (0, 0) of level 0: centre (4, 4) (step 8), sizes 21 and sqrt(21 * 45), ratios 2, 1/2.
  const double s0 = 21, s1 = std::sqrt(21.0 * 45.0), r2 = std::sqrt(2.0);
  const double want[4][4] = {{4 - s0 / 2, 4 - s0 / 2, 4 + s0 / 2, 4 + s0 / 2},
                             {4 - s1 / 2, 4 - s1 / 2, 4 + s1 / 2, 4 + s1 / 2},
                             {4 - s0 * r2 / 2, 4 - s0 / r2 / 2, 4 + s0 * r2 / 2, 4 + s0 / r2 / 2},
                             {4 - s0 / r2 / 2, 4 - s0 * r2 / 2, 4 + s0 / r2 / 2, 4 + s0 * r2 / 2}};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) REQUIRE(a[i * 4 + j] == Approx(want[i][j]).margin(1e-4));
  REQUIRE(a[0] < 0);  // not clipped to the image
  // The quirk: level 0 (19 x 19, 4 anchors) has step 8, so its last centre is 18.5 * 8 = 148.
  const int64_t last = (19 * 19 - 1) * 4;
  REQUIRE((a[last * 4 + 0] + a[last * 4 + 2]) / 2 == Approx(148).margin(1e-4));
  REQUIRE((a[last * 4 + 1] + a[last * 4 + 3]) / 2 == Approx(148).margin(1e-4));
  // Level 1 (10 x 10, 6 anchors): ratio 3 is the fifth box, w = 45 sqrt 3, step 16.
  const int64_t b = 19 * 19 * 4 * 4 + 4 * 4;
  REQUIRE(a[b + 2] - a[b + 0] == Approx(45 * std::sqrt(3.0)).margin(1e-3));
  REQUIRE((a[b + 0] + a[b + 2]) / 2 == Approx(8).margin(1e-4));

  // voc and coco sizes differ only for resnet50_v1; mobilenet1.0's are GluonCV's 512 list.
  auto voc = make("ssd512_mobilenet1_0", 21, "voc"), coco = make("ssd512_mobilenet1_0", 21, "coco");
  REQUIRE_CLOSE(voc->anchors(Device::cpu()), coco->anchors(Device::cpu()), 0, 0);
  std::vector<float> v = voc->anchors(Device::cpu()).to_vector<float>();
  REQUIRE(v[2] - v[0] == Approx(51.2).margin(1e-4));
  REQUIRE((v[0] + v[2]) / 2 == Approx(8).margin(1e-4));  // step 16
}

TEST_CASE("gluon ssd: custom anchor sizes and another input size") {
  models::ModelConfig c;
  c.arch = "ssd300_mobilenet0_25";
  c.num_classes = 3;
  c.anchor_preset = "custom";
  REQUIRE(models::anchor_scale_count(c.arch) == 7);
  REQUIRE(models::anchor_scale_count("ssd512_resnet152_v2") == 8);
  c.anchor_scales = {0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9};
  auto m = models::create_model(c);
  std::vector<float> a = m->anchors(Device::cpu()).to_vector<float>();
  REQUIRE(a[2] - a[0] == Approx(0.05 * 300).margin(1e-4));
  c.anchor_scales.pop_back();
  REQUIRE_THROWS_WITH(models::create_model(c), Catch::Contains("takes 7 anchor scales"));

  // At 600 the preset's pixel sizes and steps scale by 2: 20 maps of 38, ...
  auto big = make("ssd300_mobilenet0_25", 3);
  big->set_input_size(600);
  auto* g = dynamic_cast<models::GluonSSD*>(big.get());
  REQUIRE(g->feature_sizes() == std::vector<int64_t>{38, 19, 10, 5, 3, 2});
  std::vector<float> b = big->anchors(Device::cpu()).to_vector<float>();
  REQUIRE(b[2] - b[0] == Approx(42).margin(1e-4));
  REQUIRE((b[0] + b[2]) / 2 == Approx(8).margin(1e-4));
  REQUIRE_THROWS_WITH(big->set_input_size(32), Catch::Contains("input_size"));
}

TEST_CASE("gluon ssd: a training step (fixed gamma stays 1, beta moves) and a state_dict round trip") {
  manual_seed(3);
  auto m = make("ssd300_mobilenet0_25", 5);
  // The expander's gamma is a buffer, not a parameter.
  bool gamma_is_param = false;
  for (auto& [name, p] : m->named_parameters()) gamma_is_param = gamma_is_param || name == "expand.0.bn.weight";
  REQUIRE_FALSE(gamma_is_param);
  REQUIRE(m->find("expand.0.bn.weight").defined());
  Tensor x = randn({2, 3, 300, 300});
  models::Targets t;
  t.boxes = from_vector(std::vector<float>{30, 40, 150, 200, 160, 20, 280, 120, 50, 60, 250, 260, 0, 0, 0, 0}, {2, 2, 4});
  t.labels = from_vector(std::vector<int64_t>{3, 4, 1, 0}, {2, 2});
  t.counts = from_vector(std::vector<int64_t>{2, 1}, {2});
  auto h = m->forward_heads(x);
  REQUIRE(h.class_logits.sizes() == Shape{2, 2268, 5});
  REQUIRE(h.box_regression.sizes() == Shape{2, 2268, 4});
  auto l = m->loss(h, t);
  REQUIRE(std::isfinite(l.total.item()));
  REQUIRE(l.classification.item() > 0);
  REQUIRE(l.box_regression.item() > 0);
  l.total.backward();
  for (const char* name : {"backbone.features.0.weight", "expand.3.conv.weight", "expand.3.bn.bias",
                           "class_predictors.5.weight", "box_predictors.2.bias"}) {
    INFO(name);
    Tensor g = m->find(name).grad();
    REQUIRE(g.defined());
    double mx = 0;
    for (float v : g.to_vector<float>()) mx = std::max(mx, double(std::fabs(v)));
    REQUIRE(mx > 0);
  }
  optim::SGDOptions o;
  o.lr = 1e-2;
  optim::SGD opt(m->named_parameters(), o);
  std::vector<float> beta = m->find("expand.0.bn.bias").to_vector<float>();
  opt.step();
  REQUIRE(m->find("expand.0.bn.bias").to_vector<float>() != beta);
  REQUIRE(m->find("expand.0.bn.weight").to_vector<float>() == std::vector<float>(256, 1.0f));
  REQUIRE(m->find("expand.0.bn.running_mean").to_vector<float>() != std::vector<float>(256, 0.0f));

  auto m2 = make("ssd300_mobilenet0_25", 5);
  m2->load_state_dict(m->state_dict());
  m->eval();
  m2->eval();
  NoGradGuard ng;
  Tensor x1 = x.narrow(0, 0, 1).contiguous();
  REQUIRE_CLOSE(m2->forward_heads(x1).class_logits, m->forward_heads(x1).class_logits, 0, 0);
  // Post-processing: at most GluonCV's 100 boxes per image.
  REQUIRE(m->postprocess_options().max_per_image == 100);
  auto d = m->postprocess(m->forward_heads(x1));
  REQUIRE(d.counts.to_vector<int64_t>()[0] <= 100);
}

TEST_CASE("gluon ssd: resnet presets, maps, anchor counts, voc/coco sizes and parameter counts") {
  struct Case {
    const char* arch;
    std::vector<int64_t> maps, A;
    int64_t anchors;
  };
  const Case cases[] = {
      {"ssd512_resnet18_v1", {32, 16, 8, 4, 2, 1}, {4, 6, 6, 6, 4, 4}, 6132},
      {"ssd512_resnet50_v1", {32, 16, 8, 4, 2, 1}, {4, 6, 6, 6, 4, 4}, 6132},
      {"ssd512_resnet101_v2", {32, 16, 8, 4, 2, 1}, {4, 6, 6, 6, 4, 4}, 6132},
      {"ssd512_resnet152_v2", {64, 32, 16, 8, 4, 2, 1}, {4, 6, 6, 6, 6, 4, 4}, 24564},
  };
  for (const Case& cs : cases) {
    INFO(cs.arch);
    auto m = make(cs.arch, 21);
    auto* g = dynamic_cast<models::GluonSSD*>(m.get());
    REQUIRE(g);
    REQUIRE(g->feature_sizes() == cs.maps);
    REQUIRE(m->anchors(Device::cpu()).size(0) == cs.anchors);
    // The backbone's own count is checked layer by layer in test_gluon_resnet; the rest here.
    REQUIRE(count_params(*m) ==
            count_params(g->backbone()) + ssd_head_params(g->backbone().source_channels(), {512, 512, 256, 256}, cs.A, 21));
  }
  // resnet50_v1 is the only preset whose _coco sizes differ: 51.2, 133.12, ... at 512.
  auto voc = make("ssd512_resnet50_v1", 3, "voc"), coco = make("ssd512_resnet50_v1", 3, "coco");
  const std::vector<float> v = voc->anchors(Device::cpu()).to_vector<float>(), c = coco->anchors(Device::cpu()).to_vector<float>();
  REQUIRE(v[6] - v[4] == Approx(std::sqrt(51.2 * 102.4)).margin(1e-3));
  REQUIRE(c[6] - c[4] == Approx(std::sqrt(51.2 * 133.12)).margin(1e-3));
  // resnet152_v2 starts at stride 8: level 0 is 64 x 64 with step 8.
  auto r152 = make("ssd512_resnet152_v2", 3);
  const std::vector<float> a = r152->anchors(Device::cpu()).to_vector<float>();
  const int64_t last = (64 * 64 - 1) * 4;
  REQUIRE((a[last * 4] + a[last * 4 + 2]) / 2 == Approx(63.5 * 8).margin(1e-3));
}

TEST_CASE("gluon ssd: ssd300_mobilenet0_25 overfits a fixed batch", "[models][gluon_ssd]") {
  // A broken loss, matcher, expander or backbone gradient cannot fit: the loss must fall to
  // a small fraction of its start. Measured: see the INFO line (Adam 2e-3, input 128).
  manual_seed(9);
  models::ModelConfig c;
  c.arch = "ssd300_mobilenet0_25";
  c.num_classes = 4;
  c.input_size = 128;
  c.anchor_preset = "custom";  // steps that tile the image, sizes of the boxes below
  c.anchor_scales = {0.15, 0.25, 0.35, 0.45, 0.6, 0.75, 0.9};
  auto m = models::create_model(c);
  Generator gen(4);
  Tensor x = rand({2, 3, 128, 128}, gen) * 2.0 - 1.0;
  models::Targets t;
  t.boxes = from_vector(std::vector<float>{10, 12, 50, 60, 70, 64, 120, 110, 30, 20, 90, 100, 0, 0, 0, 0}, {2, 2, 4});
  t.labels = from_vector(std::vector<int64_t>{1, 2, 3, 0}, {2, 2});
  t.counts = from_vector(std::vector<int64_t>{2, 1}, {2});
  optim::AdamOptions o;
  o.lr = 2e-3;
  optim::Adam opt(m->named_parameters(), o);
  double first = 0, last = 0;
  for (int it = 0; it < 60; ++it) {
    opt.zero_grad();
    auto l = m->loss(m->forward_heads(x), t);
    l.total.backward();
    opt.step();
    last = l.total.item();
    REQUIRE(std::isfinite(last));
    if (it == 0) first = last;
  }
  INFO("first " << first << " last " << last);
  CHECK(last < 0.1 * first);
}

TEST_CASE("gluon ssd: the fixed gamma's stored value is ignored, as MXNet's fix_gamma does") {
  manual_seed(2);
  auto m = make("ssd300_mobilenet0_25", 3);
  m->eval();
  NoGradGuard ng;
  Tensor x = randn({1, 3, 96, 96});
  m->set_input_size(96);
  const Tensor before = m->forward_heads(x).class_logits;
  m->find("expand.1.bn.weight").fill_(3.0);
  REQUIRE_CLOSE(m->forward_heads(x).class_logits, before, 0, 0);
  m->find("expand.1.bn.bias").fill_(0.5);  // beta is used
  REQUIRE_FALSE(m->forward_heads(x).class_logits.to_vector<float>() == before.to_vector<float>());
}
