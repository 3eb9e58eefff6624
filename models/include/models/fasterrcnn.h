// Faster R-CNN ResNet50-FPN, torchvision's fasterrcnn_resnet50_fpn (v1) layout and names:
//   backbone.body.*            ResNet50Body (FrozenBatchNorm2d), conv1 + layer1 frozen by default
//   backbone.fpn.*             FPN on C2..C5 (256 channels) with the max-pool P6 (no parameters)
//   rpn.head.conv.0.0.*        3x3 conv 256 -> 256 (+ ReLU), shared by the five levels
//   rpn.head.cls_logits.*      1x1 -> 3 objectness logits per location
//   rpn.head.bbox_pred.*       1x1 -> 12 deltas per location
//   roi_heads.box_head.fc6.*   TwoMLPHead: 256*7*7 -> 1024 (+ ReLU)
//   roi_heads.box_head.fc7.*   1024 -> 1024 (+ ReLU)
//   roi_heads.box_predictor.cls_score.*  1024 -> C (C = num_classes, background 0 included)
//   roi_heads.box_predictor.bbox_pred.*  1024 -> 4 C (class-specific deltas, weights 10,10,5,5)
// 41,755,286 parameters at 91 classes (frozen ones included, as torchvision counts).
//
// Stages (seed specs part B; torchvision semantics):
//   forward_heads: backbone + FPN -> P2..P6; the RPN head on every level. HeadOutputs holds
//     the RPN deltas [B, A, 4] and objectness logits [B, A, 1] in anchor order (level, y, x,
//     ratio) and features = {P2, .., P5}, what the RoI pooler reads.
//   loss: RPN loss (Matcher 0.7 / 0.3 with low-quality matches, 256 anchors sampled per image
//     at 0.5 positive, BCE-with-logits + smooth-L1 beta 1/9, both over the sampled count),
//     then proposals (train top-n, detached), GT appended, Matcher 0.5 / 0.5, 512 RoIs at
//     0.25 positive, MultiScaleRoIAlign (7x7, sampling 2, aligned false), box head, and the
//     Fast R-CNN loss (cross-entropy + class-specific smooth-L1 beta 1/9, over the sampled count).
//   postprocess: proposals (test top-n), pooling, box head, softmax, per-class decode and clip,
//     score > 0.05, min size 1e-2, per-class NMS 0.5, top 100.
// Input: square config().input_size (default 800, a multiple of 32, so every level divides
// exactly; torchvision resizes to min side 800 / max 1333 and pads to 32 instead).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/nn/layers.h"
#include "engine/random.h"
#include "models/detection_model.h"
#include "models/fpn.h"
#include "models/resnet.h"

namespace models {

class FasterRCNNBackbone : public eng::nn::Module {
 public:
  explicit FasterRCNNBackbone(ResNetNorm norm = ResNetNorm::Frozen);
  std::vector<eng::Tensor> forward_features(const eng::Tensor& x);  // P2..P6
  std::shared_ptr<ResNet50Body> body;
  std::shared_ptr<FeaturePyramidNetwork> fpn;
};

class RPNHead : public eng::nn::Module {
 public:
  RPNHead(int64_t channels, int64_t num_anchors);
  // Levels -> {objectness [B, sum(H W A), 1], deltas [B, sum(H W A), 4]} in anchor order.
  std::pair<eng::Tensor, eng::Tensor> forward_levels(const std::vector<eng::Tensor>& features);
  std::shared_ptr<eng::nn::Sequential> conv;  // conv.0 = Sequential(Conv2d 3x3): names conv.0.0.*
  std::shared_ptr<eng::nn::Conv2d> cls_logits, bbox_pred;
};

class TwoMLPHead : public eng::nn::Module {
 public:
  TwoMLPHead(int64_t in_features, int64_t representation);
  eng::Tensor forward(const eng::Tensor& x) override;  // [R, C, 7, 7] -> [R, 1024]
  std::shared_ptr<eng::nn::Linear> fc6, fc7;
};

class FastRCNNPredictor : public eng::nn::Module {
 public:
  FastRCNNPredictor(int64_t in_features, int64_t num_classes);
  std::shared_ptr<eng::nn::Linear> cls_score, bbox_pred;
};

// The "rpn" and "roi_heads" containers exist for the state-dict names only.
class RegionProposalNetwork : public eng::nn::Module {
 public:
  explicit RegionProposalNetwork(int64_t num_anchors);
  std::shared_ptr<RPNHead> head;
};
class RoIHeads : public eng::nn::Module {
 public:
  explicit RoIHeads(int64_t num_classes);
  std::shared_ptr<TwoMLPHead> box_head;
  std::shared_ptr<FastRCNNPredictor> box_predictor;
};

// The sampled RoIs of a training step with their targets (all on the host's side of the
// sampler, then on the loss's device). R = sum over images of the sampled count.
struct RoITargets {
  eng::Tensor rois;        // f32 [R, 5] (image index, x1, y1, x2, y2), image by image, ascending proposal index
  eng::Tensor labels;      // i64 [R]: class index, 0 background
  eng::Tensor box_targets; // f32 [R, 4]: encoded (10, 10, 5, 5) against the RoI; 0 for background
};

// Samples forced by a caller instead of drawn (parity tests against torchvision's choices).
struct FixedSamples {
  eng::Tensor rpn;  // u8 [B, A]: the anchors the RPN sampler takes
  std::vector<eng::Tensor> roi;  // per image u8 [proposals + GT]: the RoIs the box sampler takes
};

class FasterRCNN : public DetectionModel {
 public:
  explicit FasterRCNN(const ModelConfig& config);

