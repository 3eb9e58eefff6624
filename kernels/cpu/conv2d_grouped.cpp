// Grouped convolution on the CPU: G plain convolutions on channel slices, image by image,
// through the im2col + GEMM reference (kernels/cpu/conv2d.cpp). Maths: kernels/conv2d.h.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/conv2d.h"

namespace kern::cpu {
namespace {

void check_groups(const Conv2dDims& d, const char* op) {
  if (!conv2d_group_dims_ok(d))
    throw std::runtime_error(std::string(op) + ": groups " + std::to_string(d.groups) + " must divide the input (" +
                             std::to_string(d.C) + ") and output (" + std::to_string(d.O) + ") channels");
}

}  // namespace

template <typename T>
void conv2d_grouped_forward(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y, T* col) {
  check_groups(d, "conv2d_grouped_forward");
  const Conv2dDims s = conv2d_group_slice(d);
  const int64_t HW = d.H * d.W, HWo = d.Ho * d.Wo, wg = s.O * s.C * d.kh * d.kw;
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t g = 0; g < d.groups; ++g)
      conv2d_forward<T>(s, x + (n * d.C + g * s.C) * HW, w + g * wg, bias ? bias + g * s.O : nullptr,
                        y + (n * d.O + g * s.O) * HWo, col);
}

template <typename T>
void conv2d_grouped_backward(const Conv2dDims& d, const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb, T* col,
                             T* gw_tmp) {
  check_groups(d, "conv2d_grouped_backward");
  const Conv2dDims s = conv2d_group_slice(d);
  const int64_t HW = d.H * d.W, HWo = d.Ho * d.Wo, wg = s.O * s.C * d.kh * d.kw;
  if (gb) {
    for (int64_t o = 0; o < d.O; ++o) {
      T acc = 0;
      for (int64_t n = 0; n < d.N; ++n) {
        const T* g = gy + (n * d.O + o) * HWo;
        for (int64_t k = 0; k < HWo; ++k) acc += g[k];
      }
      gb[o] = acc;
    }
  }
  if (gw) std::fill(gw, gw + d.O * s.C * d.kh * d.kw, T(0));
  if (!gw && !gx) return;
  for (int64_t n = 0; n < d.N; ++n) {
    for (int64_t g = 0; g < d.groups; ++g) {
      const T* gys = gy + (n * d.O + g * s.O) * HWo;
      // The slice's weight gradient for this one image goes to gw_tmp, then is added to gw's
      // slice: images are summed in order n = 0, 1, ...
      conv2d_backward<T>(s, gw ? x + (n * d.C + g * s.C) * HW : nullptr, gx ? w + g * wg : nullptr, gys,
                         gx ? gx + (n * d.C + g * s.C) * HW : nullptr, gw ? gw_tmp : nullptr, nullptr, col);
      if (gw) {
        T* dst = gw + g * wg;
        for (int64_t k = 0; k < wg; ++k) dst[k] += gw_tmp[k];
      }
    }
  }
}

#define KERN_INSTANTIATE(T)                                                                                   \
  template void conv2d_grouped_forward<T>(const Conv2dDims&, const T*, const T*, const T*, T*, T*);          \
  template void conv2d_grouped_backward<T>(const Conv2dDims&, const T*, const T*, const T*, T*, T*, T*, T*, \
                                           T*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
