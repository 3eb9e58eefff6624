// ssdlite320_mobilenet_v3_large and its MobileNetV3-Large backbone: structure (parameter
// counts, torchvision's key list and order), anchors, head shapes, a training step and a
// checkpoint round trip, and parity with torchvision on a fixture made by
//   python tools/make_ssdlite_fixture.py --num-classes 5 \
//       --out tests/fixtures/ssdlite320_mobilenet_v3_large_parity.safetensors
// The reference is computed in float64 by torchvision (stored as float32) from float32
// parity_init weights, in eval mode (BatchNorm on running statistics: see the script for why).
// Tolerances: source maps and head outputs 1e-4 relative + 1e-4 * max|ref|; anchors 1e-4 px;
// losses 1e-4 relative; gradients 1e-3 relative + 1e-3 * max|ref|; detections: same count,
// scores 1e-4, labels equal, boxes IoU > 0.999 (matched among near-equal scores).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "engine/optim.h"
#include "models/detection_model.h"
#include "models/mobilenet_v3.h"
#include "models/parity_init.h"
#include "models/ssdlite.h"
#include "test_helpers.h"

using namespace eng;

namespace {

const char* kArch = "ssdlite320_mobilenet_v3_large";

std::shared_ptr<models::DetectionModel> make(int64_t classes) {
  models::ModelConfig c;
  c.arch = kArch;
  c.num_classes = classes;
  return models::create_model(c);
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::fabs(v));
  return m;
}

double iou(const float* a, const float* b) {
  const double iw = std::max(0.0, double(std::min(a[2], b[2])) - std::max(a[0], b[0]));
  const double ih = std::max(0.0, double(std::min(a[3], b[3])) - std::max(a[1], b[1]));
  const double inter = iw * ih;
  const double u = double(a[2] - a[0]) * (a[3] - a[1]) + double(b[2] - b[0]) * (b[3] - b[1]) - inter;
  return u > 0 ? inter / u : (inter == 0 && std::equal(a, a + 4, b) ? 1.0 : 0.0);
}

const std::string kFixture = std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/ssdlite320_mobilenet_v3_large_parity.safetensors";

}  // namespace

TEST_CASE("mobilenet_v3_large: block table, parameter counts and names") {
  // The table of torchvision's _mobilenet_v3_conf, checked row by row on a few rows.
  auto t = models::mobilenet_v3_large_table(false);
  REQUIRE(t.size() == 15);
  REQUIRE((t[3].kernel == 5 && t[3].expanded_channels == 72 && t[3].out_channels == 40 && t[3].use_se &&
           !t[3].use_hardswish && t[3].stride == 2));
  REQUIRE((t[12].expanded_channels == 672 && t[12].out_channels == 160 && t[12].stride == 2));
  auto tr = models::mobilenet_v3_large_table(true);
  REQUIRE((tr[12].out_channels == 80 && tr[13].expanded_channels == 480 && tr[14].out_channels == 80));

  models::MobileNetV3Large full;
  // torchvision mobilenet_v3_large().features: 2,971,952 parameters (classifier excluded).
  REQUIRE(full.num_parameters() == 2971952);
  REQUIRE(full.out_channels == 960);
  models::MobileNetV3Options o;
  o.reduced_tail = true;
  models::MobileNetV3Large reduced(o);
  // reduced_tail=True features: the 1,620,512 of the SSDlite backbone (seed-specs A7).
  REQUIRE(reduced.num_parameters() == 1620512);
  REQUIRE(reduced.out_channels == 480);
  REQUIRE(full.find("features.5.block.2.fc1.weight").sizes() == Shape{32, 120, 1, 1});  // make_divisible(30, 8)
  REQUIRE(full.find("features.4.block.2.fc1.weight").sizes() == Shape{24, 72, 1, 1});   // make_divisible(18, 8)
  REQUIRE(full.find("features.1.block.0.0.weight").sizes() == Shape{16, 1, 3, 3});      // no expand when 16 == 16
  REQUIRE(full.find("features.16.0.weight").sizes() == Shape{960, 160, 1, 1});

  NoGradGuard ng;
  full.eval();
  Tensor y = full.forward(randn({1, 3, 224, 224}));
  REQUIRE(y.sizes() == Shape{1, 960, 7, 7});
}

