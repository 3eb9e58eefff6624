// The small classifier of the demo and the smoke test:
//   features: conv3x3(in -> c1) BN ReLU maxpool2 | conv3x3(c1 -> c2) BN ReLU maxpool2
//   classifier: Linear(c2 * (size/4)^2 -> classes)
// Names follow torchvision's Sequential numbering: features.0.weight, features.1.running_mean,
// features.4.weight, ..., classifier.weight.
#pragma once
#include <memory>

#include "engine/nn/layers.h"
#include "engine/nn/module.h"

namespace models {

class SmallConvNet : public eng::nn::Module {
 public:
  SmallConvNet(int64_t in_channels, int64_t num_classes, int64_t image_size, int64_t c1 = 8, int64_t c2 = 16);
  eng::Tensor forward(const eng::Tensor& x) override;  // [N, in, S, S] -> logits [N, classes]

 private:
  std::shared_ptr<eng::nn::Sequential> features_;
  std::shared_ptr<eng::nn::Linear> classifier_;
};

}  // namespace models
