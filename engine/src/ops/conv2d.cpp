// conv2d and conv2d_relu front-ends: checks, routing (cuDNN, our implicit GEMM, CPU Winograd, im2col),
// and the backward node. Maths and layout: kernels/conv2d.h.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/conv2d_col_budget.h"
#include "engine/detail/conv2d_grouped.h"
#include "engine/detail/cudnn_conv.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "engine/trace.h"
#include "kernels/conv2d.h"
#include "kernels/conv2d_banded.h"
#include "kernels/conv2d_implicit_gemm.h"
#include "kernels/conv2d_regions.h"
#include "kernels/conv2d_winograd.h"
#include "kernels/elementwise.h"
#include "kernels/reduce_multiblock.h"

namespace eng {
using namespace detail;

namespace {

// The col workspace: `n` elements, or an undefined tensor when n == 0 (pointwise conv).
// CUDA: a fresh block from the caching allocator (cheap), one image's col matrix. CPU: one
// buffer per thread and dtype, kept between calls and grown on demand (a fresh multi-MB
// buffer per call costs more in page faults than the GEMM); the CPU path runs in bands
// (cpu_band_rows) so the buffer stays within the col budget (engine/detail/
// conv2d_col_budget.h) instead of one whole-image col matrix (207 MB at SSD300's conv1_2).
// Conv calls on one thread never overlap, so sharing the buffer is safe.
Tensor col_workspace(int64_t n, const Tensor& like) {
  if (n <= 0) return Tensor();
  if (like.is_cuda()) return new_empty({n}, like);
  thread_local Tensor cache[2];  // [0] f32, [1] f64
  Tensor& buf = cache[like.dtype() == DType::f64 ? 1 : 0];
  // Also shrink a buffer larger than the budget allows (left by a run of the whole-image
  // reference or a larger budget), so the budget bounds what the cache holds.
  const int64_t cap = std::max<int64_t>(n, int64_t(conv_col_budget() / dtype_size(like.dtype())));
  if (!buf.defined() || buf.numel() < n || (conv_col_budget() > 0 && buf.numel() > cap)) {
    buf = Tensor();  // free the old buffer before taking the larger one
    buf = empty({n}, TensorOptions(like.dtype()));
  }
  return buf;
}
int64_t whole_col_size(const kern::Conv2dDims& d) {
  return kern::conv2d_is_pointwise(d) ? 0 : kern::conv2d_col_size(d);
}
// CPU: output rows per band for the col budget; 0 = the whole-image reference.
int64_t cpu_band_rows(const kern::Conv2dDims& d, const Tensor& like) {
  const size_t budget = conv_col_budget();
  return budget == 0 ? 0 : kern::conv2d_band_rows(d, budget, dtype_size(like.dtype()));
}

template <typename T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// Which code runs a convolution:
//   cudnn          CUDA, not dilated: cuDNN (engine/detail/cudnn_conv.h), forward and backward,
//                  the whole batch in one call; f32 (FP32 or TF32 math), f64, bf16;
//   implicit_gemm  CUDA, dilated, f32 or bf16: our implicit-GEMM kernels
//                  (kernels/conv2d_implicit_gemm.h), the hand-written dilated convolution of the
//                  mission: FP32 CUDA cores, or TF32 / BF16 tensor cores, forward (bias and ReLU
//                  in the epilogue) and both backward passes, the whole batch per launch;
//   winograd       CPU f32, 3x3 stride 1 undilated (kernels/conv2d_winograd.h), forward (bias
//                  and ReLU fused) and both backward passes, when the cost rule
//                  kern::cpu::conv2d_winograd_preferred says so; ENGINE_CPU_CONV forces it
//                  (cpu_path below). Non-finite operands run the im2col path instead;
//   regions        CPU f32, stride 1, groups 1, when a large share of the taps reads padding
//                  (dilated layers such as SSD's fc6): the padding-free regions GEMM
//                  (kernels/conv2d_regions.h), forward (bias and ReLU fused) and both backward
//                  passes, when kern::cpu::conv2d_regions_preferred says so; ENGINE_CPU_CONV
//                  forces it. A non-finite weight (forward) or gradient (weight gradient) runs
//                  the im2col path instead;
//   im2col         the CPU, and what CUDA has left (f64 dilated, sizes past the kernels'
//                  int32 ranges): per-image im2col + GEMM (kernels/conv2d.h); on the CPU in
//                  bands of output rows within the col budget (kernels/conv2d_banded.h;
//                  ENGINE_CPU_CONV_CHUNK_MB=0 runs the whole-image reference), 1x1 stride-1
//                  convolutions as plain GEMMs on x.
// bf16 on the im2col path computes in f32 on the bf16 values and rounds the result once: the
// CPU twin of the tensor-core paths.
enum class Path { cudnn, implicit_gemm, winograd, regions, im2col };
bool is_dilated(const kern::Conv2dDims& d) { return d.dil_h > 1 || d.dil_w > 1; }
bool igemm_dtype(DType dt) { return dt == DType::f32 || dt == DType::bf16; }
// ENGINE_CPU_CONV=im2col|winograd|regions|auto (unset = auto): the CPU path of f32
// convolutions. auto follows the cost rules (Winograd for the shapes it prefers, then the
// regions path); winograd or regions force that path where it covers the shape (f32; Winograd:
// 3x3, stride 1, undilated, groups 1; regions: kern::conv2d_regions_supported), and every
// other shape runs im2col; im2col runs im2col everywhere. Read at every call (tests switch it).
Path cpu_path(const kern::Conv2dDims& d, DType dt) {
  if (dt != DType::f32) return Path::im2col;
  const char* v = std::getenv("ENGINE_CPU_CONV");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) {
    if (kern::conv2d_winograd_supported(d) && kern::cpu::conv2d_winograd_preferred(d)) return Path::winograd;
    return kern::cpu::conv2d_regions_preferred(d) ? Path::regions : Path::im2col;
  }
  if (std::strcmp(v, "winograd") == 0) return kern::conv2d_winograd_supported(d) ? Path::winograd : Path::im2col;
  if (std::strcmp(v, "regions") == 0) return kern::conv2d_regions_supported(d) ? Path::regions : Path::im2col;
  ENGINE_CHECK(std::strcmp(v, "im2col") == 0, "conv2d: ENGINE_CPU_CONV='", v,
               "' is not one of im2col, winograd, regions, auto");
  return Path::im2col;
}
Path forward_path(const kern::Conv2dDims& d, const Tensor& x) {
  if (!x.is_cuda()) return cpu_path(d, x.dtype());
  if (is_dilated(d))
    return igemm_dtype(x.dtype()) && kern::conv2d_implicit_gemm_preferred(d) ? Path::implicit_gemm : Path::im2col;
  return cuda::cudnn::supported(d, x.dtype()) ? Path::cudnn : Path::im2col;
}
Path backward_path(const kern::Conv2dDims& d, const Tensor& g) {
  if (!g.is_cuda()) return cpu_path(d, g.dtype());
  if (is_dilated(d))
    return igemm_dtype(g.dtype()) && kern::conv2d_implicit_gemm_backward_supported(d) ? Path::implicit_gemm
                                                                                      : Path::im2col;
  return cuda::cudnn::supported(d, g.dtype()) ? Path::cudnn : Path::im2col;
}
// The implicit GEMM's math for a float tensor: TF32 tensor cores when TF32 is on.
kern::ConvMath float_math() { return cuda::tf32_enabled() ? kern::ConvMath::tf32 : kern::ConvMath::fp32; }
const __nv_bfloat16* nv(const Tensor& t) {
  return t.defined() ? reinterpret_cast<const __nv_bfloat16*>(t.raw_data()) : nullptr;
}
__nv_bfloat16* nv_out(const Tensor& t) { return t.defined() ? reinterpret_cast<__nv_bfloat16*>(t.raw_data()) : nullptr; }

Tensor as_f32(const Tensor& t) { return t.defined() && t.dtype() == DType::bf16 ? t.to(DType::f32) : t; }

// A bf16 convolution on CUDA that neither cuDNN nor our kernels take (sizes past their int
// ranges) runs in FP32 on the bf16 values: a deliberate fallback, said once per process.
void note_bf16_fallback(const Tensor& t, const kern::Conv2dDims& d) {
  if (!t.is_cuda()) return;
  static std::once_flag once;
  std::call_once(once, [&] {
    std::fprintf(stderr, "conv2d: note: a bf16 convolution (%s) is past the tensor-core kernels' index ranges; it "
                 "runs in FP32 (im2col + GEMM) on the bf16 values (said once)\n",
                 kern::igemm_dims_str(d).c_str());
  });
}

// y = relu(y) in place (conv2d_relu when the conv itself could not fuse it).
void relu_inplace(Tensor& y) {
  dispatch_float_or_bf16(y, "conv2d_relu", [&](auto tag) {
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
  dispatch_float_or_bf16(g, "conv2d_relu", [&](auto tag) {
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

// The im2col forward in T = float or double (CUDA or CPU). relu: the CPU banded path applies
// it band by band while the output is hot (returns true); elsewhere the caller applies it after
// (returns false).
bool im2col_forward(const kern::Conv2dDims& d, const Tensor& X, const Tensor& Wt, const Tensor& B, Tensor& y,
                    const char* op, bool relu = false) {
  const int64_t band = X.is_cuda() ? 0 : cpu_band_rows(d, X);
  Tensor col = col_workspace(band > 0 ? kern::conv2d_band_col_size(d, band) : whole_col_size(d), X);
  dispatch_float(X, op, [&](auto tag) {
    using T = decltype(tag);
    if (band > 0) {
      kern::cpu::conv2d_forward_banded<T>(d, X.data<T>(), Wt.data<T>(), ptr_or_null<T>(B), y.data<T>(),
                                          ptr_or_null<T>(col), band, relu);
    } else if (X.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::conv2d_forward<T>(d, X.data<T>(), Wt.data<T>(), ptr_or_null<T>(B), y.data<T>(),
                                                   ptr_or_null<T>(col), cuda::blas(), cuda::stream()));
    } else {
      kern::cpu::conv2d_forward<T>(d, X.data<T>(), Wt.data<T>(), ptr_or_null<T>(B), y.data<T>(), ptr_or_null<T>(col));
    }
  });
  return band > 0 && relu;
}

void im2col_backward(const kern::Conv2dDims& d, const Tensor& x, const Tensor& w, const Tensor& g, Tensor& gx,
                     Tensor& gw, Tensor& gb) {
  const int64_t band = g.is_cuda() ? 0 : cpu_band_rows(d, g);
  const int64_t ncol = band > 0 ? kern::conv2d_band_col_size(d, band) : whole_col_size(d);
  Tensor col = (gx.defined() || gw.defined()) ? col_workspace(ncol, g) : Tensor();
  dispatch_float(g, "conv2d", [&](auto tag) {
    using T = decltype(tag);
    const T* px = ptr_or_null<T>(x);
    const T* pw = ptr_or_null<T>(w);
    if (band > 0) {
      kern::cpu::conv2d_backward_banded<T>(d, px, pw, g.data<T>(), ptr_or_null<T>(gx), ptr_or_null<T>(gw),
                                           ptr_or_null<T>(gb), ptr_or_null<T>(col), band);
    } else if (g.is_cuda()) {
      // The bias gradient by the multi-block two-pass sum over (n, h, w) (kernels/
      // reduce_multiblock.h) rather than the kernel's one block per channel.
      ENGINE_IF_CUDA({
        kern::cuda::conv2d_backward<T>(d, px, pw, g.data<T>(), ptr_or_null<T>(gx), ptr_or_null<T>(gw), nullptr,
                                       ptr_or_null<T>(col), cuda::blas(), cuda::stream());
        if (gb.defined()) {
          const int64_t np = kern::sum_outer_inner_partials(d.N, d.O, d.Ho * d.Wo);
          Tensor partials = np > 0 ? empty({np}, TensorOptions(DType::f64).device(g.device())) : Tensor();
          kern::cuda::sum_outer_inner<T>(d.N, d.O, d.Ho * d.Wo, g.data<T>(), gb.data<T>(), 1.0,
                                         np > 0 ? partials.data<double>() : nullptr, cuda::stream());
        }
      });
    } else {
      kern::cpu::conv2d_backward<T>(d, px, pw, g.data<T>(), ptr_or_null<T>(gx), ptr_or_null<T>(gw),
                                    ptr_or_null<T>(gb), ptr_or_null<T>(col));
    }
  });
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
    Tensor gx, gw, gb;
    if (need_x) gx = new_empty({d.N, d.C, d.H, d.W}, g);
    if (need_w) gw = new_empty({d.O, d.C / d.groups, d.kh, d.kw}, g);
    if (d.groups != 1) {  // engine/detail/conv2d_grouped.h
      if (need_b) gb = new_empty({d.O}, g);
      grouped_conv_backward(d, x, w, g, gx, gw, gb);
      return {gx, gw, gb};
    }
    const Path path = backward_path(d, g);
    if (path == Path::cudnn) {
      if (need_b) gb = new_empty({d.O}, g);
      ENGINE_IF_CUDA({
        if (need_x) cuda::cudnn::conv_backward_data(d, g.dtype(), w.raw_data(), g.raw_data(), gx.raw_data());
        if (need_w) cuda::cudnn::conv_backward_filter(d, g.dtype(), x.raw_data(), g.raw_data(), gw.raw_data());
        // The bias gradient of a bf16 conv: the engine's multi-block sum reads the bf16 values,
        // adds them in double and rounds once to bf16 (no f32 copy of g).
        if (need_b && g.dtype() != DType::bf16) cuda::cudnn::conv_backward_bias(d, g.dtype(), g.raw_data(), gb.raw_data());
      });
      if (need_b && g.dtype() == DType::bf16) gb = sum(g, {0, 2, 3});
      return {gx, gw, gb};
    }
    if (path == Path::implicit_gemm) {
      ENGINE_IF_CUDA({
        if (g.dtype() == DType::bf16) {
          if (need_x) kern::cuda::conv2d_igemm_backward_data(d, nv(g), nv(w), nv_out(gx), cuda::stream());
          if (need_w) kern::cuda::conv2d_igemm_backward_filter(d, nv(x), nv(g), nv_out(gw), cuda::stream());
        } else {
          if (need_x)
            kern::cuda::conv2d_igemm_backward_data(d, float_math(), g.data<float>(), w.data<float>(),
                                                   gx.data<float>(), cuda::stream());
          if (need_w)
            kern::cuda::conv2d_igemm_backward_filter(d, float_math(), x.data<float>(), g.data<float>(),
                                                     gw.data<float>(), cuda::stream());
        }
      });
      // The kernels leave the bias gradient to the engine's multi-block sum over (n, h, w)
      // (double accumulation, one rounding to g's dtype, no f32 copy of a bf16 g).
      if (need_b) gb = sum(g, {0, 2, 3});
      return {gx, gw, gb};
    }
    if (path == Path::winograd) {
      if (need_b) gb = new_empty({d.O}, g);
      // false: a non-finite operand; the im2col reference then gives the reference's NaN/Inf.
      // The workspace from the allocator (counted, cached and trimmed with everything else).
      const bool ok = [&] {
        Tensor ws = empty({kern::cpu::conv2d_winograd_workspace_floats(d, true)}, TensorOptions(DType::f32));
        return kern::cpu::conv2d_winograd_backward(d, ptr_or_null<float>(x), ptr_or_null<float>(w), g.data<float>(),
                                                   ptr_or_null<float>(gx), ptr_or_null<float>(gw),
                                                   ptr_or_null<float>(gb), ws.data<float>());
      }();
      if (ok) return {gx, gw, gb};
      im2col_backward(d, x, w, g, gx, gw, gb);
      return {gx, gw, gb};
    }
    if (path == Path::regions) {
      if (need_b) gb = new_empty({d.O}, g);
      Tensor ws = empty({int64_t(kern::cpu::conv2d_regions_backward_workspace(d))}, TensorOptions(DType::f32));
      const bool ok = kern::cpu::conv2d_regions_backward(d, ptr_or_null<float>(x), ptr_or_null<float>(w),
                                                         g.data<float>(), ptr_or_null<float>(gx),
                                                         ptr_or_null<float>(gw), ptr_or_null<float>(gb),
                                                         ws.data<float>());
      if (!ok) {  // a non-finite gradient: the weight gradient by the reference (its NaN/Inf)
        ws = Tensor();
        Tensor none_x, none_b;
        im2col_backward(d, x, w, g, none_x, gw, none_b);
      }
      return {gx, gw, gb};
    }
    if (g.dtype() == DType::bf16) {
      // Float maths on the bf16 values, each gradient rounded once.
      note_bf16_fallback(g, d);
      Tensor gxf = need_x ? new_empty(gx.sizes(), as_f32(g)) : Tensor();
      Tensor gwf = need_w ? new_empty(gw.sizes(), as_f32(g)) : Tensor();
      Tensor gbf = need_b ? new_empty({d.O}, as_f32(g)) : Tensor();
      im2col_backward(d, as_f32(x), as_f32(w), as_f32(g), gxf, gwf, gbf);
      return {need_x ? gxf.to(DType::bf16) : Tensor(), need_w ? gwf.to(DType::bf16) : Tensor(),
              need_b ? gbf.to(DType::bf16) : Tensor()};
    }
    if (need_b) gb = new_empty({d.O}, g);
    im2col_backward(d, x, w, g, gx, gw, gb);
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
  check_floating_or_bf16(op, x);
  ENGINE_CHECK(x.dim() == 4, op, ": input must be [N, C, H, W], got ", shape_str(x.sizes()));
  ENGINE_CHECK(weight.dim() == 4, op, ": weight must be [O, C, kh, kw], got ", shape_str(weight.sizes()));
  if (p.groups == 1) {
    ENGINE_CHECK(x.size(1) == weight.size(1), op, ": input ", shape_str(x.sizes()), " has ", x.size(1),
                 " channels but weight ", shape_str(weight.sizes()), " expects ", weight.size(1));
  } else {
    ENGINE_CHECK(p.groups > 1 && x.size(1) % p.groups == 0 && weight.size(0) % p.groups == 0, op, ": groups ",
                 p.groups, " must divide the input channels (", x.size(1), ") and the output channels (",
                 weight.size(0), ")");
    ENGINE_CHECK(x.size(1) == weight.size(1) * p.groups, op, ": input ", shape_str(x.sizes()), " has ", x.size(1),
                 " channels but weight ", shape_str(weight.sizes()), " with groups ", p.groups, " expects ",
                 weight.size(1) * p.groups);
  }
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
  d.groups = p.groups;
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

// conv2d and conv2d_relu: y = conv(x, w) + b, then relu(y) when `relu`. Under autocast
// (engine/autocast.h) f32 CUDA operands are cast to bf16 first (differentiable casts).
Tensor conv2d_impl(const char* op, const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dParams& p,
                   bool relu) {
  const Tensor x = autocast::to_compute(x_in), weight = autocast::to_compute(w_in), bias = autocast::to_compute(b_in);
  const kern::Conv2dDims d = conv_dims(op, x, weight, bias, p);
  if (observer()) observer()(d, x.dtype());
  Tensor X = x.detach().contiguous(), Wt = weight.detach().contiguous();
  Tensor B = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = new_empty({d.N, d.O, d.Ho, d.Wo}, X);
  bool relu_done = false;
  if (d.groups != 1) {
    grouped_conv_forward(d, X, Wt, B, y);  // engine/detail/conv2d_grouped.h
  } else switch (forward_path(d, X)) {
    case Path::cudnn:
      // cuDNN fuses bias + ReLU into the convolution when there is a bias to fuse.
      relu_done = relu && B.defined();
      ENGINE_IF_CUDA(cuda::cudnn::conv_forward(d, X.dtype(), X.raw_data(), Wt.raw_data(),
                                               B.defined() ? B.raw_data() : nullptr, y.raw_data(), relu_done));
      break;
    case Path::implicit_gemm:
      relu_done = relu;  // bias and ReLU in the kernel's epilogue
      ENGINE_IF_CUDA({
        if (X.dtype() == DType::bf16)
          kern::cuda::conv2d_igemm_forward(d, nv(X), nv(Wt), nv(B), relu, nv_out(y), cuda::stream());
        else
          kern::cuda::conv2d_igemm_forward(d, float_math(), X.data<float>(), Wt.data<float>(), ptr_or_null<float>(B),
                                           relu, y.data<float>(), cuda::stream());
      });
      break;
    case Path::winograd:
      // Bias and ReLU in the output transform; false: a non-finite operand, so the im2col
      // reference runs instead (its NaN/Inf pattern, not a whole tile's).
    {
      // The workspace from the allocator (counted, cached and trimmed with everything else).
      Tensor ws = empty({kern::cpu::conv2d_winograd_workspace_floats(d, false)}, TensorOptions(DType::f32));
      if (kern::cpu::conv2d_winograd_forward(d, X.data<float>(), Wt.data<float>(), ptr_or_null<float>(B), relu,
                                             y.data<float>(), ws.data<float>()))
        relu_done = relu;
      else
        im2col_forward(d, X, Wt, B, y, op);
      break;
    }
    case Path::regions:
      // Bias and ReLU in the epilogue; false: a non-finite weight, so the im2col reference runs
      // instead (the padding's 0 * inf = NaN products that the regions path leaves out).
    {
      Tensor ws = empty({int64_t(kern::cpu::conv2d_regions_forward_workspace(d))}, TensorOptions(DType::f32));
      if (kern::cpu::conv2d_regions_forward(d, X.data<float>(), Wt.data<float>(), ptr_or_null<float>(B), relu,
                                            y.data<float>(), ws.data<float>()))
        relu_done = relu;
      else
        im2col_forward(d, X, Wt, B, y, op);
      break;
    }
    case Path::im2col:
      if (X.dtype() == DType::bf16) {
        // Float maths on the bf16 values (ReLU included), rounded once to bf16.
        note_bf16_fallback(X, d);
        Tensor yf = new_empty(y.sizes(), as_f32(X));
        if (!im2col_forward(d, as_f32(X), as_f32(Wt), as_f32(B), yf, op, relu) && relu) relu_inplace(yf);
        relu_done = relu;
        y.copy_(yf);
      } else {
        relu_done = im2col_forward(d, X, Wt, B, y, op, relu);
      }
      break;
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

namespace {
Tensor traced_conv(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p,
                   bool relu) {
  Tensor y = conv2d_impl(op, x, weight, bias, p, relu);
  if (auto* r = trace::active())
    r->record(op, {x, weight, bias}, {y},
              {{"stride", std::vector<int64_t>{p.stride_h, p.stride_w}},
               {"pad", std::vector<int64_t>{p.pad_h, p.pad_w}},
               {"dilation", std::vector<int64_t>{p.dilation_h, p.dilation_w}},
               {"groups", p.groups}});
  return y;
}
}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  return traced_conv("conv2d", x, weight, bias, p, false);
}

Tensor conv2d_relu(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  return traced_conv("conv2d_relu", x, weight, bias, p, true);
}

}  // namespace eng
