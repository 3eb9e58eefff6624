// Detection post-processing: raw head outputs -> per-image detections (SSD and RetinaNet
// inference, torchvision semantics with fixed tie rules), fused into one kernel-level call.
//
// Inputs (contiguous): logits [B, A, C], deltas [B, A, 4], anchors [A, 4] (corners, pixels).
// Output: out_boxes [B, max_out, 4], out_scores [B, max_out], out_labels int64 [B, max_out],
// out_counts int64 [B], padded and ordered exactly as kern::cpu::batched_nms (kernels/nms.h).
//
// Softmax (SSD, torchvision SSD.postprocess_detections). Class 0 is the background.
//   p[a, c] = exp(x[a, c] - m) / sum_k exp(x[a, k] - m),  m = max_k x[a, k]
//   For each class c = 1 .. C-1: the anchors with p[a, c] > score_threshold, ordered by
//   (p desc, anchor asc); the first class_topk = min(topk, A) of them are candidates with
//   label c. Level sizes are ignored (one level of A anchors).
// Sigmoid (RetinaNet, torchvision RetinaNet.postprocess_detections). No background class.
//   p[a, c] = 1 / (1 + exp(-x[a, c]))
//   Per level l (level_sizes; anchors level_start[l] .. level_start[l+1] - 1): the pairs
//   (a, c) of the level with p > score_threshold, flattened anchor-major as
//   f = (a - level_start[l]) * C + c, ordered by (p desc, f asc); the first
//   level_topk[l] = min(topk, n_l * C) are candidates with label c.
// Both: each candidate's box is decoded from deltas[b, a] and anchors[a] with
// kern::box::decode (weights wx, wy, ww, wh, dw and dh clamped at `clamp`), then, when
// clip_w > 0, clamped into the image with kern::box::clip (torchvision clips before NMS); boxes are not
// clipped. The candidates of an image are laid out in a fixed slot order (PostprocessLayout
// below: Softmax class-major, Sigmoid level-major, each by rank; unused slots are padding)
// and passed to class-wise NMS (kernels/nms.h) with nms_threshold and max_out. The slot order
// is the order of torchvision's concatenated candidate list, so NMS ties resolve as there:
//   Softmax: within a class (score desc, anchor asc); final merge (score desc, class asc,
//            anchor asc).
//   Sigmoid: within a class (score desc, level asc, anchor asc); final merge (score desc,
//            level asc, anchor asc, class asc).
//
// Work: B*A*C exp + compare, a top-k per class (Softmax) or per level (Sigmoid) over the
// passing scores, decode of at most K candidates per image, then the NMS. Memory traffic:
// one read of logits, and of deltas / anchors for the survivors only.
#pragma once
#include "kernels/common.h"

