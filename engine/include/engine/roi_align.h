// RoIAlign, the FPN level mapper and the multi-scale RoIAlign pooler (torchvision.ops.roi_align,
// torchvision.ops.poolers.LevelMapper / MultiScaleRoIAlign). Maths, edge cases and the
// deviations from torchvision: kernels/roi_align.h. Implementation: engine/src/ops/roi_align.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace eng {

// features [N, C, H, W] f32 or f64 (H, W >= 1); rois [K, 5] rows (batch_index, x1, y1, x2, y2)
// in image coordinates, same dtype and device. -> [K, C, out_h, out_w]; K == 0 gives
// [0, C, out_h, out_w].
//   sampling_ratio > 0: that many samples per bin axis (<= 128); <= 0: adaptive
//   ceil(roi size / out size), capped at 128. aligned: the half-pixel offset (Detectron2's
//   ROIAlignV2); false (torchvision's Faster R-CNN): no offset and boxes at least 1 x 1.
// Differentiable w.r.t. features only: rois never get a gradient (as torchvision); rois that
// require grad are accepted and ignored.
// A batch index that is not an integer in [0, N): on the CPU an error naming the RoI and the
// value; on CUDA it is not read back, and that RoI's output is 0 (no gradient). Non-finite
// coordinates give 0 on both devices. Both never read outside the features.
// CUDA backward: atomicAdd scatter, or, when eng::cuda::deterministic() is on, a fixed-order
// variant without float atomics (bit-identical from run to run).
Tensor roi_align(const Tensor& features, const Tensor& rois, int64_t out_h, int64_t out_w, double spatial_scale,
                 int64_t sampling_ratio, bool aligned);

// The FPN level of each RoI, i64 [K] in [0, k_max - k_min] (index into P_kmin..P_kmax):
//   plus_one_area false (torchvision):
//     floor(canonical_level + log2(sqrt((x2-x1)(y2-y1)) / canonical_scale) + eps)
//   plus_one_area true (maskrcnn-benchmark):
//     floor(canonical_level + log2(sqrt((x2-x1+1)(y2-y1+1)) / canonical_scale + eps))
// clamped to [k_min, k_max], minus k_min. Computed in double on both devices (torchvision
// computes in the boxes' dtype: the two can differ only within ~1e-7 of a level boundary).
// A NaN (negative area, non-finite box) gives level 0. rois [K, 5] f32 or f64, either device;
// the result is on rois' device. Not differentiable.
Tensor roi_levels(const Tensor& rois, int64_t k_min, int64_t k_max, double canonical_scale = 224.0,
                  int64_t canonical_level = 4, double eps = 1e-6, bool plus_one_area = false);

struct MultiScaleRoIAlignOptions {
  int64_t output_size = 7;
  int64_t sampling_ratio = 2;
  bool aligned = false;
  double canonical_scale = 224.0;
  int64_t canonical_level = 4;
  bool plus_one_area = false;
};

// torchvision's _infer_scale for each level: 2^round(log2(H_l / image_h)) (round half to
// even, log2 in f32 as torchvision). The scales must halve from one level to the next
// (1/4, 1/8, ...), else an error naming them.
std::vector<double> infer_pooler_scales(const std::vector<Tensor>& features, int64_t image_h, int64_t image_w);

// torchvision.ops.MultiScaleRoIAlign over the levels P_kmin..P_kmax (features [N, C, H_l, W_l],
// at most 8 levels, same N, C, dtype and device) for rois [K, 5]; image_h x image_w is the
// padded input size the scales are inferred from (k_min = -log2(scale_0), k_max =
// -log2(scale_last)). -> [K, C, output_size, output_size] in input order, differentiable
// w.r.t. every level. One fused op: roi_levels picks each RoI's level, and one kernel pools
// every RoI from its level (tests/ops/test_roi_align.cpp checks it against the per-level
// gather / roi_align / scatter composition).
Tensor multiscale_roi_align(const std::vector<Tensor>& features, const Tensor& rois, int64_t image_h,
                            int64_t image_w, const MultiScaleRoIAlignOptions& options = {});

}  // namespace eng
