// CPU conv2d in bands of output rows (maths and layout: kernels/conv2d_banded.h).
#include "kernels/conv2d_banded.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/gemm.h"

namespace kern::cpu {
namespace {

// Along a row, output column ow reads input column v = ow * stride_w + off (off = j dil_w -
// pad_w for tap j); the ow with v inside [0, W) are [lo, hi) (as in conv2d.cpp).
int64_t first_inside(const Conv2dDims& d, int64_t off) {
  if (off >= 0) return 0;
  return std::min(d.Wo, (-off + d.stride_w - 1) / d.stride_w);
}
int64_t end_inside(const Conv2dDims& d, int64_t off) {
  const int64_t last = d.W - 1 - off;
  if (last < 0) return first_inside(d, off);
  return std::max(first_inside(d, off), std::min(d.Wo, last / d.stride_w + 1));
}

void check_band(const Conv2dDims& d, int64_t band_rows) {
  if (d.groups != 1)
    throw std::invalid_argument("conv2d_banded: groups must be 1 (got " + std::to_string(d.groups) + ")");
  if (band_rows < 1)
    throw std::invalid_argument("conv2d_banded: band_rows must be >= 1 (got " + std::to_string(band_rows) + ")");
}

}  // namespace

template <typename T>
void im2col_band(const Conv2dDims& d, const T* x_img, int64_t oh0, int64_t rows, T* col) {
  const int64_t cols = rows * d.Wo;
  const int64_t K = conv2d_col_rows(d);
#pragma omp parallel for schedule(static) if (K * cols > (1 << 16))
  for (int64_t r = 0; r < K; ++r) {
    const int64_t c = r / (d.kh * d.kw), i = (r / d.kw) % d.kh, j = r % d.kw;
    const T* xc = x_img + c * d.H * d.W;
    const int64_t off = j * d.dil_w - d.pad_w, lo = first_inside(d, off), hi = end_inside(d, off);
    T* row = col + r * cols;
    for (int64_t b = 0; b < rows; ++b) {
      T* out = row + b * d.Wo;
      const int64_t h = (oh0 + b) * d.stride_h - d.pad_h + i * d.dil_h;
      if (h < 0 || h >= d.H) {
        std::fill(out, out + d.Wo, T(0));
        continue;
      }
      const T* xr = xc + h * d.W;
      std::fill(out, out + lo, T(0));
      if (d.stride_w == 1) {
        std::copy(xr + lo + off, xr + hi + off, out + lo);
      } else {
        for (int64_t ow = lo; ow < hi; ++ow) out[ow] = xr[ow * d.stride_w + off];
      }
      std::fill(out + hi, out + d.Wo, T(0));
    }
  }
}

template <typename T>
void col2im_band_add(const Conv2dDims& d, const T* col, int64_t oh0, int64_t rows, T* gx_img) {
  const int64_t cols = rows * d.Wo;
  // Parallel over channels: a channel's col rows touch only that channel's pixels.
#pragma omp parallel for schedule(static) if (conv2d_col_rows(d) * cols > (1 << 16))
  for (int64_t c = 0; c < d.C; ++c) {
    T* gc = gx_img + c * d.H * d.W;
    for (int64_t i = 0; i < d.kh; ++i) {
      for (int64_t j = 0; j < d.kw; ++j) {
        const T* row = col + ((c * d.kh + i) * d.kw + j) * cols;
        const int64_t off = j * d.dil_w - d.pad_w, lo = first_inside(d, off), hi = end_inside(d, off);
        for (int64_t b = 0; b < rows; ++b) {
          const int64_t h = (oh0 + b) * d.stride_h - d.pad_h + i * d.dil_h;
          if (h < 0 || h >= d.H) continue;  // came from the padding
          T* gr = gc + h * d.W;
          const T* in = row + b * d.Wo;
          for (int64_t ow = lo; ow < hi; ++ow) gr[ow * d.stride_w + off] += in[ow];
        }
      }
    }
  }
}

namespace {
// ReLU on rows [0, O) x columns [c0, c0 + n) of y_n [O, HWo], as the separate ReLU
// (kernels/elementwise_math.h): y > 0 ? y : 0 (NaN and -0 become +0).
template <typename T>
void relu_columns(T* yn, int64_t O, int64_t HWo, int64_t c0, int64_t n) {
#pragma omp parallel for schedule(static) if (O * n > (1 << 16))
  for (int64_t o = 0; o < O; ++o) {
    T* r = yn + o * HWo + c0;
    for (int64_t k = 0; k < n; ++k) r[k] = r[k] > T(0) ? r[k] : T(0);
  }
}
}  // namespace

template <typename T>
void conv2d_forward_banded(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y, T* col,
                           int64_t band_rows, bool relu) {
  check_band(d, band_rows);
  const int64_t K = conv2d_col_rows(d), HWo = d.Ho * d.Wo;
  const bool pointwise = conv2d_is_pointwise(d);
  for (int64_t n = 0; n < d.N; ++n) {
    const T* xn = x + n * d.C * d.H * d.W;
    T* yn = y + n * d.O * HWo;
    // Bias: each output row starts at bias[o] and the GEMMs accumulate onto it.
    if (bias)
      for (int64_t o = 0; o < d.O; ++o) std::fill(yn + o * HWo, yn + (o + 1) * HWo, bias[o]);
    const T beta = bias ? T(1) : T(0);
    if (pointwise) {  // a plain GEMM on x_n [C, H*W]
      gemm<T>(false, false, d.O, HWo, K, T(1), w, K, xn, HWo, beta, yn, HWo);
      if (relu) relu_columns(yn, d.O, HWo, 0, HWo);
      continue;
    }
    for (int64_t oh0 = 0; oh0 < d.Ho; oh0 += band_rows) {
      const int64_t rows = std::min(band_rows, d.Ho - oh0), cols = rows * d.Wo;
      im2col_band(d, xn, oh0, rows, col);
      gemm<T>(false, false, d.O, cols, K, T(1), w, K, col, cols, beta, yn + oh0 * d.Wo, HWo);
      if (relu) relu_columns(yn, d.O, HWo, oh0 * d.Wo, cols);
    }
  }
}

template <typename T>
void conv2d_backward_banded(const Conv2dDims& d, const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb, T* col,
                            int64_t band_rows) {
  check_band(d, band_rows);
  const int64_t K = conv2d_col_rows(d), HWo = d.Ho * d.Wo;
  const bool pointwise = conv2d_is_pointwise(d);
  if (gb) {  // as the reference: per channel, images in order, pixels in order
    for (int64_t o = 0; o < d.O; ++o) {
      T s = 0;
      for (int64_t n = 0; n < d.N; ++n) {
        const T* g = gy + (n * d.O + o) * HWo;
        for (int64_t k = 0; k < HWo; ++k) s += g[k];
      }
      gb[o] = s;
    }
  }
  if (gw && (d.N == 0 || d.Ho == 0)) std::fill(gw, gw + d.O * K, T(0));
  if (!gw && !gx) return;

  for (int64_t n = 0; n < d.N; ++n) {
    const T* xn = x + n * d.C * d.H * d.W;
    const T* gyn = gy + n * d.O * HWo;
    T* gxn = gx ? gx + n * d.C * d.H * d.W : nullptr;
    if (pointwise) {  // plain GEMMs: gw (+)= gy_n x_n^T, gx_n = w^T gy_n
      if (gw) gemm<T>(false, true, d.O, K, HWo, T(1), gyn, HWo, xn, HWo, n == 0 ? T(0) : T(1), gw, K);
      if (gx) gemm<T>(true, false, K, HWo, d.O, T(1), w, K, gyn, HWo, T(0), gxn, HWo);
      continue;
    }
    if (gxn) std::fill(gxn, gxn + d.C * d.H * d.W, T(0));
    for (int64_t oh0 = 0; oh0 < d.Ho; oh0 += band_rows) {
      const int64_t rows = std::min(band_rows, d.Ho - oh0), cols = rows * d.Wo;
      const T* gband = gyn + oh0 * d.Wo;  // [O, cols] with leading dim HWo
      if (gw) {
        im2col_band(d, xn, oh0, rows, col);
        const bool first = n == 0 && oh0 == 0;
        gemm<T>(false, true, d.O, K, cols, T(1), gband, HWo, col, cols, first ? T(0) : T(1), gw, K);
      }
      if (gxn) {
        gemm<T>(true, false, K, cols, d.O, T(1), w, K, gband, HWo, T(0), col, cols);
        col2im_band_add(d, col, oh0, rows, gxn);
      }
    }
  }
}

#define KERN_INSTANTIATE(T)                                                                                   \
  template void im2col_band<T>(const Conv2dDims&, const T*, int64_t, int64_t, T*);                            \
  template void col2im_band_add<T>(const Conv2dDims&, const T*, int64_t, int64_t, T*);                        \
  template void conv2d_forward_banded<T>(const Conv2dDims&, const T*, const T*, const T*, T*, T*, int64_t, bool); \
  template void conv2d_backward_banded<T>(const Conv2dDims&, const T*, const T*, const T*, T*, T*, T*, T*, \
                                          int64_t);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
