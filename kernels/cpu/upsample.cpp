#include "kernels/upsample.h"

#include <vector>

#include "kernels/bf16.h"

// T is the storage type (float, double, bf16): forward copies elements unchanged; backward
// sums in compute_t<T> (float for bf16) in output order and rounds each sum once.

namespace kern::cpu {

namespace {
// Source index of every output row (or column) along one axis.
std::vector<int64_t> source_indices(int64_t in, int64_t out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  std::vector<int64_t> src(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) src[o] = nearest_src_index(o, scale, in);
  return src;
}
}  // namespace

template <typename T>
void upsample_nearest2d_forward(const Upsample2dDims& d, const T* x, T* y) {
  const std::vector<int64_t> sh = source_indices(d.in_h, d.out_h), sw = source_indices(d.in_w, d.out_w);
  const int64_t in_plane = d.in_h * d.in_w, out_plane = d.out_h * d.out_w;
#pragma omp parallel for if (d.planes * out_plane > (1 << 16))
  for (int64_t p = 0; p < d.planes; ++p) {
    const T* xp = x + p * in_plane;
    T* yp = y + p * out_plane;
    for (int64_t oh = 0; oh < d.out_h; ++oh)
      for (int64_t ow = 0; ow < d.out_w; ++ow) yp[oh * d.out_w + ow] = xp[sh[oh] * d.in_w + sw[ow]];
  }
}

template <typename T>
void upsample_nearest2d_backward(const Upsample2dDims& d, const T* gy, T* gx) {
  const std::vector<int64_t> sh = source_indices(d.in_h, d.out_h), sw = source_indices(d.in_w, d.out_w);
  const int64_t in_plane = d.in_h * d.in_w, out_plane = d.out_h * d.out_w;
#pragma omp parallel for if (d.planes * out_plane > (1 << 16))
  for (int64_t p = 0; p < d.planes; ++p) {  // planes are independent: safe to parallelise
    T* gxp = gx + p * in_plane;
    const T* gyp = gy + p * out_plane;
    std::vector<compute_t<T>> acc(static_cast<size_t>(in_plane), compute_t<T>(0));
    for (int64_t oh = 0; oh < d.out_h; ++oh)
      for (int64_t ow = 0; ow < d.out_w; ++ow) acc[sh[oh] * d.in_w + sw[ow]] += to_compute(gyp[oh * d.out_w + ow]);
    for (int64_t i = 0; i < in_plane; ++i) gxp[i] = from_compute<T>(acc[i]);
  }
}

#define KERN_INSTANTIATE(T)                                                                  \
  template void upsample_nearest2d_forward<T>(const Upsample2dDims&, const T*, T*);          \
  template void upsample_nearest2d_backward<T>(const Upsample2dDims&, const T*, T*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
