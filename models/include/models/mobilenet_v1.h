// GluonCV's MobileNet v1 (gluoncv/model_zoo/mobilenet.py) as an SSD source backbone, for
// the presets ssd512_mobilenet1_0 and ssd300_mobilenet0_25.
//
// Layout: one flat Sequential `features`, as Gluon's HybridSequential, of (conv, BN, ReLU)
// triples: the stem conv 3x3 s2 -> int(32 m), then 13 depthwise-separable blocks, each a
// depthwise 3x3 (stride s) and a pointwise 1x1, every conv without bias, BN eps 1e-5:
//   depthwise channels int(m x) for x in 32, 64, 128, 128, 256, 256, 512 x6, 1024
//   pointwise channels int(m x) for x in 64, 128, 128, 256, 256, 512 x6, 1024, 1024
//   strides                       1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1
// Child 3r + 2 is Gluon's ReLU number r ("relu{r}_fwd"): relu0 the stem, block b's
// depthwise ReLU 2b + 1, its pointwise ReLU 2b + 2. SSD taps relu22 (block 10's pointwise
// output, 512 m channels, stride 16) and relu26 (block 12's, 1024 m, stride 32); nothing
// after relu26 exists (no pooling, no classifier).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/nn/layers.h"
#include "models/ssd_backbone.h"

namespace models {

class MobileNetV1Backbone : public SSDSourceBackbone {
 public:
  explicit MobileNetV1Backbone(double multiplier);
  std::vector<eng::Tensor> forward_sources(const eng::Tensor& x) override;
  std::vector<int64_t> source_channels() const override;
  std::vector<int64_t> source_sizes(int64_t input_size) const override;

  // The 13 (depthwise channels, pointwise channels, stride) rows at this multiplier.
  struct Row {
    int64_t dw_channels, pw_channels, stride;
  };
  static std::vector<Row> table(double multiplier);

  std::shared_ptr<eng::nn::Sequential> features;  // 81 children: relu0 .. relu26

 private:
  double multiplier_;
};

}  // namespace models
