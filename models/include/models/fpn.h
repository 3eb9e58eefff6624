// torchvision FeaturePyramidNetwork, names inner_blocks.i.0.*, layer_blocks.i.0.*
// (Conv2dNormActivation wrappers without norm or activation, i.e. a Sequential holding one
// conv), with one of torchvision's top blocks:
//   FpnTop::P6P7     RetinaNet (C3-C5): LastLevelP6P7 (v1: P6 from P5), extra_blocks.p6.*, .p7.*
//   FpnTop::MaxPool  Faster R-CNN (C2-C5): LastLevelMaxPool, P6 = max_pool2d(P5, kernel 1,
//                    stride 2), i.e. every other pixel of P5; no parameters.
#pragma once
#include <memory>
#include <vector>

#include "engine/nn/layers.h"
#include "engine/nn/module.h"

namespace models {

class LastLevelP6P7 : public eng::nn::Module {
 public:
  LastLevelP6P7(int64_t in_channels, int64_t out_channels);
  std::shared_ptr<eng::nn::Conv2d> p6, p7;
};

enum class FpnTop { P6P7, MaxPool };

class FeaturePyramidNetwork : public eng::nn::Module {
 public:
  FeaturePyramidNetwork(const std::vector<int64_t>& in_channels, int64_t out_channels, FpnTop top = FpnTop::P6P7);
  // P6P7:    {C3, C4, C5} -> {P3, P4, P5, P6, P7}; P6 = p6(P5), P7 = p7(relu(P6)).
  // MaxPool: {C2, .., C5} -> {P2, .., P5, P6};    P6 = max_pool2d(P5, 1, stride 2).
  std::vector<eng::Tensor> forward_features(const std::vector<eng::Tensor>& xs);

  std::shared_ptr<eng::nn::ModuleList> inner_blocks, layer_blocks;
  std::shared_ptr<LastLevelP6P7> extra_blocks;  // null for FpnTop::MaxPool
  FpnTop top;
};

}  // namespace models
