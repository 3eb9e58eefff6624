// conv2d and conv2d_relu front-ends: checks, routing (cuDNN, our implicit GEMM, im2col),
// and the backward node. Maths and layout: kernels/conv2d.h.
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/cudnn_conv.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "kernels/conv2d.h"
#include "kernels/conv2d_implicit_gemm.h"
#include "kernels/elementwise.h"

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

// Which CUDA code runs a convolution:
//   implicit_gemm  our implicit-GEMM kernel (kernels/conv2d_implicit_gemm.h): dilated f32
//                  forwards, the hand-written dilated convolution of the mission;
//   cudnn          every other conv that cuDNN takes (engine/detail/cudnn_conv.h), forward and
//                  backward, the whole batch in one call;
//   im2col         the per-image im2col + GEMM of kernels/conv2d.h, for what remains (dilated
//                  backward passes, sizes past cuDNN's int range).
enum class CudaPath { implicit_gemm, cudnn, im2col };
bool is_dilated(const kern::Conv2dDims& d) { return d.dil_h > 1 || d.dil_w > 1; }
CudaPath cuda_forward_path(const kern::Conv2dDims& d, DType dt) {
  if (is_dilated(d)) return dt == DType::f32 && kern::conv2d_implicit_gemm_preferred(d) ? CudaPath::implicit_gemm
                                                                                         : CudaPath::im2col;
  return cuda::cudnn::supported(d, dt) ? CudaPath::cudnn : CudaPath::im2col;
}
CudaPath cuda_backward_path(const kern::Conv2dDims& d, DType dt) {
  if (is_dilated(d)) return CudaPath::im2col;
  return cuda::cudnn::supported(d, dt) ? CudaPath::cudnn : CudaPath::im2col;
}

// y = relu(y) in place (conv2d_relu when the conv itself could not fuse it).
void relu_inplace(Tensor& y) {
  dispatch_float(y.dtype(), "conv2d_relu", [&](auto tag) {
    using T = decltype(tag);
    if (y.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::unary_forward<T>(kern::UnaryOp::Relu, y.numel(), y.data<T>(), y.data<T>(), 0.0, 0.0,
                                                  cuda::stream()));
    } else {
      kern::cpu::unary_forward<T>(kern::UnaryOp::Relu, y.numel(), y.data<T>(), y.data<T>(), 0.0, 0.0);
    }
  });
}

// g * (y > 0): the ReLU part of conv2d_relu's backward (y is the op's output, so y > 0
// exactly where the pre-activation was > 0).
Tensor relu_mask(const Tensor& g, const Tensor& y) {
  Tensor out = new_empty(g.sizes(), g);
  dispatch_float(g.dtype(), "conv2d_relu", [&](auto tag) {
    using T = decltype(tag);
    if (g.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::unary_backward<T>(kern::UnaryOp::Relu, g.numel(), y.data<T>(), nullptr, g.data<T>(),
                                                   out.data<T>(), 0.0, 0.0, cuda::stream()));
    } else {
      kern::cpu::unary_backward<T>(kern::UnaryOp::Relu, g.numel(), y.data<T>(), nullptr, g.data<T>(), out.data<T>(),
                                   0.0, 0.0);
    }
  });
  return out;
}

struct Conv2dBackward : Node {
  Tensor x, w;  // contiguous, detached; x kept when w needs grad, w when x needs grad
  Tensor y;     // conv2d_relu only: the output, whose sign masks the incoming gradient
  kern::Conv2dDims d;
  Conv2dBackward(Tensor x_, Tensor w_, Tensor y_, const kern::Conv2dDims& dims)
      : Node(y_.defined() ? "Conv2dReluBackward" : "Conv2dBackward"),
        x(std::move(x_)),
        w(std::move(w_)),
        y(std::move(y_)),
        d(dims) {}

  std::vector<Tensor> apply(const Tensor& g_in) override {
    Tensor g = g_in.contiguous();
    if (y.defined()) g = relu_mask(g, y);
    const bool need_x = next_edges()[0].fn != nullptr;
    const bool need_w = next_edges()[1].fn != nullptr;
    const bool need_b = next_edges().size() > 2 && next_edges()[2].fn != nullptr;
    Tensor gx, gw, gb, col;
    if (need_x) gx = new_empty({d.N, d.C, d.H, d.W}, g);
    if (need_w) gw = new_empty({d.O, d.C, d.kh, d.kw}, g);
    if (need_b) gb = new_empty({d.O}, g);
    if (g.is_cuda() && cuda_backward_path(d, g.dtype()) == CudaPath::cudnn) {
      ENGINE_IF_CUDA({
        if (need_x) cuda::cudnn::conv_backward_data(d, g.dtype(), w.raw_data(), g.raw_data(), gx.raw_data());
        if (need_w) cuda::cudnn::conv_backward_filter(d, g.dtype(), x.raw_data(), g.raw_data(), gw.raw_data());
        if (need_b) cuda::cudnn::conv_backward_bias(d, g.dtype(), g.raw_data(), gb.raw_data());
      });
      return {gx, gw, gb};
    }
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
    y = Tensor();
  }
};

