// TinySSD: the small d2l-style SSD for CPU demos and fast tests (DESIGN.md section 4).
//
// Layout and state-dict names (torchvision style; every conv has a bias, as in d2l):
//   backbone.blocks.0   base net: three down-sample blocks 3->16->32->64 (map S/8)
//                       keys backbone.blocks.0.<k>.<l>.{weight,bias,...}, k = 0..2
//   backbone.blocks.1   down-sample block 64->128   (S/16)  keys backbone.blocks.1.<l>.*
//   backbone.blocks.2   down-sample block 128->128  (S/32)
//   backbone.blocks.3   down-sample block 128->128  (S/64)
//   backbone.blocks.4   global max pool              (1x1, no parameters)
//   A down-sample block is Sequential(0 conv3x3 p1, 1 BN, 2 ReLU, 3 conv3x3 p1, 4 BN,
//   5 ReLU, 6 maxpool 2): parameters at l = 0, 1, 3, 4 (BN also has running_mean,
//   running_var, num_batches_tracked buffers).
//   head.classification_head.module_list.<i>  conv3x3 p1, 4*C outputs, scale i = 0..4
//   head.regression_head.module_list.<i>      conv3x3 p1, 4*4 outputs
// C = config().num_classes includes background (class 0).
//
// Anchors: MultiBoxPrior, sizes (fractions of the image) [[0.2,0.272],[0.37,0.447],
// [0.54,0.619],[0.71,0.79],[0.88,0.961]], ratios [1,2,0.5], 4 per location, centres at
// (j+0.5) S/fmap, no clipping: 5444 anchors at 256, 21764 at 512.
// Loss (torchvision SSD's, not d2l's): det::match_ssd at IoU 0.5 (best GT per anchor, each
// GT forces its best anchor; ModelConfig::matcher "bipartite" picks det::match_bipartite), box coding det::box_encode with weights (10,10,5,5); softmax
// CE on positives plus the 3*P hardest negatives per image (det::hard_negative_mining) +
// smooth-L1 (beta 1) on positives, both divided by the batch's positives (at least 1).
// d2l's offsets use the same (10,10,5,5) maths (plus an eps in the log), but its matching
// is a greedy table assignment and its loss is CE over all anchors + L1 on positives,
// averaged per image. Inference: det::detect_postprocess with PostprocessOptions::ssd(), boxes
// clipped to the input (as torchvision SSD; d2l does not clip).
// Input normalisation: ImageNet mean (123.675, 116.28, 103.53), std (58.395, 57.12, 57.375).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/nn/layers.h"
#include "models/detection_model.h"

namespace models {

class TinySSD : public DetectionModel {
 public:
  explicit TinySSD(const ModelConfig& config);  // config.input_size 0 -> 256

  HeadOutputs forward_heads(const eng::Tensor& images) override;
  eng::Tensor anchors(eng::Device device) const override;
  LossParts loss(const HeadOutputs& heads, const Targets& targets) override;
  eng::det::PostprocessOptions postprocess_options() const override;
  void set_input_size(int64_t size) override;
  std::vector<std::pair<std::string, eng::Shape>> block_shapes() override;
  std::vector<double> pixel_mean() const override { return {123.675, 116.28, 103.53}; }
  std::vector<double> pixel_std() const override { return {58.395, 57.12, 57.375}; }

  static constexpr int64_t kAnchorsPerLocation = 4;
  static constexpr int64_t kNumScales = 5;
  // The feature-map sides for an input of side `input_size` (S/8, S/16, S/32, S/64, 1).
  static std::vector<int64_t> feature_sizes(int64_t input_size);

 private:
  int64_t input_size_;
  std::vector<std::shared_ptr<eng::nn::Module>> blocks_;
  std::vector<std::shared_ptr<eng::nn::Conv2d>> cls_, box_;
};

}  // namespace models
