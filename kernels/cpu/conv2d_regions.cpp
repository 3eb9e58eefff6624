// The padding-free regions convolution: regions, the cost rule, forward and backward drivers
// (maths and layouts: kernels/conv2d_regions.h; the GEMM: conv2d_regions_gemm.cpp).
#include "kernels/conv2d_regions.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/conv2d_banded.h"
#include "kernels/conv2d_taps.h"
#include "kernels/gemm.h"

namespace kern {
namespace {

// Per output position along one axis, the taps whose input position is inside [0, n_in):
// [t0, t1) (contiguous: the input position grows with the tap). Consecutive positions with the
// same range are merged: {first, end, t0, t1}.
struct Interval {
  int64_t first, end, t0, t1;
};
std::vector<Interval> intervals(int64_t n_out, int64_t n_in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  std::vector<Interval> out;
  for (int64_t o = 0; o < n_out; ++o) {
    int64_t t0 = k, t1 = k;
    for (int64_t t = 0; t < k; ++t) {
      const int64_t v = o * stride - pad + t * dil;
      if (v >= 0 && v < n_in) {
        if (t0 == k) t0 = t;
        t1 = t + 1;
      }
    }
    if (t0 == k) t0 = t1 = 0;  // no tap inside
    if (!out.empty() && out.back().t0 == t0 && out.back().t1 == t1)
      out.back().end = o + 1;
    else
      out.push_back({o, o + 1, t0, t1});
  }
  return out;
}

cpu::RegionsWeight forward_weight(const Conv2dDims& d, const float* w) {
  cpu::RegionsWeight a{w, d.C * d.kh * d.kw, d.kh * d.kw, {}};
  for (int64_t t = 0; t < d.kh * d.kw; ++t) a.tap_offset.push_back(t);
  return a;
}
// w read as w'[c, o, i, j] = w[o, c, kh-1-i, kw-1-j] (rows of the GEMM: c; columns: o).
cpu::RegionsWeight transposed_weight(const Conv2dDims& d, const float* w) {
  cpu::RegionsWeight a{w, d.kh * d.kw, d.C * d.kh * d.kw, {}};
  for (int64_t i = 0; i < d.kh; ++i)
    for (int64_t j = 0; j < d.kw; ++j) a.tap_offset.push_back((d.kh - 1 - i) * d.kw + (d.kw - 1 - j));
  return a;
}

// The weight gradient's images per GEMM: the gathers stay within about 8 MB.
int64_t filter_chunk(const Conv2dDims& d) {
  const int64_t per_image = (d.O + d.C) * d.Ho * d.Wo;
  return std::max<int64_t>(1, std::min<int64_t>(d.N, (int64_t(2) << 20) / std::max<int64_t>(1, per_image)));
}
int64_t filter_workspace(const Conv2dDims& d) {
  return d.kh * d.kw * d.O * d.C + filter_chunk(d) * (d.O + d.C) * d.Ho * d.Wo;
}

// Output positions o in [0, n_out) with o + off inside [0, n_in) (stride 1): [lo, hi).
std::pair<int64_t, int64_t> inside(int64_t n_out, int64_t n_in, int64_t off) {
  const int64_t lo = std::min(n_out, std::max<int64_t>(0, -off));
  const int64_t hi = std::max(lo, std::min(n_out, n_in - off));
  return {lo, hi};
}

}  // namespace

std::vector<ConvRegion> conv2d_regions(const Conv2dDims& d) {
  std::vector<ConvRegion> out;
  for (const Interval& r : intervals(d.Ho, d.H, d.kh, d.stride_h, d.pad_h, d.dil_h))
    for (const Interval& c : intervals(d.Wo, d.W, d.kw, d.stride_w, d.pad_w, d.dil_w))
      out.push_back({r.first, r.end, c.first, c.end, r.t0, r.t1, c.t0, c.t1});
  return out;
}

bool conv2d_regions_supported(const Conv2dDims& d) {
  return d.groups == 1 && d.stride_h == 1 && d.stride_w == 1 && d.N > 0 && d.C > 0 && d.O > 0 && d.Ho > 0 &&
         d.Wo > 0 && d.pad_h <= d.dil_h * (d.kh - 1) && d.pad_w <= d.dil_w * (d.kw - 1);
}

namespace cpu {

Conv2dDims conv2d_regions_transposed(const Conv2dDims& d) {
  Conv2dDims t = d;
  t.C = d.O, t.O = d.C, t.H = d.Ho, t.W = d.Wo;
  t.pad_h = d.dil_h * (d.kh - 1) - d.pad_h;
  t.pad_w = d.dil_w * (d.kw - 1) - d.pad_w;
  t.Ho = conv2d_output_size(t.H, t.kh, 1, t.pad_h, t.dil_h);
  t.Wo = conv2d_output_size(t.W, t.kw, 1, t.pad_w, t.dil_w);
  return t;
}

bool conv2d_regions_preferred(const Conv2dDims& d) {
  return conv2d_regions_supported(d) && (d.dil_h > 1 || d.dil_w > 1) && d.C >= 64 && d.O >= 64 &&
         conv2d_tap_coverage(d) <= 0.8;
}

size_t conv2d_regions_forward_workspace(const Conv2dDims& d) {
  return conv2d_regions_image_workspace(d, conv2d_regions(d));
}
size_t conv2d_regions_backward_workspace(const Conv2dDims& d) {
  const Conv2dDims t = conv2d_regions_transposed(d);
  return std::max(conv2d_regions_image_workspace(t, conv2d_regions(t)), size_t(filter_workspace(d)));
}

static void check(const Conv2dDims& d, const char* what) {
  if (!conv2d_regions_supported(d))
    throw std::invalid_argument(std::string(what) + ": shape not covered (groups 1, stride 1, pad <= dil (k - 1))");
}

bool conv2d_regions_forward(const Conv2dDims& d, const float* x, const float* w, const float* bias, bool relu,
                            float* y, float* ws) {
  check(d, "conv2d_regions_forward");
  const std::vector<ConvRegion> regions = conv2d_regions(d);
  const RegionsWeight a = forward_weight(d, w);
  for (int64_t n = 0; n < d.N; ++n)
    if (!conv2d_regions_image(d, regions, a, x + n * d.C * d.H * d.W, bias, relu, y + n * d.O * d.Ho * d.Wo, ws))
      return false;
  return true;
}

// gw by taps (see the header). false: gy has a non-finite value.
static bool backward_filter(const Conv2dDims& d, const float* x, const float* gy, float* gw, float* ws) {
  const int64_t taps = d.kh * d.kw, HW = d.H * d.W, HWo = d.Ho * d.Wo, chunk = filter_chunk(d);
  float* gt = ws;                       // [taps, O, C]
  float* G = gt + taps * d.O * d.C;     // [O, m R]
  float* X = G + chunk * d.O * HWo;     // [C, m R]
  float bad = 0.0f;
  for (int64_t t = 0; t < taps; ++t) {
    const int64_t i = t / d.kw, j = t % d.kw, offh = i * d.dil_h - d.pad_h, offw = j * d.dil_w - d.pad_w;
    // Plain variables, not structured bindings: OpenMP regions below use them (clang refuses
    // to capture a structured binding there in C++17).
    const std::pair<int64_t, int64_t> rows = inside(d.Ho, d.H, offh), cols = inside(d.Wo, d.W, offw);
    const int64_t rlo = rows.first, rhi = rows.second, clo = cols.first, chi = cols.second;
    const int64_t nr = rhi - rlo, nc = chi - clo, R = nr * nc;
    float* g_t = gt + t * d.O * d.C;
    if (R == 0) {
      std::fill(g_t, g_t + d.O * d.C, 0.0f);
      continue;
    }
    for (int64_t n0 = 0; n0 < d.N; n0 += chunk) {
      const int64_t m = std::min(chunk, d.N - n0), KR = m * R;
      float bad_t = 0.0f;
#pragma omp parallel for schedule(static) reduction(+ : bad_t) if (d.O * KR > (1 << 15))
      for (int64_t o = 0; o < d.O; ++o)
        for (int64_t nn = 0; nn < m; ++nn) {
          const float* src = gy + ((n0 + nn) * d.O + o) * HWo;
          float* dst = G + o * KR + nn * R;
          for (int64_t a = 0; a < nr; ++a)
            for (int64_t b = 0; b < nc; ++b) {
              const float v = src[(rlo + a) * d.Wo + clo + b];
              bad_t += v - v;
              dst[a * nc + b] = v;
            }
        }
      bad += bad_t;
#pragma omp parallel for schedule(static) if (d.C * KR > (1 << 15))
      for (int64_t c = 0; c < d.C; ++c)
        for (int64_t nn = 0; nn < m; ++nn) {
          const float* src = x + ((n0 + nn) * d.C + c) * HW;
          float* dst = X + c * KR + nn * R;
          for (int64_t a = 0; a < nr; ++a)
            for (int64_t b = 0; b < nc; ++b) dst[a * nc + b] = src[(rlo + a + offh) * d.W + clo + b + offw];
        }
      gemm<float>(false, true, d.O, d.C, KR, 1.0f, G, KR, X, KR, n0 == 0 ? 0.0f : 1.0f, g_t, d.C);
    }
  }
  // [taps, O, C] -> [O, C, taps]
#pragma omp parallel for schedule(static) if (taps * d.O * d.C > (1 << 16))
  for (int64_t o = 0; o < d.O; ++o)
    for (int64_t c = 0; c < d.C; ++c) {
      float* dst = gw + (o * d.C + c) * taps;
      for (int64_t t = 0; t < taps; ++t) dst[t] = gt[(t * d.O + o) * d.C + c];
    }
  return bad == 0.0f;
}

bool conv2d_regions_backward(const Conv2dDims& d, const float* x, const float* w, const float* gy, float* gx,
                             float* gw, float* gb, float* ws) {
  check(d, "conv2d_regions_backward");
  const int64_t HWo = d.Ho * d.Wo;
  // The bias gradient by the banded path's loop (the reference's order: the same bits); with
  // neither gx nor gw asked for it computes only that.
  if (gb) conv2d_backward_banded<float>(d, nullptr, nullptr, gy, nullptr, nullptr, gb, nullptr, 1);
  if (gx) {
    const Conv2dDims t = conv2d_regions_transposed(d);
    const std::vector<ConvRegion> regions = conv2d_regions(t);
    const RegionsWeight a = transposed_weight(d, w);
    for (int64_t n = 0; n < d.N; ++n)
      conv2d_regions_image(t, regions, a, gy + n * d.O * HWo, nullptr, false, gx + n * d.C * d.H * d.W, ws);
  }
  return gw ? backward_filter(d, x, gy, gw, ws) : true;
}

}  // namespace cpu
}  // namespace kern
