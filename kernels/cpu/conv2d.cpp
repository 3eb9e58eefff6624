// CPU conv2d: im2col / col2im loops + cpu::gemm, image by image (maths in conv2d.h).
#include "kernels/conv2d.h"

#include <algorithm>

#include "kernels/gemm.h"

namespace kern::cpu {
namespace {

// Along a row, output column ow reads input column v = ow * stride_w + off, with
// off = j * dil_w - pad_w for tap j. The ow whose v lies inside [0, W) form one range
// [first_inside, end_inside): the inner loops run over it without a bounds test per element.
int64_t first_inside(const Conv2dDims& d, int64_t off) {
  if (off >= 0) return 0;
  return std::min(d.Wo, (-off + d.stride_w - 1) / d.stride_w);  // ceil(-off / stride)
}
int64_t end_inside(const Conv2dDims& d, int64_t off) {
  const int64_t last = d.W - 1 - off;  // need ow * stride <= last
  if (last < 0) return first_inside(d, off);  // empty range
  return std::max(first_inside(d, off), std::min(d.Wo, last / d.stride_w + 1));
}

}  // namespace

template <typename T>
void im2col(const Conv2dDims& d, const T* x_img, T* col) {
  const int64_t HWo = d.Ho * d.Wo;
  const int64_t rows = conv2d_col_rows(d);
  // One col row per (c, i, j) kernel tap; rows are independent.
#pragma omp parallel for schedule(static) if (rows * HWo > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r / (d.kh * d.kw), i = (r / d.kw) % d.kh, j = r % d.kw;
    const T* xc = x_img + c * d.H * d.W;
    T* row = col + r * HWo;
    for (int64_t oh = 0; oh < d.Ho; ++oh) {
      T* out = row + oh * d.Wo;
      const int64_t h = oh * d.stride_h - d.pad_h + i * d.dil_h;
      if (h < 0 || h >= d.H) {
        std::fill(out, out + d.Wo, T(0));
        continue;
      }
      const T* xr = xc + h * d.W;
      const int64_t off = j * d.dil_w - d.pad_w, lo = first_inside(d, off), hi = end_inside(d, off);
      std::fill(out, out + lo, T(0));
      for (int64_t ow = lo; ow < hi; ++ow) out[ow] = xr[ow * d.stride_w + off];
      std::fill(out + hi, out + d.Wo, T(0));
    }
  }
}

template <typename T>
void col2im(const Conv2dDims& d, const T* col, T* gx_img) {
  const int64_t HWo = d.Ho * d.Wo;
  // Scatter-add each col entry back to the pixel it came from. Parallel over channels:
  // every channel's rows write only that channel's pixels, so threads never collide.
#pragma omp parallel for schedule(static) if (d.C * d.kh * d.kw * HWo > (1 << 16))
  for (int64_t c = 0; c < d.C; ++c) {
    T* gc = gx_img + c * d.H * d.W;
    std::fill(gc, gc + d.H * d.W, T(0));
    for (int64_t i = 0; i < d.kh; ++i) {
      for (int64_t j = 0; j < d.kw; ++j) {
        const T* row = col + ((c * d.kh + i) * d.kw + j) * HWo;
        for (int64_t oh = 0; oh < d.Ho; ++oh) {
          const int64_t h = oh * d.stride_h - d.pad_h + i * d.dil_h;
          if (h < 0 || h >= d.H) continue;  // came from the padding
          T* gr = gc + h * d.W;
          const T* in = row + oh * d.Wo;
          const int64_t off = j * d.dil_w - d.pad_w, lo = first_inside(d, off), hi = end_inside(d, off);
          for (int64_t ow = lo; ow < hi; ++ow) gr[ow * d.stride_w + off] += in[ow];
        }
      }
    }
  }
}

template <typename T>
void conv2d_forward(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y, T* col) {
  const int64_t K = conv2d_col_rows(d), HWo = d.Ho * d.Wo;
  const bool pointwise = conv2d_is_pointwise(d);
  for (int64_t n = 0; n < d.N; ++n) {
    const T* xn = x + n * d.C * d.H * d.W;
    T* yn = y + n * d.O * HWo;
    const T* cn = xn;  // pointwise: x_n already is the col matrix [C, H*W]
    if (!pointwise) {
      im2col(d, xn, col);
      cn = col;
    }
    // Bias: start each output row at bias[o] and let the GEMM accumulate onto it.
    if (bias)
      for (int64_t o = 0; o < d.O; ++o) std::fill(yn + o * HWo, yn + (o + 1) * HWo, bias[o]);
    gemm<T>(false, false, d.O, HWo, K, T(1), w, K, cn, HWo, bias ? T(1) : T(0), yn, HWo);
  }
}

template <typename T>
void conv2d_backward(const Conv2dDims& d, const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb, T* col) {
  const int64_t K = conv2d_col_rows(d), HWo = d.Ho * d.Wo;
  const bool pointwise = conv2d_is_pointwise(d);

  if (gb) {
    for (int64_t o = 0; o < d.O; ++o) {
      T s = 0;
      for (int64_t n = 0; n < d.N; ++n) {
        const T* g = gy + (n * d.O + o) * HWo;
        for (int64_t k = 0; k < HWo; ++k) s += g[k];
      }
      gb[o] = s;
    }
  }
  if (gw && d.N == 0) std::fill(gw, gw + d.O * K, T(0));
  if (!gw && !gx) return;

  for (int64_t n = 0; n < d.N; ++n) {
    const T* xn = x + n * d.C * d.H * d.W;
    const T* gyn = gy + n * d.O * HWo;
    if (gw) {
      const T* cn = xn;
      if (!pointwise) {
        im2col(d, xn, col);
        cn = col;
      }
      // gw [O, K] (+)= gy_n [O, HWo] x col_n^T [HWo, K]
      gemm<T>(false, true, d.O, K, HWo, T(1), gyn, HWo, cn, HWo, n == 0 ? T(0) : T(1), gw, K);
    }
    if (gx) {
      T* gxn = gx + n * d.C * d.H * d.W;
      // gcol [K, HWo] = w^T [K, O] x gy_n [O, HWo]; pointwise writes straight into gx_n.
      T* gcol = pointwise ? gxn : col;
      gemm<T>(true, false, K, HWo, d.O, T(1), w, K, gyn, HWo, T(0), gcol, HWo);
      if (!pointwise) col2im(d, gcol, gxn);
    }
  }
}

#define KERN_INSTANTIATE(T)                                                                          \
  template void im2col<T>(const Conv2dDims&, const T*, T*);                                          \
  template void col2im<T>(const Conv2dDims&, const T*, T*);                                          \
  template void conv2d_forward<T>(const Conv2dDims&, const T*, const T*, const T*, T*, T*);         \
  template void conv2d_backward<T>(const Conv2dDims&, const T*, const T*, const T*, T*, T*, T*, T*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
