// GluonCV MobileNet v1 source backbone (see models/mobilenet_v1.h).
#include "models/mobilenet_v1.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"

namespace models {
using namespace eng;

namespace {

constexpr size_t kRelu22 = 3 * 22 + 2, kRelu26 = 3 * 26 + 2;  // child index of a ReLU number

// Gluon's _add_conv: Conv2D(no bias, groups) -> BatchNorm -> ReLU.
void add_conv(nn::Sequential& s, int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, int64_t groups) {
  s.push_back(std::make_shared<nn::Conv2d>(in, out, k, stride, pad, 1, false, groups));
  s.push_back(std::make_shared<nn::BatchNorm2d>(out, 1e-5, 0.1));
  s.push_back(std::make_shared<nn::ReLU>());
}

int64_t conv_out(int64_t n, int64_t stride) { return (n + 2 - 3) / stride + 1; }  // 3x3, pad 1

}  // namespace

std::vector<MobileNetV1Backbone::Row> MobileNetV1Backbone::table(double m) {
  const int64_t dw[13] = {32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024};
  const int64_t pw[13] = {64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024};
  const int64_t st[13] = {1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1};
  std::vector<Row> rows;
  // int(x * multiplier) in Python truncates toward zero.
  for (int i = 0; i < 13; ++i)
    rows.push_back({static_cast<int64_t>(dw[i] * m), static_cast<int64_t>(pw[i] * m), st[i]});
  return rows;
}

MobileNetV1Backbone::MobileNetV1Backbone(double multiplier) : SSDSourceBackbone("MobileNetV1"), multiplier_(multiplier) {
  ENGINE_CHECK(multiplier == 1.0 || multiplier == 0.75 || multiplier == 0.5 || multiplier == 0.25,
               "MobileNet v1: multiplier must be 1.0, 0.75, 0.5 or 0.25 (GluonCV's), got ", multiplier);
  features = register_module("features", std::make_shared<nn::Sequential>());
  const int64_t stem = static_cast<int64_t>(32 * multiplier);
  add_conv(*features, 3, stem, 3, 2, 1, 1);
  int64_t in = stem;
  for (const Row& r : table(multiplier)) {
    add_conv(*features, in, r.dw_channels, 3, r.stride, 1, r.dw_channels);  // depthwise
    add_conv(*features, r.dw_channels, r.pw_channels, 1, 1, 0, 1);           // pointwise
    in = r.pw_channels;
  }
  ENGINE_CHECK(features->size() == kRelu26 + 1, "MobileNet v1: layer count");
  // Kaiming normal (fan_out) for the convs, BN 1 / 0: a from-scratch start (GluonCV's SSD
  // presets start from ImageNet weights, which need MXNet to read).
  NoGradGuard ng;
  for (auto& [name, mod] : named_modules()) {
    if (auto* c = dynamic_cast<nn::Conv2d*>(mod)) {
      const auto& s = c->weight.sizes();
      nn::init::normal_(c->weight, 0.0, std::sqrt(2.0 / static_cast<double>(s[0] * s[2] * s[3])));
    }
  }
}

std::vector<Tensor> MobileNetV1Backbone::forward_sources(const Tensor& x) {
  std::vector<Tensor> out;
  Tensor h = x;
  for (size_t i = 0; i < features->size(); ++i) {
    h = (*features)[i]->forward(h);
    if (i == kRelu22 || i == kRelu26) out.push_back(h);
  }
  return out;
}

std::vector<int64_t> MobileNetV1Backbone::source_channels() const {
  const auto rows = table(multiplier_);
  return {rows[10].pw_channels, rows[12].pw_channels};
}

std::vector<int64_t> MobileNetV1Backbone::source_sizes(int64_t input_size) const {
  int64_t s = conv_out(input_size, 2);
  std::vector<int64_t> out;
  const auto rows = table(multiplier_);
  for (size_t b = 0; b < rows.size(); ++b) {
    s = conv_out(s, rows[b].stride);
    if (b == 10 || b == 12) out.push_back(s);
  }
  return out;
}

std::shared_ptr<SSDSourceBackbone> make_mobilenet_v1(double multiplier) {
  return std::make_shared<MobileNetV1Backbone>(multiplier);
}

}  // namespace models
