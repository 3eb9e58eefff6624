// ResNet50 body with FrozenBatchNorm2d, torchvision names (conv1, bn1, layer1..layer4 of
// Bottleneck blocks conv1/bn1/conv2/bn2/conv3/bn3/downsample.0/.1; stride on conv2, v1.5).
// No avgpool/fc: forward_features returns C3, C4, C5 (outputs of layer2, layer3, layer4).
#pragma once
#include <memory>
#include <vector>

#include "engine/nn/layers.h"
#include "engine/nn/module.h"

namespace models {

class Bottleneck : public eng::nn::Module {
 public:
  Bottleneck(int64_t inplanes, int64_t planes, int64_t stride);
  eng::Tensor forward(const eng::Tensor& x) override;

  std::shared_ptr<eng::nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<eng::nn::FrozenBatchNorm2d> bn1, bn2, bn3;
  std::shared_ptr<eng::nn::Sequential> downsample;  // null when the shapes already match
};

class ResNet50Body : public eng::nn::Module {
 public:
  ResNet50Body();
  // [N, 3, S, S] -> {C3 [N, 512, S/8], C4 [N, 1024, S/16], C5 [N, 2048, S/32]} (ceil halvings)
  std::vector<eng::Tensor> forward_features(const eng::Tensor& x);

  std::shared_ptr<eng::nn::Conv2d> conv1;
  std::shared_ptr<eng::nn::FrozenBatchNorm2d> bn1;
  std::shared_ptr<eng::nn::Sequential> layer1, layer2, layer3, layer4;
};

}  // namespace models
