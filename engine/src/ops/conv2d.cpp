// conv2d front-end: checks, im2col workspace, dispatch, and the backward node.
// Maths and layout: kernels/conv2d.h.
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "kernels/conv2d.h"
#include "kernels/conv2d_implicit_gemm.h"

namespace eng {
using namespace detail;

namespace {

// One image's im2col matrix, or an undefined tensor when the conv needs none.
// CUDA: a fresh block from the caching allocator (cheap). CPU: one buffer per thread and
// dtype, kept between calls and grown on demand: a fresh multi-MB buffer per call costs
// more in page faults than the GEMM itself (VGG 64->64 at 150x150: a 52 MB col matrix).
// Conv calls on one thread never overlap, so sharing the buffer is safe.
Tensor col_workspace(const kern::Conv2dDims& d, const Tensor& like) {
  if (kern::conv2d_is_pointwise(d)) return Tensor();
  const int64_t n = kern::conv2d_col_size(d);
  if (like.is_cuda()) return new_empty({n}, like);
  thread_local Tensor cache[2];  // [0] f32, [1] f64
  Tensor& buf = cache[like.dtype() == DType::f64 ? 1 : 0];
  if (!buf.defined() || buf.numel() < n) {
    buf = Tensor();  // free the old buffer before taking the larger one
    buf = empty({n}, TensorOptions(like.dtype()));
  }
  return buf;
}

template <typename T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

struct Conv2dBackward : Node {
  Tensor x, w;  // contiguous, detached; x kept when w needs grad, w when x needs grad
  kern::Conv2dDims d;
  Conv2dBackward(Tensor x_, Tensor w_, const kern::Conv2dDims& dims)
      : Node("Conv2dBackward"), x(std::move(x_)), w(std::move(w_)), d(dims) {}

