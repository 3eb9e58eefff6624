// ResNet50 body with FrozenBatchNorm2d, torchvision names (conv1, bn1, layer1..layer4 of
// Bottleneck blocks conv1/bn1/conv2/bn2/conv3/bn3/downsample.0/.1; stride on conv2, v1.5).
// No avgpool/fc: forward_features returns C3, C4, C5 (outputs of layer2, layer3, layer4).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/nn/layers.h"
#include "engine/nn/module.h"

namespace models {

// The backbone's normalisation: FrozenBatchNorm2d (torchvision with pretrained weights, the
// default: affine and statistics are buffers) or BatchNorm2d (torchvision's detection
// builders with neither weights nor weights_backbone: trained, with running statistics).
enum class ResNetNorm { Frozen, Batch };
// ModelConfig::backbone_norm ("" / "frozen" / "batch"; create_model refuses others).
inline ResNetNorm resnet_norm_of(const std::string& name) { return name == "batch" ? ResNetNorm::Batch : ResNetNorm::Frozen; }
// ModelConfig::trainable_backbone_layers with torchvision's defaults for -1: 3 with the
// pretrained layout (FrozenBatchNorm2d), 5 when building for training from scratch.
inline int64_t trainable_layers_of(int64_t configured, ResNetNorm norm) {
  return configured >= 0 ? configured : (norm == ResNetNorm::Batch ? 5 : 3);
}

class Bottleneck : public eng::nn::Module {
 public:
  Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, ResNetNorm norm = ResNetNorm::Frozen);
  eng::Tensor forward(const eng::Tensor& x) override;

  std::shared_ptr<eng::nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<eng::nn::Module> bn1, bn2, bn3;  // FrozenBatchNorm2d or BatchNorm2d
  std::shared_ptr<eng::nn::Sequential> downsample;  // null when the shapes already match
};

class ResNet50Body : public eng::nn::Module {
 public:
  explicit ResNet50Body(ResNetNorm norm = ResNetNorm::Frozen);
  // [N, 3, S, S] -> {C3 [N, 512, S/8], C4 [N, 1024, S/16], C5 [N, 2048, S/32]} (ceil halvings)
  std::vector<eng::Tensor> forward_features(const eng::Tensor& x);
  // The same with C2 [N, 256, S/4] (layer1's output) first: {C2, C3, C4, C5}.
  std::vector<eng::Tensor> forward_c2_c5(const eng::Tensor& x);
  // torchvision's trainable_backbone_layers (0..5): the last n of layer4, layer3, layer2,
  // layer1, conv1 (with bn1) keep requires_grad; the others are frozen (requires_grad_(false)).
  // 5 trains everything; torchvision's default with pretrained weights is 3 (conv1 and layer1 frozen).
  void set_trainable_layers(int64_t n);

  std::shared_ptr<eng::nn::Conv2d> conv1;
  std::shared_ptr<eng::nn::Module> bn1;
  std::shared_ptr<eng::nn::Sequential> layer1, layer2, layer3, layer4;
};

}  // namespace models
