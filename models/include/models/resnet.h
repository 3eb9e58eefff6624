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
  // The same with C2 [N, 256, S/4] (layer1's output) first: {C2, C3, C4, C5}.
  std::vector<eng::Tensor> forward_c2_c5(const eng::Tensor& x);
  // torchvision's trainable_backbone_layers (0..5): the last n of layer4, layer3, layer2,
  // layer1, conv1 (with bn1) keep requires_grad; the others are frozen (requires_grad_(false)).
  // 5 trains everything; torchvision's default with pretrained weights is 3 (conv1 and layer1 frozen).
  void set_trainable_layers(int64_t n);

  std::shared_ptr<eng::nn::Conv2d> conv1;
  std::shared_ptr<eng::nn::FrozenBatchNorm2d> bn1;
  std::shared_ptr<eng::nn::Sequential> layer1, layer2, layer3, layer4;
};

}  // namespace models
