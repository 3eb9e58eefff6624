// Detection utilities of the two-stage (Faster R-CNN) heads: RPN proposal generation, the
// balanced positive / negative sampler, per-image IoU, and the box-head post-processing.
// torchvision semantics (RegionProposalNetwork.filter_proposals, BalancedPositiveNegative-
// Sampler, box_iou, RoIHeads.postprocess_detections) with fixed tie rules. Not
// differentiable. Maths of the kernels in kernels/include/kernels/{rpn_proposals,
// box_head_postprocess,box_iou_per_image}.h; implementations in
// engine/src/detection/{rpn_proposals,sample_balanced,box_iou_per_image,box_head_postprocess}.cpp.
// Boxes are corner format (x1, y1, x2, y2) in pixels, f32 or f64 on the CPU, f32 on CUDA.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/detection.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace eng::det {

// Clip size of one image: its un-padded (resized) height and width in pixels, both > 0.
struct ImageSize {
  double h = 0, w = 0;
};

// ---------------------------------------------------------------- RPN proposals (rpn_proposals.cpp)
struct Proposals {
  Tensor boxes;   // [B, N, 4], N = post_nms_top_n, padded with zeros
  Tensor scores;  // [B, N] sigmoid probabilities, descending per image, padded 0
  Tensor levels;  // i64 [B, N] level index of each proposal, padded -1
  Tensor counts;  // i64 [B] real proposals per image
};

struct ProposalOptions {
  int64_t pre_nms_top_n = 1000;   // per level and image (torchvision: train 2000, test 1000)
  int64_t post_nms_top_n = 1000;  // per image (train 2000, test 1000)
  double nms_threshold = 0.7;
  double min_size = 1e-3;
  double score_threshold = 0.0;   // kept when p >= score_threshold
  double clamp = std::log(1000.0 / 16);
};

// torchvision RegionProposalNetwork.filter_proposals with the decode (weights (1, 1, 1, 1))
// of the kept anchors only. objectness logits [B, A], deltas [B, A, 4], anchors [A, 4]
// (shared by the images, pixels), level_sizes: anchors per level in order (sum = A, at most
// 16 levels, a level may be empty), image_h / image_w: the clip size (> 0).
// Per image: per level the top k = min(pre_nms_top_n, level size) by logit (ties: the lower
// anchor index first; torch.topk leaves them unspecified), decode, sigmoid, clip to
// [0, w] x [0, h], drop boxes with w or h < min_size, drop p < score_threshold, NMS per level
// (IoU > nms_threshold suppresses), keep the first post_nms_top_n by descending score (equal
// scores: lower level, then higher logit rank first).
// CPU (f32 / f64) and CUDA (f32): on CUDA every step stays on the device, no host sync.
Proposals rpn_proposals(const Tensor& objectness, const Tensor& deltas, const Tensor& anchors,
                        const std::vector<int64_t>& level_sizes, double image_h, double image_w,
                        const ProposalOptions& options);
// The same with one clip size per image (torchvision's image_shapes; images of a batch differ
// in size when the resize keeps the aspect ratio): image_sizes.size() == B. On CUDA the B sizes
// are copied to the device (a small host-to-device copy, no sync with the device's work).
Proposals rpn_proposals(const Tensor& objectness, const Tensor& deltas, const Tensor& anchors,
                        const std::vector<int64_t>& level_sizes, const std::vector<ImageSize>& image_sizes,
                        const ProposalOptions& options);

// ---------------------------------------------------------------- sampler (sample_balanced.cpp)
// torchvision BalancedPositiveNegativeSampler: labels i64 [B, N] (>= 1 positive, 0 negative,
// anything else never chosen). Per image n_pos = min(#pos, int(batch_size_per_image *
// positive_fraction)), n_neg = min(#neg, batch_size_per_image - n_pos), each chosen uniformly
// without replacement. Draws come from `gen` on the host in a fixed order (image by image,
// positives then negatives; a partial Fisher-Yates shuffle of the candidates in index order,
// one unbiased bounded draw per choice), so a seed gives the same choice on every device (not
// torch's randperm stream). Returns u8 [B, N] on labels' device, 1 = chosen.
// CUDA: labels are copied to the host (one host sync) and the mask back.
Tensor sample_balanced(const Tensor& labels, int64_t batch_size_per_image, double positive_fraction, Generator& gen);

// ---------------------------------------------------------------- per-image IoU (box_iou_per_image.cpp)
// a [B, G, 4] with a_counts i64 [B], b [B, N, 4] with b_counts i64 [B] -> [B, G, N] (a's
// dtype); 0 for padded rows (g >= a_counts) and columns (n >= b_counts). Counts outside
// [0, G] / [0, N] are an error on the CPU; on CUDA they are clamped (no host sync).
// For the matchers: match_retinanet(iou, a_counts, 0.7, 0.3, true) is torchvision's RPN
// Matcher, match_retinanet(iou, a_counts, 0.5, 0.5, false) the RoI heads' (padded columns
// n >= b_counts have IoU 0 and come out as background: mask them with b_counts).
Tensor box_iou_per_image(const Tensor& a, const Tensor& a_counts, const Tensor& b, const Tensor& b_counts);

// ---------------------------------------------------------------- box head (box_head_postprocess.cpp)
struct BoxHeadPostprocessOptions {
  double score_threshold = 0.05;  // kept when p > score_threshold
  double nms_threshold = 0.5;
  int64_t detections_per_image = 100;
  double min_size = 1e-2;
  BoxCoderWeights weights{10, 10, 5, 5};
  double clamp = std::log(1000.0 / 16);
};

// torchvision RoIHeads.postprocess_detections: class_logits [R, C] (class 0 = background),
// box_deltas [R, 4 C] (class-specific), proposals [R, 4], roi_image i64 [R] (image of each
// RoI, non-decreasing, in [0, batch)), batch images, clip size image_h / image_w.
// Per image: softmax, decode every class's box against its proposal, clip, drop class 0, keep
// p > score_threshold, drop boxes with w or h < min_size, NMS per class, keep the top
// detections_per_image by score. Returns Detections with K = detections_per_image (labels
// 1 .. C - 1, padding -1). Tie rules: kernels/box_head_postprocess.h.
// CUDA: roi_image is copied to the host (one host sync) to check it and to size the candidate
// lists; the rest stays on the device. Limit on CUDA: (most RoIs of one image) x
// min(C - 1, floor(1 / score_threshold) + 2) <= 65536 (1000 RoIs at 0.05: 21000).
Detections box_head_postprocess(const Tensor& class_logits, const Tensor& box_deltas, const Tensor& proposals,
                                const Tensor& roi_image, int64_t batch, double image_h, double image_w,
                                const BoxHeadPostprocessOptions& options);
// The same with one clip size per image: batch = image_sizes.size().
Detections box_head_postprocess(const Tensor& class_logits, const Tensor& box_deltas, const Tensor& proposals,
                                const Tensor& roi_image, const std::vector<ImageSize>& image_sizes,
                                const BoxHeadPostprocessOptions& options);

}  // namespace eng::det
