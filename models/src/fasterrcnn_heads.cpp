// Faster R-CNN's second stage and losses (torchvision RegionProposalNetwork + RoIHeads):
// proposals, the RPN loss, RoI sampling and targets, the box head, the Fast R-CNN loss and
// inference. Semantics and sources: seed specs part B; docs/fasterrcnn.md.
#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/detection_two_stage.h"
#include "engine/roi_align.h"
#include "models/fasterrcnn.h"
#include "loss_normaliser.h"

namespace models {
using namespace eng;

namespace {
constexpr double kBoxClamp = 4.135166556742356;  // ln(1000 / 16), torchvision's bbox_xform_clip
constexpr double kSmoothL1Beta = 1.0 / 9.0;      // both losses (torchvision; maskrcnn-benchmark's box head uses 1)
const det::BoxCoderWeights kRpnWeights{1, 1, 1, 1};
const det::BoxCoderWeights kRoiWeights{10, 10, 5, 5};

// 1 / max(1, n summed over the ranks) as a 0-dim f32 tensor on `device`: the losses divide by
// the sampled count of the global batch (one process: torchvision's mean over the samples).
Tensor inverse_count(const Tensor& n_local, Device device) {
  NoGradGuard ng;
  Tensor n = clamp(detail::sum_over_ranks(n_local.to(device).to(DType::f32)), 1.0, INFINITY);
  return div(full({}, 1.0, TensorOptions(DType::f32).device(device)), n);
}

// BCE with logits, elementwise: max(x, 0) - x t + ln(1 + exp(-|x|)) (stable for any x).
Tensor bce_with_logits(const Tensor& x, const Tensor& t) {
  return relu(x) - x * t + log(add_scalar(exp(neg(abs(x))), 1.0));
}
}  // namespace

int64_t FasterRCNN::rpn_top_n(bool training) const {
  const ModelConfig& c = config();
  if (training) return c.rpn_top_n_train > 0 ? c.rpn_top_n_train : 2000;
  return c.rpn_top_n_test > 0 ? c.rpn_top_n_test : 1000;
}

// ------------------------------------------------------------------------------ RPN
std::pair<Tensor, Tensor> FasterRCNN::proposals(const HeadOutputs& heads, int64_t top_n) {
  NoGradGuard ng;
  ENGINE_CHECK(top_n >= 1, "fasterrcnn: proposals per image must be >= 1, got ", top_n);
  const Device dev = heads.class_logits.device();
  const int64_t B = heads.class_logits.size(0), A = heads.class_logits.size(1);
  det::ProposalOptions o;
  o.pre_nms_top_n = o.post_nms_top_n = top_n;  // torchvision's pairs are equal (2000/2000, 1000/1000)
  // No more can survive than the per-level top-k keep: a smaller padded width (every slot is
  // pooled at inference) without reading the counts back.
  int64_t most = 0;
  for (int64_t n : level_sizes()) most += std::min(n, top_n);
  o.post_nms_top_n = std::min(top_n, most);
  o.nms_threshold = 0.7;
  o.min_size = 1e-3;
  o.score_threshold = 0.0;
  o.clamp = kBoxClamp;
  const double s = static_cast<double>(input_size_);
  det::Proposals p = det::rpn_proposals(heads.class_logits.detach().reshape({B, A}), heads.box_regression.detach(),
                                        cached_anchors(dev), level_sizes(), s, s, o);
  return {p.boxes, p.counts};
}

std::pair<Tensor, Tensor> FasterRCNN::rpn_loss(const HeadOutputs& heads, const Targets& targets, const Tensor& fixed) {
  const Device dev = heads.class_logits.device();
  const int64_t B = heads.class_logits.size(0), A = heads.class_logits.size(1);
  Tensor anc = cached_anchors(dev);
  ENGINE_CHECK(anc.size(0) == A, "fasterrcnn rpn loss: heads have ", A, " anchors, the model ", anc.size(0));
  Tensor sampled, positive, target_deltas, inv;
  {
    NoGradGuard ng;
    Tensor gt = targets.boxes.to(dev).to(DType::f32).contiguous();
    Tensor counts = targets.counts.to(dev).contiguous();
    // Matcher(0.7, 0.3, allow_low_quality_matches=True): >= 0.7 positive, < 0.3 negative,
    // between ignored; every GT's best anchors positive.
    Tensor matched = det::match_retinanet(det::box_iou_batched(gt, counts, anc), counts, 0.7, 0.3, true);
    // Labels 1 (object), 0 (background), -1 (between the thresholds, or an ignored GT's).
    Tensor object = ones({B, gt.size(1)}, TensorOptions(DType::i64).device(dev));
    det::AssignedTargets t = det::assign_targets(matched, gt, object, anc, 2, 0, -1,
                                                 targets.ignore.defined() ? targets.ignore.to(dev) : Tensor());
    Tensor mask = fixed.defined() ? fixed.to(dev) : det::sample_balanced(t.labels, kRpnBatch, kRpnPositive, sampler_);
    ENGINE_CHECK(mask.dim() == 2 && mask.size(0) == B && mask.size(1) == A, "fasterrcnn rpn loss: a sample mask of shape ",
                 shape_str(mask.sizes()), " for ", B, " images of ", A, " anchors");
    sampled = mask.to(DType::f32);
    positive = mul(relu(t.labels.to(DType::f32)), sampled);  // sampled objects
    target_deltas = det::box_encode(t.boxes, anc, kRpnWeights);
    inv = inverse_count(sum(sampled), dev);
  }
  Tensor logits = heads.class_logits.reshape({B, A});
  Tensor objectness = sum(bce_with_logits(logits, positive) * sampled) * inv;
  Tensor l1 = smooth_l1_loss(heads.box_regression, target_deltas, Reduction::None, kSmoothL1Beta);
  Tensor box = sum(l1 * positive.unsqueeze(2)) * inv;
  return {objectness, box};
}

// ------------------------------------------------------------------------------ RoI sampling
RoITargets FasterRCNN::roi_targets(const Tensor& proposal_boxes, const Tensor& proposal_counts, const Targets& targets,
                                   const std::vector<Tensor>& fixed) {
  NoGradGuard ng;
  const int64_t B = proposal_boxes.size(0), C = config().num_classes;
  ENGINE_CHECK(fixed.empty() || static_cast<int64_t>(fixed.size()) == B, "fasterrcnn: ", fixed.size(),
               " fixed RoI sample masks for ", B, " images");
  // The sampling runs on the host (a few thousand boxes per image): one copy of the proposals.
  Tensor pb = proposal_boxes.cpu().to(DType::f32).contiguous();
  const std::vector<int64_t> pc = proposal_counts.cpu().to_vector<int64_t>();
  Tensor gt = targets.boxes.cpu().to(DType::f32).contiguous();
  Tensor gl = targets.labels.cpu().contiguous();
  const std::vector<int64_t> gc = targets.counts.cpu().to_vector<int64_t>();
  Tensor ign = targets.ignore.defined() ? targets.ignore.cpu().contiguous() : Tensor();
  ENGINE_CHECK(static_cast<int64_t>(gc.size()) == B, "fasterrcnn: targets for ", gc.size(), " images, proposals for ", B);

  std::vector<float> rois, box_targets;
  std::vector<int64_t> labels;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = pc[b], g = gc[b];
    // torchvision add_gt_proposals: the image's GT boxes follow its proposals.
    Tensor all = g > 0 ? concat({pb.select(0, b).narrow(0, 0, n), gt.select(0, b).narrow(0, 0, g)}, 0)
                       : pb.select(0, b).narrow(0, 0, n).contiguous();
    const int64_t M = all.size(0);
    Tensor lab, matched_boxes;
    if (g > 0) {
      Tensor g_boxes = gt.select(0, b).narrow(0, 0, g).contiguous().unsqueeze(0);
      Tensor counts = full({1}, static_cast<double>(g), TensorOptions(DType::i64));
      // Matcher(0.5, 0.5, allow_low_quality_matches=False): IoU >= 0.5 takes its best GT.
      Tensor matched = det::match_retinanet(det::box_iou(g_boxes.squeeze(0), all).unsqueeze(0), counts, 0.5, 0.5, false);
      Tensor g_ignore = ign.defined() ? ign.select(0, b).narrow(0, 0, g).contiguous().unsqueeze(0) : Tensor();
      det::AssignedTargets t = det::assign_targets(matched, g_boxes, gl.select(0, b).narrow(0, 0, g).contiguous().unsqueeze(0),
                                                   all, C, 0, -1, g_ignore);
      lab = t.labels;
      matched_boxes = t.boxes.squeeze(0);
    } else {  // no GT: every proposal is background (torchvision matches a dummy box with label 0)
      lab = zeros({1, M}, TensorOptions(DType::i64));
      matched_boxes = all;
    }
    Tensor mask;
    if (!fixed.empty()) {
      mask = fixed[b].cpu().reshape({1, -1});
      ENGINE_CHECK(mask.size(1) == M, "fasterrcnn: the fixed RoI mask of image ", b, " has ", mask.size(1),
                   " entries for ", M, " proposals + GT");
    } else {
      mask = det::sample_balanced(lab, kRoiBatch, kRoiPositive, sampler_);
    }
    const std::vector<int64_t> m = mask.to_vector<int64_t>(), l = lab.to_vector<int64_t>();
    Tensor enc = det::box_encode(matched_boxes, all, kRoiWeights);  // [M, 4], pairwise
    const std::vector<float> a = all.to_vector<float>(), e = enc.to_vector<float>();
    for (int64_t i = 0; i < M; ++i) {
      if (m[i] == 0) continue;
      rois.insert(rois.end(), {static_cast<float>(b), a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]});
      labels.push_back(l[i]);
      for (int k = 0; k < 4; ++k) box_targets.push_back(l[i] > 0 ? e[4 * i + k] : 0.0f);
    }
  }
  const int64_t R = static_cast<int64_t>(labels.size());
  RoITargets t;
  t.rois = from_vector(rois, {R, 5});
  t.labels = from_vector(labels, {R});
  t.box_targets = from_vector(box_targets, {R, 4});
  return t;
}

