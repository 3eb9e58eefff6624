// Training targets from anchor matches (front-end: eng::det::assign_targets in
// engine/src/detection/assign_targets.cpp). Not differentiable.
//
// Inputs (all contiguous):
//   matched    int64 [B, A]     from match_ssd / match_retinanet: a GT index g >= 0, or
//                               kMatchBackground (-1), or kMatchIgnore (-2)
//   gt_boxes   T     [B, G, 4]  corner boxes, G padded
//   gt_labels  int64 [B, G]
//   gt_ignore  uint8 [B, G]     1 = an ignored GT (difficult / crowd); nullptr = none ignored
//   anchors    T     [A, 4]     corner boxes
// Outputs:
//   labels     int64 [B, A]
//   boxes      T     [B, A, 4]
//   positive   T     [B, A]     1 or 0
//   num_pos    int64 [B]        positives per image
// Per anchor (b, a), with m = matched[b, a]:
//   0 <= m < G, not ignored (positive): labels = gt_labels[b, m], boxes = gt_boxes[b, m], positive = 1
//   0 <= m < G, gt_ignore[b, m] != 0, or m == kMatchIgnore:
//                           labels = ignore_label,    boxes = anchors[a],     positive = 0
//   (an anchor matched to an ignored GT is neither positive nor negative)
//   any other m:            labels = background_label, boxes = anchors[a],    positive = 0
// (the anchor itself as the box of a non-positive keeps its encoding finite: all zeros).
//   num_pos[b] = sum over a of positive[b, a]
// An index m >= G cannot come from the matchers; the kernels treat it as background rather
// than read out of range (the front-end refuses it whenever it can see the matches on the
// host). Labels are copied as they are: the front-end checks their range on the host only.
//
// CUDA: one launch over a (anchor-chunk, image) grid; each block counts its positives with a
// shared-memory tree and adds the count to num_pos[b] with one 64-bit atomicAdd (num_pos is
// zeroed by cudaMemsetAsync first). Integer sums do not depend on the order, so the result
// is deterministic and equal to the CPU loop's.
// Traffic floor: read matched (8 B) and write labels (8), boxes (4 sizeof T) and positive
// (sizeof T) per anchor; GT and anchor reads are small and cached.
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace kern {

struct AssignTargetsDims {
  int64_t B = 0;  // images
  int64_t G = 0;  // padded GT rows per image
  int64_t A = 0;  // anchors
  int64_t background_label = 0;
  int64_t ignore_label = 0;
};

namespace cpu {
template <typename T>
void assign_targets(const AssignTargetsDims& d, const int64_t* matched, const T* gt_boxes, const int64_t* gt_labels,
                    const uint8_t* gt_ignore, const T* anchors, int64_t* labels, T* boxes, T* positive,
                    int64_t* num_pos);
}  // namespace cpu

namespace cuda {
template <typename T>
void assign_targets(const AssignTargetsDims& d, const int64_t* matched, const T* gt_boxes, const int64_t* gt_labels,
                    const uint8_t* gt_ignore, const T* anchors, int64_t* labels, T* boxes, T* positive,
                    int64_t* num_pos, Stream stream);
}  // namespace cuda

}  // namespace kern
