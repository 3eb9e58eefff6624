// Model weights files (models/weights.h): save / strict load / backbone load / metadata.
#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>

#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "models/factories.h"
#include "models/weights.h"
#include "temp_dir.h"
#include "test_helpers.h"

using namespace eng;
namespace fs = std::filesystem;
using test::TempDir;

namespace {

std::shared_ptr<models::DetectionModel> tiny(int64_t classes, int64_t size, uint64_t seed) {
  manual_seed(seed);
  models::ModelConfig c;
  c.arch = "tiny_ssd";
  c.num_classes = classes;
  c.input_size = size;
  c.anchor_preset = "voc";
  return models::make_tiny_ssd(c);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const eng::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("weights: save then strict load round trip", "[models][weights]") {
  TempDir dir("test_weights");
  auto a = tiny(5, 128, 1);
  // Make the buffers non-trivial too (running stats after a train-mode forward).
  a->forward_heads(randn({2, 3, 128, 128}));
  models::save_model_weights(*a, dir / "a.safetensors", {{"epoch", "3"}});
  auto b = tiny(5, 128, 2);
  CHECK(a->find("backbone.blocks.0.0.0.weight").to_vector<float>() !=
        b->find("backbone.blocks.0.0.0.weight").to_vector<float>());
  models::load_model_weights(*b, dir / "a.safetensors");
  auto sa = a->state_dict(), sb = b->state_dict();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    INFO(sa[i].first);
    CHECK(sa[i].first == sb[i].first);
    CHECK(sa[i].second.dtype() == sb[i].second.dtype());
    CHECK(sa[i].second.to_vector<double>() == sb[i].second.to_vector<double>());
  }
  auto file = io::load_safetensors(dir / "a.safetensors");
  CHECK(file.metadata.at("epoch") == "3");
  CHECK(file.metadata.at("arch") == "tiny_ssd");
  CHECK(file.tensors.size() == sa.size());
  // Extra metadata may not override the config keys.
  CHECK_THROWS_AS(models::save_model_weights(*a, dir / "x.safetensors", {{"arch", "other"}}), eng::Error);
}

TEST_CASE("weights: strict load names every missing, extra and mis-shaped key", "[models][weights]") {
  TempDir dir("test_weights");
  auto a = tiny(5, 128, 1);
  auto sd = a->state_dict();
  std::vector<std::pair<std::string, Tensor>> bad;
  for (auto& [k, t] : sd) {
    if (k == "backbone.blocks.1.0.bias") continue;  // missing
    if (k == "head.regression_head.module_list.2.weight") {
      bad.emplace_back(k, zeros({3, 3}));  // wrong shape
      continue;
    }
    bad.emplace_back(k, t);
  }
  bad.emplace_back("head.extra.weight", zeros({2}));  // unexpected
  io::save_safetensors(dir / "bad.safetensors", bad);
  auto b = tiny(5, 128, 2);
  const auto before = b->find("backbone.blocks.0.0.0.weight").to_vector<float>();
  const std::string msg = error_of([&] { models::load_model_weights(*b, dir / "bad.safetensors"); });
  INFO(msg);
  REQUIRE(!msg.empty());
  CHECK(msg.find("bad.safetensors") != std::string::npos);
  CHECK(msg.find("backbone.blocks.1.0.bias") != std::string::npos);
  CHECK(msg.find("head.extra.weight") != std::string::npos);
  CHECK(msg.find("head.regression_head.module_list.2.weight") != std::string::npos);
  // Nothing was copied.
  CHECK(b->find("backbone.blocks.0.0.0.weight").to_vector<float>() == before);
  // A model with other num_classes does not fit either (class head shapes).
  models::save_model_weights(*a, dir / "a.safetensors");
  auto c = tiny(21, 128, 2);
  CHECK_THROWS_AS(models::load_model_weights(*c, dir / "a.safetensors"), eng::Error);
}

TEST_CASE("weights: backbone-only load report", "[models][weights]") {
  TempDir dir("test_weights");
  auto m = tiny(5, 128, 1);
  // A stand-in for an ImageNet checkpoint: "features.1.*" renames onto TinySSD's block 1.
  std::vector<std::pair<std::string, Tensor>> ck;
  ck.emplace_back("features.1.0.weight", full({128, 64, 3, 3}, 0.25));  // loads
  ck.emplace_back("features.1.0.bias", zeros({7}));                     // shape mismatch
  ck.emplace_back("features.9.weight", zeros({4}));                     // not in model
  ck.emplace_back("classifier.0.weight", zeros({10, 4}));               // not backbone
  io::save_safetensors(dir / "imagenet.safetensors", ck);
  const auto bias_before = m->find("backbone.blocks.1.0.bias").to_vector<float>();
  auto r = models::load_backbone_weights(*m, dir / "imagenet.safetensors", {{"features.", "backbone.blocks."}});
  INFO(r.summary());
  REQUIRE(r.loaded.size() == 1);
  CHECK(r.loaded[0].first == "features.1.0.weight");
  CHECK(r.loaded[0].second == "backbone.blocks.1.0.weight");
  REQUIRE(r.skipped.size() == 3);
  CHECK(r.skipped[0].key == "features.1.0.bias");
  CHECK(r.skipped[0].reason.rfind("shape mismatch", 0) == 0);
  CHECK(r.skipped[1].key == "features.9.weight");
  CHECK(r.skipped[1].reason.rfind("not in model", 0) == 0);
  CHECK(r.skipped[2].key == "classifier.0.weight");
  CHECK(r.skipped[2].reason == "not backbone");
  CHECK(r.summary().rfind("loaded 1, skipped 3", 0) == 0);
  // Every other backbone key was not loaded; the heads are not under the prefix.
  CHECK(r.not_loaded.size() == m->state_dict().size() - 20 /* head tensors */ - 1);
  for (const auto& k : r.not_loaded) CHECK(k.rfind("backbone.blocks.", 0) == 0);
  const auto w = m->find("backbone.blocks.1.0.weight").to_vector<float>();
  CHECK(std::all_of(w.begin(), w.end(), [](float v) { return v == 0.25f; }));
  CHECK(m->find("backbone.blocks.1.0.bias").to_vector<float>() == bias_before);
  // The presets.
  CHECK(models::vgg16_prefix_map() == models::PrefixMap{{"features.", "backbone.features."}});
  auto rn = models::resnet50_prefix_map();
  REQUIRE(rn.size() == 6);
  CHECK(rn[0] == std::make_pair(std::string("conv1."), std::string("backbone.body.conv1.")));
  CHECK(rn[5] == std::make_pair(std::string("layer4."), std::string("backbone.body.layer4.")));
}

TEST_CASE("weights: read_model_config from the metadata", "[models][weights]") {
  TempDir dir("test_weights");
  auto m = tiny(5, 128, 1);
  models::save_model_weights(*m, dir / "m.safetensors");
  models::ModelConfig c = models::read_model_config(dir / "m.safetensors");
  CHECK(c.arch == "tiny_ssd");
  CHECK(c.num_classes == 5);
  CHECK(c.anchor_preset == "voc");
  CHECK(c.input_size == 128);
  // The recovered config rebuilds a model the file loads into.
  auto again = models::create_model(c);
  models::load_model_weights(*again, dir / "m.safetensors");
  // A file without metadata: a clear error.
  io::save_safetensors(dir / "plain.safetensors", {{"x", zeros({1})}});
  const std::string msg = error_of([&] { models::read_model_config(dir / "plain.safetensors"); });
  CHECK(msg.find("arch") != std::string::npos);
  CHECK(msg.find("plain.safetensors") != std::string::npos);
}

TEST_CASE("weights: the matcher is saved when set, old files load with the default, bad values are one error",
          "[models][weights]") {
  TempDir dir("test_weights_matcher");
  auto m = tiny(5, 128, 1);
  models::save_model_weights(*m, dir / "plain.safetensors");  // matcher "": no key written
  io::SafetensorsFile plain = io::load_safetensors(dir / "plain.safetensors");
  CHECK(plain.metadata.count(models::kMetaMatcher) == 0);
  CHECK(models::read_model_config(dir / "plain.safetensors").matcher.empty());
  for (const std::string name : {"ssd", "bipartite"}) {
    models::ModelConfig c = m->config();
    c.matcher = name;
    auto with = models::create_model(c);
    models::save_model_weights(*with, dir / (name + ".safetensors"));
    const models::ModelConfig back = models::read_model_config(dir / (name + ".safetensors"));
    CHECK(back.matcher == name);
    CHECK(models::create_model(back)->config().matcher == name);
  }
  // A value outside the set: one error naming the file, the key and the value.
  plain.metadata[models::kMetaMatcher] = "hungarian";
  io::save_safetensors(dir / "bad.safetensors", plain.tensors, plain.metadata);
  const std::string msg = error_of([&] { models::read_model_config(dir / "bad.safetensors"); });
  CHECK(msg.find("bad.safetensors") != std::string::npos);
  CHECK(msg.find("metadata 'matcher' is 'hungarian', not one of ssd, bipartite") != std::string::npos);
  CHECK(msg.find('\n') == std::string::npos);
  // save_model_weights' extra metadata may not set it.
  CHECK(error_of([&] { models::save_model_weights(*m, dir / "x.safetensors", {{"matcher", "ssd"}}); })
            .find("may not set 'matcher'") != std::string::npos);
  // create_model refuses unknown names, and a matcher for RetinaNet (it has its own).
  models::ModelConfig c = m->config();
  c.matcher = "greedy";
  CHECK(error_of([&] { models::create_model(c); }).find("matcher 'greedy' is not one of ssd, bipartite") !=
        std::string::npos);
  c.arch = "retinanet_resnet50_fpn";
  c.matcher = "bipartite";
  CHECK(error_of([&] { models::create_model(c); }).find("retinanet_resnet50_fpn has its own matcher") !=
        std::string::npos);
}
