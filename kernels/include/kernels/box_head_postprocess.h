// Faster R-CNN box-head post-processing (torchvision RoIHeads.postprocess_detections), batched
// and padded, with fixed tie rules.
//
// Inputs (contiguous): logits [R, C] (class 0 = background), deltas [R, 4 C] (class-specific,
// class c at columns 4c .. 4c + 3), proposals [R, 4] (corners, pixels), image_start int64
// [B + 1]: the RoIs of image b are image_start[b] .. image_start[b + 1] - 1 (the front-end
// builds it from the non-decreasing RoI -> image index), image_hw [B, 2]: the clip size (h, w)
// of each image.
// Per RoI r of image b:
//   p[c] = exp(x[c] - m) / sum_k exp(x[k] - m),  m = max_k x[k]
//   for c = 1 .. C - 1: box = kern::box::decode(deltas[r, 4c..], proposals[r]) with weights
//   (wx, wy, ww, wh), dw and dh clamped at `clamp`, then clamped to [0, w_b] x [0, h_b];
//   a candidate when p[c] > score_threshold (strictly), x2 - x1 >= min_size and
//   y2 - y1 >= min_size.
//   The candidates of the RoI go, in class order, to the slots
//     slot = (r - image_start[b]) * per_roi + j   (j-th candidate of the RoI, j < per_roi)
//   of image b, per_roi = box_head_slots_per_roi(C, score_threshold): at most
//   floor(1 / t) + 1 scores of a softmax row can exceed t > 0 (they sum to 1), so the cap
//   (floor(1 / t) + 2, for rounding) never drops a candidate; for t <= 0 it is C - 1.
// The slot order is torchvision's candidate order (RoI-major, then class), so the class-wise
// NMS (kernels/nms.h, label = class, nms_threshold, max_out) resolves ties as torchvision's
// flattened list does: within a class (score desc, RoI asc); final merge (score desc, RoI asc,
// class asc).
// Outputs: those of kern::*::batched_nms: boxes [B, max_out, 4], scores, labels (1 .. C - 1,
// padding -1), counts.
#pragma once
#include <cmath>

#include "kernels/box_math.h"
#include "kernels/common.h"
#include "kernels/nms.h"

namespace kern {

struct BoxHeadDims {
  int64_t R = 0, C = 0, B = 0;
  int64_t max_rois = 0;  // the most RoIs of one image (sets the slots per image)
  double score_threshold = 0.05;
  double nms_threshold = 0.5;
  int64_t max_out = 100;
  double min_size = 1e-2;
  double wx = 10, wy = 10, ww = 5, wh = 5;
  double clamp = 4.135166556742356;
};

inline int64_t box_head_slots_per_roi(int64_t C, double score_threshold) {
  const int64_t all = C - 1;
  if (!(score_threshold > 0)) return all;
  const double cap = std::floor(1.0 / score_threshold) + 2.0;
  return cap < static_cast<double>(all) ? static_cast<int64_t>(cap) : all;
}

inline NmsDims box_head_nms_dims(const BoxHeadDims& d) {
  NmsDims n;
  n.B = d.B;
  n.K = d.max_rois * box_head_slots_per_roi(d.C, d.score_threshold);
  n.max_out = d.max_out;
  n.max_run = d.max_rois;  // one candidate per (RoI, class)
  return n;
}

// One (RoI, class) candidate, shared by both devices: writes box[4], returns whether it passes.
template <typename T>
KERN_BOX_HD bool box_head_candidate(const T* delta, const T* proposal, T p, const BoxHeadDims& d, T image_h, T image_w,
                                    T* box) {
  box::decode(delta, proposal, T(d.wx), T(d.wy), T(d.ww), T(d.wh), T(d.clamp), box);
  box::clip(box, image_w, image_h);
  return p > T(d.score_threshold) && (box[2] - box[0]) >= T(d.min_size) && (box[3] - box[1]) >= T(d.min_size);
}

namespace cpu {
// T = float or double. Requires B >= 1 and max_rois >= 1.
template <typename T>
void box_head_postprocess(const BoxHeadDims& d, const T* logits, const T* deltas, const T* proposals,
                          const int64_t* image_start, const T* image_hw, T* out_boxes, T* out_scores, int64_t* out_labels,
                          int64_t* out_counts);
}  // namespace cpu

// CUDA (f32), on the device once image_start is there (the front-end's one host sync is for
// max_rois, see engine/detection_two_stage.h):
//   1. all candidate slots set to padding;
//   2. one warp per RoI: max and sum by shuffles, then 32 classes at a time each lane decodes
//      and tests its class; a ballot and a popcount of the lower lanes give each passing
//      lane its place j in class order;
//   3. kern::cuda::batched_nms.
// Limits: R * C < 2^31, K = max_rois * per_roi <= kNmsMaxCandidatesCuda.
namespace cuda {
size_t box_head_postprocess_workspace_bytes(const BoxHeadDims& d);
void box_head_postprocess(const BoxHeadDims& d, const float* logits, const float* deltas, const float* proposals,
                          const int64_t* image_start, const float* image_hw, float* out_boxes, float* out_scores, int64_t* out_labels,
                          int64_t* out_counts, void* workspace, Stream stream);
}  // namespace cuda

}  // namespace kern
