// ImageNet backbone weights checked against torchvision's layouts (models/backbone_weights.h)
// and SSDlite's full MobileNetV3 tail (ModelConfig::full_tail). The files are built from
// torchvision's key/shape lists (tests/backbone_files.h): every tensor gets its own constant
// value, so the test can see where each one landed.
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "models/backbone_weights.h"
#include "models/factories.h"
#include "models/weights.h"
#include "backbone_files.h"
#include "temp_dir.h"
#include "test_helpers.h"

using namespace eng;
using test::TempDir;
using Entries = std::vector<std::pair<std::string, Tensor>>;

namespace {

using test::torchvision_state;

std::shared_ptr<models::DetectionModel> make(const std::string& arch, bool full_tail = false, int64_t size = 0) {
  manual_seed(3);
  models::ModelConfig c;
  c.arch = arch;
  c.num_classes = 4;
  c.anchor_preset = "voc";
  c.input_size = size;
  c.full_tail = full_tail;
  return models::create_model(c);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const eng::Error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Every model key the report says was loaded holds the file's value.
void check_landed(models::DetectionModel& m, const Entries& file, const models::BackboneLoadReport& r) {
  std::map<std::string, Tensor> by_key(file.begin(), file.end());
  for (const auto& [key, name] : r.loaded) {
    INFO(key << " -> " << name);
    CHECK(m.find(name).to(DType::f64).to_vector<double>() == by_key.at(key).to(DType::f64).to_vector<double>());
  }
}

}  // namespace

TEST_CASE("backbone weights: the mobilenet_v3_large rename", "[models][weights][backbone]") {
  using models::mobilenet_v3_large_backbone_name;
  CHECK(*mobilenet_v3_large_backbone_name("features.0.0.weight") == "backbone.features.0.0.0.weight");
  CHECK(*mobilenet_v3_large_backbone_name("features.12.block.2.fc1.bias") == "backbone.features.0.12.block.2.fc1.bias");
  // features[13] is split: its expansion ends the first Sequential, the rest starts the second.
  CHECK(*mobilenet_v3_large_backbone_name("features.13.block.0.1.running_var") == "backbone.features.0.13.1.running_var");
  CHECK(*mobilenet_v3_large_backbone_name("features.13.block.1.0.weight") == "backbone.features.1.0.1.0.weight");
  CHECK(*mobilenet_v3_large_backbone_name("features.13.block.3.1.bias") == "backbone.features.1.0.3.1.bias");
  CHECK(*mobilenet_v3_large_backbone_name("features.14.block.0.0.weight") == "backbone.features.1.1.block.0.0.weight");
  CHECK(*mobilenet_v3_large_backbone_name("features.16.1.weight") == "backbone.features.1.3.1.weight");
  // The classifier and other files' keys are not backbone; malformed backbone keys have no place.
  CHECK(!mobilenet_v3_large_backbone_name("classifier.0.weight").has_value());
  CHECK(!mobilenet_v3_large_backbone_name("conv1.weight").has_value());
  CHECK(mobilenet_v3_large_backbone_name("features.17.0.weight")->empty());
  CHECK(mobilenet_v3_large_backbone_name("features.13.block.4.0.weight")->empty());
  CHECK(mobilenet_v3_large_backbone_name("features.13.0.weight")->empty());
  CHECK(mobilenet_v3_large_backbone_name("features.x.weight")->empty());
  CHECK(mobilenet_v3_large_backbone_name("features.01.weight")->empty());
  CHECK(mobilenet_v3_large_backbone_name("features.99999999999999999999.weight")->empty());
  CHECK(models::imagenet_backbone_layout("ssdlite320_mobilenet_v3_large")->name == "torchvision mobilenet_v3_large");
  CHECK(models::imagenet_backbone_layout("ssd512_vgg16")->name == "torchvision vgg16");
  CHECK(models::imagenet_backbone_layout("retinanet_resnet50_fpn")->name == "torchvision resnet50");
  CHECK(!models::imagenet_backbone_layout("tiny_ssd").has_value());
}

TEST_CASE("SSDlite full tail: torchvision's structure with backbone weights, recorded in the metadata",
          "[models][weights][backbone][ssdlite]") {
  TempDir dir("test_backbone_weights");
  auto full = make("ssdlite320_mobilenet_v3_large", true);
  // torchvision ssdlite320_mobilenet_v3_large(weights_backbone=...) at 91 classes: 5,198,540
  // (seed-specs A7; tools/make_backbone_key_lists.py prints it). Here at 4 classes the class
  // heads are smaller: 6 anchors * (91 - 4) classes per level, 1x1 convs with bias.
  auto class_head_diff = [](std::vector<int64_t> in_ch) {
    int64_t d = 0;
    for (int64_t c : in_ch) d += (c + 1) * 6 * (91 - 4);
    return d;
  };
  CHECK(full->num_parameters() + class_head_diff({672, 960, 512, 256, 256, 128}) == 5198540);
  auto reduced = make("ssdlite320_mobilenet_v3_large", false);
  CHECK(reduced->num_parameters() + class_head_diff({672, 480, 512, 256, 256, 128}) == 3440060);
  CHECK(full->find("backbone.features.1.3.0.weight").sizes() == Shape{960, 160, 1, 1});
  CHECK(full->find("backbone.extra.0.0.0.weight").sizes() == Shape{256, 960, 1, 1});
  CHECK(full->find("head.classification_head.module_list.1.0.0.weight").sizes() == Shape{960, 1, 3, 3});
  CHECK(reduced->find("backbone.features.1.3.0.weight").sizes() == Shape{480, 80, 1, 1});
  // Same anchors and feature maps.
  CHECK(full->anchors(Device::cpu()).to_vector<float>() == reduced->anchors(Device::cpu()).to_vector<float>());

  // The tail is in the metadata: read_model_config rebuilds the same structure (ssd_detect,
  // --resume); files without the key (all earlier ones) are the reduced tail.
  models::save_model_weights(*full, dir / "full.safetensors");
  models::save_model_weights(*reduced, dir / "reduced.safetensors");
  CHECK(io::load_safetensors(dir / "full.safetensors").metadata.at(models::kMetaBackboneTail) == "full");
  CHECK(io::load_safetensors(dir / "reduced.safetensors").metadata.count(models::kMetaBackboneTail) == 0);
  models::ModelConfig cf = models::read_model_config(dir / "full.safetensors");
  CHECK(cf.full_tail);
  CHECK_FALSE(models::read_model_config(dir / "reduced.safetensors").full_tail);
  auto again = models::create_model(cf);
  models::load_model_weights(*again, dir / "full.safetensors");
  CHECK(again->find("backbone.extra.0.0.0.weight").to_vector<float>() ==
        full->find("backbone.extra.0.0.0.weight").to_vector<float>());
  // A full-tail file does not load into the reduced model (strict: the shapes are named).
  const std::string msg = error_of([&] { models::load_model_weights(*reduced, dir / "full.safetensors"); });
  CHECK(has(msg, "backbone.features.1.3.0.weight"));

  // Bad metadata and configs: one line each.
  auto file = io::load_safetensors(dir / "reduced.safetensors");
  file.metadata[models::kMetaBackboneTail] = "half";
  io::save_safetensors(dir / "bad_tail.safetensors", file.tensors, file.metadata);
  const std::string bad = error_of([&] { models::read_model_config(dir / "bad_tail.safetensors"); });
  CHECK(has(bad, "bad_tail.safetensors"));
  CHECK(has(bad, "'backbone_tail' is 'half', not full or reduced"));
  CHECK(!has(bad, "\n"));
  file.metadata[models::kMetaBackboneTail] = "full";
  file.metadata[models::kMetaArch] = "tiny_ssd";
  io::save_safetensors(dir / "tiny_full.safetensors", file.tensors, file.metadata);
  CHECK(has(error_of([&] { models::read_model_config(dir / "tiny_full.safetensors"); }), "only ssdlite320"));
  CHECK(has(error_of([&] { make("tiny_ssd", true); }), "full_tail"));
}

TEST_CASE("backbone weights: torchvision mobilenet_v3_large into SSDlite (full tail), and wrong layouts",
          "[models][weights][backbone][ssdlite]") {
  TempDir dir("test_backbone_weights");
  const Entries mb = torchvision_state("mobilenet_v3_large");
  io::save_safetensors(dir / "mobilenet.safetensors", mb);
  const auto layout = models::mobilenet_v3_large_backbone_layout();

  auto m = make("ssdlite320_mobilenet_v3_large", true);
  const auto extra_before = m->find("backbone.extra.0.0.0.weight").to_vector<float>();
  auto r = models::load_backbone_weights(*m, dir / "mobilenet.safetensors", layout);
  INFO(r.summary());
  CHECK(r.loaded.size() == mb.size() - 4);  // all but classifier.{0,3}.{weight,bias}
  REQUIRE(r.skipped.size() == 4);
  for (const auto& s : r.skipped) CHECK((s.key.rfind("classifier.", 0) == 0 && s.reason == "not backbone"));
  CHECK(r.not_loaded.empty());
  size_t backbone_keys = 0;
  for (const auto& [name, t] : m->state_dict()) backbone_keys += name.rfind("backbone.features.", 0) == 0;
  CHECK(r.loaded.size() == backbone_keys);  // every backbone tensor, num_batches_tracked included
  check_landed(*m, mb, r);
  CHECK(m->find("backbone.extra.0.0.0.weight").to_vector<float>() == extra_before);  // extras untouched
  CHECK(r.summary() == "loaded 308, skipped 4 (not backbone 4), model keys not loaded 0");

  // Wrong layouts: one line naming the file, the first mismatching key and both shapes; the
  // model is left as it was.
  auto reduced = make("ssdlite320_mobilenet_v3_large", false);
  const auto first_before = reduced->find("backbone.features.0.0.0.weight").to_vector<float>();
  std::string e = error_of([&] { models::load_backbone_weights(*reduced, dir / "mobilenet.safetensors", layout); });
  INFO(e);
  CHECK(has(e, "mobilenet.safetensors: not a torchvision mobilenet_v3_large backbone for ssdlite320_mobilenet_v3_large"));
  CHECK(has(e, "file key 'features.13.block.3.0.weight' is [160, 672, 1, 1], model key "
               "'backbone.features.1.0.3.0.weight' is [80, 672, 1, 1]"));
  CHECK(!has(e, "\n"));
  CHECK(reduced->find("backbone.features.0.0.0.weight").to_vector<float>() == first_before);

  // A ResNet file: nothing in it belongs to this backbone.
  io::save_safetensors(dir / "resnet.safetensors", torchvision_state("resnet50"));
  e = error_of([&] { models::load_backbone_weights(*m, dir / "resnet.safetensors", layout); });
  CHECK(has(e, "resnet.safetensors: not a torchvision mobilenet_v3_large backbone"));
  CHECK(has(e, "no key of the file belongs to the backbone (first key 'conv1.weight' [64, 3, 7, 7]; expected keys "
               "such as 'features.0.0.weight' for model key 'backbone.features.0.0.0.weight' [16, 3, 3, 3])"));
  // A VGG file: its keys look like features.* but have no place here.
  io::save_safetensors(dir / "vgg.safetensors", torchvision_state("vgg16"));
  e = error_of([&] { models::load_backbone_weights(*m, dir / "vgg.safetensors", layout); });
  CHECK(has(e, "file key 'features.0.weight' [64, 3, 3, 3] has no place in the model (no key "
               "'backbone.features.0.0.weight')"));
  // One tensor of another shape.
  Entries changed = mb;
  changed[6].second = zeros({16, 1, 5, 5});
  REQUIRE(changed[6].first == "features.1.block.0.0.weight");
  io::save_safetensors(dir / "changed.safetensors", changed);
  e = error_of([&] { models::load_backbone_weights(*m, dir / "changed.safetensors", layout); });
  CHECK(has(e, "file key 'features.1.block.0.0.weight' is [16, 1, 5, 5], model key "
               "'backbone.features.0.1.block.0.0.weight' is [16, 1, 3, 3]"));
  // A key of the layout's form that does not exist in MobileNetV3-Large.
  Entries extra_key = mb;
  extra_key.emplace_back("features.17.0.weight", zeros({4}));
  io::save_safetensors(dir / "extra_key.safetensors", extra_key);
  e = error_of([&] { models::load_backbone_weights(*m, dir / "extra_key.safetensors", layout); });
  CHECK(has(e, "file key 'features.17.0.weight' [4] has no place in the model"));
  // A truncated file (features[16] missing): the first model key left empty is named.
  Entries cut;
  for (const auto& kv : mb)
    if (kv.first.rfind("features.16.", 0) != 0) cut.push_back(kv);
  io::save_safetensors(dir / "cut.safetensors", cut);
  e = error_of([&] { models::load_backbone_weights(*m, dir / "cut.safetensors", layout); });
  CHECK(has(e, "model key 'backbone.features.1.3.0.weight' [960, 160, 1, 1] got nothing from the file (it fills 257 of "
               "the 262 backbone tensors)"));
  // An empty file.
  io::save_safetensors(dir / "empty.safetensors", {});
  CHECK(has(error_of([&] { models::load_backbone_weights(*m, dir / "empty.safetensors", layout); }),
            "the file holds no tensors"));
}

TEST_CASE("backbone weights: torchvision vgg16 into SSD300 (conv5 under extra.0) and resnet50 into RetinaNet",
          "[models][weights][backbone]") {
  TempDir dir("test_backbone_weights");
  const Entries vgg = torchvision_state("vgg16");
  io::save_safetensors(dir / "vgg.safetensors", vgg);
  io::save_safetensors(dir / "resnet.safetensors", torchvision_state("resnet50"));
  {
    auto m = make("ssd300_vgg16");
    const auto fc7_before = m->find("backbone.extra.0.7.3.weight").to_vector<float>();
    auto r = models::load_backbone_weights(*m, dir / "vgg.safetensors", models::vgg16_backbone_layout());
    INFO(r.summary());
    CHECK(r.loaded.size() == 26);  // 13 convs; the classifier's 3 linears are skipped
    CHECK(r.skipped.size() == 6);
    CHECK(r.not_loaded.empty());
    check_landed(*m, vgg, r);
    // torchvision's _vgg_extractor: conv5_1 is features[24] -> extra.0[1].
    bool conv5 = false;
    for (const auto& kv : r.loaded) conv5 = conv5 || (kv.first == "features.24.weight" && kv.second == "backbone.extra.0.1.weight");
    CHECK(conv5);
    CHECK(m->find("backbone.extra.0.7.3.weight").to_vector<float>() == fc7_before);  // fc7 is not from the file
    const std::string e =
        error_of([&] { models::load_backbone_weights(*m, dir / "resnet.safetensors", models::vgg16_backbone_layout()); });
    CHECK(has(e, "resnet.safetensors: not a torchvision vgg16 backbone for ssd300_vgg16: no key of the file belongs"));
  }
  {
    auto m = make("retinanet_resnet50_fpn", false, 256);
    const Entries rn = torchvision_state("resnet50");
    auto r = models::load_backbone_weights(*m, dir / "resnet.safetensors", models::resnet50_backbone_layout());
    INFO(r.summary());
    // FrozenBatchNorm2d has no num_batches_tracked: the file's 53 counts are skipped, fc.* too.
    CHECK(r.loaded.size() == rn.size() - 53 - 2);
    CHECK(r.skipped.size() == 55);
    CHECK(r.not_loaded.empty());
    check_landed(*m, rn, r);
    const std::string e =
        error_of([&] { models::load_backbone_weights(*m, dir / "vgg.safetensors", models::resnet50_backbone_layout()); });
    CHECK(has(e, "no key of the file belongs to the backbone (first key 'features.0.weight' [64, 3, 3, 3]; expected "
                 "keys such as 'conv1.weight' for model key 'backbone.body.conv1.weight' [64, 3, 7, 7])"));
  }
}