// ------------------------------------------------------------------------------ box head
Tensor FasterRCNN::pool(const std::vector<Tensor>& features, const Tensor& rois) {
  ENGINE_CHECK(features.size() == 4, "fasterrcnn: the RoI pooler takes P2..P5, got ", features.size(), " maps");
  MultiScaleRoIAlignOptions o;  // 7x7, sampling ratio 2, aligned false (torchvision's MultiScaleRoIAlign)
  return multiscale_roi_align(features, rois.to(features[0].device()).to(features[0].dtype()), input_size_,
                              input_size_, o);
}

std::pair<Tensor, Tensor> FasterRCNN::box_head_outputs(const Tensor& pooled) {
  Tensor x = roi_heads->box_head->forward(pooled);
  return {roi_heads->box_predictor->cls_score->forward(x), roi_heads->box_predictor->bbox_pred->forward(x)};
}

std::pair<Tensor, Tensor> FasterRCNN::box_loss(const Tensor& class_logits, const Tensor& box_deltas, const RoITargets& t) {
  const Device dev = class_logits.device();
  const int64_t R = class_logits.size(0), C = class_logits.size(1);
  ENGINE_CHECK(t.labels.size(0) == R && box_deltas.size(1) == 4 * C, "fasterrcnn box loss: ", R, " RoIs, ",
               t.labels.size(0), " labels, deltas ", shape_str(box_deltas.sizes()));
  Tensor select, target, inv;
  {
    NoGradGuard ng;
    // The class-specific deltas of each positive RoI (its own class's 4 columns) against its
    // target, as one mask and one target matrix over [R, 4 C].
    std::vector<float> sel(static_cast<size_t>(R * 4 * C), 0.0f), tgt(sel.size(), 0.0f);
    const std::vector<int64_t> l = t.labels.cpu().to_vector<int64_t>();
    const std::vector<float> bt = t.box_targets.cpu().to_vector<float>();
    for (int64_t r = 0; r < R; ++r) {
      if (l[r] <= 0) continue;
      ENGINE_CHECK(l[r] < C, "fasterrcnn box loss: label ", l[r], " of RoI ", r, " is not below ", C, " classes");
      for (int k = 0; k < 4; ++k) {
        sel[r * 4 * C + 4 * l[r] + k] = 1.0f;
        tgt[r * 4 * C + 4 * l[r] + k] = bt[4 * r + k];
      }
    }
    select = from_vector(sel, {R, 4 * C}).to(dev);
    target = from_vector(tgt, {R, 4 * C}).to(dev);
    inv = inverse_count(full({}, static_cast<double>(R), TensorOptions(DType::f32)), dev);
  }
  Tensor cls = cross_entropy(class_logits, t.labels.to(dev), Reduction::Sum) * inv;
  Tensor box = sum(smooth_l1_loss(box_deltas, target, Reduction::None, kSmoothL1Beta) * select) * inv;
  return {cls, box};
}

