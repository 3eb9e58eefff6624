// box_encode / box_decode front-ends (maths in kernels/include/kernels/box_coder.h).
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/detection.h"
#include "kernels/box_coder.h"

namespace eng::det {
using namespace eng::detail;

namespace {

// Checks x [..., A, 4] against anchors [A, 4] and fills the dims.
kern::BoxCoderDims coder_dims(const char* op, const Tensor& x, const char* what, const Tensor& anchors,
                              const BoxCoderWeights& w) {
  ENGINE_CHECK(x.defined(), op, ": ", what, " is undefined");
  ENGINE_CHECK(x.dim() >= 2, op, ": ", what, " must be [..., A, 4], got shape ", shape_str(x.sizes()));
  ENGINE_CHECK(x.size(-1) == 4, op, ": ", what, " must have last dim 4, got shape ", shape_str(x.sizes()));
  check_dim(op, anchors, 2, "anchors");
  ENGINE_CHECK(anchors.size(1) == 4, op, ": anchors must be [A, 4], got shape ", shape_str(anchors.sizes()));
  check_floating(op, x);
  check_same_device_dtype(op, {x, anchors});
  ENGINE_CHECK(x.size(-2) == anchors.size(0), op, ": ", what, " ", shape_str(x.sizes()), " has ", x.size(-2),
               " boxes per row but there are ", anchors.size(0), " anchors");
  ENGINE_CHECK(w.wx > 0 && w.wy > 0 && w.ww > 0 && w.wh > 0, op, ": weights (", w.wx, ", ", w.wy, ", ", w.ww, ", ",
               w.wh, ") must all be > 0");
  kern::BoxCoderDims d;
  d.n = x.numel() / 4;
  d.A = anchors.size(0);
  d.wx = w.wx;
  d.wy = w.wy;
  d.ww = w.ww;
  d.wh = w.wh;
  return d;
}

}  // namespace

Tensor box_encode(const Tensor& boxes_in, const Tensor& anchors_in, const BoxCoderWeights& w) {
  const char* op = "box_encode";
  const kern::BoxCoderDims d = coder_dims(op, boxes_in, "boxes", anchors_in, w);
  Tensor boxes = boxes_in.detach().contiguous(), anchors = anchors_in.detach().contiguous();
  Tensor out = new_empty(boxes.sizes(), boxes);
  dispatch_float(boxes, op, [&](auto tag) {
    using T = decltype(tag);
    if (boxes.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::box_encode<T>(d, boxes.data<T>(), anchors.data<T>(), out.data<T>(), cuda::stream()));
    } else {
      kern::cpu::box_encode<T>(d, boxes.data<T>(), anchors.data<T>(), out.data<T>());
    }
  });
  return out;
}

Tensor box_decode(const Tensor& deltas_in, const Tensor& anchors_in, const BoxCoderWeights& w, double clamp) {
  const char* op = "box_decode";
  kern::BoxCoderDims d = coder_dims(op, deltas_in, "deltas", anchors_in, w);
  d.clamp = clamp;
  Tensor deltas = deltas_in.detach().contiguous(), anchors = anchors_in.detach().contiguous();
  Tensor out = new_empty(deltas.sizes(), deltas);
  dispatch_float(deltas, op, [&](auto tag) {
    using T = decltype(tag);
    if (deltas.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::box_decode<T>(d, deltas.data<T>(), anchors.data<T>(), out.data<T>(), cuda::stream()));
    } else {
      kern::cpu::box_decode<T>(d, deltas.data<T>(), anchors.data<T>(), out.data<T>());
    }
  });
  return out;
}

}  // namespace eng::det
