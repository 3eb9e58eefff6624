// CPU conv2d forward, one GEMM per tap over its in-image rectangle (kernels/conv2d_taps.h).
#include "kernels/conv2d_taps.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/gemm.h"

namespace kern {
namespace {

// Output positions o in [0, n_out) with o * stride + off inside [0, n_in): [lo, hi).
struct Range {
  int64_t lo, hi;
  int64_t size() const { return hi > lo ? hi - lo : 0; }
};
Range inside(int64_t n_out, int64_t n_in, int64_t stride, int64_t off) {
  int64_t lo = off >= 0 ? 0 : (-off + stride - 1) / stride;  // ceil(-off / stride)
  const int64_t last = n_in - 1 - off;                        // need o * stride <= last
  int64_t hi = last < 0 ? 0 : last / stride + 1;
  lo = std::min(lo, n_out);
  hi = std::max(lo, std::min(hi, n_out));
  return {lo, hi};
}
Range rows_of(const Conv2dDims& d, int64_t i) { return inside(d.Ho, d.H, d.stride_h, i * d.dil_h - d.pad_h); }
Range cols_of(const Conv2dDims& d, int64_t j) { return inside(d.Wo, d.W, d.stride_w, j * d.dil_w - d.pad_w); }

}  // namespace

double conv2d_tap_coverage(const Conv2dDims& d) {
  int64_t rows = 0, cols = 0;
  for (int64_t i = 0; i < d.kh; ++i) rows += rows_of(d, i).size();
  for (int64_t j = 0; j < d.kw; ++j) cols += cols_of(d, j).size();
  const double all = double(d.kh) * d.kw * d.Ho * d.Wo;
  return all > 0 ? double(rows) * double(cols) / all : 1.0;
}

namespace cpu {

template <typename T>
void conv2d_forward_taps(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y, T* ws) {
  if (d.groups != 1)
    throw std::invalid_argument("conv2d_forward_taps: groups must be 1 (got " + std::to_string(d.groups) + ")");
  const int64_t taps = d.kh * d.kw, HWo = d.Ho * d.Wo, HW = d.H * d.W;
  T* wt = ws;                       // [taps, O, C]
  T* xs = wt + taps * d.O * d.C;    // [C, R]
  T* prod = xs + d.C * HWo;         // [O, R]
  // wt[t, o, c] = w[o, c, t]
#pragma omp parallel for schedule(static) if (taps * d.O * d.C > (1 << 16))
  for (int64_t o = 0; o < d.O; ++o)
    for (int64_t c = 0; c < d.C; ++c) {
      const T* src = w + (o * d.C + c) * taps;
      for (int64_t t = 0; t < taps; ++t) wt[(t * d.O + o) * d.C + c] = src[t];
    }
  for (int64_t n = 0; n < d.N; ++n) {
    const T* xn = x + n * d.C * HW;
    T* yn = y + n * d.O * HWo;
    for (int64_t o = 0; o < d.O; ++o) std::fill(yn + o * HWo, yn + (o + 1) * HWo, bias ? bias[o] : T(0));
    for (int64_t i = 0; i < d.kh; ++i) {
      const Range rr = rows_of(d, i);
      for (int64_t j = 0; j < d.kw; ++j) {
        const Range cr = cols_of(d, j);
        const int64_t nr = rr.size(), nc = cr.size(), R = nr * nc;
        if (R == 0) continue;  // this tap reads only padding
        const int64_t offh = i * d.dil_h - d.pad_h, offw = j * d.dil_w - d.pad_w;
#pragma omp parallel for schedule(static) if (d.C * R > (1 << 15))
        for (int64_t c = 0; c < d.C; ++c) {
          const T* xc = xn + c * HW;
          T* dst = xs + c * R;
          for (int64_t a = 0; a < nr; ++a) {
            const T* xr = xc + ((rr.lo + a) * d.stride_h + offh) * d.W + offw;
            T* out = dst + a * nc;
            for (int64_t b = 0; b < nc; ++b) out[b] = xr[(cr.lo + b) * d.stride_w];
          }
        }
        gemm<T>(false, false, d.O, R, d.C, T(1), wt + (i * d.kw + j) * d.O * d.C, d.C, xs, R, T(0), prod, R);
#pragma omp parallel for schedule(static) if (d.O * R > (1 << 15))
        for (int64_t o = 0; o < d.O; ++o) {
          const T* p = prod + o * R;
          T* yo = yn + o * HWo;
          for (int64_t a = 0; a < nr; ++a) {
            T* yr = yo + (rr.lo + a) * d.Wo + cr.lo;
            const T* pr = p + a * nc;
            for (int64_t b = 0; b < nc; ++b) yr[b] += pr[b];
          }
        }
      }
    }
  }
}

template void conv2d_forward_taps<float>(const Conv2dDims&, const float*, const float*, const float*, float*, float*);
template void conv2d_forward_taps<double>(const Conv2dDims&, const double*, const double*, const double*, double*,
                                          double*);

}  // namespace cpu
}  // namespace kern
