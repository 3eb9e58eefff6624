#include "models/fpn.h"

#include <cmath>

namespace models {
using namespace eng;

namespace {
// torchvision FPN / LastLevelP6P7 init: kaiming_uniform_(a=1) weights, zero bias.
std::shared_ptr<nn::Conv2d> fpn_conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
  auto c = std::make_shared<nn::Conv2d>(in, out, k, stride, pad);
  const double bound = std::sqrt(3.0 / static_cast<double>(in * k * k));
  nn::init::uniform_(c->weight, -bound, bound);
  nn::init::constant_(c->bias, 0.0);
  return c;
}
std::shared_ptr<nn::Sequential> wrap(std::shared_ptr<nn::Module> m) {
  auto s = std::make_shared<nn::Sequential>();
  s->push_back(std::move(m));
  return s;
}
}  // namespace

LastLevelP6P7::LastLevelP6P7(int64_t in_channels, int64_t out_channels) : Module("LastLevelP6P7") {
  p6 = register_module("p6", fpn_conv(in_channels, out_channels, 3, 2, 1));
  p7 = register_module("p7", fpn_conv(out_channels, out_channels, 3, 2, 1));
}

FeaturePyramidNetwork::FeaturePyramidNetwork(const std::vector<int64_t>& in_channels, int64_t out_channels, FpnTop top_)
    : Module("FeaturePyramidNetwork"), top(top_) {
  inner_blocks = register_module("inner_blocks", std::make_shared<nn::ModuleList>());
  layer_blocks = register_module("layer_blocks", std::make_shared<nn::ModuleList>());
  for (int64_t c : in_channels) {
    inner_blocks->push_back(wrap(fpn_conv(c, out_channels, 1, 1, 0)));
    layer_blocks->push_back(wrap(fpn_conv(out_channels, out_channels, 3, 1, 1)));
  }
  if (top == FpnTop::P6P7)
    extra_blocks = register_module("extra_blocks", std::make_shared<LastLevelP6P7>(out_channels, out_channels));
}

std::vector<Tensor> FeaturePyramidNetwork::forward_features(const std::vector<Tensor>& xs) {
  const int64_t n = static_cast<int64_t>(xs.size());
  ENGINE_CHECK(n == static_cast<int64_t>(inner_blocks->size()), "FPN: expected ", inner_blocks->size(),
               " feature maps, got ", n);
  std::vector<Tensor> results(n);
  Tensor last_inner = (*inner_blocks)[n - 1]->forward(xs[n - 1]);
  results[n - 1] = (*layer_blocks)[n - 1]->forward(last_inner);
  for (int64_t i = n - 2; i >= 0; --i) {
    Tensor lateral = (*inner_blocks)[i]->forward(xs[i]);
    Tensor top_down = upsample_nearest2d(last_inner, lateral.size(2), lateral.size(3));
    last_inner = lateral + top_down;
    results[i] = (*layer_blocks)[i]->forward(last_inner);
  }
  if (top == FpnTop::MaxPool) {
    Pool2dParams pool;  // kernel 1, stride 2, no padding: P5 subsampled at even pixels
    pool.kernel_h = pool.kernel_w = 1;
    pool.stride_h = pool.stride_w = 2;
    pool.pad_h = pool.pad_w = 0;
    results.push_back(max_pool2d(results[n - 1], pool));
    return results;
  }
  Tensor p6 = extra_blocks->p6->forward(results[n - 1]);
  Tensor p7 = extra_blocks->p7->forward(relu(p6));
  results.push_back(p6);
  results.push_back(p7);
  return results;
}

}  // namespace models