  HeadOutputs forward_heads(const eng::Tensor& images) override;
  eng::Tensor anchors(eng::Device device) const override;
  LossParts loss(const HeadOutputs& heads, const Targets& targets) override;
  eng::det::PostprocessOptions postprocess_options() const override;
  using DetectionModel::postprocess;
  eng::det::Detections postprocess(const HeadOutputs& heads, const eng::det::PostprocessOptions& options) override;
  bool graph_capturable() const override { return false; }
  bool keep_aspect_ratio() const override { return true; }
  data::AspectLimits aspect_limits() const override { return limits_; }
  void begin_step(uint64_t step_seed) override { sampler_.seed(step_seed); }
  void set_input_size(int64_t size) override;
  std::vector<std::pair<std::string, eng::Shape>> block_shapes() override;
  std::vector<double> pixel_mean() const override { return {123.675, 116.28, 103.53}; }
  std::vector<double> pixel_std() const override { return {58.395, 57.12, 57.375}; }

  // ---- the stages, public for tests (tests/models/test_fasterrcnn_parity.cpp) ----
  std::vector<int64_t> level_fmap_sizes() const;  // P2..P6 sides
  std::vector<int64_t> level_sizes() const;       // anchors per level
  // The RPN loss parts {objectness, box} on the sampled anchors (`fixed` undefined: drawn).
  std::pair<eng::Tensor, eng::Tensor> rpn_loss(const HeadOutputs& heads, const Targets& targets,
                                               const eng::Tensor& fixed = eng::Tensor());
  // Proposals of the first stage, detached: boxes [B, N, 4] padded with zeros, counts [B];
  // top_n before and after the NMS (rpn_top_n(training)).
  std::pair<eng::Tensor, eng::Tensor> proposals(const HeadOutputs& heads, int64_t top_n);
  int64_t rpn_top_n(bool training) const;  // config's, else torchvision's 2000 / 1000
  // GT appended to each image's proposals, matched, sampled (`fixed`: per image masks).
  RoITargets roi_targets(const eng::Tensor& proposal_boxes, const eng::Tensor& proposal_counts, const Targets& targets,
                         const std::vector<eng::Tensor>& fixed = {});
  // Pooled features [R, 256, 7, 7] -> {class logits [R, C], box deltas [R, 4 C]}.
  eng::Tensor pool(const std::vector<eng::Tensor>& features, const eng::Tensor& rois);
  std::pair<eng::Tensor, eng::Tensor> box_head_outputs(const eng::Tensor& pooled);
  // The Fast R-CNN loss parts {classifier, box} of the sampled RoIs.
  std::pair<eng::Tensor, eng::Tensor> box_loss(const eng::Tensor& class_logits, const eng::Tensor& box_deltas,
                                               const RoITargets& t);
  // The second stage of inference: proposals [B, N, 4] (zero rows are padding) -> detections.
  eng::det::Detections detect(const std::vector<eng::Tensor>& features, const eng::Tensor& boxes,
                              const eng::det::PostprocessOptions& options);
  // loss() with the samplers' choices given instead of drawn.
  LossParts loss_with_samples(const HeadOutputs& heads, const Targets& targets, const FixedSamples& fixed);

  static constexpr int64_t kAnchorsPerLocation = 3;
  // torchvision defaults (FasterRCNN.__init__).
  static constexpr int64_t kRpnBatch = 256, kRoiBatch = 512;
  static constexpr double kRpnPositive = 0.5, kRoiPositive = 0.25;

  std::shared_ptr<FasterRCNNBackbone> backbone;
  std::shared_ptr<RegionProposalNetwork> rpn;
  std::shared_ptr<RoIHeads> roi_heads;

 private:
  int64_t input_size_;
  data::AspectLimits limits_;  // config's min / max size at the configured input side
  eng::Generator sampler_;  // seeded by begin_step (and from the run's generator at construction)
};

}  // namespace models
