// box_iou_per_image front-end (maths in kernels/include/kernels/box_iou_per_image.h).
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/detection_two_stage.h"
#include "kernels/box_iou_per_image.h"

namespace eng::det {
using namespace eng::detail;

namespace {

void check_counts(const char* op, const Tensor& counts, const Tensor& boxes, const char* what) {
  check_dim(op, counts, 1, what);
  ENGINE_CHECK(counts.dtype() == DType::i64, op, ": ", what, " must be i64, got ", dtype_name(counts.dtype()));
  ENGINE_CHECK(counts.device() == boxes.device(), op, ": ", what, " on ", counts.device().str(), " but boxes on ",
               boxes.device().str());
  ENGINE_CHECK(counts.size(0) == boxes.size(0), op, ": ", what, " has ", counts.size(0), " entries for ",
               boxes.size(0), " images");
  if (!counts.is_cuda()) {  // on the GPU the kernel clamps instead (no host sync here)
    const Tensor c = counts.contiguous();
    const int64_t* p = c.data<int64_t>();
    for (int64_t i = 0; i < c.size(0); ++i)
      ENGINE_CHECK(p[i] >= 0 && p[i] <= boxes.size(1), op, ": ", what, "[", i, "] = ", p[i], " is outside [0, ",
                   boxes.size(1), "]");
  }
}

}  // namespace

Tensor box_iou_per_image(const Tensor& a_in, const Tensor& a_counts_in, const Tensor& b_in,
                         const Tensor& b_counts_in) {
  const char* op = "box_iou_per_image";
  check_dim(op, a_in, 3, "a");
  check_dim(op, b_in, 3, "b");
  ENGINE_CHECK(a_in.size(2) == 4 && b_in.size(2) == 4, op, ": a and b must be [B, *, 4], got ",
               shape_str(a_in.sizes()), " and ", shape_str(b_in.sizes()));
  ENGINE_CHECK(a_in.size(0) == b_in.size(0), op, ": a has ", a_in.size(0), " images but b has ", b_in.size(0));
  check_floating(op, a_in);
  check_same_device_dtype(op, {a_in, b_in});
  check_counts(op, a_counts_in, a_in, "a_counts");
  check_counts(op, b_counts_in, b_in, "b_counts");
  Tensor a = a_in.detach().contiguous(), b = b_in.detach().contiguous();
  Tensor ac = a_counts_in.contiguous(), bc = b_counts_in.contiguous();
  kern::BoxIouPerImageDims d;
  d.B = a.size(0), d.G = a.size(1), d.N = b.size(1);
  if (a.is_cuda())
    ENGINE_CHECK(d.B * d.G * d.N < (int64_t(1) << 62), op, ": output too large");
  Tensor out = new_empty({d.B, d.G, d.N}, a);
  dispatch_float(a, op, [&](auto tag) {
    using T = decltype(tag);
    if (a.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::box_iou_per_image<T>(d, a.data<T>(), ac.data<int64_t>(), b.data<T>(),
                                                      bc.data<int64_t>(), out.data<T>(), cuda::stream()));
    } else {
      kern::cpu::box_iou_per_image<T>(d, a.data<T>(), ac.data<int64_t>(), b.data<T>(), bc.data<int64_t>(),
                                      out.data<T>());
    }
  });
  return out;
}

}  // namespace eng::det