namespace kern {

enum class ScoreMode : uint8_t { Softmax, Sigmoid };

constexpr int kMaxLevels = 16;

struct PostprocessDims {
  int64_t B = 0, A = 0, C = 0;  // images, anchors, classes
  ScoreMode mode = ScoreMode::Softmax;
  int num_levels = 1;                    // Sigmoid: levels (1 .. kMaxLevels); Softmax: ignored
  int64_t level_sizes[kMaxLevels] = {};  // Sigmoid: anchors per level, sum = A
  int64_t topk = 400;                    // Softmax: per class; Sigmoid: per level
  int64_t max_out = 200;                 // detections kept per image
  double score_threshold = 0.01;         // kept when p > score_threshold (strictly)
  double nms_threshold = 0.45;           // suppressed when IoU > nms_threshold (strictly)
  double wx = 10, wy = 10, ww = 5, wh = 5;  // box coder weights
  double clamp = 4.135166556742356;         // ln(1000 / 16): the cap on dw, dh
  double clip_w = 0, clip_h = 0;            // > 0: decoded boxes clamped to [0, clip_w] x [0, clip_h]
};

// Where candidates go. Softmax: one level of A anchors, slot of (class c, rank r) =
// (c - 1) * class_topk[0] + r. Sigmoid: slot of (level l, rank r) = slot_start[l] + r.
struct PostprocessLayout {
  int64_t first_class = 0;     // 1 (Softmax: class 0 is background) or 0 (Sigmoid)
  int64_t scored_classes = 0;  // C - first_class
  int num_levels = 1;
  int64_t level_start[kMaxLevels + 1] = {};  // anchor offset of each level (level_start[L] = A)
  int64_t class_topk[kMaxLevels] = {};       // per (level, class) cap: min(topk, n_l)
  int64_t level_topk[kMaxLevels] = {};       // Sigmoid: min(topk, n_l * C); Softmax: scored_classes * class_topk
  int64_t slot_start[kMaxLevels + 1] = {};   // first slot of each level; slot_start[L] = candidates
  int64_t candidates = 0;                    // K of the NMS: slots per image
  int64_t max_run = 0;                       // the most candidates one class can take in one image
};

inline PostprocessLayout postprocess_layout(const PostprocessDims& d) {
  PostprocessLayout L;
  const bool softmax = d.mode == ScoreMode::Softmax;
  L.first_class = softmax ? 1 : 0;
  L.scored_classes = d.C - L.first_class;
  L.num_levels = softmax ? 1 : d.num_levels;
  for (int l = 0; l < L.num_levels; ++l) {
    const int64_t n = softmax ? d.A : d.level_sizes[l];
    L.level_start[l + 1] = L.level_start[l] + n;
    L.class_topk[l] = d.topk < n ? d.topk : n;
    if (softmax) {
      L.level_topk[l] = L.scored_classes * L.class_topk[l];
    } else {
      L.level_topk[l] = d.topk < n * d.C ? d.topk : n * d.C;
    }
    L.slot_start[l + 1] = L.slot_start[l] + L.level_topk[l];
    // A class has at most min(topk, n) candidates in a level (class_topk <= level_topk).
    L.max_run += L.class_topk[l];
  }
  L.candidates = L.slot_start[L.num_levels];
  return L;
}

namespace cpu {
// T = float or double.
template <typename T>
void detect_postprocess(const PostprocessDims& d, const T* logits, const T* deltas, const T* anchors, T* out_boxes,
                        T* out_scores, int64_t* out_labels, int64_t* out_counts);
}  // namespace cpu

// CUDA (f32 only), every step on the device, no host synchronisation:
//   1. score kernel: Softmax one warp per (image, anchor) (max and sum by shuffles), Sigmoid
//      one thread per (image, anchor, class). Each score > threshold is appended (atomic slot
//      counter) to the segment of its (image, level, class) as the key
//      desc_score_key(p) << anchor_bits | local anchor index.
//   2. segmented radix sort of each (image, level, class) segment (its length stays on the
//      device: segment ends are the atomic counters) -> top class_topk per segment.
//   3. Softmax: one thread per (segment, rank) decodes its candidate into the slot layout.
//      Sigmoid: the per-class top lists of a level are merged with a second segmented sort
//      per (image, level) of keys desc_score_key(p) << flat_bits | f (the level's top-k
//      pairs are among the per-class top class_topk), then one thread per (level, rank)
//      decodes. Unused slots get label -1.
//   4. kern::cuda::batched_nms on the [B, candidates] slots (max_run from the layout).
// Scratch: 16 bytes per scored (image, anchor, class) for the keys, plus the NMS workspace.
// Limits: B * A * C < 2^31, candidates <= kNmsMaxCandidatesCuda.
namespace cuda {
size_t detect_postprocess_workspace_bytes(const PostprocessDims& d);
void detect_postprocess(const PostprocessDims& d, const float* logits, const float* deltas, const float* anchors,
                        float* out_boxes, float* out_scores, int64_t* out_labels, int64_t* out_counts,
                        void* workspace, Stream stream);
}  // namespace cuda

}  // namespace kern
