// SSD300 / SSD512 with the VGG16-atrous backbone, torchvision's ssd300_vgg16 layout and names
// (DESIGN.md section 4). State-dict keys equal torchvision's:
//   backbone.scale_weight                      L2Norm scale on conv4_3 (512)
//   backbone.features.N.*                      VGG16 conv1_1 .. conv4_3 (+ReLU), pool3 ceil mode
//   backbone.extra.0.{1,3,5}.*                 pool4, conv5_1..5_3
//   backbone.extra.0.7.{1,3}.*                 pool5 3x3 s1 p1, fc6 (3x3 dil 6 pad 6), fc7 (1x1)
//   backbone.extra.N.{0,2}.*  (N >= 1)         extra blocks (1x1 then 3x3)
//   head.classification_head.module_list.N.*   3x3 conv, C * boxes channels per level
//   head.regression_head.module_list.N.*       3x3 conv, 4 * boxes channels per level
// SSD512 follows the Caffe SSD512 extras of DESIGN (four 1x1 -> 3x3 s2 p1 blocks, then a 4x4
// p1 block; maps 64, 32, 16, 8, 4, 2, 1) with the same naming scheme (torchvision has no
// SSD512 builder; its "highres" extras give other map sizes).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/nn/layers.h"
#include "models/detection_model.h"

namespace models {

// backbone: VGG16 features up to conv4_3, L2Norm, extras. forward_features returns the
// feature maps (L2-normed conv4_3 first).
class SSDVGGBackbone : public eng::nn::Module {
 public:
  explicit SSDVGGBackbone(bool ssd512);
  std::vector<eng::Tensor> forward_features(const eng::Tensor& x);

  eng::Tensor scale_weight;  // [512], initialised to 20
  std::shared_ptr<eng::nn::Sequential> features;
  std::shared_ptr<eng::nn::ModuleList> extra;
};

class SSDVGG16 : public DetectionModel {
 public:
  explicit SSDVGG16(const ModelConfig& config);

  HeadOutputs forward_heads(const eng::Tensor& images) override;
  eng::Tensor anchors(eng::Device device) const override;
  LossParts loss(const HeadOutputs& heads, const Targets& targets) override;
  eng::det::PostprocessOptions postprocess_options() const override;
  void set_input_size(int64_t size) override;
  std::vector<std::pair<std::string, eng::Shape>> block_shapes() override;
  std::vector<double> pixel_mean() const override;
  std::vector<double> pixel_std() const override;

  int64_t input_size() const { return input_size_; }
  const std::vector<int64_t>& feature_sizes() const { return fmap_sizes_; }
  const std::vector<int64_t>& boxes_per_location() const { return boxes_per_loc_; }

 private:
  bool ssd512_ = false;
  int64_t input_size_ = 300;
  std::vector<int64_t> fmap_sizes_, boxes_per_loc_;
  std::vector<eng::det::PriorLevel> levels_;
  eng::det::PriorOptions prior_options_;
  eng::Tensor anchors_cpu_;  // [A, 4] f32, torchvision's clip applied
  std::shared_ptr<SSDVGGBackbone> backbone_;
  std::shared_ptr<eng::nn::ModuleList> cls_heads_, box_heads_;
};

}  // namespace models
