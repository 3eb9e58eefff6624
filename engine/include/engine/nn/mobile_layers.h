// Layers of the mobile backbones (MobileNetV2/V3), with PyTorch's / torchvision's names so a
// torchvision state dict loads key for key:
//
//   layer               parameters                                 torch equivalent
//   ReLU6, Hardswish,   -                                          nn.ReLU6, nn.Hardswish,
//   Hardsigmoid                                                    nn.Hardsigmoid
//   AdaptiveAvgPool2d   -                                          nn.AdaptiveAvgPool2d(1) only
//   SqueezeExcitation   fc1.weight [S, C, 1, 1], fc1.bias [S],     torchvision.ops.misc.
//                       fc2.weight [C, S, 1, 1], fc2.bias [C]      SqueezeExcitation
//
// The activations' gradients at their kinks are torch's (engine/ops.h, kernels/elementwise.h).
#pragma once
#include <cstdint>
#include <memory>

#include "engine/nn/layers.h"
#include "engine/nn/module.h"
#include "engine/ops.h"

namespace eng::nn {

// torchvision's _make_divisible (torchvision/models/_utils.py), used for channel counts in
// MobileNetV2/V3 (e.g. SE squeeze channels = make_divisible(expanded / 4, 8)):
//   m = min_value (divisor when min_value < 0); r = max(m, floor(v + divisor / 2) / divisor * divisor)
//   (integer division); if r < 0.9 v then r += divisor.
// v must be finite and >= 0 and at most 2^40, divisor > 0; otherwise one-line eng::Error.
int64_t make_divisible(double v, int64_t divisor, int64_t min_value = -1);

// inplace = true: relu6_ on the input (the rules of relu_ in engine/ops.h).
class ReLU6 : public Module {
 public:
  explicit ReLU6(bool inplace = false) : Module("ReLU6"), inplace(inplace) {}
  Tensor forward(const Tensor& x) override {
    if (!inplace) return relu6(x);
    Tensor y = x;  // the same tensor: relu6_ changes the caller's x
    return relu6_(y);
  }
  bool inplace;
};

// No in-place variant: the backward reads the input. torchvision builds these with
// inplace=True; the result is the same.
class Hardswish : public Module {
 public:
  Hardswish() : Module("Hardswish") {}
  Tensor forward(const Tensor& x) override { return hardswish(x); }
};

class Hardsigmoid : public Module {
 public:
  Hardsigmoid() : Module("Hardsigmoid") {}
  Tensor forward(const Tensor& x) override { return hardsigmoid(x); }
};

// Adaptive average pooling [N, C, H, W] -> [N, C, oh, ow]; only oh = ow = 1 (the global
// average, eng::global_avg_pool2d) is implemented: other sizes are refused at construction.
class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(int64_t output_size = 1) : AdaptiveAvgPool2d(output_size, output_size) {}
  AdaptiveAvgPool2d(int64_t output_h, int64_t output_w);
  Tensor forward(const Tensor& x) override;
};

// torchvision.ops.misc.SqueezeExcitation:
//   s = scale_activation(fc2(activation(fc1(avgpool(x)))))   [N, C, 1, 1]
//   y = s * x                                                  (broadcast over H, W)
// fc1 = Conv2d(C, S, 1) and fc2 = Conv2d(S, C, 1), both with bias and Conv2d's default
// init; activation = ReLU. The scale activation defaults to Hardsigmoid, what MobileNetV3
// passes (torchvision's own default is Sigmoid). Children, in torchvision's order: avgpool,
// fc1, fc2, activation, scale_activation.
enum class SEScale { Hardsigmoid, Sigmoid };

class SqueezeExcitation : public Module {
 public:
  SqueezeExcitation(int64_t input_channels, int64_t squeeze_channels, SEScale scale = SEScale::Hardsigmoid);
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<AdaptiveAvgPool2d> avgpool;
  std::shared_ptr<Conv2d> fc1, fc2;
  std::shared_ptr<Module> activation, scale_activation;
  int64_t input_channels, squeeze_channels;
};

}  // namespace eng::nn
