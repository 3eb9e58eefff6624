// Reductions over the middle axis of a contiguous [outer, R, inner] array.
//
//   sum_dim:   y[o, i] = scale * sum_r x[o, r, i]          (sum: scale 1, mean: scale 1/R)
//              equals torch.sum(x, dim) (times scale); backward is a broadcast, done by
//              the front-end with expand().
//   max_dim:   y[o, i] = max_r x[o, r, i], idx[o, i] = the first r reaching it
//              (torch.max(x, dim) values/indices; NaN is not treated specially).
//   max_dim_backward: gx[o, r, i] = gy[o, i] if r == idx[o, i] else 0 (gx fully written).
// Sums accumulate in double, also for float tensors: adding many small terms to a large
// running total in float drops their low bits (a float sum of a 2x3069x4 focal-loss map was
// 6e-5 off; torch uses cascade summation for the same reason). The cost is nil here: the
// sums are memory-bound on both devices.
// T may be kern::bf16 (storage): values widen exactly, sums run in double, each sum is
// rounded once to bf16 (nearest even); max copies the chosen element unchanged.
#pragma once
#include "kernels/common.h"

namespace kern {

namespace cpu {
template <typename T>
void sum_dim(int64_t outer, int64_t R, int64_t inner, const T* x, T* y, double scale);
template <typename T>
void max_dim(int64_t outer, int64_t R, int64_t inner, const T* x, T* y, int64_t* idx);
template <typename T>
void max_dim_backward(int64_t outer, int64_t R, int64_t inner, const int64_t* idx, const T* gy, T* gx);
}  // namespace cpu

namespace cuda {
template <typename T>
void sum_dim(int64_t outer, int64_t R, int64_t inner, const T* x, T* y, double scale, Stream stream);
template <typename T>
void max_dim(int64_t outer, int64_t R, int64_t inner, const T* x, T* y, int64_t* idx, Stream stream);
template <typename T>
void max_dim_backward(int64_t outer, int64_t R, int64_t inner, const int64_t* idx, const T* gy, T* gx,
                      Stream stream);
}  // namespace cuda

}  // namespace kern
