// 2-D max pooling over NCHW, equal to torch.nn.functional.max_pool2d(x, kernel_size,
// stride, padding, dilation=1, ceil_mode, return_indices=True).
//
// Layout: x [N, C, H, W] contiguous; y and idx [N, C, OH, OW] contiguous (idx of type J below). The kernels see
// the N*C planes as one flat batch ("planes"). The output size (OH, OW) is chosen by the
// front-end (eng::pool_output_size, PyTorch's rule) and passed in.
//
// Forward, for each plane and output (oh, ow), the window in input coordinates is
//   rows h in [oh*sh - ph, oh*sh - ph + kh),  cols w in [ow*sw - pw, ow*sw - pw + kw),
// clipped to the input (padding counts as -inf, so it never wins):
//   y[oh, ow]   = max over the window of x[h, w]
//   idx[oh, ow] = h*W + w of the FIRST maximum in row-major window order (index inside the
//                 input plane, like torch's return_indices). A NaN wins (the last one, as torch).
//                 idx may be null (no backward will run): then only y is written.
// The front-end guarantees every window holds at least one input pixel (pad <= kernel/2
// and the ceil-mode rule that the last window starts inside the input or left padding).
//
// Backward: gx[plane, i] = sum of gy[plane, o] over the outputs o with idx[plane, o] == i
// (a pixel that is the maximum of several overlapping windows collects all of them).
//   CPU: zero gx, then scatter-add gy into gx[idx] plane by plane.
//   CUDA: one thread per INPUT pixel gathers from the output windows that cover it (no
//         atomics, deterministic). Windows covering row h are oh in
//         [ceil((h + ph - kh + 1) / sh), floor((h + ph) / sh)] clipped to [0, OH).
//
// T is float, double or kern::bf16 (storage only: compared and summed in float; forward
// copies the chosen element unchanged, backward rounds each sum once to nearest even).
#pragma once
#include <cstdint>

#include "kernels/common.h"
#include "kernels/index32.h"

namespace kern {

struct Pool2dDims {
  int64_t planes = 0;          // N * C
  int64_t in_h = 0, in_w = 0;  // H, W
  int64_t out_h = 0, out_w = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
};

// The argmax type J: int32_t when every index inside an input plane fits (in_h * in_w <=
// INT32_MAX, i.e. always in practice), else int64_t; half the bytes of torch's int64 indices.
// A kern::ForceIndex64 scope (kernels/index32.h) picks int64_t so tests run that path too.
inline bool pool_argmax_int32(int64_t in_h, int64_t in_w) {
  return force_index64_count().load() == 0 && in_h * in_w <= INT32_MAX;
}

namespace cpu {
template <typename T, typename J>
void max_pool2d_forward(const Pool2dDims& d, const T* x, T* y, J* idx);
template <typename T, typename J>
void max_pool2d_backward(const Pool2dDims& d, const J* idx, const T* gy, T* gx);
// The reference loops (variant 0) the ones above are checked against: the ones above take
// a vectorised path, compiled per ISA level (kernels/cpu_isa.h), for 2x2 stride-2 windows
// and write non-overlapping windows' gradients directly; same results bit for bit.
namespace ref {
template <typename T, typename J>
void max_pool2d_forward(const Pool2dDims& d, const T* x, T* y, J* idx);
template <typename T, typename J>
void max_pool2d_backward(const Pool2dDims& d, const J* idx, const T* gy, T* gx);
}  // namespace ref
}  // namespace cpu

// The CUDA kernels also do their index maths in 32 bits when index32_fits (kernels/index32.h).
namespace cuda {
template <typename T, typename J>
void max_pool2d_forward(const Pool2dDims& d, const T* x, T* y, J* idx, Stream stream);
template <typename T, typename J>
void max_pool2d_backward(const Pool2dDims& d, const J* idx, const T* gy, T* gx, Stream stream);
}  // namespace cuda

}  // namespace kern
