// GluonCV's ResNet backbones for the SSD presets (gluoncv/model_zoo/resnet.py semantics),
// truncated at their last SSD source (seed-specs A2), with torchvision-style names.
//
//   resnet18_v1   BasicBlockV1  [2,2,2,2]   sources stage3_activation1, stage4_activation1
//   resnet50_v1   BottleneckV1  [3,4,6,3]   sources stage3_activation5, stage4_activation2
//   resnet101_v2  BottleneckV2  [3,4,23,3]  sources stage3_activation22, stage4_activation2
//   resnet152_v2  BottleneckV2  [3,8,36,3]  sources stage2_activation7, stage3_activation35,
//                                                   stage4_activation2
//
// Source names are GluonCV's MXNet symbol names: every F.Activation called inside the
// blocks of stage k is "stage{k}_activation{n}", n counting across all the blocks of the
// stage (the blocks have an empty prefix, so they share the stage's name counter). V1 blocks
// call it once (the ReLU after the residual sum), so n = block index. BottleneckV2 calls it
// three times (before conv1, conv2, conv3), so n = 3 * block + j, j = 0, 1, 2 being the
// pre-activation (BN + ReLU) that feeds conv1, conv2, conv3 of that block.
//
// Layouts (bias per conv exactly as GluonCV builds it):
//   v1 stem      conv1 7x7 s2 p3 (no bias), bn1, ReLU, maxpool 3x3 s2 p1
//   BasicBlockV1 conv1 3x3 s (no bias), bn1, ReLU, conv2 3x3 (no bias), bn2,
//                [downsample.0 1x1 s (no bias), downsample.1 BN], + , ReLU
//   BottleneckV1 conv1 1x1 s (BIAS), bn1, ReLU, conv2 3x3 (no bias), bn2, ReLU,
//                conv3 1x1 (BIAS), bn3, [downsample.0 1x1 s (no bias), downsample.1 BN], +, ReLU
//   v2 stem      bn_data (BN without gamma/beta: GluonCV's BatchNorm(scale=False,
//                center=False)), conv1 7x7 s2 p3 (no bias), bn1, ReLU, maxpool 3x3 s2 p1
//   BottleneckV2 p = ReLU(bn1(x)); [residual = downsample(p): 1x1 s, no bias];
//                conv1 1x1 (no bias), bn2, ReLU, conv2 3x3 s (no bias), bn3, ReLU,
//                conv3 1x1 (no bias), + residual (no ReLU after the sum)
// Stage k (k = 1..4) is child "layer{k}", its blocks "layer{k}.{i}". Every BN is a trainable
// eng::nn::BatchNorm2d, eps 1e-5 (Gluon's default), momentum 0.1 (torch's convention for
// Gluon's 0.9). Truncation: the network ends at its last source; a block cut inside (the v2
// presets' stage4 block 0, cut after bn3 + ReLU) has neither conv3 nor downsample, and no
// later block or stage exists, so parameter counts are those of the truncated graph.
// Init (Gluon's `initialize()` defaults): conv weights U(-0.07, 0.07), conv biases 0, BN
// gamma 1, beta 0, running mean 0, running var 1.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/nn/layers.h"
#include "models/ssd_backbone.h"

namespace models {

// One SSD source: GluonCV's stage{stage}_activation{activation}.
struct GluonResNetSource {
  int stage = 0;       // 1..4
  int activation = 0;  // the stage's F.Activation counter
  std::string name() const;
};

struct GluonResNetSpec {
  std::string name;
  int version = 1;                  // 1 or 2
  bool bottleneck = false;          // BasicBlock (resnet18) or Bottleneck
  std::vector<int64_t> blocks;      // blocks per stage of the full network
  std::vector<int64_t> channels;    // stem width, then the output width of stages 1..4
  std::vector<GluonResNetSource> sources;
};

// resnet18_v1, resnet50_v1, resnet101_v2, resnet152_v2.
const std::vector<std::string>& gluon_resnet_names();
// The spec of `name`; an unknown name -> one eng::Error listing the known ones.
const GluonResNetSpec& gluon_resnet_spec(const std::string& name);

// The data BatchNorm of the v2 stem: normalisation without gamma and beta (torch's
// BatchNorm2d(affine=False)). Buffers running_mean, running_var, num_batches_tracked.
class AffinelessBatchNorm2d : public eng::nn::Module {
 public:
  explicit AffinelessBatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);
  eng::Tensor forward(const eng::Tensor& x) override;

