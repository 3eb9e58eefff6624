// Grouped and depthwise convolution paths (groups > 1). Routing: engine/detail/conv2d_grouped.h.
#include "engine/detail/conv2d_grouped.h"

#include "engine/cuda_context.h"
#include "engine/detail/cudnn_conv.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "kernels/conv2d_depthwise.h"

namespace eng::detail {
namespace {

template <typename T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}
Tensor as_f32(const Tensor& t) { return t.defined() && t.dtype() == DType::bf16 ? t.to(DType::f32) : t; }
int compute_bytes(DType dt) { return dt == DType::f64 ? 8 : 4; }

// The CPU in T = float or double: depthwise by direct loops, other groups by the per-slice
// im2col reference.
void cpu_forward(const kern::Conv2dDims& d, const Tensor& X, const Tensor& Wt, const Tensor& B, Tensor& y) {
  if (kern::conv2d_is_depthwise(d)) {
    dispatch_float(X, "conv2d", [&](auto tag) {
      using T = decltype(tag);
      kern::cpu::depthwise_forward<T>(d, X.data<T>(), Wt.data<T>(), ptr_or_null<T>(B), y.data<T>());
    });
    return;
  }
  const int64_t ncol = kern::conv2d_grouped_col_size(d);
  Tensor col = empty({std::max<int64_t>(ncol, 1)}, TensorOptions(X.dtype()));
  dispatch_float(X, "conv2d", [&](auto tag) {
    using T = decltype(tag);
    kern::cpu::conv2d_grouped_forward<T>(d, X.data<T>(), Wt.data<T>(), ptr_or_null<T>(B), y.data<T>(), col.data<T>());
  });
}
void cpu_backward(const kern::Conv2dDims& d, const Tensor& x, const Tensor& w, const Tensor& g, Tensor& gx, Tensor& gw,
                  Tensor& gb) {
  if (kern::conv2d_is_depthwise(d)) {
    dispatch_float(g, "conv2d", [&](auto tag) {
      using T = decltype(tag);
      kern::cpu::depthwise_backward<T>(d, ptr_or_null<T>(x), ptr_or_null<T>(w), g.data<T>(), ptr_or_null<T>(gx),
                                       ptr_or_null<T>(gw), ptr_or_null<T>(gb));
    });
    return;
  }
  const int64_t ncol = kern::conv2d_grouped_col_size(d);
  const kern::Conv2dDims s = kern::conv2d_group_slice(d);
  Tensor col = empty({std::max<int64_t>(ncol, 1)}, TensorOptions(g.dtype()));
  Tensor tmp = empty({std::max<int64_t>(s.O * s.C * d.kh * d.kw, 1)}, TensorOptions(g.dtype()));
  dispatch_float(g, "conv2d", [&](auto tag) {
    using T = decltype(tag);
    kern::cpu::conv2d_grouped_backward<T>(d, ptr_or_null<T>(x), ptr_or_null<T>(w), g.data<T>(), ptr_or_null<T>(gx),
                                          ptr_or_null<T>(gw), ptr_or_null<T>(gb), col.data<T>(), tmp.data<T>());
  });
}

bool use_depthwise(const kern::Conv2dDims& d, const Tensor& t) {
#ifdef ENGINE_WITH_CUDA
  return t.is_cuda() && kern::cuda::depthwise_supported(d, compute_bytes(t.dtype()));
#else
  return false;  // a CPU-only build has no CUDA tensor (and no CUDA kernels to link)
#endif
}

}  // namespace

const char* grouped_conv_path(const kern::Conv2dDims& d, const Tensor& t) {
  if (!t.is_cuda()) return "cpu";
  return use_depthwise(d, t) ? "depthwise" : "cudnn";
}

