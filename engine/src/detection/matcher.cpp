// Front-ends of the anchor matchers: eng::det::match_ssd and eng::det::match_retinanet
// (maths and tie rules in kernels/include/kernels/matcher.h). Not differentiable.
#include <algorithm>
#include <cmath>

#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/detection.h"
#include "kernels/matcher.h"

namespace eng::det {
using namespace detail;

namespace {

static_assert(kBackground == kern::kMatchBackground && kIgnore == kern::kMatchIgnore,
              "detection.h and kernels/matcher.h must agree on the special match values");

// Checks iou [B, G, A] and gt_counts i64 [B]; returns the counts as a contiguous tensor on
// iou's device. Counts that are (or pass through) host memory are checked against [0, G];
// counts already on the GPU next to a GPU iou are not copied back to check them (the kernels
// clamp them into [0, G]).
Tensor checked_counts(const char* op, const Tensor& iou, const Tensor& gt_counts) {
  check_dim(op, iou, 3, "iou");
  check_floating(op, iou);
  check_dim(op, gt_counts, 1, "gt_counts");
  ENGINE_CHECK(gt_counts.dtype() == DType::i64, op, ": gt_counts must be i64, got ", dtype_name(gt_counts.dtype()));
  ENGINE_CHECK(gt_counts.size(0) == iou.size(0), op, ": gt_counts has ", gt_counts.size(0), " entries for ",
               iou.size(0), " images (iou ", shape_str(iou.sizes()), ")");
  if (!gt_counts.is_cuda() || !iou.is_cuda()) {
    const int64_t G = iou.size(1);
    const std::vector<int64_t> counts = gt_counts.to_vector<int64_t>();
    for (size_t b = 0; b < counts.size(); ++b)
      ENGINE_CHECK(counts[b] >= 0 && counts[b] <= G, op, ": gt_counts[", b, "] = ", counts[b],
                   " is outside [0, ", G, "] (G = iou.size(1))");
  }
  return gt_counts.detach().to(iou.device()).contiguous();
}

kern::MatchDims match_dims(const Tensor& iou) { return {iou.size(0), iou.size(1), iou.size(2)}; }

}  // namespace

Tensor match_ssd(const Tensor& iou_in, const Tensor& gt_counts, double threshold) {
  const char* op = "match_ssd";
  ENGINE_CHECK(iou_in.defined(), op, ": iou is undefined");
  Tensor counts = checked_counts(op, iou_in, gt_counts);
  ENGINE_CHECK(!std::isnan(threshold), op, ": threshold is NaN");
  Tensor iou = iou_in.detach().contiguous();
  const kern::MatchDims d = match_dims(iou);
  Tensor matches = empty({d.B, d.A}, TensorOptions(DType::i64).device(iou.device()));
  dispatch_float(iou, op, [&](auto tag) {
    using T = decltype(tag);
    if (iou.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::match_ssd<T>(d, iou.data<T>(), counts.data<int64_t>(), threshold,
                                              matches.data<int64_t>(), cuda::stream()));
    } else {
      kern::cpu::match_ssd<T>(d, iou.data<T>(), counts.data<int64_t>(), threshold, matches.data<int64_t>());
    }
  });
  return matches;
}

Tensor match_retinanet(const Tensor& iou_in, const Tensor& gt_counts, double fg_threshold, double bg_threshold,
                       bool allow_low_quality) {
  const char* op = "match_retinanet";
  ENGINE_CHECK(iou_in.defined(), op, ": iou is undefined");
  Tensor counts = checked_counts(op, iou_in, gt_counts);
  ENGINE_CHECK(bg_threshold <= fg_threshold, op, ": bg_threshold ", bg_threshold,
               " must not exceed fg_threshold ", fg_threshold);
  Tensor iou = iou_in.detach().contiguous();
  const kern::MatchDims d = match_dims(iou);
  Tensor matches = empty({d.B, d.A}, TensorOptions(DType::i64).device(iou.device()));
  dispatch_float(iou, op, [&](auto tag) {
    using T = decltype(tag);
    if (iou.is_cuda()) {
      Tensor gt_max = empty({d.B * d.G}, TensorOptions(iou.dtype()).device(iou.device()));  // kernel scratch
      ENGINE_IF_CUDA(kern::cuda::match_retinanet<T>(d, iou.data<T>(), counts.data<int64_t>(), fg_threshold,
                                                    bg_threshold, allow_low_quality, matches.data<int64_t>(),
                                                    gt_max.data<T>(), cuda::stream()));
    } else {
      kern::cpu::match_retinanet<T>(d, iou.data<T>(), counts.data<int64_t>(), fg_threshold, bg_threshold,
                                    allow_low_quality, matches.data<int64_t>());
    }
  });
  return matches;
}

Tensor match_bipartite(const Tensor& iou_in, const Tensor& gt_counts, double threshold) {
  const char* op = "match_bipartite";
  ENGINE_CHECK(iou_in.defined(), op, ": iou is undefined");
  Tensor counts = checked_counts(op, iou_in, gt_counts);
  ENGINE_CHECK(!std::isnan(threshold), op, ": threshold is NaN");
  Tensor iou = iou_in.detach().contiguous();
  const kern::MatchDims d = match_dims(iou);
  Tensor matches = empty({d.B, d.A}, TensorOptions(DType::i64).device(iou.device()));
  dispatch_float(iou, op, [&](auto tag) {
    using T = decltype(tag);
    if (iou.is_cuda()) {
      // kernel scratch: per GT its best free anchor's IoU and its column maximum, and that anchor
      Tensor values = empty({std::max<int64_t>(1, 2 * d.B * d.G)}, TensorOptions(iou.dtype()).device(iou.device()));
      Tensor indices = empty({std::max<int64_t>(1, d.B * d.G)}, TensorOptions(DType::i64).device(iou.device()));
      ENGINE_IF_CUDA(kern::cuda::match_bipartite<T>(d, iou.data<T>(), counts.data<int64_t>(), threshold,
                                                    matches.data<int64_t>(), values.data<T>(),
                                                    indices.data<int64_t>(), cuda::stream()));
    } else {
      kern::cpu::match_bipartite<T>(d, iou.data<T>(), counts.data<int64_t>(), threshold, matches.data<int64_t>());
    }
  });
  return matches;
}

const char* match_rule_name(MatchRule rule) { return rule == MatchRule::bipartite ? "bipartite" : "ssd"; }

Tensor match_anchors(const Tensor& iou, const Tensor& gt_counts, MatchRule rule, double threshold) {
  switch (rule) {
    case MatchRule::ssd: return match_ssd(iou, gt_counts, threshold);
    case MatchRule::bipartite: return match_bipartite(iou, gt_counts, threshold);
  }
  ENGINE_FAIL("match_anchors: unknown match rule ", static_cast<int>(rule));
}

}  // namespace eng::det
