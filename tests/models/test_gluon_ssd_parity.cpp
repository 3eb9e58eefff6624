// Numeric parity of a whole GluonCV SSD preset (models/gluon_ssd.h: backbone, FeatureExpander,
// class/box predictors, anchors) with a PyTorch twin of GluonCV's ssd_512_resnet50_v1, on a
// fixture made by
//   python tools/make_gluon_ssd_fixture.py --out tests/fixtures/ssd512_resnet50_v1_parity.safetensors
// (input 128, 5 classes with background, eval mode, parity_init weights with every fixed gamma
// reset to 1; reference computed in float64, stored as float32; no weights stored).
// Compared: state_dict keys and their order; the six feature maps and both heads within
// 1e-4 relative + 1e-4 * max|ref| (per level, so a mismatch names its level); GluonCV's
// anchors (_voc and _coco sizes) within 1e-4 px. The loss on the fixture's targets only has to
// be finite and positive: GluonCV matches bipartite then IoU 0.5, our loss torchvision's way,
// so loss values are not comparable by design. The [cuda] test runs the same model on CUDA
// (the emulator in build-emu) against the CPU at a small input.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "models/detection_model.h"
#include "models/gluon_ssd.h"
#include "models/parity_init.h"
#include "test_helpers.h"

using namespace eng;

namespace {

const std::string kFixture = std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/ssd512_resnet50_v1_parity.safetensors";
const std::string kArch = "ssd512_resnet50_v1";

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::fabs(v));
  return m;
}

std::shared_ptr<models::GluonSSD> make(int64_t classes, int64_t size, const std::string& preset = "coco") {
  models::ModelConfig c;
  c.arch = kArch;
  c.num_classes = classes;
  c.input_size = size;
  c.anchor_preset = preset;
  auto m = std::dynamic_pointer_cast<models::GluonSSD>(models::create_model(c));
  REQUIRE(m);
  return m;
}

// parity_init, then the FeatureExpander's fixed gammas back to 1 (the twin does the same; in
// GluonCV they are MXNet fix_gamma BatchNorms, whose gamma is 1 whatever is stored).
int reset_fixed_gammas(nn::Module& m) {
  int n = 0;
  for (auto& [name, t] : m.named_buffers()) {
    if (name.rfind("expand.", 0) == 0 && name.size() > 9 && name.compare(name.size() - 9, 9, "bn.weight") == 0) {
      t.fill_(1.0);
      ++n;
    }
  }
  return n;
}

// Per-level slices of a [1, A, K] head: level k holds fmap_k^2 * A_k rows.
std::vector<std::pair<int64_t, int64_t>> level_rows(const models::GluonSSD& m) {
  std::vector<std::pair<int64_t, int64_t>> out;
  int64_t start = 0;
  const auto& fm = m.feature_sizes();
  for (size_t k = 0; k < fm.size(); ++k) {
    const int64_t n = fm[k] * fm[k] * (m.preset().ratio_counts[k] + 1);
    out.emplace_back(start, n);
    start += n;
  }
  return out;
}

void require_head_close(const models::GluonSSD& m, const Tensor& ours, const Tensor& ref, const char* what) {
  INFO(what);
  REQUIRE(ours.sizes() == ref.sizes());
  const double tol = 1e-4 * max_abs(ref);
  auto rows = level_rows(m);
  REQUIRE(rows.back().first + rows.back().second == ref.size(1));
  for (size_t k = 0; k < rows.size(); ++k) {
    INFO("level " << k);
    REQUIRE_CLOSE(ours.narrow(1, rows[k].first, rows[k].second).contiguous(),
                  ref.narrow(1, rows[k].first, rows[k].second).contiguous(), tol, 1e-4);
  }
}

}  // namespace

TEST_CASE("gluon ssd parity: state_dict keys and order equal the PyTorch twin's") {
  INFO("fixture " << kFixture << " (regenerate with tools/make_gluon_ssd_fixture.py)");
  REQUIRE(std::ifstream(kFixture).good());  // fails, never skips, when the fixture is missing
  auto f = io::load_safetensors(kFixture);
  REQUIRE(f.metadata.at("arch") == kArch);
  const int64_t S = std::stoll(f.metadata.at("input_size")), C = std::stoll(f.metadata.at("num_classes"));
  auto keys = nlohmann::json::parse(f.metadata.at("state_dict_keys")).get<std::vector<std::string>>();
  auto m = make(C, S);
  auto sd = m->state_dict();
  REQUIRE(sd.size() == keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    INFO("entry " << i);
    REQUIRE(sd[i].first == keys[i]);
  }
  REQUIRE(std::stoll(f.metadata.at("num_params")) == m->num_parameters());
  auto fm = nlohmann::json::parse(f.metadata.at("feature_sizes")).get<std::vector<int64_t>>();
  REQUIRE(m->feature_sizes() == fm);
  // The fixed gammas are buffers listed after their BatchNorm's beta, as in the twin.
  auto it = std::find_if(sd.begin(), sd.end(), [](const auto& kv) { return kv.first == "expand.0.trans_bn.weight"; });
  REQUIRE(it != sd.end());
  REQUIRE(std::prev(it)->first == "expand.0.trans_bn.bias");
}

