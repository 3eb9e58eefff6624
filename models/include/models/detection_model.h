// The interface every detector implements (SSD300/512, TinySSD, RetinaNet), and the
// registry that builds them by name. Apps (ssd_train, ssd_detect) see only this.
//
// Input: a normalised image batch [B, 3, S, S] (S = config().input_size). Head outputs are
// concatenated over all feature levels in anchor order:
//   box_regression [B, A, 4] (encoded deltas), class_logits [B, A, C]
// (C includes the background class 0 for SSD; RetinaNet's C are foreground classes).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/input_fit.h"
#include "engine/detection.h"
#include "engine/nn/module.h"

namespace models {

struct ModelConfig {
  std::string arch;               // tiny_ssd | ssd300_vgg16 | ssd512_vgg16 | retinanet_resnet50_fpn
  int64_t num_classes = 91;       // torchvision convention: including background
  std::string anchor_preset = "coco";  // voc | coco (SSD sizes); others ignore it; custom: below
  // anchor_preset "custom": L + 1 increasing scales, fractions of the input side
  // (models/anchor_scales.h); empty for every other preset.
  std::vector<double> anchor_scales;
  int64_t input_size = 0;         // 0: the architecture's default (256, 300, 512, 512)
  // SSD-family anchor matcher (models/ssd_loss.h, resolve_matcher): "" = the architecture's
  // default, "ssd" (torchvision SSDMatcher) or "bipartite" (GluonCV). Saved in the weights
  // metadata as kMetaMatcher when not empty.
  std::string matcher;
  // ssdlite320_mobilenet_v3_large only: MobileNetV3's full tail (features 13..16 at 160 / 960
  // channels), the structure torchvision builds when ImageNet backbone weights are given
  // (reduce_tail = weights_backbone is None); false: the reduced tail (3,440,060 parameters).
  // Recorded in weights metadata as kMetaBackboneTail = "full" (absent: reduced).
  bool full_tail = false;
  // ResNet-FPN detectors (retinanet_resnet50_fpn, fasterrcnn_resnet50_fpn): torchvision's
  // trainable_backbone_layers, 0..5 (models/resnet.h: the last n of layer4..layer1, conv1
  // train; the rest are frozen). -1: the default, 3 (conv1 and layer1 frozen), which is what
  // torchvision uses with pretrained weights. Recorded as kMetaTrainableLayers when >= 0.
  int64_t trainable_backbone_layers = -1;
  // ResNet-FPN models: the backbone's normalisation (models/resnet.h): "" or "frozen":
  // FrozenBatchNorm2d, the layout of torchvision's pretrained models; "batch": BatchNorm2d,
  // what torchvision builds with neither weights nor weights_backbone (for training from
  // scratch; trainable_backbone_layers then defaults to 5). Recorded as kMetaBackboneNorm.
  std::string backbone_norm;
  // Two-stage models (fasterrcnn_resnet50_fpn): RPN proposals kept per image before and
  // after NMS, in training and in inference; 0: torchvision's 2000 (train) / 1000 (test).
  // Recorded as kMetaRpnTopN ("train,test") when either is set.
  int64_t rpn_top_n_train = 0, rpn_top_n_test = 0;
  // Models that keep the aspect ratio (keep_aspect_ratio()): torchvision's
  // GeneralizedRCNNTransform min_size / max_size in input pixels at input_size (they scale with
  // the side under multiscale); 0: the input side, so the defaults fit the long side to S.
  // torchvision's 800 / 1333: input_size 1344, min_size 800, max_size 1333. Each <= input_size.
  // Recorded as kMetaResizeLimits ("min,max") when either is set.
  int64_t min_size = 0, max_size = 0;
};

// Two-stage models (Faster R-CNN) return their first stage here: the RPN's deltas and
// objectness logits per anchor (C = 1), and the feature maps the RoI heads pool from
// (`features`, P2..P5); loss() and postprocess() run the second stage on them.
struct HeadOutputs {
  eng::Tensor box_regression;  // [B, A, 4]
  eng::Tensor class_logits;    // [B, A, C]
  std::vector<eng::Tensor> features;  // two-stage models only; empty otherwise
};

// Ground truth of a batch, padded: boxes in input pixels (corners), labels are class
// indices (1..num_classes-1; 0 is background and never a GT label).
struct Targets {
  eng::Tensor boxes;   // f32 [B, G, 4]
  eng::Tensor labels;  // i64 [B, G]
  eng::Tensor counts;  // i64 [B]
  // Optional u8 [B, G]: 1 = an ignored GT (VOC difficult, COCO crowd). It takes part in the
  // matching, and the anchors it claims are neither positive nor negative (no loss, never
  // mined). Undefined = nothing ignored.
  eng::Tensor ignore;
};

struct LossParts {
  eng::Tensor total;           // scalar: classification + box regression
  eng::Tensor classification;  // scalar
  eng::Tensor box_regression;  // scalar
  // Optional finer parts under torchvision's names (two-stage: loss_objectness,
  // loss_rpn_box_reg, loss_classifier, loss_box_reg), detached; classification and
  // box_regression above are their sums.
  std::vector<std::pair<std::string, eng::Tensor>> components;
};

class DetectionModel : public eng::nn::Module {
 public:
  DetectionModel(std::string type_name, ModelConfig config)
      : Module(std::move(type_name)), config_(std::move(config)) {}
  const ModelConfig& config() const { return config_; }

