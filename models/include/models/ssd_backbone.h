// The interface between a GluonCV-style SSD (models/gluon_ssd.h) and its backbone: a network
// that returns its "source" feature maps, in order (the layers GluonCV taps by symbol name,
// seed-specs A2). The FeatureExpander extras then start from the last source.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/nn/module.h"
#include "engine/tensor.h"

namespace models {

class SSDSourceBackbone : public eng::nn::Module {
 public:
  using eng::nn::Module::Module;
  // [N, 3, S, S] (normalised input) -> one [N, C_k, H_k, W_k] map per source.
  virtual std::vector<eng::Tensor> forward_sources(const eng::Tensor& x) = 0;
  // C_k of each source.
  virtual std::vector<int64_t> source_channels() const = 0;
  // H_k (= W_k) of each source for an S x S input (the backbone's own rounding).
  virtual std::vector<int64_t> source_sizes(int64_t input_size) const = 0;
};

// GluonCV ResNet backbones (models/src/gluon_resnet.cpp): resnet18_v1, resnet50_v1,
// resnet101_v2, resnet152_v2, truncated at their last source.
std::shared_ptr<SSDSourceBackbone> make_gluon_resnet(const std::string& name);
// GluonCV MobileNet v1 (models/src/mobilenet_v1.cpp): width multiplier 1.0 or 0.25,
// sources relu22 and relu26.
std::shared_ptr<SSDSourceBackbone> make_mobilenet_v1(double multiplier);

}  // namespace models