  std::vector<Tensor> apply(const Tensor& g_in) override {
    Tensor g = g_in.contiguous();
    const bool need_x = next_edges()[0].fn != nullptr;
    const bool need_w = next_edges()[1].fn != nullptr;
    const bool need_b = next_edges().size() > 2 && next_edges()[2].fn != nullptr;
    Tensor gx, gw, gb, col;
    if (need_x) gx = new_empty({d.N, d.C, d.H, d.W}, g);
    if (need_w) gw = new_empty({d.O, d.C, d.kh, d.kw}, g);
    if (need_b) gb = new_empty({d.O}, g);
    if (need_x || need_w) col = col_workspace(d, g);
    dispatch_float(g, "conv2d", [&](auto tag) {
      using T = decltype(tag);
      const T* px = ptr_or_null<T>(x);
      const T* pw = ptr_or_null<T>(w);
      if (g.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::conv2d_backward<T>(d, px, pw, g.data<T>(), ptr_or_null<T>(gx), ptr_or_null<T>(gw),
                                                      ptr_or_null<T>(gb), ptr_or_null<T>(col), cuda::blas(),
                                                      cuda::stream()));
      } else {
        kern::cpu::conv2d_backward<T>(d, px, pw, g.data<T>(), ptr_or_null<T>(gx), ptr_or_null<T>(gw),
                                      ptr_or_null<T>(gb), ptr_or_null<T>(col));
      }
    });
    return {gx, gw, gb};
  }
  void release_saved() override {
    x = Tensor();
    w = Tensor();
  }
};

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  ENGINE_CHECK(x.defined() && weight.defined(), "conv2d: undefined input or weight");
  check_same_device_dtype("conv2d", {x, weight, bias});
  check_floating("conv2d", x);
  ENGINE_CHECK(x.dim() == 4, "conv2d: input must be [N, C, H, W], got ", shape_str(x.sizes()));
  ENGINE_CHECK(weight.dim() == 4, "conv2d: weight must be [O, C, kh, kw], got ", shape_str(weight.sizes()));
  ENGINE_CHECK(x.size(1) == weight.size(1), "conv2d: input ", shape_str(x.sizes()), " has ", x.size(1),
               " channels but weight ", shape_str(weight.sizes()), " expects ", weight.size(1));
  ENGINE_CHECK(weight.numel() > 0, "conv2d: empty weight ", shape_str(weight.sizes()));
  if (bias.defined())
    ENGINE_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "conv2d: bias must be [", weight.size(0),
                 "], got ", shape_str(bias.sizes()));
  ENGINE_CHECK(p.stride_h > 0 && p.stride_w > 0, "conv2d: stride must be positive, got (", p.stride_h, ", ",
               p.stride_w, ")");
  ENGINE_CHECK(p.dilation_h > 0 && p.dilation_w > 0, "conv2d: dilation must be positive, got (", p.dilation_h, ", ",
               p.dilation_w, ")");
  ENGINE_CHECK(p.pad_h >= 0 && p.pad_w >= 0, "conv2d: padding must be non-negative, got (", p.pad_h, ", ", p.pad_w,
               ")");

  kern::Conv2dDims d;
  d.N = x.size(0);
  d.C = x.size(1);
  d.H = x.size(2);
  d.W = x.size(3);
  d.O = weight.size(0);
  d.kh = weight.size(2);
  d.kw = weight.size(3);
  d.stride_h = p.stride_h;
  d.stride_w = p.stride_w;
  d.pad_h = p.pad_h;
  d.pad_w = p.pad_w;
  d.dil_h = p.dilation_h;
  d.dil_w = p.dilation_w;
  // The dilated kernel spans dil (k - 1) + 1 pixels and must fit inside the padded input.
  const int64_t span_h = d.dil_h * (d.kh - 1) + 1, span_w = d.dil_w * (d.kw - 1) + 1;
  ENGINE_CHECK(span_h <= d.H + 2 * d.pad_h && span_w <= d.W + 2 * d.pad_w, "conv2d: kernel ", d.kh, "x", d.kw,
               " with dilation (", d.dil_h, ", ", d.dil_w, ") spans ", span_h, "x", span_w,
               ", larger than the padded input of ", shape_str(x.sizes()), " with padding (", d.pad_h, ", ", d.pad_w,
               ")");
  d.Ho = kern::conv2d_output_size(d.H, d.kh, d.stride_h, d.pad_h, d.dil_h);
  d.Wo = kern::conv2d_output_size(d.W, d.kw, d.stride_w, d.pad_w, d.dil_w);

  Tensor X = x.detach().contiguous(), Wt = weight.detach().contiguous();
  Tensor B = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = new_empty({d.N, d.O, d.Ho, d.Wo}, X);
  // CUDA float forward of a dilated conv: the implicit-GEMM kernel (no im2col workspace).
  const bool implicit_gemm = X.is_cuda() && X.dtype() == DType::f32 && kern::conv2d_implicit_gemm_preferred(d);
  Tensor col = implicit_gemm ? Tensor() : col_workspace(d, X);
  if (implicit_gemm) {
    ENGINE_IF_CUDA(kern::cuda::conv2d_implicit_gemm_forward(d, X.data<float>(), Wt.data<float>(), ptr_or_null<float>(B),
                                                            y.data<float>(), cuda::stream()));
  } else {
    dispatch_float(X, "conv2d", [&](auto tag) {
      using T = decltype(tag);
      if (X.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::conv2d_forward<T>(d, X.data<T>(), Wt.data<T>(), ptr_or_null<T>(B), y.data<T>(),
                                                     ptr_or_null<T>(col), cuda::blas(), cuda::stream()));
      } else {
        kern::cpu::conv2d_forward<T>(d, X.data<T>(), Wt.data<T>(), ptr_or_null<T>(B), y.data<T>(),
                                     ptr_or_null<T>(col));
      }
    });
  }

  if (any_requires_grad({x, weight, bias})) {
    auto node = std::make_shared<Conv2dBackward>(weight.requires_grad() ? X : Tensor(),
                                                 x.requires_grad() ? Wt : Tensor(), d);
    attach(y, node, {x, weight, bias});
  }
  return y;
}

}  // namespace eng
