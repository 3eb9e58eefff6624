// ssdlite320_mobilenet_v3_large: torchvision's SSDlite (torchvision/models/detection/ssdlite.py)
// with its structure and state-dict names:
//   backbone.features.0.{0..12}.*   MobileNetV3-Large features[0..12] (reduced tail)
//   backbone.features.0.13.*        the expansion 1x1 conv+BN+Hardswish of features[13] (C4):
//                                   source 0, 672 channels at stride 16
//   backbone.features.1.0.{1,2,3}.* the rest of features[13]: depthwise 5x5 s2, SE, project
//   backbone.features.1.{1,2}.*     features[14], features[15]
//   backbone.features.1.3.*         features[16] (80 -> 480, Hardswish): source 1, stride 32
//   backbone.extra.{0..3}.{0,1,2}.* _extra_block(in, out): 1x1 -> out/2, 3x3 depthwise s2,
//                                   1x1 -> out, each +BN+ReLU6; out = 512, 256, 256, 128
//   head.{classification,regression}_head.module_list.{0..5}.0.{0,1}.*  3x3 depthwise+BN(+ReLU6)
//   head.{classification,regression}_head.module_list.{0..5}.1.*        1x1 conv with bias
// ModelConfig::full_tail (what torchvision builds when given ImageNet backbone weights:
// reduce_tail = weights_backbone is None): features[13] projects to 160, features[14..15] are
// 160 -> 960 -> 160 and features[16] gives 960 channels, so extra.0 and the level-1 heads take
// 960; the backbone keeps MobileNetV3's init (kaiming) and only the extras and heads get
// N(0, 0.03). 5,198,540 parameters at 91 classes. Names are the same in both.
// BatchNorm eps 1e-3, momentum 0.03 everywhere. Maps at 320: 20, 10, 5, 3, 2, 1; 6 anchors per
// location (DefaultBoxGenerator([[2, 3]] * 6, min_ratio 0.2, max_ratio 0.95), clip on,
// steps = image / map): 3234 anchors. 3,440,060 parameters at 91 classes.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/nn/layers.h"
#include "models/detection_model.h"

namespace models {

class SSDLiteFeatureExtractor : public eng::nn::Module {
 public:
  explicit SSDLiteFeatureExtractor(bool full_tail = false);
  std::vector<eng::Tensor> forward_features(const eng::Tensor& x);

  std::shared_ptr<eng::nn::Sequential> features;  // 2 children: up to C4 expansion, the rest
  std::shared_ptr<eng::nn::ModuleList> extra;     // 4 extra blocks
  int64_t out_channels = 480;                     // of features.1 (source 1): 480, or 960 full tail
};

class SSDLiteMobileNetV3 : public DetectionModel {
 public:
  explicit SSDLiteMobileNetV3(const ModelConfig& config);

  HeadOutputs forward_heads(const eng::Tensor& images) override;
  eng::Tensor anchors(eng::Device device) const override;
  LossParts loss(const HeadOutputs& heads, const Targets& targets) override;
  eng::det::PostprocessOptions postprocess_options() const override;
  void set_input_size(int64_t size) override;
  std::vector<std::pair<std::string, eng::Shape>> block_shapes() override;
  std::vector<double> pixel_mean() const override;  // 127.5 (torchvision image_mean 0.5)
  std::vector<double> pixel_std() const override;   // 127.5 (image_std 0.5)

  const std::vector<int64_t>& feature_sizes() const { return fmap_sizes_; }

 private:
  int64_t input_size_ = 320;
  std::vector<int64_t> fmap_sizes_;
  std::vector<eng::det::PriorLevel> levels_;
  eng::det::PriorOptions prior_options_;
  eng::Tensor anchors_cpu_;
  std::shared_ptr<SSDLiteFeatureExtractor> backbone_;
  std::shared_ptr<eng::nn::ModuleList> cls_heads_, box_heads_;
};

}  // namespace models