TEST_CASE("ssdlite320_mobilenet_v3_large: parameter count, anchors and shapes") {
  auto m = make(91);
  REQUIRE(m->num_parameters() == 3440060);  // torchvision's weights meta num_params
  REQUIRE(m->config().input_size == 320);
  REQUIRE(m->anchors(Device::cpu()).sizes() == Shape{3234, 4});
  auto* s = dynamic_cast<models::SSDLiteMobileNetV3*>(m.get());
  REQUIRE(s != nullptr);
  REQUIRE(s->feature_sizes() == std::vector<int64_t>{20, 10, 5, 3, 2, 1});
  REQUIRE(m->pixel_mean()[1] == 127.5);
  REQUIRE(m->pixel_std()[2] == 127.5);
  auto o = m->postprocess_options();
  REQUIRE(o.score_threshold == 0.001);
  REQUIRE(o.nms_threshold == 0.55);
  REQUIRE(o.max_per_image == 300);
  REQUIRE(o.topk_candidates == 300);

  auto bs = m->block_shapes();
  REQUIRE(bs.size() == 8);
  REQUIRE(bs[0].second == Shape{1, 672, 20, 20});
  REQUIRE(bs[1].second == Shape{1, 480, 10, 10});
  REQUIRE(bs[2].second == Shape{1, 512, 5, 5});
  REQUIRE(bs[5].second == Shape{1, 128, 1, 1});
  REQUIRE(bs[7].second == Shape{1, 3234, 91});
  REQUIRE(m->is_training());  // block_shapes restores the mode

  models::ModelConfig bad;
  bad.arch = kArch;
  bad.input_size = 8;
  REQUIRE_THROWS_WITH(models::create_model(bad), Catch::Matchers::Contains("input_size"));
}

TEST_CASE("ssdlite320_mobilenet_v3_large: state_dict keys equal torchvision's (fixture key list)") {
  REQUIRE(std::ifstream(kFixture).good());
  auto f = io::load_safetensors(kFixture);
  REQUIRE(std::stoll(f.metadata.at("num_params_91")) == 3440060);
  auto keys = nlohmann::json::parse(f.metadata.at("state_dict_keys")).get<std::vector<std::string>>();
  auto m = make(std::stoll(f.metadata.at("num_classes")));
  auto sd = m->state_dict();
  REQUIRE(sd.size() == keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    INFO("key " << i);
    REQUIRE(sd[i].first == keys[i]);
  }
}

