// The grouped-convolution paths of conv2d / conv2d_relu (groups > 1), called by
// engine/src/ops/conv2d.cpp; maths in kernels/conv2d.h, the CUDA depthwise kernel in
// kernels/conv2d_depthwise.h. Routing:
//   CPU, depthwise                          kern::cpu::depthwise_* (direct loops)
//   CPU, other groups                       kern::cpu::conv2d_grouped_* (per-slice im2col + GEMM);
//                                           bf16 on the CPU: f32 on the bf16 values, rounded once
//   CUDA, depthwise (groups == C, O = M*C)  kern::cuda::depthwise_* (f32, f64, bf16), when the
//                                           tiles fit (kern::cuda::depthwise_supported)
//   CUDA, other groups                      cuDNN with the group count set (engine/detail/cudnn_conv.h)
// Bias gradients: the engine's sum over (n, h, w) (deterministic, double accumulation).
#pragma once
#include "engine/tensor.h"
#include "kernels/conv2d.h"

namespace eng::detail {

// Which grouped path runs on `t`'s device and dtype ("cpu", "depthwise", "cudnn").
const char* grouped_conv_path(const kern::Conv2dDims& d, const Tensor& t);
// y = conv(X, Wt) + B; every tensor contiguous, y allocated [N, O, Ho, Wo].
void grouped_conv_forward(const kern::Conv2dDims& d, const Tensor& X, const Tensor& Wt, const Tensor& B, Tensor& y);
// The gradients whose tensors are defined (allocated by the caller, overwritten); x is needed
// for gw, w for gx.
void grouped_conv_backward(const kern::Conv2dDims& d, const Tensor& x, const Tensor& w, const Tensor& g, Tensor& gx,
                           Tensor& gw, Tensor& gb);

}  // namespace eng::detail
