// Nearest-neighbour 2-D upsampling (or downsampling), equal to
// torch.nn.functional.interpolate(x, size=(out_h, out_w), mode='nearest') (the legacy
// 'nearest' rule, not 'nearest-exact').
//
// Layout: x [N, C, in_h, in_w] and y [N, C, out_h, out_w] contiguous; the kernels see the
// N*C planes as one flat batch ("planes").
//
// Source index along one axis, computed in float exactly as PyTorch does:
//   scale = float(in) / float(out)
//   src(dst) = min(floor(float(dst) * scale), in - 1)
// (e.g. 5 -> 8: src = 0 0 1 1 2 3 3 4;  8 -> 5: src = 0 1 3 4 6;  2x: src = dst / 2).
//
// Forward:  y[p, oh, ow] = x[p, src_h(oh), src_w(ow)]
// Backward: gx[p, ih, iw] = sum of gy[p, oh, ow] over all (oh, ow) with src_h(oh) == ih
//           and src_w(ow) == iw.
//   CPU: zero gx, scatter-add every output into its source.
//   CUDA: one thread per INPUT pixel; src() is non-decreasing, so the outputs reading
//         input i form the contiguous range [first_dst(i), first_dst(i + 1)), where
//         first_dst(i) is the first dst with src(dst) >= i (no atomics, deterministic).
// T is float, double or kern::bf16 (storage: forward copies, backward sums in float and
// rounds once).
#pragma once
#include <cmath>

#include "kernels/common.h"

#ifdef __CUDACC__
#define KERN_UPSAMPLE_HD __host__ __device__
#else
#define KERN_UPSAMPLE_HD
#endif

namespace kern {

struct Upsample2dDims {
  int64_t planes = 0;  // N * C
  int64_t in_h = 0, in_w = 0;
  int64_t out_h = 0, out_w = 0;
};

// PyTorch's legacy nearest source index (see above); `scale` is float(in) / float(out).
KERN_UPSAMPLE_HD inline int64_t nearest_src_index(int64_t dst, float scale, int64_t in) {
  const int64_t s = static_cast<int64_t>(floorf(static_cast<float>(dst) * scale));
  return s < in - 1 ? s : in - 1;
}

// The first dst in [0, out] whose source index is >= i (out when there is none).
KERN_UPSAMPLE_HD inline int64_t nearest_first_dst(int64_t i, float scale, int64_t in, int64_t out) {
  int64_t d = i * out / in;  // close to the exact answer; the loops correct float rounding
  if (d > out) d = out;
  while (d > 0 && nearest_src_index(d - 1, scale, in) >= i) --d;
  while (d < out && nearest_src_index(d, scale, in) < i) ++d;
  return d;
}

namespace cpu {
template <typename T>
void upsample_nearest2d_forward(const Upsample2dDims& d, const T* x, T* y);
template <typename T>
void upsample_nearest2d_backward(const Upsample2dDims& d, const T* gy, T* gx);
}  // namespace cpu

namespace cuda {
template <typename T>
void upsample_nearest2d_forward(const Upsample2dDims& d, const T* x, T* y, Stream stream);
template <typename T>
void upsample_nearest2d_backward(const Upsample2dDims& d, const T* gy, T* gx, Stream stream);
}  // namespace cuda

}  // namespace kern