  eng::Tensor running_mean, running_var, num_batches_tracked;
  double eps, momentum;
};

// A block that appends each of its GluonCV-counted activations to `acts` and returns its
// output (for a block cut inside, the last activation it computes).
class GluonResNetBlock : public eng::nn::Module {
 public:
  using eng::nn::Module::Module;
  virtual eng::Tensor run(const eng::Tensor& x, std::vector<eng::Tensor>& acts) = 0;
  eng::Tensor forward(const eng::Tensor& x) override;
};

class GluonBasicBlockV1 : public GluonResNetBlock {
 public:
  GluonBasicBlockV1(int64_t in_channels, int64_t channels, int64_t stride);
  eng::Tensor run(const eng::Tensor& x, std::vector<eng::Tensor>& acts) override;

  std::shared_ptr<eng::nn::Conv2d> conv1, conv2;
  std::shared_ptr<eng::nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<eng::nn::Sequential> downsample;  // null when in == out and stride 1
};

class GluonBottleneckV1 : public GluonResNetBlock {
 public:
  GluonBottleneckV1(int64_t in_channels, int64_t channels, int64_t stride);
  eng::Tensor run(const eng::Tensor& x, std::vector<eng::Tensor>& acts) override;

  std::shared_ptr<eng::nn::Conv2d> conv1, conv2, conv3;  // conv1, conv3 with bias
  std::shared_ptr<eng::nn::BatchNorm2d> bn1, bn2, bn3;
  std::shared_ptr<eng::nn::Sequential> downsample;
};

class GluonBottleneckV2 : public GluonResNetBlock {
 public:
  // cut_after: -1 = the whole block; j = 0, 1, 2 = the block ends at its activation j (the
  // pre-activation of conv{j+1}): no later layer, no downsample, no residual sum.
  GluonBottleneckV2(int64_t in_channels, int64_t channels, int64_t stride, int cut_after = -1);
  eng::Tensor run(const eng::Tensor& x, std::vector<eng::Tensor>& acts) override;

  int cut_after;
  std::shared_ptr<eng::nn::BatchNorm2d> bn1, bn2, bn3;  // null past the cut
  std::shared_ptr<eng::nn::Conv2d> conv1, conv2, conv3;  // null past the cut
  std::shared_ptr<eng::nn::Conv2d> downsample;  // null when in == out, or cut
};

class GluonResNet : public SSDSourceBackbone {
 public:
  explicit GluonResNet(const std::string& name);
  // [N, 3, S, S] -> the source maps, in spec().sources order.
  std::vector<eng::Tensor> forward_sources(const eng::Tensor& x) override;
  // The last source.
  eng::Tensor forward(const eng::Tensor& x) override;
  std::vector<int64_t> source_channels() const override;
  std::vector<int64_t> source_sizes(int64_t input_size) const override;

  const GluonResNetSpec& spec() const { return spec_; }
  std::vector<std::string> source_names() const;
  // Stages that exist (1..4) and their blocks, typed (the same modules as layer{k}).
  std::vector<std::vector<std::shared_ptr<GluonResNetBlock>>> stages;

  std::shared_ptr<AffinelessBatchNorm2d> bn_data;  // v2 only
  std::shared_ptr<eng::nn::Conv2d> conv1;
  std::shared_ptr<eng::nn::BatchNorm2d> bn1;

 private:
  GluonResNetSpec spec_;
};

// Loads a torchvision resnet18 / resnet50 state dict (keys conv1.weight, bn1.*,
// layerK.i.{conv,bn}{1,2,3}.*, layerK.i.downsample.{0,1}.*, fc.*) into a v1 backbone by
// name: fc.* is ignored; the BottleneckV1 conv biases torchvision lacks (layerK.i.conv1.bias,
// conv3.bias) keep their current values (0 after construction). Any other missing or
// unexpected key, or a shape mismatch, is one eng::Error naming the first such key (and the
// shapes). A v2 backbone -> eng::Error (no torchvision layout matches it).
// Returns the keys loaded.
std::vector<std::string> load_torchvision_resnet(GluonResNet& net, const eng::nn::NamedTensors& tensors);

}  // namespace models