void grouped_conv_forward(const kern::Conv2dDims& d, const Tensor& X, const Tensor& Wt, const Tensor& B, Tensor& y) {
  if (!X.is_cuda()) {
    if (X.dtype() == DType::bf16) {
      // Float maths on the bf16 values, rounded once to bf16 (the CPU twin of the CUDA paths).
      Tensor yf = new_empty(y.sizes(), as_f32(X));
      cpu_forward(d, as_f32(X), as_f32(Wt), as_f32(B), yf);
      y.copy_(yf);
    } else {
      cpu_forward(d, X, Wt, B, y);
    }
    return;
  }
  if (use_depthwise(d, X)) {
    dispatch_float_or_bf16(X, "conv2d", [&](auto tag) {
      using T = decltype(tag);
      ENGINE_IF_CUDA(kern::cuda::depthwise_forward<T>(d, X.data<T>(), Wt.data<T>(), ptr_or_null<T>(B), y.data<T>(),
                                                      cuda::stream()));
    });
    return;
  }
  ENGINE_CHECK(cuda::cudnn::supported(d, X.dtype()), "conv2d: grouped convolution (groups ", d.groups, ", input ",
               shape_str({d.N, d.C, d.H, d.W}), ", ", dtype_name(X.dtype()), ") is past cuDNN's int ranges");
  ENGINE_IF_CUDA(cuda::cudnn::conv_forward(d, X.dtype(), X.raw_data(), Wt.raw_data(),
                                           B.defined() ? B.raw_data() : nullptr, y.raw_data(), false));
}

void grouped_conv_backward(const kern::Conv2dDims& d, const Tensor& x, const Tensor& w, const Tensor& g, Tensor& gx,
                           Tensor& gw, Tensor& gb) {
  if (!g.is_cuda()) {
    if (g.dtype() == DType::bf16) {
      Tensor gxf = gx.defined() ? new_empty(gx.sizes(), as_f32(g)) : Tensor();
      Tensor gwf = gw.defined() ? new_empty(gw.sizes(), as_f32(g)) : Tensor();
      Tensor gbf = gb.defined() ? new_empty(gb.sizes(), as_f32(g)) : Tensor();
      cpu_backward(d, as_f32(x), as_f32(w), as_f32(g), gxf, gwf, gbf);
      if (gx.defined()) gx.copy_(gxf);
      if (gw.defined()) gw.copy_(gwf);
      if (gb.defined()) gb.copy_(gbf);
    } else {
      cpu_backward(d, x, w, g, gx, gw, gb);
    }
    return;
  }
  // The bias gradient: the engine's multi-block sum over (n, h, w), deterministic.
  if (gb.defined()) gb.copy_(sum(g, {0, 2, 3}));
  if (use_depthwise(d, g)) {
    Tensor partials;
    if (gw.defined()) {
      int64_t n = 1;
      ENGINE_IF_CUDA(n = std::max<int64_t>(kern::cuda::depthwise_weight_partials(d), 1));
      partials = empty({n}, TensorOptions(DType::f64).device(g.device()));
    }
    dispatch_float_or_bf16(g, "conv2d", [&](auto tag) {
      using T = decltype(tag);
      ENGINE_IF_CUDA({
        if (gx.defined()) kern::cuda::depthwise_backward_data<T>(d, w.data<T>(), g.data<T>(), gx.data<T>(), cuda::stream());
        if (gw.defined())
          kern::cuda::depthwise_backward_weight<T>(d, x.data<T>(), g.data<T>(), gw.data<T>(), partials.data<double>(),
                                                   cuda::stream());
      });
    });
    return;
  }
  ENGINE_CHECK(cuda::cudnn::supported(d, g.dtype()), "conv2d: grouped convolution (groups ", d.groups, ", input ",
               shape_str({d.N, d.C, d.H, d.W}), ", ", dtype_name(g.dtype()), ") is past cuDNN's int ranges");
  ENGINE_IF_CUDA({
    if (gx.defined()) cuda::cudnn::conv_backward_data(d, g.dtype(), w.raw_data(), g.raw_data(), gx.raw_data());
    if (gw.defined()) cuda::cudnn::conv_backward_filter(d, g.dtype(), x.raw_data(), g.raw_data(), gw.raw_data());
  });
}

}  // namespace eng::detail
