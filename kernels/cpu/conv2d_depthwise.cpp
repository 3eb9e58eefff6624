// Depthwise convolution on the CPU by direct loops (groups == C, O = M*C): the fast CPU path
// beside the per-slice im2col reference (kernels/cpu/conv2d_grouped.cpp), validated against
// it in tests/ops/test_conv2d_grouped.cpp. Maths: kernels/conv2d_depthwise.h.
//
// Every output plane / input-gradient plane / weight row is computed by one thread in a fixed
// order (OpenMP splits whole planes), so results do not depend on the thread count:
//   forward        y row (n, o, oh) = bias, then + w[o, i, j] * x row, tap (i, j) after tap
//   backward data  gx plane (n, c) += w * gy, for m, i, j, oh in that order (a scatter within
//                  the plane)
//   backward weight gw[o, i, j] = sum over n, oh, ow in that order, accumulated in double
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/conv2d_depthwise.h"

namespace kern::cpu {
namespace {

// Output columns ow whose input column ow*sw + off lies inside [0, W).
int64_t col_lo(const Conv2dDims& d, int64_t off) {
  if (off >= 0) return 0;
  return std::min(d.Wo, (-off + d.stride_w - 1) / d.stride_w);
}
int64_t col_hi(const Conv2dDims& d, int64_t off) {
  const int64_t last = d.W - 1 - off;
  if (last < 0) return col_lo(d, off);
  return std::max(col_lo(d, off), std::min(d.Wo, last / d.stride_w + 1));
}

void check(const Conv2dDims& d, const char* op) {
  if (!conv2d_is_depthwise(d))
    throw std::runtime_error(std::string(op) + ": not depthwise (C " + std::to_string(d.C) + ", O " +
                             std::to_string(d.O) + ", groups " + std::to_string(d.groups) + ")");
}

}  // namespace

template <typename T>
void depthwise_forward(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y) {
  check(d, "depthwise_forward");
  const int64_t M = d.O / d.C, HW = d.H * d.W, HWo = d.Ho * d.Wo, taps = d.kh * d.kw, planes = d.N * d.O;
#pragma omp parallel for if (planes * HWo * taps > (1 << 16))
  for (int64_t pl = 0; pl < planes; ++pl) {
    const int64_t n = pl / d.O, o = pl % d.O, c = o / M;
    const T* xp = x + (n * d.C + c) * HW;
    const T* wo = w + o * taps;
    T* yp = y + pl * HWo;
    std::fill(yp, yp + HWo, bias ? bias[o] : T(0));
    for (int64_t oh = 0; oh < d.Ho; ++oh) {
      T* yr = yp + oh * d.Wo;
      for (int64_t i = 0; i < d.kh; ++i) {
        const int64_t h = oh * d.stride_h - d.pad_h + i * d.dil_h;
        if (h < 0 || h >= d.H) continue;
        const T* xr = xp + h * d.W;
        for (int64_t j = 0; j < d.kw; ++j) {
          const int64_t off = j * d.dil_w - d.pad_w, lo = col_lo(d, off), hi = col_hi(d, off);
          const T wv = wo[i * d.kw + j];
          for (int64_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xr[ow * d.stride_w + off];
        }
      }
    }
  }
}

template <typename T>
void depthwise_backward(const Conv2dDims& d, const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb) {
  check(d, "depthwise_backward");
  const int64_t M = d.O / d.C, HW = d.H * d.W, HWo = d.Ho * d.Wo, taps = d.kh * d.kw;
  if (gb) {
#pragma omp parallel for if (d.N * d.O * HWo > (1 << 16))
    for (int64_t o = 0; o < d.O; ++o) {
      T acc = 0;
      for (int64_t n = 0; n < d.N; ++n) {
        const T* g = gy + (n * d.O + o) * HWo;
        for (int64_t k = 0; k < HWo; ++k) acc += g[k];
      }
      gb[o] = acc;
    }
  }
  if (gx) {
    const int64_t planes = d.N * d.C;
#pragma omp parallel for if (planes * HWo * taps * M > (1 << 16))
    for (int64_t pl = 0; pl < planes; ++pl) {
      const int64_t n = pl / d.C, c = pl % d.C;
      T* gp = gx + pl * HW;
      std::fill(gp, gp + HW, T(0));
      for (int64_t m = 0; m < M; ++m) {
        const int64_t o = c * M + m;
        const T* g = gy + (n * d.O + o) * HWo;
        const T* wo = w + o * taps;
        for (int64_t i = 0; i < d.kh; ++i)
          for (int64_t j = 0; j < d.kw; ++j) {
            const T wv = wo[i * d.kw + j];
            const int64_t off = j * d.dil_w - d.pad_w, lo = col_lo(d, off), hi = col_hi(d, off);
            for (int64_t oh = 0; oh < d.Ho; ++oh) {
              const int64_t h = oh * d.stride_h - d.pad_h + i * d.dil_h;
              if (h < 0 || h >= d.H) continue;
              T* gr = gp + h * d.W;
              const T* gyr = g + oh * d.Wo;
              for (int64_t ow = lo; ow < hi; ++ow) gr[ow * d.stride_w + off] += wv * gyr[ow];
            }
          }
      }
    }
  }
  if (gw) {
#pragma omp parallel for if (d.N * d.O * HWo * taps > (1 << 16))
    for (int64_t o = 0; o < d.O; ++o) {
      const int64_t c = o / M;
      for (int64_t i = 0; i < d.kh; ++i)
        for (int64_t j = 0; j < d.kw; ++j) {
          const int64_t off = j * d.dil_w - d.pad_w, lo = col_lo(d, off), hi = col_hi(d, off);
          double acc = 0;
          for (int64_t n = 0; n < d.N; ++n) {
            const T* xp = x + (n * d.C + c) * HW;
            const T* g = gy + (n * d.O + o) * HWo;
            for (int64_t oh = 0; oh < d.Ho; ++oh) {
              const int64_t h = oh * d.stride_h - d.pad_h + i * d.dil_h;
              if (h < 0 || h >= d.H) continue;
              const T* xr = xp + h * d.W;
              const T* gyr = g + oh * d.Wo;
              for (int64_t ow = lo; ow < hi; ++ow)
                acc += static_cast<double>(gyr[ow]) * static_cast<double>(xr[ow * d.stride_w + off]);
            }
          }
          gw[o * taps + i * d.kw + j] = static_cast<T>(acc);
        }
    }
  }
}

#define KERN_INSTANTIATE(T)                                                                 \
  template void depthwise_forward<T>(const Conv2dDims&, const T*, const T*, const T*, T*); \
  template void depthwise_backward<T>(const Conv2dDims&, const T*, const T*, const T*, T*, T*, T*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