TEST_CASE("ssdlite320_mobilenet_v3_large: parity with torchvision") {
  INFO("fixture " << kFixture << " (regenerate with tools/make_ssdlite_fixture.py)");
  REQUIRE(std::ifstream(kFixture).good());  // fails, never skips, when the fixture is missing
  auto f = io::load_safetensors(kFixture);
  const int64_t K = std::stoll(f.metadata.at("num_classes"));
  auto m = make(K);
  models::parity_init(*m);
  m->eval();

  auto h = m->forward_heads(f.get("input"));
  Tensor rb = f.get("head.bbox_regression"), rc = f.get("head.cls_logits");
  REQUIRE_CLOSE(h.box_regression.detach(), rb, 1e-4 * max_abs(rb), 1e-4);
  REQUIRE_CLOSE(h.class_logits.detach(), rc, 1e-4 * max_abs(rc), 1e-4);
  REQUIRE_CLOSE(m->anchors(Device::cpu()), f.get("anchors"), 1e-4, 1e-5);

  models::Targets t;
  Tensor gb = f.get("targets.boxes");
  t.boxes = gb.unsqueeze(0);
  t.labels = f.get("targets.labels").unsqueeze(0);
  t.counts = from_vector(std::vector<int64_t>{gb.size(0)}, {1});
  auto l = m->loss(h, t);
  REQUIRE_CLOSE(l.classification.detach(), f.get("loss.classification"), 0, 1e-4);
  REQUIRE_CLOSE(l.box_regression.detach(), f.get("loss.bbox_regression"), 0, 1e-4);
  l.total.backward();
  auto grad_names = nlohmann::json::parse(f.metadata.at("grad_names")).get<std::vector<std::string>>();
  for (const auto& n : grad_names) {
    INFO("grad of " << n);
    Tensor ref = f.get("grad." + n);
    Tensor g = m->find(n).grad();
    REQUIRE(g.defined());
    REQUIRE_CLOSE(g, ref, 1e-3 * max_abs(ref), 1e-3);
  }

  auto d = m->postprocess(h);
  Tensor rs = f.get("det.scores"), rbx = f.get("det.boxes"), rl = f.get("det.labels");
  const int64_t n = d.counts.to_vector<int64_t>()[0];
  REQUIRE(n == rs.size(0));
  auto ours_b = d.boxes.select(0, 0).narrow(0, 0, n).contiguous().to_vector<float>();
  auto ours_s = d.scores.select(0, 0).narrow(0, 0, n).contiguous().to_vector<float>();
  auto ours_l = d.labels.select(0, 0).narrow(0, 0, n).contiguous().to_vector<int64_t>();
  auto ref_b = rbx.to_vector<float>();
  auto ref_s = rs.to_vector<float>();
  auto ref_l = rl.to_vector<int64_t>();
  std::vector<bool> used(n, false);
  for (int64_t i = 0; i < n; ++i) {
    INFO("detection " << i << " score " << ours_s[i] << " label " << ours_l[i]);
    REQUIRE(std::fabs(ours_s[i] - ref_s[i]) <= 1e-4 * std::max(1.0f, ref_s[i]));
    bool found = false;
    for (int64_t j = 0; j < n && !found; ++j) {
      if (used[j] || ref_l[j] != ours_l[i] || std::fabs(ours_s[i] - ref_s[j]) > 1e-4 * std::max(1.0f, ref_s[j])) continue;
      if (iou(&ours_b[i * 4], &ref_b[j * 4]) > 0.999) used[j] = found = true;
    }
    REQUIRE(found);
  }
}

TEST_CASE("ssdlite320_mobilenet_v3_large: train step (batch 2) and state_dict round trip") {
  manual_seed(5);
  auto m = make(21);
  Tensor x = randn({2, 3, 320, 320});
  models::Targets t;
  t.boxes = from_vector(std::vector<float>{30, 40, 150, 200, 160, 20, 280, 120, 50, 60, 250, 260, 0, 0, 0, 0},
                        {2, 2, 4});
  t.labels = from_vector(std::vector<int64_t>{3, 7, 1, 0}, {2, 2});
  t.counts = from_vector(std::vector<int64_t>{2, 1}, {2});
  auto h = m->forward_heads(x);
  auto l = m->loss(h, t);
  REQUIRE(std::isfinite(l.total.item()));
  REQUIRE(l.classification.item() > 0);
  REQUIRE(l.box_regression.item() > 0);
  l.total.backward();
  Tensor w = m->find("backbone.features.0.0.0.weight");  // the stem: every path runs through it
  REQUIRE(w.grad().defined());
  REQUIRE(max_abs(w.grad()) > 0);
  REQUIRE(max_abs(m->find("backbone.extra.3.1.0.weight").grad()) > 0);
  REQUIRE(max_abs(m->find("head.classification_head.module_list.5.1.weight").grad()) > 0);
  std::vector<float> before = w.to_vector<float>();
  optim::SGDOptions o;
  o.lr = 1e-2;
  o.momentum = 0.9;
  optim::SGD opt(m->named_parameters(), o);
  opt.step();
  REQUIRE(w.to_vector<float>() != before);
  // Train-mode BN moved the running statistics (momentum 0.03).
  REQUIRE(m->find("backbone.features.0.0.1.running_mean").to_vector<float>() != std::vector<float>(16, 0.0f));

  auto m2 = make(21);
  m2->load_state_dict(m->state_dict());
  m->eval();
  m2->eval();
  NoGradGuard ng;
  Tensor x1 = x.narrow(0, 0, 1).contiguous();
  REQUIRE_CLOSE(m2->forward_heads(x1).class_logits, m->forward_heads(x1).class_logits, 0, 0);
}
