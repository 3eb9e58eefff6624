// GluonCV's SSD presets on ResNet and MobileNet backbones (gluoncv/model_zoo/ssd/ssd.py,
// presets.py, nn/feature.py, anchor.py; figures in the project's seed specs, part A):
//
//   arch                   backbone      sources (channels)        maps at the base size
//   ssd512_resnet18_v1     resnet18_v1   256, 512                  32 16 | 8 4 2 1
//   ssd512_resnet50_v1     resnet50_v1   1024, 2048                32 16 | 8 4 2 1
//   ssd512_resnet101_v2    resnet101_v2  256, 512 (mid-block)      32 16 | 8 4 2 1
//   ssd512_resnet152_v2    resnet152_v2  128, 256, 512 (mid-block) 64 32 16 | 8 4 2 1
//   ssd512_mobilenet1_0    mobilenet1.0  512, 1024                 32 16 | 8 4 2 1
//   ssd300_mobilenet0_25   mobilenet0.25 128, 256                  19 10 | 5 3 2 1
//
// Module names:
//   backbone.*                    the SSDSourceBackbone (models/ssd_backbone.h)
//   expand.{i}.trans_conv / trans_bn   FeatureExpander's 1x1 transition (no bias) + BN + ReLU
//   expand.{i}.conv / bn               its 3x3 stride-2 pad-1 conv (no bias) + BN + ReLU; each
//                                      output is one more source. Widths (filters) 512, 512,
//                                      256, 256 (128-wide x2 / 256 x2 for mobilenet0.25); the
//                                      transition is as wide as the conv (reduce_ratio 1,
//                                      min_depth 128).
//   class_predictors.{k}          3x3 pad 1 conv with bias -> A_k * C   (C includes background)
//   box_predictors.{k}            3x3 pad 1 conv with bias -> A_k * 4
// The expander's BNs are MXNet symbol BatchNorms with their defaults: eps 1e-3 and
// fix_gamma=True, so gamma is a constant 1 (kept here as a buffer named "weight", never
// learned, and its value is ignored as MXNet does; beta is learned). Head layout: [B, A, K]
// from NCHW as ((y W + x) A_k + a) K + c, torchvision's.
//
// Anchors (GluonCV SSDAnchorGenerator): pixels, no clipping; centre ((j + 0.5) step,
// (i + 0.5) step); per location [s_k, s_k], [sqrt(s_k s_k+1)]^2, then s_k with each ratio
// of ratios[1:] (w = s sqrt(r), h = s / sqrt(r)). Sizes (pixels at the base size) and steps
// come from the preset; at another input size S both scale by S / base. anchor_preset voc |
// coco picks GluonCV's _voc / _coco sizes (they differ only for resnet50_v1; the presets
// GluonCV ships only as _voc use those sizes for both); custom takes L + 1 fractions of S
// and then uses steps S / map (centres that tile the image: GluonCV's custom_ssd takes steps
// from its caller, our --anchor-sizes only sizes).
// Quirk kept from GluonCV: ssd300_mobilenet0_25's steps 8, 16, 32, 64, 100, 300 were copied
// from VGG300 although its maps are 19, 10, 5, 3, 2, 1, so level 0's centres span only
// 4 .. 148 px of the 300 px image (gluon-cv issue 778).
//
// Inference (GluonCV SSD): softmax, per-class score 0.01, NMS 0.45, at most 100 boxes per
// image; decoded boxes are not clipped. Input: RGB scaled to [0, 1] then ImageNet mean/std.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/nn/layers.h"
#include "models/detection_model.h"
#include "models/ssd_backbone.h"

namespace models {

struct GluonSSDPreset {
  std::string arch, backbone;
  int64_t base_size = 512;
  std::vector<int64_t> filters;       // FeatureExpander widths
  std::vector<double> sizes_voc, sizes_coco;  // L + 1 pixel sizes at base_size
  std::vector<int> ratio_counts;      // per level: 3 -> {1, 2, 1/2}, 5 -> {1, 2, 1/2, 3, 1/3}
  std::vector<double> steps;          // per level, pixels at base_size
};

// The six presets (throws listing them for an unknown arch).
const GluonSSDPreset& gluon_ssd_preset(const std::string& arch);
std::vector<std::string> gluon_ssd_arch_names();
bool is_gluon_ssd_arch(const std::string& arch);

// FeatureExpander's batch norm: gamma fixed at 1 (a buffer), beta learned.
class FixedGammaBatchNorm2d : public eng::nn::Module {
 public:
  FixedGammaBatchNorm2d(int64_t channels, double eps, double momentum);
  eng::Tensor forward(const eng::Tensor& x) override;
  eng::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  double eps, momentum;
};

class ExpanderBlock : public eng::nn::Module {
 public:
  ExpanderBlock(int64_t in, int64_t transition, int64_t out);
  eng::Tensor forward(const eng::Tensor& x) override;
  std::shared_ptr<eng::nn::Conv2d> trans_conv, conv;
  std::shared_ptr<FixedGammaBatchNorm2d> trans_bn, bn;
};

class GluonSSD : public DetectionModel {
 public:
  explicit GluonSSD(const ModelConfig& config);

  HeadOutputs forward_heads(const eng::Tensor& images) override;
  eng::Tensor anchors(eng::Device device) const override;
  LossParts loss(const HeadOutputs& heads, const Targets& targets) override;
  eng::det::PostprocessOptions postprocess_options() const override;
  void set_input_size(int64_t size) override;
  std::vector<std::pair<std::string, eng::Shape>> block_shapes() override;
  std::vector<double> pixel_mean() const override;
  std::vector<double> pixel_std() const override;

  const GluonSSDPreset& preset() const { return preset_; }
  const std::vector<int64_t>& feature_sizes() const { return fmap_sizes_; }
  const std::vector<eng::det::PriorLevel>& prior_levels() const { return levels_; }
  SSDSourceBackbone& backbone() { return *backbone_; }

 private:
  std::vector<eng::Tensor> features(const eng::Tensor& images);

  GluonSSDPreset preset_;
  int64_t input_size_ = 0;
  std::vector<int64_t> fmap_sizes_;
  std::vector<eng::det::PriorLevel> levels_;
  eng::det::PriorOptions prior_options_;
  eng::Tensor anchors_cpu_;
  std::shared_ptr<SSDSourceBackbone> backbone_;
  std::shared_ptr<eng::nn::ModuleList> expand_, cls_heads_, box_heads_;
};

}  // namespace models
