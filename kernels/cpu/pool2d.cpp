#include "kernels/pool2d.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/bf16.h"

// T is the storage type (float, double, bf16). Forward compares values widened to the
// compute type (exact for bf16) and stores the chosen element unchanged; backward sums in
// the compute type, in output order, and rounds once on the store (bf16: to nearest even).

namespace kern::cpu {

template <typename T, typename J>
void max_pool2d_forward(const Pool2dDims& d, const T* x, T* y, J* idx) {
  const int64_t in_plane = d.in_h * d.in_w, out_plane = d.out_h * d.out_w;
#pragma omp parallel for if (d.planes * out_plane * d.kernel_h * d.kernel_w > (1 << 16))
  for (int64_t p = 0; p < d.planes; ++p) {
    const T* xp = x + p * in_plane;
    for (int64_t oh = 0; oh < d.out_h; ++oh) {
      // Window rows clipped to the input.
      const int64_t h0 = std::max<int64_t>(oh * d.stride_h - d.pad_h, 0);
      const int64_t h1 = std::min<int64_t>(oh * d.stride_h - d.pad_h + d.kernel_h, d.in_h);
      for (int64_t ow = 0; ow < d.out_w; ++ow) {
        const int64_t w0 = std::max<int64_t>(ow * d.stride_w - d.pad_w, 0);
        const int64_t w1 = std::min<int64_t>(ow * d.stride_w - d.pad_w + d.kernel_w, d.in_w);
        int64_t best_i = h0 * d.in_w + w0;
        compute_t<T> best = to_compute(xp[best_i]);
        for (int64_t h = h0; h < h1; ++h) {
          for (int64_t w = w0; w < w1; ++w) {
            const compute_t<T> v = to_compute(xp[h * d.in_w + w]);
            if (v > best || std::isnan(v)) {  // torch's test: a NaN propagates
              best = v;
              best_i = h * d.in_w + w;
            }
          }
        }
        y[p * out_plane + oh * d.out_w + ow] = xp[best_i];
        if (idx) idx[p * out_plane + oh * d.out_w + ow] = static_cast<J>(best_i);
      }
    }
  }
}

template <typename T, typename J>
void max_pool2d_backward(const Pool2dDims& d, const J* idx, const T* gy, T* gx) {
  const int64_t in_plane = d.in_h * d.in_w, out_plane = d.out_h * d.out_w;
#pragma omp parallel for if (d.planes * in_plane > (1 << 16))
  for (int64_t p = 0; p < d.planes; ++p) {  // planes are independent: safe to parallelise
    std::vector<compute_t<T>> acc(static_cast<size_t>(in_plane), compute_t<T>(0));
    for (int64_t o = 0; o < out_plane; ++o) acc[idx[p * out_plane + o]] += to_compute(gy[p * out_plane + o]);
    T* gxp = gx + p * in_plane;
    for (int64_t i = 0; i < in_plane; ++i) gxp[i] = from_compute<T>(acc[i]);
  }
}

#define KERN_INSTANTIATE(T, J)                                                              \
  template void max_pool2d_forward<T, J>(const Pool2dDims&, const T*, T*, J*);             \
  template void max_pool2d_backward<T, J>(const Pool2dDims&, const J*, const T*, T*);
KERN_INSTANTIATE(float, int32_t)
KERN_INSTANTIATE(double, int32_t)
KERN_INSTANTIATE(bf16, int32_t)
KERN_INSTANTIATE(float, int64_t)
KERN_INSTANTIATE(double, int64_t)
KERN_INSTANTIATE(bf16, int64_t)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
