// The detectors' forward_heads lay the per-level head outputs out exactly as the
// view + permute + concat composition they used before eng::flatten_concat_heads
// (torchvision's order). SSD300's order is also checked against torchvision itself by the
// parity fixture in test_ssd.cpp.
#include <map>
#include <string>
#include <vector>

#include "engine/nn/module.h"
#include "models/detection_model.h"
#include "models/factories.h"
#include "test_helpers.h"

using namespace eng;

namespace {

Tensor permute_concat(const std::vector<Tensor>& xs, int64_t k) {
  std::vector<Tensor> flat;
  for (const Tensor& x : xs) flat.push_back(x.permute({0, 2, 3, 1}).reshape({x.size(0), -1, k}));
  return concat(flat, 1);
}

}  // namespace

TEST_CASE("tiny_ssd: heads equal the per-level permute + concat of the head convolutions", "[models][tiny_ssd]") {
  manual_seed(3);
  models::ModelConfig c;
  c.arch = "tiny_ssd";
  c.num_classes = 5;
  c.input_size = 64;
  auto m = models::make_tiny_ssd(c);
  m->eval();
  Tensor images = test::random_f32({2, 3, 64, 64}, 11);
  NoGradGuard ng;
  auto heads = m->forward_heads(images);

  std::map<std::string, nn::Module*> mods;
  for (auto& [name, mod] : m->named_modules()) mods[name] = mod;
  std::vector<Tensor> cls, box;
  Tensor x = images;
  for (int i = 0; i < 5; ++i) {
    const std::string s = std::to_string(i);
    INFO("scale " << i);
    REQUIRE(mods.count("backbone.blocks." + s));
    x = mods["backbone.blocks." + s]->forward(x);
    cls.push_back(mods["head.classification_head.module_list." + s]->forward(x));
    box.push_back(mods["head.regression_head.module_list." + s]->forward(x));
  }
  Tensor rc = permute_concat(cls, 5), rb = permute_concat(box, 4);
  REQUIRE(heads.class_logits.sizes() == rc.sizes());
  REQUIRE(heads.box_regression.sizes() == rb.sizes());
  REQUIRE(heads.class_logits.to_vector<float>() == rc.to_vector<float>());
  REQUIRE(heads.box_regression.to_vector<float>() == rb.to_vector<float>());
}
