// Softmax and log-softmax over the middle axis of a contiguous [outer, C, inner] array.
//
// The front-end maps softmax(x, dim) on any shape to this layout: outer = product of the
// sizes before `dim`, C = x.size(dim), inner = product of the sizes after `dim`. Element
// (o, c, i) lives at x[(o * C + c) * inner + i]; one "row" is the C values of one (o, i).
//
// Forward, per row (stable: the row maximum m is subtracted before exp, so logits like
// 1000 give no inf/NaN):
//   m       = max_c x[c]
//   s       = sum_c exp(x[c] - m)
//   softmax:      y[c] = exp(x[c] - m) / s                 == torch.softmax(x, dim)
//   log_softmax:  y[c] = x[c] - m - log(s)                 == torch.log_softmax(x, dim)
//
// Backward, per row, from the saved output y and the output gradient gy:
//   softmax:      gx[c] = y[c] * (gy[c] - sum_k gy[k] y[k])
//   log_softmax:  gx[c] = gy[c] - exp(y[c]) * sum_k gy[k]   (exp(y) is the softmax)
//
// Accumulation is in T. All arrays are contiguous, outer * C * inner elements; gx is fully
// written. T may be kern::bf16 (storage): loads widen to float, the maths and accumulation
// run in float, each output is rounded to nearest even; backward reads the saved bf16 y.
#pragma once
#include "kernels/common.h"

namespace kern {

struct SoftmaxDims {
  int64_t outer = 1;  // product of the sizes before the softmax dim
  int64_t C = 1;      // size of the softmax dim
  int64_t inner = 1;  // product of the sizes after the softmax dim
};

namespace cpu {
template <typename T>
void softmax_forward(const SoftmaxDims& d, const T* x, T* y);
template <typename T>
void softmax_backward(const SoftmaxDims& d, const T* y, const T* gy, T* gx);
template <typename T>
void log_softmax_forward(const SoftmaxDims& d, const T* x, T* y);
template <typename T>
void log_softmax_backward(const SoftmaxDims& d, const T* y, const T* gy, T* gx);
}  // namespace cpu

// CUDA: one warp per row when inner == 1 (rows are contiguous, lanes stride over C and
// combine with warp shuffles); one thread per (o, i) row when inner > 1 (neighbouring
// threads read neighbouring i, so the loads over c are coalesced).
namespace cuda {
template <typename T>
void softmax_forward(const SoftmaxDims& d, const T* x, T* y, Stream stream);
template <typename T>
void softmax_backward(const SoftmaxDims& d, const T* y, const T* gy, T* gx, Stream stream);
template <typename T>
void log_softmax_forward(const SoftmaxDims& d, const T* x, T* y, Stream stream);
template <typename T>
void log_softmax_backward(const SoftmaxDims& d, const T* y, const T* gy, T* gx, Stream stream);
}  // namespace cuda

}  // namespace kern
