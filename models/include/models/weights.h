// Model weights on disk: safetensors files (engine/io/safetensors.h) holding a model's
// state dict (parameters and buffers under their dotted names) plus __metadata__.
//
//   save_model_weights(model, path, extra)   state dict + metadata {arch, num_classes,
//                                            anchor_preset, input_size} (+ extra keys)
//   read_model_config(path)                  ModelConfig from that metadata (no flags needed)
//   load_model_weights(model, path)          whole model, strict: any missing, unexpected or
//                                            mis-shaped key -> one eng::Error naming them all
//   load_backbone_weights(model, path, map)  ImageNet classifier weights into the backbone:
//                                            renames by prefix, loads what fits, reports the rest
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "models/detection_model.h"

namespace models {

// Metadata keys written by save_model_weights.
constexpr const char* kMetaArch = "arch";
constexpr const char* kMetaNumClasses = "num_classes";
constexpr const char* kMetaAnchorPreset = "anchor_preset";
constexpr const char* kMetaInputSize = "input_size";
constexpr const char* kMetaMatcher = "matcher";       // optional (ModelConfig::matcher); absent = ""
constexpr const char* kMetaFormat = "format";          // "ssd_engine.detection_model"
// ModelConfig::full_tail: "full" when set; files without the key (all files from before it
// existed) are the reduced tail. "reduced" is accepted on reading too.
constexpr const char* kMetaBackboneTail = "backbone_tail";
// ModelConfig::trainable_backbone_layers when set (>= 0); absent = the default (3).
constexpr const char* kMetaTrainableLayers = "trainable_backbone_layers";
// ModelConfig::rpn_top_n_train / _test as "train,test" when either is set; absent = 0,0.
constexpr const char* kMetaRpnTopN = "rpn_top_n";
// ModelConfig::min_size / max_size as "min,max" when either is set; absent = 0,0.
constexpr const char* kMetaResizeLimits = "resize_min_max";
// ModelConfig::backbone_norm when set ("frozen" or "batch"); absent = frozen.
constexpr const char* kMetaBackboneNorm = "backbone_norm";
// The eps of the model's FrozenBatchNorm2d layers when it is not their default 1e-5, e.g. "0"
// for torchvision's COCO detection weights (torchvision loads fasterrcnn / retinanet COCO_V1
// weights with overwrite_eps(model, 0.0)). load_model_weights applies it to every
// FrozenBatchNorm2d of the model; save_model_weights and the checkpoints write it.
constexpr const char* kMetaFrozenBnEps = "frozen_bn_eps";
// {kMetaFrozenBnEps: eps} when the model's FrozenBatchNorm2d layers have an eps other than
// 1e-5 (all must agree: else an error), else empty.
std::map<std::string, std::string> frozen_bn_metadata(const eng::nn::Module& model);

// The config keys save_model_weights and the training checkpoints write: arch, num_classes,
// anchor_preset, input_size, format, and anchor_scales / backbone_tail where they apply.
std::map<std::string, std::string> model_config_metadata(const ModelConfig& config);
// kMetaBackboneTail of a metadata map: false when absent; throws one line naming `path`
// and the value unless it is "full" or "reduced".
bool read_full_tail(const std::map<std::string, std::string>& metadata, const std::string& path);

// Writes model.state_dict() (pre-order, PyTorch order) with the config metadata; `extra`
// adds keys (e.g. "epoch") and may not override the config keys.
void save_model_weights(const DetectionModel& model, const std::string& path,
                        const std::map<std::string, std::string>& extra = {});

// The ModelConfig recorded by save_model_weights. Throws (naming the path and the key) when
// a key is absent or malformed.
ModelConfig read_model_config(const std::string& path);

// Tensors under this prefix in a file are a training checkpoint's optimizer state
// (ssd_train's last.safetensors); load_model_weights leaves them out.
constexpr const char* kOptimizerPrefix = "optimizer.";

// Strict whole-model load (keys under kOptimizerPrefix are ignored). The error message starts with the path and lists every
// missing key, unexpected key and shape mismatch ("name (module [..], given [..])").
void load_model_weights(DetectionModel& model, const std::string& path);

// Prefix renames from a classifier checkpoint to model names, tried in order; the first
// prefix a file key starts with wins. A file key that matches no prefix is "not backbone".
using PrefixMap = std::vector<std::pair<std::string, std::string>>;
// torchvision vgg16 `features.*` -> `backbone.features.*` (classifier.* is not backbone).
PrefixMap vgg16_prefix_map();
// torchvision resnet50 conv1, bn1, layer1..layer4 -> `backbone.body.*` (fc.* is not backbone).
PrefixMap resnet50_prefix_map();

struct SkippedKey {
  std::string key;     // the file's name
  std::string reason;  // "not backbone" | "not in model (as <name>)" | "shape mismatch (model [..], file [..])"
};
struct BackboneLoadReport {
  std::vector<std::pair<std::string, std::string>> loaded;  // (file key, model key)
  std::vector<SkippedKey> skipped;
  // Model keys under the target prefixes that received nothing (e.g. SSD's fc6/fc7 and
  // extras when they are not in the file).
  std::vector<std::string> not_loaded;
  std::string summary() const;  // "loaded N, skipped M (not backbone a, not in model b, ...)"
};

// Non-strict: copies the tensors that rename into an existing model key of the same shape;
// never throws for mismatches (they are reported), only for an unreadable file.
BackboneLoadReport load_backbone_weights(DetectionModel& model, const std::string& path, const PrefixMap& prefix_map);

}  // namespace models
