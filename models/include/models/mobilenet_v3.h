// MobileNetV3-Large as an nn::Module with torchvision's names (torchvision/models/
// mobilenetv3.py), so a torchvision state dict loads key for key. Only `.features` exists
// (the detectors use no classifier):
//   features.0                 Conv2dNormActivation 3 -> 16, 3x3 s2, Hardswish
//                              (children: 0 = Conv2d without bias, 1 = BatchNorm2d, 2 = act)
//   features.1 .. features.15  InvertedResidual: block.{i} = [expand 1x1 conv+BN+act]
//                              (absent when expanded == input), depthwise kxk conv+BN+act,
//                              [SqueezeExcitation (fc1, fc2), squeeze make_divisible(exp/4, 8)],
//                              project 1x1 conv+BN (no activation); residual when stride 1
//                              and input == output channels
//   features.16                Conv2dNormActivation last -> 6 * last, 1x1, Hardswish
// The block table (kernel, expanded, out, SE, activation, stride) is kMobileNetV3LargeTable;
// reduced_tail (what SSDlite uses) halves the channels of the last three blocks (C4 and C5:
// 160 -> 80, 960 -> 480), so features.16 gives 480 channels instead of 960.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/nn/layers.h"
#include "engine/nn/module.h"

namespace models {

struct InvertedResidualSpec {
  int64_t input_channels, kernel, expanded_channels, out_channels;
  bool use_se;
  bool use_hardswish;  // false: ReLU
  int64_t stride;
};

struct MobileNetV3Options {
  bool reduced_tail = false;  // reduce_divider 2 on the C4/C5 blocks (SSDlite)
  double bn_eps = 1e-3;       // torchvision's MobileNetV3 default norm: eps 1e-3, momentum 0.01;
  double bn_momentum = 0.01;  // SSDlite passes momentum 0.03
};

// The 15 inverted-residual rows of MobileNetV3-Large at width 1.0 (channels already adjusted
// by make_divisible(., 8), which leaves them unchanged at width 1.0).
std::vector<InvertedResidualSpec> mobilenet_v3_large_table(bool reduced_tail);

// Conv2dNormActivation: Sequential(Conv2d(k, stride, pad (k-1)/2, groups, no bias), BatchNorm2d,
// [activation]). activation: "relu", "relu6", "hardswish" or "" (none).
std::shared_ptr<eng::nn::Sequential> conv_norm_act(int64_t in, int64_t out, int64_t k, int64_t stride,
                                                   int64_t groups, const char* activation, double bn_eps,
                                                   double bn_momentum);

class InvertedResidual : public eng::nn::Module {
 public:
  InvertedResidual(const InvertedResidualSpec& spec, double bn_eps, double bn_momentum);
  eng::Tensor forward(const eng::Tensor& x) override;

  std::shared_ptr<eng::nn::Sequential> block;
  bool use_res_connect;
  InvertedResidualSpec spec;
};

class MobileNetV3Large : public eng::nn::Module {
 public:
  explicit MobileNetV3Large(const MobileNetV3Options& options = {});
  eng::Tensor forward(const eng::Tensor& x) override { return features->forward(x); }

  std::shared_ptr<eng::nn::Sequential> features;  // 17 children (see above)
  int64_t out_channels = 0;                       // of features.16: 960, or 480 reduced
};

// torchvision MobileNetV3's own init: conv kaiming_normal_(fan_out), zero bias; BN 1, 0.
void mobilenet_v3_default_init(eng::nn::Module& m);
// torchvision SSDlite's _normal_init: every conv N(0, 0.03), zero bias.
void normal_init_convs(eng::nn::Module& m, double std = 0.03);

}  // namespace models
