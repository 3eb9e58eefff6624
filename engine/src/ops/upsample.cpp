// upsample_nearest2d front-end: PyTorch's legacy 'nearest' resampling to a given size.
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "engine/trace.h"
#include "kernels/upsample.h"

namespace eng {
using namespace detail;

namespace {

struct UpsampleNearest2dBackward : Node {
  Shape in_sizes;
  kern::Upsample2dDims d;
  UpsampleNearest2dBackward(Shape s, const kern::Upsample2dDims& dims)
      : Node("UpsampleNearest2dBackward"), in_sizes(std::move(s)), d(dims) {}
  std::vector<Tensor> apply(const Tensor& g_in) override {
    Tensor g = g_in.contiguous();
    Tensor gx = new_empty(in_sizes, g);
    dispatch_float_or_bf16(g, "upsample_nearest2d", [&](auto tag) {
      using T = decltype(tag);
      if (g.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::upsample_nearest2d_backward<T>(d, g.data<T>(), gx.data<T>(), cuda::stream()));
      } else {
        kern::cpu::upsample_nearest2d_backward<T>(d, g.data<T>(), gx.data<T>());
      }
    });
    return {gx};
  }
};

}  // namespace

static Tensor upsample_nearest2d_untraced(const Tensor& x_in, int64_t out_h, int64_t out_w) {
  ENGINE_CHECK(x_in.defined(), "upsample_nearest2d: undefined input");
  check_floating_or_bf16("upsample_nearest2d", x_in);
  ENGINE_CHECK(x_in.dim() == 4, "upsample_nearest2d: expected a 4-d [N, C, H, W] input, got shape ",
               shape_str(x_in.sizes()));
  ENGINE_CHECK(out_h > 0 && out_w > 0, "upsample_nearest2d: output size ", out_h, "x", out_w,
               " must be positive (input ", shape_str(x_in.sizes()), ")");
  ENGINE_CHECK(x_in.size(2) > 0 && x_in.size(3) > 0, "upsample_nearest2d: empty spatial size in input ",
               shape_str(x_in.sizes()));
  kern::Upsample2dDims d;
  d.planes = x_in.size(0) * x_in.size(1);
  d.in_h = x_in.size(2);
  d.in_w = x_in.size(3);
  d.out_h = out_h;
  d.out_w = out_w;

  Tensor x = x_in.detach().contiguous();
  Tensor y = new_empty({x.size(0), x.size(1), out_h, out_w}, x);
  dispatch_float_or_bf16(x, "upsample_nearest2d", [&](auto tag) {
    using T = decltype(tag);
    if (x.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::upsample_nearest2d_forward<T>(d, x.data<T>(), y.data<T>(), cuda::stream()));
    } else {
      kern::cpu::upsample_nearest2d_forward<T>(d, x.data<T>(), y.data<T>());
    }
  });
  if (any_requires_grad({x_in})) attach(y, std::make_shared<UpsampleNearest2dBackward>(x.sizes(), d), {x_in});
  return y;
}

Tensor upsample_nearest2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  Tensor y = upsample_nearest2d_untraced(x, out_h, out_w);
  if (auto* r = trace::active()) r->record("upsample_nearest2d", {x}, {y}, {{"size", std::vector<int64_t>{out_h, out_w}}});
  return y;
}

}  // namespace eng