// ------------------------------------------------------------------------------ loss
LossParts FasterRCNN::loss(const HeadOutputs& heads, const Targets& targets) {
  return loss_with_samples(heads, targets, FixedSamples{});
}

LossParts FasterRCNN::loss_with_samples(const HeadOutputs& heads, const Targets& targets, const FixedSamples& fixed) {
  ENGINE_CHECK(heads.features.size() == 4, "fasterrcnn loss: head outputs without the pooler's feature maps");
  auto [objectness, rpn_box] = rpn_loss(heads, targets, fixed.rpn);
  auto [boxes, counts] = proposals(heads, rpn_top_n(true));
  RoITargets t = roi_targets(boxes, counts, targets, fixed.roi);
  auto [logits, deltas] = box_head_outputs(pool(heads.features, t.rois));
  auto [classifier, box] = box_loss(logits, deltas, t);
  LossParts out;
  out.classification = objectness + classifier;
  out.box_regression = rpn_box + box;
  out.total = out.classification + out.box_regression;
  out.components = {{"loss_objectness", objectness.detach()},
                    {"loss_rpn_box_reg", rpn_box.detach()},
                    {"loss_classifier", classifier.detach()},
                    {"loss_box_reg", box.detach()}};
  return out;
}

// ------------------------------------------------------------------------------ inference
det::PostprocessOptions FasterRCNN::postprocess_options() const {
  // torchvision: box_score_thresh 0.05, box_nms_thresh 0.5, box_detections_per_img 100; the
  // generic top-k field carries the RPN's test proposals per image (1000).
  det::PostprocessOptions o;
  o.kind = det::ScoreKind::Softmax;
  o.score_threshold = 0.05;
  o.topk_candidates = rpn_top_n(false);
  o.nms_threshold = 0.5;
  o.max_per_image = 100;
  o.weights = kRoiWeights;
  o.clip_width = o.clip_height = static_cast<double>(input_size_);
  return o;
}

