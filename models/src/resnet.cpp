#include "models/resnet.h"

#include <cmath>

namespace models {
using namespace eng;

namespace {
// torchvision ResNet init: kaiming_normal_(mode="fan_out", nonlinearity="relu").
std::shared_ptr<nn::Conv2d> conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
  auto c = std::make_shared<nn::Conv2d>(in, out, k, stride, pad, 1, false);
  nn::init::normal_(c->weight, 0.0, std::sqrt(2.0 / static_cast<double>(out * k * k)));
  return c;
}
std::shared_ptr<nn::Module> norm_layer(ResNetNorm norm, int64_t channels) {
  if (norm == ResNetNorm::Batch) return std::make_shared<nn::BatchNorm2d>(channels);
  return std::make_shared<nn::FrozenBatchNorm2d>(channels);
}
}  // namespace

Bottleneck::Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, ResNetNorm norm) : Module("Bottleneck") {
  conv1 = register_module("conv1", conv(inplanes, planes, 1, 1, 0));
  bn1 = register_module("bn1", norm_layer(norm, planes));
  conv2 = register_module("conv2", conv(planes, planes, 3, stride, 1));
  bn2 = register_module("bn2", norm_layer(norm, planes));
  conv3 = register_module("conv3", conv(planes, planes * 4, 1, 1, 0));
  bn3 = register_module("bn3", norm_layer(norm, planes * 4));
  if (stride != 1 || inplanes != planes * 4) {
    downsample = register_module("downsample", std::make_shared<nn::Sequential>());
    downsample->push_back(conv(inplanes, planes * 4, 1, stride, 0));
    downsample->push_back(norm_layer(norm, planes * 4));
  }
}

Tensor Bottleneck::forward(const Tensor& x) {
  Tensor y = relu(bn1->forward(conv1->forward(x)));
  y = relu(bn2->forward(conv2->forward(y)));
  y = bn3->forward(conv3->forward(y));
  Tensor identity = downsample ? downsample->forward(x) : x;
  return relu(y + identity);
}

ResNet50Body::ResNet50Body(ResNetNorm norm) : Module("ResNet50Body") {
  conv1 = register_module("conv1", conv(3, 64, 7, 2, 3));
  bn1 = register_module("bn1", norm_layer(norm, 64));
  const int64_t planes[4] = {64, 128, 256, 512}, blocks[4] = {3, 4, 6, 3};
  int64_t inplanes = 64;
  std::shared_ptr<nn::Sequential>* layers[4] = {&layer1, &layer2, &layer3, &layer4};
  for (int i = 0; i < 4; ++i) {
    auto seq = std::make_shared<nn::Sequential>();
    for (int64_t b = 0; b < blocks[i]; ++b) {
      seq->push_back(std::make_shared<Bottleneck>(inplanes, planes[i], (b == 0 && i > 0) ? 2 : 1, norm));
      inplanes = planes[i] * 4;
    }
    *layers[i] = register_module("layer" + std::to_string(i + 1), seq);
  }
}

std::vector<Tensor> ResNet50Body::forward_c2_c5(const Tensor& x) {
  Pool2dParams pool;
  pool.kernel_h = pool.kernel_w = 3;
  pool.stride_h = pool.stride_w = 2;
  pool.pad_h = pool.pad_w = 1;
  Tensor y = max_pool2d(relu(bn1->forward(conv1->forward(x))), pool);
  Tensor c2 = layer1->forward(y);
  Tensor c3 = layer2->forward(c2);
  Tensor c4 = layer3->forward(c3);
  Tensor c5 = layer4->forward(c4);
  return {c2, c3, c4, c5};
}

std::vector<Tensor> ResNet50Body::forward_features(const Tensor& x) {
  std::vector<Tensor> c = forward_c2_c5(x);
  return {c[1], c[2], c[3]};
}

void ResNet50Body::set_trainable_layers(int64_t n) {
  ENGINE_CHECK(n >= 0 && n <= 5, "trainable backbone layers must be in 0..5, got ", n);
  // torchvision: layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:n], plus
  // "bn1" when n == 5 (FrozenBatchNorm2d has no parameters; BatchNorm2d's affine then trains).
  Module* order[5] = {layer4.get(), layer3.get(), layer2.get(), layer1.get(), conv1.get()};
  requires_grad_(false);
  if (n == 5) bn1->requires_grad_(true);
  for (int64_t i = 0; i < n; ++i) order[i]->requires_grad_(true);
}

}  // namespace models