// Checks and the output size; the message names `op`.
kern::Conv2dDims conv_dims(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                           const Conv2dParams& p) {
  ENGINE_CHECK(x.defined() && weight.defined(), op, ": undefined input or weight");
  check_same_device_dtype(op, {x, weight, bias});
  check_floating(op, x);
  ENGINE_CHECK(x.dim() == 4, op, ": input must be [N, C, H, W], got ", shape_str(x.sizes()));
  ENGINE_CHECK(weight.dim() == 4, op, ": weight must be [O, C, kh, kw], got ", shape_str(weight.sizes()));
  ENGINE_CHECK(x.size(1) == weight.size(1), op, ": input ", shape_str(x.sizes()), " has ", x.size(1),
               " channels but weight ", shape_str(weight.sizes()), " expects ", weight.size(1));
  ENGINE_CHECK(weight.numel() > 0, op, ": empty weight ", shape_str(weight.sizes()));
  if (bias.defined())
    ENGINE_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), op, ": bias must be [", weight.size(0),
                 "], got ", shape_str(bias.sizes()));
  ENGINE_CHECK(p.stride_h > 0 && p.stride_w > 0, op, ": stride must be positive, got (", p.stride_h, ", ",
               p.stride_w, ")");
  ENGINE_CHECK(p.dilation_h > 0 && p.dilation_w > 0, op, ": dilation must be positive, got (", p.dilation_h, ", ",
               p.dilation_w, ")");
  ENGINE_CHECK(p.pad_h >= 0 && p.pad_w >= 0, op, ": padding must be non-negative, got (", p.pad_h, ", ", p.pad_w,
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
  ENGINE_CHECK(span_h <= d.H + 2 * d.pad_h && span_w <= d.W + 2 * d.pad_w, op, ": kernel ", d.kh, "x", d.kw,
               " with dilation (", d.dil_h, ", ", d.dil_w, ") spans ", span_h, "x", span_w,
               ", larger than the padded input of ", shape_str(x.sizes()), " with padding (", d.pad_h, ", ", d.pad_w,
               ")");
  d.Ho = kern::conv2d_output_size(d.H, d.kh, d.stride_h, d.pad_h, d.dil_h);
  d.Wo = kern::conv2d_output_size(d.W, d.kw, d.stride_w, d.pad_w, d.dil_w);
  return d;
}

Conv2dObserver& observer() {
  static Conv2dObserver f;
  return f;
}

// conv2d and conv2d_relu: y = conv(x, w) + b, then relu(y) when `relu`.
Tensor conv2d_impl(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p,
                   bool relu) {
  const kern::Conv2dDims d = conv_dims(op, x, weight, bias, p);
  if (observer()) observer()(d, x.dtype());
  Tensor X = x.detach().contiguous(), Wt = weight.detach().contiguous();
  Tensor B = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = new_empty({d.N, d.O, d.Ho, d.Wo}, X);
  const CudaPath path = X.is_cuda() ? cuda_forward_path(d, X.dtype()) : CudaPath::im2col;
  bool relu_done = false;
  if (X.is_cuda() && path == CudaPath::implicit_gemm) {
    ENGINE_IF_CUDA(kern::cuda::conv2d_implicit_gemm_forward(d, X.data<float>(), Wt.data<float>(), ptr_or_null<float>(B),
                                                            y.data<float>(), cuda::stream()));
  } else if (X.is_cuda() && path == CudaPath::cudnn) {
    // cuDNN fuses bias + ReLU into the convolution when there is a bias to fuse.
    relu_done = relu && B.defined();
    ENGINE_IF_CUDA(cuda::cudnn::conv_forward(d, X.dtype(), X.raw_data(), Wt.raw_data(), B.defined() ? B.raw_data() : nullptr,
                                             y.raw_data(), relu_done));
  } else {
    Tensor col = col_workspace(d, X);
    dispatch_float(X, op, [&](auto tag) {
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
  if (relu && !relu_done) relu_inplace(y);

  if (any_requires_grad({x, weight, bias})) {
    auto node = std::make_shared<Conv2dBackward>(weight.requires_grad() ? X : Tensor(),
                                                 x.requires_grad() ? Wt : Tensor(), relu ? y.detach() : Tensor(), d);
    attach(y, node, {x, weight, bias});
  }
  return y;
}

}  // namespace

void detail::set_conv2d_observer(Conv2dObserver f) { observer() = std::move(f); }

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  return conv2d_impl("conv2d", x, weight, bias, p, false);
}

Tensor conv2d_relu(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  return conv2d_impl("conv2d_relu", x, weight, bias, p, true);
}

}  // namespace eng
