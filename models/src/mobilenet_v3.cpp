// MobileNetV3-Large (see models/mobilenet_v3.h).
#include "models/mobilenet_v3.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/nn/mobile_layers.h"
#include "engine/ops.h"

namespace models {
using namespace eng;

std::vector<InvertedResidualSpec> mobilenet_v3_large_table(bool reduced_tail) {
  const int64_t d = reduced_tail ? 2 : 1;
  // input, kernel, expanded, out, SE, hardswish, stride (torchvision _mobilenet_v3_conf)
  return {
      {16, 3, 16, 16, false, false, 1},
      {16, 3, 64, 24, false, false, 2},  // C1
      {24, 3, 72, 24, false, false, 1},
      {24, 5, 72, 40, true, false, 2},  // C2
      {40, 5, 120, 40, true, false, 1},
      {40, 5, 120, 40, true, false, 1},
      {40, 3, 240, 80, false, true, 2},  // C3
      {80, 3, 200, 80, false, true, 1},
      {80, 3, 184, 80, false, true, 1},
      {80, 3, 184, 80, false, true, 1},
      {80, 3, 480, 112, true, true, 1},
      {112, 3, 672, 112, true, true, 1},
      {112, 5, 672, 160 / d, true, true, 2},  // C4
      {160 / d, 5, 960 / d, 160 / d, true, true, 1},
      {160 / d, 5, 960 / d, 160 / d, true, true, 1},
  };
}

std::shared_ptr<nn::Sequential> conv_norm_act(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t groups,
                                              const char* activation, double bn_eps, double bn_momentum) {
  auto s = std::make_shared<nn::Sequential>();
  s->push_back(std::make_shared<nn::Conv2d>(in, out, k, stride, (k - 1) / 2, 1, /*bias=*/false, groups));
  s->push_back(std::make_shared<nn::BatchNorm2d>(out, bn_eps, bn_momentum));
  const std::string a = activation ? activation : "";
  if (a == "relu") s->push_back(std::make_shared<nn::ReLU>());
  else if (a == "relu6") s->push_back(std::make_shared<nn::ReLU6>());
  else if (a == "hardswish") s->push_back(std::make_shared<nn::Hardswish>());
  else ENGINE_CHECK(a.empty(), "conv_norm_act: unknown activation '", a, "'");
  return s;
}

InvertedResidual::InvertedResidual(const InvertedResidualSpec& sp, double eps, double mom)
    : Module("InvertedResidual"), spec(sp) {
  ENGINE_CHECK(sp.stride == 1 || sp.stride == 2, "InvertedResidual: stride must be 1 or 2, got ", sp.stride);
  use_res_connect = sp.stride == 1 && sp.input_channels == sp.out_channels;
  const char* act = sp.use_hardswish ? "hardswish" : "relu";
  block = register_module("block", std::make_shared<nn::Sequential>());
  if (sp.expanded_channels != sp.input_channels)
    block->push_back(conv_norm_act(sp.input_channels, sp.expanded_channels, 1, 1, 1, act, eps, mom));
  block->push_back(conv_norm_act(sp.expanded_channels, sp.expanded_channels, sp.kernel, sp.stride,
                                 sp.expanded_channels, act, eps, mom));
  if (sp.use_se) {
    // torchvision: _make_divisible(expanded // 4, 8)
    const int64_t squeeze = nn::make_divisible(static_cast<double>(sp.expanded_channels / 4), 8);
    block->push_back(std::make_shared<nn::SqueezeExcitation>(sp.expanded_channels, squeeze));
  }
  block->push_back(conv_norm_act(sp.expanded_channels, sp.out_channels, 1, 1, 1, "", eps, mom));
}

Tensor InvertedResidual::forward(const Tensor& x) {
  Tensor y = block->forward(x);
  return use_res_connect ? add(y, x) : y;
}

MobileNetV3Large::MobileNetV3Large(const MobileNetV3Options& o) : Module("MobileNetV3") {
  features = register_module("features", std::make_shared<nn::Sequential>());
  features->push_back(conv_norm_act(3, 16, 3, 2, 1, "hardswish", o.bn_eps, o.bn_momentum));
  const auto table = mobilenet_v3_large_table(o.reduced_tail);
  for (const auto& sp : table) features->push_back(std::make_shared<InvertedResidual>(sp, o.bn_eps, o.bn_momentum));
  const int64_t last_in = table.back().out_channels;
  out_channels = 6 * last_in;
  features->push_back(conv_norm_act(last_in, out_channels, 1, 1, 1, "hardswish", o.bn_eps, o.bn_momentum));
  mobilenet_v3_default_init(*this);
}

void mobilenet_v3_default_init(nn::Module& m) {
  NoGradGuard ng;
  for (auto& [name, mod] : m.named_modules()) {
    if (auto* c = dynamic_cast<nn::Conv2d*>(mod)) {
      const auto& s = c->weight.sizes();
      const double fan_out = static_cast<double>(s[0] * s[2] * s[3]);  // torch: out * k * k
      nn::init::normal_(c->weight, 0.0, std::sqrt(2.0 / fan_out));
      if (c->bias.defined()) nn::init::constant_(c->bias, 0.0);
    } else if (auto* b = dynamic_cast<nn::BatchNorm2d*>(mod)) {
      nn::init::constant_(b->weight, 1.0);
      nn::init::constant_(b->bias, 0.0);
    }
  }
}

void normal_init_convs(nn::Module& m, double std) {
  NoGradGuard ng;
  for (auto& [name, mod] : m.named_modules()) {
    if (auto* c = dynamic_cast<nn::Conv2d*>(mod)) {
      nn::init::normal_(c->weight, 0.0, std);
      if (c->bias.defined()) nn::init::constant_(c->bias, 0.0);
    }
  }
}

}  // namespace models