  virtual HeadOutputs forward_heads(const eng::Tensor& images) = 0;
  // Anchors [A, 4] in input pixels (corners), f32, on `device`, for config().input_size.
  virtual eng::Tensor anchors(eng::Device device) const = 0;
  // anchors(device), computed once per (device, input size) and kept: the losses call it
  // every step, and on CUDA a fresh computation uploads the prior table from the host.
  // Callers must not write into the returned tensor.
  eng::Tensor cached_anchors(eng::Device device) const;
  virtual LossParts loss(const HeadOutputs& heads, const Targets& targets) = 0;
  // The architecture's inference settings at the current input size (score threshold,
  // top-k, NMS, clipping, levels); callers may change fields and pass them back below.
  virtual eng::det::PostprocessOptions postprocess_options() const = 0;
  // Head outputs -> detections (boxes in input pixels, labels = class indices into C).
  eng::det::Detections postprocess(const HeadOutputs& heads) { return postprocess(heads, postprocess_options()); }
  virtual eng::det::Detections postprocess(const HeadOutputs& heads, const eng::det::PostprocessOptions& options);
  // Whether loss() and postprocess() run with fixed shapes and no host synchronisation, so
  // that a CUDA graph can capture a whole training step (--cuda-graph). Two-stage models
  // sample their RoIs on the host: false.
  virtual bool graph_capturable() const { return true; }
  // How images are fitted into the S x S input: false: stretched to S x S (SSD); true: the
  // aspect ratio kept, scale S / max(h, w), the image at the top-left and the rest padded
  // with zeros after normalisation (the mean pixel): torchvision's GeneralizedRCNNTransform
  // with min_size = max_size = S, padded to S x S (two-stage models).
  virtual bool keep_aspect_ratio() const { return false; }
  // With keep_aspect_ratio(): the min / max size limits of the fit (data/input_fit.h);
  // {0, 0, 0}: min_size = max_size = S.
  virtual data::AspectLimits aspect_limits() const { return {}; }
  // Called by the trainer before each step's loss with a seed derived from the run's seed
  // and the iteration, for models that draw random numbers in their loss (the RPN and RoI
  // samplers): a resumed run draws what the uninterrupted one would. Default: nothing.
  virtual void begin_step(uint64_t step_seed) { (void)step_seed; }
  // Output shape of each top-level block for a [1, 3, S, S] input (for --summary).
  virtual std::vector<std::pair<std::string, eng::Shape>> block_shapes() = 0;
  // Changes the input side S (multiscale training, multi-scale testing): anchors and the
  // expected input follow; parameters are untouched. Throws when the architecture cannot
  // run at that size. config().input_size reports the current size.
  virtual void set_input_size(int64_t size) = 0;
  // Mean and std of the input normalisation, in 0..255 pixel units (per RGB channel).
  virtual std::vector<double> pixel_mean() const = 0;
  virtual std::vector<double> pixel_std() const = 0;

 protected:
  void record_input_size(int64_t size) { config_.input_size = size; }

 private:
  ModelConfig config_;
  struct AnchorCacheEntry {
    eng::Device device;
    int64_t input_size;
    eng::Tensor anchors;
  };
  mutable std::vector<AnchorCacheEntry> anchor_cache_;
};

// Builds a model by name (throws listing the known names for an unknown one). Parameters
// get the architecture's own initialisation (PyTorch / torchvision defaults).
std::shared_ptr<DetectionModel> create_model(const ModelConfig& config);

// model.forward_heads(images) with both heads in f32, as the loss and post-processing take
// them: under BF16 autocast (engine/autocast.h) the heads come out bf16 and are cast here
// (differentiably), as torch's autocast runs losses in float32. f32 heads pass unchanged.
HeadOutputs forward_heads_f32(DetectionModel& model, const eng::Tensor& images);
std::vector<std::string> model_names();

}  // namespace models