TEST_CASE("gluon ssd parity: features, heads and anchors of ssd512_resnet50_v1 match the PyTorch twin") {
  INFO("fixture " << kFixture << " (regenerate with tools/make_gluon_ssd_fixture.py)");
  REQUIRE(std::ifstream(kFixture).good());
  auto f = io::load_safetensors(kFixture);
  const int64_t S = std::stoll(f.metadata.at("input_size")), C = std::stoll(f.metadata.at("num_classes"));
  auto m = make(C, S, "coco");
  models::parity_init(*m);
  REQUIRE(reset_fixed_gammas(*m) == 8);  // 4 expander blocks x (trans_bn, bn)
  m->eval();
  Tensor x = f.get("input");
  REQUIRE(x.sizes() == Shape{1, 3, S, S});

  {
    NoGradGuard g;
    // The six maps the predictors read: the backbone's two sources, then expand.0..3.
    std::vector<Tensor> feats = m->backbone().forward_sources(x);
    nn::Module* expand = nullptr;
    for (auto& [name, mod] : m->named_modules())
      if (name == "expand") expand = mod;
    REQUIRE(expand);
    for (auto& [name, blk] : expand->named_children()) feats.push_back(blk->forward(feats.back()));
    REQUIRE(feats.size() == 6);
    for (size_t i = 0; i < feats.size(); ++i) {
      INFO("feature " << i);
      Tensor ref = f.get("feature." + std::to_string(i));
      REQUIRE(feats[i].sizes() == ref.sizes());
      REQUIRE_CLOSE(feats[i], ref, 1e-4 * max_abs(ref), 1e-4);
    }
  }

  auto h = m->forward_heads(x);
  require_head_close(*m, h.box_regression.detach(), f.get("head.box_regression"), "box_regression");
  require_head_close(*m, h.class_logits.detach(), f.get("head.class_logits"), "class_logits");

  // Anchors: GluonCV's formula evaluated in the script, for both size lists.
  REQUIRE_CLOSE(m->anchors(Device::cpu()), f.get("anchors.coco"), 1e-4, 0);
  auto voc = make(C, S, "voc");
  REQUIRE_CLOSE(voc->anchors(Device::cpu()), f.get("anchors.voc"), 1e-4, 0);
  // They do differ (level 1's sizes: 102.4 vs 133.12 at 512), so each comparison means something.
  REQUIRE(max_abs(sub(f.get("anchors.voc"), f.get("anchors.coco"))) > 1.0);

  // The loss on the fixture's targets: finite and positive (no value parity, see the top).
  models::Targets t;
  Tensor gb = f.get("targets.boxes");
  t.boxes = gb.unsqueeze(0);
  t.labels = f.get("targets.labels").unsqueeze(0);
  t.counts = from_vector(std::vector<int64_t>{gb.size(0)}, {1});
  auto l = m->loss(h, t);
  REQUIRE(std::isfinite(l.total.item()));
  REQUIRE(l.classification.item() > 0);
  REQUIRE(l.box_regression.item() > 0);
  l.total.backward();
  for (const char* name : {"backbone.conv1.weight", "expand.3.conv.weight", "class_predictors.5.bias"}) {
    INFO("grad of " << name);
    Tensor g = m->find(name).grad();
    REQUIRE(g.defined());
    REQUIRE(std::isfinite(max_abs(g)));
    REQUIRE(max_abs(g) > 0);
  }
}

TEST_CASE("gluon ssd parity: ssd512_resnet50_v1 on cuda matches cpu (heads, eval mode)", "[cuda][models]") {
  REQUIRE_CUDA_OR_SKIP();
  NoGradGuard g;
  const int64_t S = 64, C = 5;  // the smallest input the preset takes: maps 4 2 1 1 1 1
  auto cpu = make(C, S);
  auto gpu = make(C, S);
  models::parity_init(*cpu);
  models::parity_init(*gpu);
  reset_fixed_gammas(*cpu);
  reset_fixed_gammas(*gpu);
  gpu->to(Device::cuda());
  cpu->eval();
  gpu->eval();
  manual_seed(7);
  Tensor x = randn({1, 3, S, S});
  auto hc = cpu->forward_heads(x);
  auto hg = gpu->forward_heads(x.to(Device::cuda()));
  require_head_close(*cpu, hg.box_regression.to(Device::cpu()), hc.box_regression, "box_regression");
  require_head_close(*cpu, hg.class_logits.to(Device::cpu()), hc.class_logits, "class_logits");
  REQUIRE_CLOSE(gpu->anchors(Device::cuda()).to(Device::cpu()), cpu->anchors(Device::cpu()), 0, 0);
}
