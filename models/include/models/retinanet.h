// RetinaNet ResNet50-FPN, torchvision v1 layout and names with a frozen-BN backbone:
//   backbone.body.*  ResNet50Body (FrozenBatchNorm2d: weight/bias/running_* are buffers); conv1
//                    and layer1 frozen by default (ModelConfig::trainable_backbone_layers, as torchvision)
//   backbone.fpn.*   FeaturePyramidNetwork (C3-C5 -> P3-P7)
//   head.classification_head.conv.N.0.*, head.classification_head.cls_logits.*
//   head.regression_head.conv.N.0.*,     head.regression_head.bbox_reg.*
// num_classes is torchvision's (class 0 is a slot that never receives a GT label); the head
// predicts 9 * num_classes logits per location. Input: fixed square config().input_size
// (default 512; torchvision would resize to min side 800).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/nn/layers.h"
#include "models/detection_model.h"
#include "models/fpn.h"
#include "models/resnet.h"

namespace models {

class RetinaNetBackbone : public eng::nn::Module {
 public:
  explicit RetinaNetBackbone(ResNetNorm norm = ResNetNorm::Frozen);
  std::vector<eng::Tensor> forward_features(const eng::Tensor& x);  // P3..P7
  std::shared_ptr<ResNet50Body> body;
  std::shared_ptr<FeaturePyramidNetwork> fpn;
};

// Shared by both heads: conv = 4 x Sequential(Conv2d 3x3 256, ReLU), then the predictor.
class RetinaNetSubHead : public eng::nn::Module {
 public:
  RetinaNetSubHead(const std::string& type, const std::string& predictor_name, int64_t in_channels,
                   int64_t num_anchors, int64_t outputs_per_anchor, double predictor_bias);
  // Features of all levels -> [N, sum(H W A), outputs_per_anchor].
  eng::Tensor forward_levels(const std::vector<eng::Tensor>& features);
  std::shared_ptr<eng::nn::Sequential> conv;
  std::shared_ptr<eng::nn::Conv2d> predictor;
  int64_t num_anchors, outputs_per_anchor;
};

class RetinaNetHead : public eng::nn::Module {
 public:
  RetinaNetHead(int64_t in_channels, int64_t num_anchors, int64_t num_classes);
  std::shared_ptr<RetinaNetSubHead> classification_head, regression_head;
};

class RetinaNet : public DetectionModel {
 public:
  explicit RetinaNet(const ModelConfig& config);

  HeadOutputs forward_heads(const eng::Tensor& images) override;
  eng::Tensor anchors(eng::Device device) const override;
  LossParts loss(const HeadOutputs& heads, const Targets& targets) override;
  eng::det::PostprocessOptions postprocess_options() const override;
  void set_input_size(int64_t size) override;
  std::vector<std::pair<std::string, eng::Shape>> block_shapes() override;
  std::vector<double> pixel_mean() const override { return {123.675, 116.28, 103.53}; }
  std::vector<double> pixel_std() const override { return {58.395, 57.12, 57.375}; }

  int64_t input_size() const { return input_size_; }
  // Feature-map side of P3..P7 for the input size (each stride-2 stage: ceil(n / 2)).
  std::vector<int64_t> level_fmap_sizes() const;
  // Anchors per level (fmap^2 * 9), the split postprocess uses.
  std::vector<int64_t> level_sizes() const;
  static constexpr int64_t kAnchorsPerLocation = 9;

  std::shared_ptr<RetinaNetBackbone> backbone;
  std::shared_ptr<RetinaNetHead> head;

 private:
  int64_t input_size_;
};

}  // namespace models
