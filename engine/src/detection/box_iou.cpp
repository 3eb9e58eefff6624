// box_iou / box_iou_batched front-ends (maths in kernels/include/kernels/box_iou.h).
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/detection.h"
#include "kernels/box_iou.h"

namespace eng::det {
using namespace eng::detail;

namespace {

void check_boxes(const char* op, const Tensor& t, int64_t ndim, const char* what) {
  check_dim(op, t, ndim, what);
  ENGINE_CHECK(t.size(-1) == 4, op, ": ", what, " must have last dim 4 (x1, y1, x2, y2), got shape ",
               shape_str(t.sizes()));
  check_floating(op, t);
}

}  // namespace

Tensor box_iou(const Tensor& a_in, const Tensor& b_in) {
  const char* op = "box_iou";
  check_boxes(op, a_in, 2, "a");
  check_boxes(op, b_in, 2, "b");
  check_same_device_dtype(op, {a_in, b_in});
  Tensor a = a_in.detach().contiguous(), b = b_in.detach().contiguous();
  const int64_t N = a.size(0), M = b.size(0);
  Tensor out = new_empty({N, M}, a);
  dispatch_float(a, op, [&](auto tag) {
    using T = decltype(tag);
    if (a.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::box_iou<T>(N, M, a.data<T>(), b.data<T>(), out.data<T>(), cuda::stream()));
    } else {
      kern::cpu::box_iou<T>(N, M, a.data<T>(), b.data<T>(), out.data<T>());
    }
  });
  return out;
}

Tensor box_iou_batched(const Tensor& gt_in, const Tensor& counts_in, const Tensor& anchors_in) {
  const char* op = "box_iou_batched";
  check_boxes(op, gt_in, 3, "gt");
  check_boxes(op, anchors_in, 2, "anchors");
  check_same_device_dtype(op, {gt_in, anchors_in});
  check_dim(op, counts_in, 1, "gt_counts");
  ENGINE_CHECK(counts_in.dtype() == DType::i64, op, ": gt_counts must be i64, got ", dtype_name(counts_in.dtype()));
  ENGINE_CHECK(counts_in.device() == gt_in.device(), op, ": gt_counts on ", counts_in.device().str(), " but gt on ",
               gt_in.device().str());
  ENGINE_CHECK(counts_in.size(0) == gt_in.size(0), op, ": gt_counts has ", counts_in.size(0), " entries for ",
               gt_in.size(0), " images");
  Tensor gt = gt_in.detach().contiguous(), anchors = anchors_in.detach().contiguous();
  Tensor counts = counts_in.contiguous();
  kern::BoxIouBatchedDims d;
  d.B = gt.size(0);
  d.G = gt.size(1);
  d.A = anchors.size(0);
  if (!counts.is_cuda()) {  // on the GPU the kernel clamps instead (no host sync here)
    const int64_t* c = counts.data<int64_t>();
    for (int64_t b = 0; b < d.B; ++b)
      ENGINE_CHECK(c[b] >= 0 && c[b] <= d.G, op, ": gt_counts[", b, "] = ", c[b], " is outside [0, ", d.G, "]");
  }
  Tensor out = new_empty({d.B, d.G, d.A}, gt);
  dispatch_float(gt, op, [&](auto tag) {
    using T = decltype(tag);
    if (gt.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::box_iou_batched<T>(d, gt.data<T>(), counts.data<int64_t>(), anchors.data<T>(),
                                                    out.data<T>(), cuda::stream()));
    } else {
      kern::cpu::box_iou_batched<T>(d, gt.data<T>(), counts.data<int64_t>(), anchors.data<T>(), out.data<T>());
    }
  });
  return out;
}

}  // namespace eng::det
