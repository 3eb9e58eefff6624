// Layers of the mobile backbones: make_divisible, AdaptiveAvgPool2d (1x1), SqueezeExcitation.
#include "engine/nn/mobile_layers.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace eng::nn {

int64_t make_divisible(double v, int64_t divisor, int64_t min_value) {
  ENGINE_CHECK(divisor > 0, "make_divisible: divisor must be positive, got ", divisor);
  // Checked before any conversion to an integer (NaN fails both comparisons).
  ENGINE_CHECK(v >= 0.0 && v <= 1099511627776.0, "make_divisible: value must be finite, >= 0 and <= 2^40, got ", v);
  const int64_t m = min_value < 0 ? divisor : min_value;
  // Python's int(v + divisor / 2) truncates; v + divisor / 2 > 0 here, so truncation is floor.
  const int64_t rounded = static_cast<int64_t>(std::floor(v + static_cast<double>(divisor) / 2.0)) / divisor * divisor;
  int64_t r = std::max(m, rounded);
  if (static_cast<double>(r) < 0.9 * v) r += divisor;  // never round down by more than 10%
  return r;
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int64_t output_h, int64_t output_w) : Module("AdaptiveAvgPool2d") {
  ENGINE_CHECK(output_h == 1 && output_w == 1, "AdaptiveAvgPool2d: only output size 1x1 is implemented, got ",
               output_h, "x", output_w);
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) { return global_avg_pool2d(x); }

namespace {
// nn.Sigmoid, for SqueezeExcitation's torchvision default scale activation.
class Sigmoid : public Module {
 public:
  Sigmoid() : Module("Sigmoid") {}
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
};
}  // namespace

SqueezeExcitation::SqueezeExcitation(int64_t in_ch, int64_t sq_ch, SEScale scale)
    : Module("SqueezeExcitation"), input_channels(in_ch), squeeze_channels(sq_ch) {
  ENGINE_CHECK(in_ch > 0 && sq_ch > 0, "SqueezeExcitation: channels must be positive, got input_channels ", in_ch,
               ", squeeze_channels ", sq_ch);
  avgpool = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(1));
  fc1 = register_module("fc1", std::make_shared<Conv2d>(in_ch, sq_ch, 1));
  fc2 = register_module("fc2", std::make_shared<Conv2d>(sq_ch, in_ch, 1));
  activation = register_module("activation", std::make_shared<ReLU>());
  if (scale == SEScale::Hardsigmoid) {
    scale_activation = register_module("scale_activation", std::make_shared<Hardsigmoid>());
  } else {
    scale_activation = register_module("scale_activation", std::make_shared<Sigmoid>());
  }
}

Tensor SqueezeExcitation::forward(const Tensor& x) {
  ENGINE_CHECK(x.defined() && x.dim() == 4 && x.size(1) == input_channels,
               "SqueezeExcitation: expected input [N, ", input_channels, ", H, W], got ",
               x.defined() ? shape_str(x.sizes()) : std::string("an undefined tensor"));
  Tensor s = avgpool->forward(x);
  s = scale_activation->forward(fc2->forward(activation->forward(fc1->forward(s))));
  return mul(s, x);  // [N, C, 1, 1] * [N, C, H, W]: mul's backward sums the broadcast dims
}

}  // namespace eng::nn
