// ImageNet backbone weights checked against the classifier's layout (see models/backbone_weights.h).
#include "models/backbone_weights.h"

#include <map>
#include <set>

#include "engine/error.h"
#include "engine/io/safetensors.h"

namespace models {
using namespace eng;

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// "<digits>.<rest>" at the front of `s`: the index (at most 3 digits, so no overflow) and the
// rest; false for anything else ("07." is refused: torchvision never writes leading zeros).
bool split_index(const std::string& s, int& index, std::string& rest) {
  const size_t dot = s.find('.');
  if (dot == std::string::npos || dot == 0 || dot > 3 || dot + 1 >= s.size()) return false;
  if (s[0] == '0' && dot > 1) return false;
  int v = 0;
  for (size_t i = 0; i < dot; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  index = v;
  rest = s.substr(dot + 1);
  return true;
}

std::optional<std::string> vgg16_name(const std::string& key) {
  const std::string p = "features.";
  if (!starts_with(key, p)) return std::nullopt;  // classifier.* (fc6/fc7 of the classifier): not used
  int i = 0;
  std::string rest;
  if (!split_index(key.substr(p.size()), i, rest)) return std::string();
  // torchvision _vgg_extractor: features[:23] up to conv4_3's ReLU, then extra.0 = features[23:-1]
  // (pool4, conv5_1..conv5_3 with their ReLUs) followed by the new fc block.
  if (i <= 22) return "backbone.features." + std::to_string(i) + "." + rest;
  if (i <= 29) return "backbone.extra.0." + std::to_string(i - 23) + "." + rest;
  return std::string();
}

std::optional<std::string> resnet50_name(const std::string& key) {
  for (const char* p : {"conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4."})
    if (starts_with(key, p)) return "backbone.body." + key;
  return std::nullopt;  // fc.*
}

std::string shape_of(const Tensor& t) { return shape_str(t.sizes()); }

std::optional<std::string> gluon_resnet_name(const std::string& key) {
  for (const char* p : {"conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4."})
    if (starts_with(key, p)) return "backbone." + key;
  return std::nullopt;  // fc.*
}

bool gluon_v1_bias(const std::string& name) {
  return starts_with(name, "backbone.layer") && (ends_with(name, ".conv1.bias") || ends_with(name, ".conv3.bias"));
}

}  // namespace

std::optional<std::string> mobilenet_v3_large_backbone_name(const std::string& key) {
  const std::string p = "features.";
  if (!starts_with(key, p)) return std::nullopt;  // classifier.*
  int i = 0;
  std::string rest;
  if (!split_index(key.substr(p.size()), i, rest)) return std::string();
  // SSDLiteFeatureExtractorMobileNet: features[0] = Sequential(*backbone[:13], backbone[13].block[0]),
  // features[1] = Sequential(backbone[13].block[1:], *backbone[14:]); the slice keeps keys 1..3.
  if (i <= 12) return "backbone.features.0." + std::to_string(i) + "." + rest;
  if (i == 13) {
    const std::string b = "block.";
    int j = 0;
    std::string r;
    if (!starts_with(rest, b) || !split_index(rest.substr(b.size()), j, r) || j > 3) return std::string();
    if (j == 0) return "backbone.features.0.13." + r;
    return "backbone.features.1.0." + std::to_string(j) + "." + r;
  }
  if (i <= 16) return "backbone.features.1." + std::to_string(i - 13) + "." + rest;
  return std::string();
}

BackboneLayout vgg16_backbone_layout() {
  return {"torchvision vgg16", &vgg16_name,
          {"backbone.features.", "backbone.extra.0.1.", "backbone.extra.0.3.", "backbone.extra.0.5."},
          "features.0.weight", nullptr};
}

BackboneLayout resnet50_backbone_layout() {
  return {"torchvision resnet50", &resnet50_name, {"backbone.body."}, "conv1.weight", nullptr};
}

BackboneLayout mobilenet_v3_large_backbone_layout() {
  return {"torchvision mobilenet_v3_large", &mobilenet_v3_large_backbone_name, {"backbone.features."},
          "features.0.0.weight", nullptr};
}

BackboneLayout gluon_resnet_v1_backbone_layout(const std::string& which) {
  ENGINE_CHECK(which == "resnet18" || which == "resnet50", "gluon_resnet_v1_backbone_layout: ", which,
               " is not resnet18 or resnet50");
  return {"torchvision " + which, &gluon_resnet_name, {"backbone."}, "conv1.weight", &gluon_v1_bias};
}

std::optional<BackboneLayout> imagenet_backbone_layout(const std::string& arch) {
  if (arch == "ssd512_resnet18_v1") return gluon_resnet_v1_backbone_layout("resnet18");
  if (arch == "ssd512_resnet50_v1") return gluon_resnet_v1_backbone_layout("resnet50");
  if (arch == "ssd300_vgg16" || arch == "ssd512_vgg16") return vgg16_backbone_layout();
  if (arch == "retinanet_resnet50_fpn" || arch == "fasterrcnn_resnet50_fpn") return resnet50_backbone_layout();
  if (arch == "ssdlite320_mobilenet_v3_large") return mobilenet_v3_large_backbone_layout();
  return std::nullopt;
}

BackboneLoadReport load_backbone_weights(DetectionModel& model, const std::string& path, const BackboneLayout& layout) {
  io::SafetensorsFile f = io::load_safetensors(path);
  const auto own_list = model.state_dict();
  std::map<std::string, Tensor> own(own_list.begin(), own_list.end());
  const std::string arch = model.config().arch;
  const std::string bad = path + ": not a " + layout.name + " backbone for " + arch + ": ";
  auto under_layout = [&](const std::string& name) {
    for (const auto& p : layout.model_prefixes)
      if (starts_with(name, p)) return true;
    return false;
  };

  BackboneLoadReport report;
  std::vector<std::pair<std::string, Tensor>> to_load;
  std::set<std::string> got;
  for (const auto& [key, t] : f.tensors) {
    const std::optional<std::string> name = layout.rename(key);
    if (!name) {
      report.skipped.push_back({key, "not backbone"});
      continue;
    }
    auto it = name->empty() ? own.end() : own.find(*name);
    if (it == own.end() || !under_layout(*name)) {
      // FrozenBatchNorm2d keeps no step count: a file's count has nowhere to go, harmlessly.
      if (!name->empty() && ends_with(key, "num_batches_tracked") && it == own.end()) {
        report.skipped.push_back({key, "not in model (as " + *name + ")"});
        continue;
      }
      ENGINE_FAIL(bad, "file key '", key, "' ", shape_of(t), " has no place in the model",
                  name->empty() ? std::string() : " (no key '" + *name + "')");
    }
    ENGINE_CHECK(it->second.sizes() == t.sizes(), bad, "file key '", key, "' is ", shape_of(t), ", model key '", *name,
                 "' is ", shape_of(it->second));
    to_load.emplace_back(*name, t);
    report.loaded.emplace_back(key, *name);
    got.insert(*name);
  }
  if (to_load.empty()) {
    std::string expected;
    if (auto ex = layout.rename(layout.example_file_key); ex && own.count(*ex))
      expected = "; expected keys such as '" + layout.example_file_key + "' for model key '" + *ex + "' " +
                 shape_of(own.at(*ex));
    if (f.tensors.empty()) ENGINE_FAIL(bad, "the file holds no tensors", expected);
    ENGINE_FAIL(bad, "no key of the file belongs to the backbone (first key '", f.tensors[0].first, "' ",
                shape_of(f.tensors[0].second), expected, ")");
  }
  size_t expected_count = 0;
  std::string first_missing;
  for (const auto& [name, t] : own_list) {
    if (!under_layout(name) || ends_with(name, "num_batches_tracked")) continue;
    if (layout.may_stay && layout.may_stay(name)) continue;
    ++expected_count;
    if (!got.count(name) && first_missing.empty()) first_missing = "model key '" + name + "' " + shape_of(t);
  }
  if (!first_missing.empty()) {
    size_t filled = 0;
    for (const auto& name : got) filled += ends_with(name, "num_batches_tracked") ? 0 : 1;
    ENGINE_FAIL(bad, first_missing, " got nothing from the file (it fills ", filled, " of the ", expected_count,
                " backbone tensors)");
  }
  try {
    model.load_state_dict(to_load, /*strict=*/false);
  } catch (const Error& e) {
    ENGINE_FAIL(bad, e.what());
  }
  for (const auto& [name, t] : own_list)
    if (under_layout(name) && !got.count(name)) report.not_loaded.push_back(name);
  return report;
}

}  // namespace models
