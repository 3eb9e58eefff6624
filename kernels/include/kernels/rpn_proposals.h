// RPN proposal generation (torchvision RegionProposalNetwork.filter_proposals, with the decode
// of the kept anchors folded in), batched and padded, with fixed tie rules.
//
// Inputs (contiguous): logits [B, A] (objectness logits), deltas [B, A, 4], anchors [A, 4]
// (corners, pixels, shared by every image), image_hw [B, 2]: the clip size (h, w) of each
// image (its un-padded size, > 0). The A anchors are cut into L consecutive levels of
// level_sizes[l] anchors (sum = A).
// Per image b, independently:
//   1. per level l, the k_l = min(pre_nms_top_n, level_sizes[l]) anchors with the largest
//      logit, in the order (logit desc, anchor asc) (the tie rule: torch.topk leaves the order
//      of equal logits unspecified). A NaN logit ranks as kern::desc_score_key orders
//      it on both devices (a positive NaN above +inf, a negative one below -inf); its score
//      is NaN and step 4 drops it.
//   2. each kept anchor's box = kern::box::decode(deltas[b, a], anchors[a]) with weights
//      (1, 1, 1, 1) and dw, dh clamped at `clamp`, then clamped to [0, w_b] x [0, h_b]
//      (image_hw[b] = (h_b, w_b));
//      its score p = 1 / (1 + exp(-logit)).
//   3. dropped when (x2 - x1) < min_size or (y2 - y1) < min_size (torchvision
//      remove_small_boxes keeps w >= min_size and h >= min_size);
//   4. dropped unless p >= score_threshold (a NaN score is dropped);
//   5. the survivors are candidates with label l in the slot layout
//        slot of (level l, rank r) = slot_start[l] + r,  slot_start[l] = k_0 + .. + k_{l-1}
//      (dropped and unused slots are padding, label -1) and go to class-wise NMS
//      (kernels/nms.h) with the level as the class, nms_threshold and max_out =
//      post_nms_top_n. The NMS ranks the candidates by their logit, not by p: the sigmoid
//      is monotone, but in float32 it maps neighbouring logits near 0.58 onto one value,
//      and the ties it would create make the kept set depend on the tie rule (a float64
//      reference sees no tie there). Equal logits resolve by (level asc, rank asc).
// Outputs: those of kern::*::batched_nms: out_boxes [B, post, 4], out_scores [B, post]
// (p of the kept proposals, descending; padding 0), out_levels int64 [B, post] (padding -1),
// out_counts int64 [B].
//
// Work: a per-level top-k (a segmented sort of B * A keys on CUDA), k_l decodes, then the NMS
// over K = sum k_l candidates per image.
#pragma once
#include "kernels/box_math.h"
#include "kernels/common.h"
#include "kernels/nms.h"
#include "kernels/postprocess.h"  // kMaxLevels

namespace kern {

struct RpnProposalDims {
  int64_t B = 0, A = 0;
  int num_levels = 1;                    // 1 .. kMaxLevels
  int64_t level_sizes[kMaxLevels] = {};  // anchors per level, sum = A (0 allowed)
  int64_t pre_nms_top_n = 1000;          // per level, >= 1
  int64_t post_nms_top_n = 1000;         // per image, >= 1
  double nms_threshold = 0.7;
  double min_size = 1e-3;
  double score_threshold = 0.0;
  double clamp = 4.135166556742356;  // ln(1000 / 16)
};

struct RpnProposalLayout {
  int64_t level_start[kMaxLevels + 1] = {};  // first anchor of each level
  int64_t level_topk[kMaxLevels] = {};       // k_l = min(pre_nms_top_n, level size)
  int64_t slot_start[kMaxLevels + 1] = {};   // first candidate slot of each level
  int64_t candidates = 0;                    // K of the NMS
  int64_t max_run = 0;                       // max k_l: the most candidates of one level
};

inline RpnProposalLayout rpn_proposal_layout(const RpnProposalDims& d) {
  RpnProposalLayout L;
  for (int l = 0; l < d.num_levels; ++l) {
    const int64_t n = d.level_sizes[l];
    L.level_start[l + 1] = L.level_start[l] + n;
    L.level_topk[l] = d.pre_nms_top_n < n ? d.pre_nms_top_n : n;
    L.slot_start[l + 1] = L.slot_start[l] + L.level_topk[l];
    if (L.level_topk[l] > L.max_run) L.max_run = L.level_topk[l];
  }
  L.candidates = L.slot_start[d.num_levels];
  return L;
}

inline NmsDims rpn_nms_dims(const RpnProposalDims& d) {
  const RpnProposalLayout L = rpn_proposal_layout(d);
  NmsDims n;
  n.B = d.B, n.K = L.candidates, n.max_out = d.post_nms_top_n, n.max_run = L.max_run;
  return n;
}

// Steps 2-4 for one kept anchor, shared by both devices: writes box[4] and *score, returns
// whether the candidate survives the size and score filters.
template <typename T>
KERN_BOX_HD T rpn_score(T logit) {
#ifndef __CUDA_ARCH__
  using std::exp;
#endif
  return T(1) / (T(1) + exp(-logit));
}

template <typename T>
KERN_BOX_HD bool rpn_candidate(const T* delta, const T* anchor, T logit, T clamp, T image_w, T image_h, T min_size,
                               T score_threshold, T* box, T* score) {
#ifndef __CUDA_ARCH__
  using std::exp;  // float overload on the host (CUDA's own in the device pass)
#endif
  box::decode(delta, anchor, T(1), T(1), T(1), T(1), clamp, box);
  box::clip(box, image_w, image_h);
  *score = rpn_score(logit);
  return (box[2] - box[0]) >= min_size && (box[3] - box[1]) >= min_size && *score >= score_threshold;
}

namespace cpu {
// T = float or double. Requires candidates >= 1 and B >= 1.
template <typename T>
void rpn_proposals(const RpnProposalDims& d, const T* logits, const T* deltas, const T* anchors, const T* image_hw,
                   T* out_boxes, T* out_scores, int64_t* out_levels, int64_t* out_counts);
}  // namespace cpu

// CUDA (f32), every step on the device, no host synchronisation:
//   1. keys: per (image, anchor) desc_score_key(logit) << abits | local anchor index; one
//      cub segmented radix sort per (image, level) (the segments are the level ranges of the
//      [B, A] logits) gives every level in the order (logit desc, anchor asc).
//   2. one thread per candidate slot (image, level, rank < k_l) reads the sorted key, decodes,
//      clips and filters into the slot layout (padding label -1).
//   3. kern::cuda::batched_nms.
// Limits: B * A < 2^31, candidates <= kNmsMaxCandidatesCuda.
namespace cuda {
size_t rpn_proposals_workspace_bytes(const RpnProposalDims& d);
void rpn_proposals(const RpnProposalDims& d, const float* logits, const float* deltas, const float* anchors,
                   const float* image_hw, float* out_boxes, float* out_scores, int64_t* out_levels, int64_t* out_counts, void* workspace,
                   Stream stream);
}  // namespace cuda

}  // namespace kern
