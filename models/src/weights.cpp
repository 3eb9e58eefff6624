#include "models/weights.h"

#include "models/anchor_scales.h"

#include <cmath>
#include <cstdlib>
#include <iomanip>
#include <map>
#include <sstream>

#include "engine/error.h"
#include "engine/io/read_file.h"
#include "engine/io/safetensors.h"
#include "engine/nn/layers.h"

namespace models {
using namespace eng;

namespace {

// The largest values a config may record: far above any real model, low enough that sizes
// derived from them cannot overflow.
constexpr int64_t kMaxNumClasses = 1000000;
constexpr int64_t kMaxInputSize = 65536;

// A decimal integer in [min, max] and nothing else (no space, '+', fraction or overflow).
int64_t parse_int(const std::map<std::string, std::string>& meta, const std::string& path, const char* key,
                  int64_t min, int64_t max) {
  auto it = meta.find(key);
  ENGINE_CHECK(it != meta.end(), path, ": weights metadata has no '", key,
               "' (not written by save_model_weights?)");
  const std::string& s = it->second;
  int64_t v = 0;
  ENGINE_CHECK(io::parse_int64(s, min, max, v), path, ": weights metadata '", key, "' is '",
               s.size() > 40 ? s.substr(0, 37) + "..." : s, "', not an integer in [", min, ", ", max, "]");
  return v;
}

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

}  // namespace

std::map<std::string, std::string> model_config_metadata(const ModelConfig& c) {
  std::map<std::string, std::string> meta;
  meta[kMetaArch] = c.arch;
  meta[kMetaNumClasses] = std::to_string(c.num_classes);
  meta[kMetaAnchorPreset] = c.anchor_preset;
  meta[kMetaInputSize] = std::to_string(c.input_size);
  meta[kMetaFormat] = "ssd_engine.detection_model";
  if (!c.anchor_scales.empty()) meta[kMetaAnchorScales] = format_anchor_scales(c.anchor_scales);
  if (!c.matcher.empty()) meta[kMetaMatcher] = c.matcher;  // absent: the architecture's default
  if (c.full_tail) meta[kMetaBackboneTail] = "full";  // absent: reduced (files from before stay valid)
  if (!c.backbone_norm.empty()) meta[kMetaBackboneNorm] = c.backbone_norm;
  if (c.trainable_backbone_layers >= 0) meta[kMetaTrainableLayers] = std::to_string(c.trainable_backbone_layers);
  if (c.min_size > 0 || c.max_size > 0)
    meta[kMetaResizeLimits] = std::to_string(c.min_size) + "," + std::to_string(c.max_size);
  if (c.rpn_top_n_train > 0 || c.rpn_top_n_test > 0)
    meta[kMetaRpnTopN] = std::to_string(c.rpn_top_n_train) + "," + std::to_string(c.rpn_top_n_test);
  return meta;
}

bool read_full_tail(const std::map<std::string, std::string>& metadata, const std::string& path) {
  auto it = metadata.find(kMetaBackboneTail);
  if (it == metadata.end()) return false;
  const std::string& v = it->second;
  ENGINE_CHECK(v == "full" || v == "reduced", path, ": metadata '", kMetaBackboneTail, "' is '",
               v.size() > 40 ? v.substr(0, 37) + "..." : v, "', not full or reduced");
  return v == "full";
}

namespace {
void collect_frozen_bn(const nn::Module& m, std::vector<nn::FrozenBatchNorm2d*>& out) {
  for (const auto& [name, child] : m.named_children()) {
    if (auto* f = dynamic_cast<nn::FrozenBatchNorm2d*>(child.get())) out.push_back(f);
    collect_frozen_bn(*child, out);
  }
}
}  // namespace

std::map<std::string, std::string> frozen_bn_metadata(const nn::Module& model) {
  std::vector<nn::FrozenBatchNorm2d*> bns;
  collect_frozen_bn(model, bns);
  if (bns.empty() || bns.front()->eps == 1e-5) return {};
  for (auto* b : bns)
    ENGINE_CHECK(b->eps == bns.front()->eps, "frozen_bn_metadata: FrozenBatchNorm2d layers with eps ", b->eps, " and ",
                 bns.front()->eps, " in one model");
  std::ostringstream os;
  os << std::setprecision(17) << bns.front()->eps;
  return {{kMetaFrozenBnEps, os.str()}};
}

void save_model_weights(const DetectionModel& model, const std::string& path,
                        const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> meta = extra;
  for (const char* k :
       {kMetaArch, kMetaNumClasses, kMetaAnchorPreset, kMetaInputSize, kMetaFormat, kMetaAnchorScales, kMetaBackboneTail,
        kMetaMatcher, kMetaTrainableLayers, kMetaRpnTopN, kMetaFrozenBnEps, kMetaBackboneNorm, kMetaResizeLimits})
    ENGINE_CHECK(meta.count(k) == 0, "save_model_weights: extra metadata may not set '", k, "'");
  for (auto& kv : model_config_metadata(model.config())) meta[kv.first] = kv.second;
  for (auto& kv : frozen_bn_metadata(model)) meta[kv.first] = kv.second;
  io::save_safetensors(path, model.state_dict(), meta);
}

ModelConfig read_model_config(const std::string& path) {
  io::SafetensorsFile f = io::load_safetensors(path);
  auto it = f.metadata.find(kMetaArch);
  ENGINE_CHECK(it != f.metadata.end() && !it->second.empty(), path,
               ": weights metadata has no 'arch' (not written by save_model_weights?)");
  ModelConfig c;
  c.arch = it->second;
  c.num_classes = parse_int(f.metadata, path, kMetaNumClasses, 1, kMaxNumClasses);
  c.input_size = parse_int(f.metadata, path, kMetaInputSize, 0, kMaxInputSize);
  auto ap = f.metadata.find(kMetaAnchorPreset);
  ENGINE_CHECK(ap != f.metadata.end(), path, ": weights metadata has no '", kMetaAnchorPreset, "'");
  c.anchor_preset = ap->second;
  ENGINE_CHECK(c.anchor_preset == "voc" || c.anchor_preset == "coco" || c.anchor_preset == "custom", path, ": metadata '",
               kMetaAnchorPreset, "' is '", c.anchor_preset, "', not one of voc, coco, custom");
  auto sc = f.metadata.find(kMetaAnchorScales);
  if (sc != f.metadata.end()) c.anchor_scales = parse_anchor_scales(sc->second, path + ": metadata '" + kMetaAnchorScales + "'");
  auto ma = f.metadata.find(kMetaMatcher);  // optional: files written before it load with the default
  if (ma != f.metadata.end()) {
    ENGINE_CHECK(ma->second == "ssd" || ma->second == "bipartite", path, ": metadata '", kMetaMatcher, "' is '",
                 ma->second.size() > 40 ? ma->second.substr(0, 37) + "..." : ma->second, "', not one of ssd, bipartite");
    c.matcher = ma->second;
  }
  c.full_tail = read_full_tail(f.metadata, path);
  auto bn = f.metadata.find(kMetaBackboneNorm);
  if (bn != f.metadata.end()) {
    ENGINE_CHECK(bn->second == "frozen" || bn->second == "batch", path, ": weights metadata '", kMetaBackboneNorm,
                 "' is '", bn->second.size() > 40 ? bn->second.substr(0, 37) + "..." : bn->second, "', not frozen or batch");
    c.backbone_norm = bn->second;
  }
  if (f.metadata.count(kMetaTrainableLayers) != 0) {
    c.trainable_backbone_layers = parse_int(f.metadata, path, kMetaTrainableLayers, 0, 5);
  } else if (c.arch == "retinanet_resnet50_fpn") {
    // RetinaNet checkpoints from before parameter freezing trained every layer: their
    // optimizer state has conv1's entries. Resume them as they were trained.
    for (const auto& kv : f.tensors)
      if (starts_with(kv.first, kOptimizerPrefix) && kv.first.size() > 26 &&
          kv.first.compare(kv.first.size() - 26, 26, "backbone.body.conv1.weight") == 0) {
        c.trainable_backbone_layers = 5;
        break;
      }
  }
  auto rl = f.metadata.find(kMetaResizeLimits);
  if (rl != f.metadata.end()) {
    const std::string& v = rl->second;
    const size_t comma = v.find(',');
    const bool ok = comma != std::string::npos && io::parse_int64(v.substr(0, comma), 0, kMaxInputSize, c.min_size) &&
                    io::parse_int64(v.substr(comma + 1), 0, kMaxInputSize, c.max_size);
    ENGINE_CHECK(ok, path, ": weights metadata '", kMetaResizeLimits, "' is '", v.size() > 40 ? v.substr(0, 37) + "..." : v,
                 "', not MIN,MAX (integers in [0, ", kMaxInputSize, "])");
  }
  auto rt = f.metadata.find(kMetaRpnTopN);
  if (rt != f.metadata.end()) {
    const std::string& v = rt->second;
    const size_t comma = v.find(',');
    const bool ok = comma != std::string::npos && io::parse_int64(v.substr(0, comma), 0, 1000000, c.rpn_top_n_train) &&
                    io::parse_int64(v.substr(comma + 1), 0, 1000000, c.rpn_top_n_test);
    ENGINE_CHECK(ok, path, ": weights metadata '", kMetaRpnTopN, "' is '", v.size() > 40 ? v.substr(0, 37) + "..." : v,
                 "', not TRAIN,TEST (integers in [0, 1000000])");
  }
  ENGINE_CHECK(!c.full_tail || c.arch == "ssdlite320_mobilenet_v3_large", path, ": metadata '", kMetaBackboneTail,
               "' is 'full' but only ssdlite320_mobilenet_v3_large has a tail choice (arch '", c.arch, "')");
  try {
    check_anchor_config(c);
  } catch (const eng::Error& e) {
    ENGINE_FAIL(path, ": metadata: ", e.what());
  }
  return c;
}

void load_model_weights(DetectionModel& model, const std::string& path) {
  io::SafetensorsFile f = io::load_safetensors(path);
  std::vector<std::pair<std::string, Tensor>> model_tensors;
  for (auto& kv : f.tensors)
    if (!starts_with(kv.first, kOptimizerPrefix)) model_tensors.push_back(kv);
  // The FrozenBatchNorm2d eps the file asks for (checked before anything is loaded).
  double eps = -1;
  auto ep = f.metadata.find(kMetaFrozenBnEps);
  if (ep != f.metadata.end()) {
    const std::string& v = ep->second;
    char* end = nullptr;
    eps = v.empty() || v.size() > 40 ? -1 : std::strtod(v.c_str(), &end);
    ENGINE_CHECK(end != nullptr && *end == '\0' && std::isfinite(eps) && eps >= 0 && eps <= 1, path, ": weights metadata '",
                 kMetaFrozenBnEps, "' is '", v.size() > 40 ? v.substr(0, 37) + "..." : v, "', not a number in [0, 1]");
  }
  try {
    model.load_state_dict(model_tensors, /*strict=*/true);
  } catch (const Error& e) {
    ENGINE_FAIL(path, ": does not fit model '", model.config().arch, "': ", e.what());
  }
  if (eps >= 0) {
    std::vector<nn::FrozenBatchNorm2d*> bns;
    collect_frozen_bn(model, bns);
    for (auto* b : bns) b->eps = eps;
  }
}

PrefixMap vgg16_prefix_map() { return {{"features.", "backbone.features."}}; }

PrefixMap resnet50_prefix_map() {
  PrefixMap m;
  for (const char* p : {"conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4."})
    m.emplace_back(p, std::string("backbone.body.") + p);
  return m;
}

std::string BackboneLoadReport::summary() const {
  std::map<std::string, int> by;
  for (const auto& s : skipped) by[s.reason.substr(0, s.reason.find(" ("))]++;
  std::ostringstream os;
  os << "loaded " << loaded.size() << ", skipped " << skipped.size();
  if (!by.empty()) {
    os << " (";
    bool first = true;
    for (const auto& [r, n] : by) {
      os << (first ? "" : ", ") << r << " " << n;
      first = false;
    }
    os << ")";
  }
  os << ", model keys not loaded " << not_loaded.size();
  return os.str();
}

BackboneLoadReport load_backbone_weights(DetectionModel& model, const std::string& path,
                                         const PrefixMap& prefix_map) {
  io::SafetensorsFile f = io::load_safetensors(path);
  std::map<std::string, Tensor> own;
  for (auto& [k, t] : model.state_dict()) own.emplace(k, t);
  BackboneLoadReport report;
  std::vector<std::pair<std::string, Tensor>> to_load;
  std::map<std::string, bool> got;
  for (const auto& [key, t] : f.tensors) {
    const std::pair<std::string, std::string>* hit = nullptr;
    for (const auto& pm : prefix_map)
      if (starts_with(key, pm.first)) {
        hit = &pm;
        break;
      }
    if (!hit) {
      report.skipped.push_back({key, "not backbone"});
      continue;
    }
    const std::string name = hit->second + key.substr(hit->first.size());
    auto it = own.find(name);
    if (it == own.end()) {
      report.skipped.push_back({key, "not in model (as " + name + ")"});
      continue;
    }
    if (it->second.sizes() != t.sizes()) {
      report.skipped.push_back({key, "shape mismatch (model " + shape_str(it->second.sizes()) + ", file " +
                                         shape_str(t.sizes()) + ")"});
      continue;
    }
    to_load.emplace_back(name, t);
    report.loaded.emplace_back(key, name);
    got[name] = true;
  }
  model.load_state_dict(to_load, /*strict=*/false);
  for (const auto& [name, t] : own) {
    if (got.count(name)) continue;
    for (const auto& pm : prefix_map)
      if (starts_with(name, pm.second)) {
        report.not_loaded.push_back(name);
        break;
      }
  }
  return report;
}

}  // namespace models