det::Detections FasterRCNN::postprocess(const HeadOutputs& heads, const det::PostprocessOptions& options) {
  NoGradGuard ng;
  ENGINE_CHECK(heads.features.size() == 4, "fasterrcnn postprocess: head outputs without the pooler's feature maps");
  return detect(heads.features, proposals(heads, options.topk_candidates).first, options);
}

det::Detections FasterRCNN::detect(const std::vector<Tensor>& features, const Tensor& boxes,
                                   const det::PostprocessOptions& options) {
  NoGradGuard ng;
  const Device dev = boxes.device();
  const int64_t B = boxes.size(0), N = boxes.size(1);
  // Every proposal slot becomes a RoI, padding included (zero boxes): the shapes stay fixed
  // and nothing is read back; a padding slot decodes to an empty box, which the min-size
  // rule removes. Image index column first, as roi_align takes it.
  Tensor image = arange(B, TensorOptions(DType::i64).device(dev)).reshape({B, 1}).expand({B, N}).reshape({B * N});
  Tensor flat = boxes.reshape({B * N, 4});
  Tensor rois = concat({image.to(DType::f32).reshape({B * N, 1}), flat}, 1);
  auto [logits, deltas] = box_head_outputs(pool(features, rois));
  det::BoxHeadPostprocessOptions o;
  o.score_threshold = options.score_threshold;
  o.nms_threshold = options.nms_threshold;
  o.detections_per_image = options.max_per_image;
  o.weights = options.weights;
  const double s = static_cast<double>(input_size_);
  return det::box_head_postprocess(logits, deltas, flat, image, B, s, s, o);
}

}  // namespace models
