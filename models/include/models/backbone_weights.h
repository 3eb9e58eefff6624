// ImageNet classifier weights (torchvision state dicts saved as safetensors) into a detector's
// backbone, checked against the classifier's layout: `ssd_train --backbone FILE`.
//
// A BackboneLayout says how the classifier's keys become the detector's (a rename function,
// not just prefixes: SSD300 puts VGG's conv5 under backbone.extra.0, SSDlite splits
// MobileNetV3's features[13] across two Sequentials) and which model keys the file must fill.
// load_backbone_weights(model, path, layout) is strict about the layout: it copies nothing
// and throws one line when
//   * a file key that belongs to the backbone has no model key, or a different shape
//     ("<path>: not a <layout> backbone for <arch>: file key 'K' is [..], model key 'M' is [..]"),
//   * no key of the file belongs to the backbone (e.g. a ResNet file given to SSDlite),
//   * a model key the layout fills got nothing from the file (a truncated file).
// Keys that are not backbone (the classifier: vgg `classifier.*`, resnet `fc.*`, mobilenet
// `classifier.*`) are skipped and reported, and so is a file's `num_batches_tracked` where
// the model has none (FrozenBatchNorm2d in RetinaNet's ResNet).
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "models/detection_model.h"
#include "models/weights.h"

namespace models {

struct BackboneLayout {
  std::string name;  // "torchvision mobilenet_v3_large": named in messages
  // File key -> model key. nullopt: not backbone (the classifier head; skipped). "": a
  // backbone-looking key with no place in this model (an error, like a missing model key).
  std::function<std::optional<std::string>(const std::string&)> rename;
  // Model keys under these prefixes are the ones the file must provide (num_batches_tracked
  // excepted: old torchvision files lack it).
  std::vector<std::string> model_prefixes;
  std::string example_file_key;  // the layout's first key, named when nothing matched
};

// torchvision vgg16 (IMAGENET1K_V1, also `features` of IMAGENET1K_FEATURES): features.{0..22}
// -> backbone.features.*, features.{23..29} (pool4, conv5_1..conv5_3) -> backbone.extra.0.{0..6}
// (as torchvision's _vgg_extractor slices it). SSD's fc6/fc7 are not taken from the classifier.
BackboneLayout vgg16_backbone_layout();
// torchvision resnet50: conv1, bn1, layer1..layer4 -> backbone.body.*; fc.* is not backbone.
BackboneLayout resnet50_backbone_layout();
// torchvision mobilenet_v3_large (IMAGENET1K_V1/V2) into ssdlite320_mobilenet_v3_large with
// the full tail (ModelConfig::full_tail): features.{0..12}.* -> backbone.features.0.{i}.*,
// features.13.block.0.* -> backbone.features.0.13.*, features.13.block.{1,2,3}.* ->
// backbone.features.1.0.{1,2,3}.*, features.{14,15,16}.* -> backbone.features.1.{1,2,3}.*.
BackboneLayout mobilenet_v3_large_backbone_layout();
// The rename alone (tests, docs).
std::optional<std::string> mobilenet_v3_large_backbone_name(const std::string& file_key);

// The layout `--backbone` uses for an architecture; nullopt when it takes no ImageNet backbone.
std::optional<BackboneLayout> imagenet_backbone_layout(const std::string& arch);

// Strict about the layout (see above); on success every listed model key was filled.
BackboneLoadReport load_backbone_weights(DetectionModel& model, const std::string& path, const BackboneLayout& layout);

}  // namespace models
