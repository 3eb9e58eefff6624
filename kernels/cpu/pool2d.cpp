#include "kernels/pool2d.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "isa_dispatch.h"
#include "kernels/bf16.h"

// T is the storage type (float, double, bf16). Forward compares values widened to the
// compute type (exact for bf16) and stores the chosen element unchanged; backward sums in
// the compute type, in output order, and rounds once on the store (bf16: to nearest even).
//
// Variants, llm.c style:
//   ref::max_pool2d_*  variant 0, the reference: every window scanned element by element;
//                      backward scatters into a per-plane accumulator.
//   max_pool2d_*       variant 1: 2x2 stride-2 unpadded windows (VGG, tiny_ssd) one output
//                      row at a time in a branch-free loop the compiler vectorises (per ISA
//                      level, isa_dispatch.h); any other window (SSD's 3x3 s1 p1, a ResNet
//                      stem's 3x3 s2 p1) by window element over a row of outputs, for the
//                      windows wholly inside the input; f32 / f64. Windows at a padded or
//                      ceil-mode edge, and bf16, take variant 0's scan. Backward of
//                      non-overlapping windows written directly (each input has at most one
//                      window); overlapping windows summed straight into gx (f32 / f64; bf16:
//                      variant 0). Same bits as variant 0.

namespace kern::cpu {

namespace {

// The reference's scan of one window: first maximum in row-major order, a NaN replaces
// (torch's test), so the last NaN wins. Returns the plane offset of the chosen element.
template <typename T>
int64_t window_argmax(const Pool2dDims& d, const T* xp, int64_t oh, int64_t ow) {
  const int64_t h0 = std::max<int64_t>(oh * d.stride_h - d.pad_h, 0);
  const int64_t h1 = std::min<int64_t>(oh * d.stride_h - d.pad_h + d.kernel_h, d.in_h);
  const int64_t w0 = std::max<int64_t>(ow * d.stride_w - d.pad_w, 0);
  const int64_t w1 = std::min<int64_t>(ow * d.stride_w - d.pad_w + d.kernel_w, d.in_w);
  int64_t best_i = h0 * d.in_w + w0;
  compute_t<T> best = to_compute(xp[best_i]);
  for (int64_t h = h0; h < h1; ++h) {
    for (int64_t w = w0; w < w1; ++w) {
      const compute_t<T> v = to_compute(xp[h * d.in_w + w]);
      if (v > best || std::isnan(v)) {
        best = v;
        best_i = h * d.in_w + w;
      }
    }
  }
  return best_i;
}

template <typename T, typename J>
void store_window(const Pool2dDims& d, const T* xp, int64_t oh, int64_t ow, T* yp, J* ip) {
  const int64_t o = oh * d.out_w + ow;
  const int64_t best_i = window_argmax(d, xp, oh, ow);
  yp[o] = xp[best_i];
  if (ip) ip[o] = static_cast<J>(best_i);
}

bool is_2x2_s2(const Pool2dDims& d) {
  return d.kernel_h == 2 && d.kernel_w == 2 && d.stride_h == 2 && d.stride_w == 2 && d.pad_h == 0 && d.pad_w == 0;
}

// One output row of a 2x2 s2 pool over input rows r0, r1 (n outputs, all windows inside the
// input). The reference's order: (0,0) (0,1) (1,0) (1,1), a later element replacing when
// greater or NaN. idx = base + the window's plane offset (base = the row's 2*oh*in_w).
template <bool WITH_IDX>
struct MaxPool2x2Row {
  template <typename T, typename J>
  static KERN_CPU_INLINE void run(int64_t n, const T* r0, const T* r1, T* y, J* idx, J base, J in_w) {
    for (int64_t ow = 0; ow < n; ++ow) {
      const T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], e = r1[2 * ow + 1];
      T best = a;
      J k = 0;
      bool t = (b > best) | (b != b);
      best = t ? b : best;
      k = t ? J(1) : k;
      t = (c > best) | (c != c);
      best = t ? c : best;
      k = t ? in_w : k;
      t = (e > best) | (e != e);
      best = t ? e : best;
      k = t ? J(in_w + 1) : k;
      y[ow] = best;
      if (WITH_IDX) idx[ow] = static_cast<J>(base + 2 * ow + k);
    }
  }
};

// Backward of one output row of a 2x2 s2 pool: the four inputs of each window written
// directly (g at the argmax, +0 elsewhere; g is 0 + gy as in the reference's accumulator, so
// a -0 gradient becomes +0 exactly as there).
struct MaxPool2x2BwdRow {
  template <typename T, typename J>
  static KERN_CPU_INLINE void run(int64_t n, const J* idx, const T* gy, T* g0, T* g1, J base, J in_w) {
    using C = compute_t<T>;
    const T zero = from_compute<T>(C(0));
    for (int64_t ow = 0; ow < n; ++ow) {
      const J k = idx[ow] - (base + J(2 * ow));
      const T g = from_compute<T>(C(0) + to_compute(gy[ow]));
      g0[2 * ow] = k == 0 ? g : zero;
      g0[2 * ow + 1] = k == 1 ? g : zero;
      g1[2 * ow] = k == in_w ? g : zero;
      g1[2 * ow + 1] = k == J(in_w + 1) ? g : zero;
    }
  }
};

}  // namespace

// ---- variant 0: the reference ----------------------------------------------------------
namespace ref {

template <typename T, typename J>
void max_pool2d_forward(const Pool2dDims& d, const T* x, T* y, J* idx) {
  const int64_t in_plane = d.in_h * d.in_w, out_plane = d.out_h * d.out_w;
#pragma omp parallel for if (d.planes * out_plane * d.kernel_h * d.kernel_w > (1 << 16))
  for (int64_t p = 0; p < d.planes; ++p)
    for (int64_t oh = 0; oh < d.out_h; ++oh)
      for (int64_t ow = 0; ow < d.out_w; ++ow)
        store_window(d, x + p * in_plane, oh, ow, y + p * out_plane, idx ? idx + p * out_plane : nullptr);
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

}  // namespace ref

// ---- variant 1 ---------------------------------------------------------------------------

namespace {
template <typename T, typename J>
void max_pool2d_forward_2x2(const Pool2dDims& d, const T* x, T* y, J* idx) {
  const int64_t in_plane = d.in_h * d.in_w, out_plane = d.out_h * d.out_w;
  // Windows wholly inside the input: out rows [0, fh), out columns [0, fw).
  const int64_t fh = std::min(d.out_h, d.in_h / 2), fw = std::min(d.out_w, d.in_w / 2);
  const Isa isa = isa_active();
  auto row = idx ? run_isa<MaxPool2x2Row<true>, int64_t, const T*, const T*, T*, J*, J, J>(isa)
                 : run_isa<MaxPool2x2Row<false>, int64_t, const T*, const T*, T*, J*, J, J>(isa);
  const J in_w = static_cast<J>(d.in_w);
#pragma omp parallel for if (d.planes * out_plane * 4 > (1 << 16))
  for (int64_t p = 0; p < d.planes; ++p) {
    const T* xp = x + p * in_plane;
    T* yp = y + p * out_plane;
    J* ip = idx ? idx + p * out_plane : nullptr;
    for (int64_t oh = 0; oh < d.out_h; ++oh) {
      int64_t ow0 = 0;
      if (oh < fh) {
        const int64_t r = 2 * oh * d.in_w;
        row(fw, xp + r, xp + r + d.in_w, yp + oh * d.out_w, ip ? ip + oh * d.out_w : nullptr, static_cast<J>(r), in_w);
        ow0 = fw;
      }
      for (int64_t ow = ow0; ow < d.out_w; ++ow) store_window(d, xp, oh, ow, yp, ip);  // ceil-mode edge
    }
  }
}

// Any other window: the output columns whose windows lie wholly inside the input, one
// output row at a time. y (and idx) start as each window's first element and take every
// later element in the reference's row-major order by the same rule (greater, or NaN), so
// the loop over the output columns is innermost and vectorises (w0 = the first window's
// first column, rows h0 .. h0 + kh - 1).
template <bool WITH_IDX>
struct MaxPoolRowAny {
  template <typename T, typename J>
  static KERN_CPU_INLINE void run(int64_t n, const T* xp, int64_t in_w, int64_t h0, int64_t w0, int64_t kh,
                                  int64_t kw, int64_t sw, T* y, J* idx) {
    for (int64_t ow = 0; ow < n; ++ow) {
      y[ow] = xp[h0 * in_w + w0 + ow * sw];
      if (WITH_IDX) idx[ow] = static_cast<J>(h0 * in_w + w0 + ow * sw);
    }
    for (int64_t h = h0; h < h0 + kh; ++h) {
      for (int64_t w = 0; w < kw; ++w) {
        if (h == h0 && w == 0) continue;
        const T* r = xp + h * in_w + w0 + w;
        const J off = static_cast<J>(h * in_w + w0 + w);
        for (int64_t ow = 0; ow < n; ++ow) {
          const T v = r[ow * sw];
          const bool t = (v > y[ow]) | (v != v);
          y[ow] = t ? v : y[ow];
          if (WITH_IDX) idx[ow] = t ? static_cast<J>(off + ow * sw) : idx[ow];
        }
      }
    }
  }
};

// First and one-past-last output index whose window [o*s - pad, o*s - pad + k) lies in [0, in).
// (o*s - pad >= 0 from lo = ceil(pad / s); o*s - pad + k <= in up to (in + pad - k) / s.)
void inside_range(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t out, int64_t& lo, int64_t& hi) {
  lo = std::min((pad + s - 1) / s, out);
  hi = in + pad >= k ? std::min((in + pad - k) / s + 1, out) : 0;
  hi = std::max(hi, lo);  // empty when no window fits
}

template <typename T, typename J>
void max_pool2d_forward_any(const Pool2dDims& d, const T* x, T* y, J* idx) {
  const int64_t in_plane = d.in_h * d.in_w, out_plane = d.out_h * d.out_w;
  int64_t oh_lo, oh_hi, ow_lo, ow_hi;
  inside_range(d.in_h, d.kernel_h, d.stride_h, d.pad_h, d.out_h, oh_lo, oh_hi);
  inside_range(d.in_w, d.kernel_w, d.stride_w, d.pad_w, d.out_w, ow_lo, ow_hi);
  const Isa isa = isa_active();
  using Fn = void (*)(int64_t, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, T*, J*);
  Fn row = idx ? run_isa<MaxPoolRowAny<true>, int64_t, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         T*, J*>(isa)
               : run_isa<MaxPoolRowAny<false>, int64_t, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         T*, J*>(isa);
#pragma omp parallel for if (d.planes * out_plane * d.kernel_h * d.kernel_w > (1 << 16))
  for (int64_t p = 0; p < d.planes; ++p) {
    const T* xp = x + p * in_plane;
    T* yp = y + p * out_plane;
    J* ip = idx ? idx + p * out_plane : nullptr;
    for (int64_t oh = 0; oh < d.out_h; ++oh) {
      const bool inside = oh >= oh_lo && oh < oh_hi && ow_hi > ow_lo;
      for (int64_t ow = 0; ow < (inside ? ow_lo : d.out_w); ++ow) store_window(d, xp, oh, ow, yp, ip);
      if (!inside) continue;
      const int64_t o = oh * d.out_w + ow_lo;
      row(ow_hi - ow_lo, xp, d.in_w, oh * d.stride_h - d.pad_h, ow_lo * d.stride_w - d.pad_w, d.kernel_h, d.kernel_w,
          d.stride_w, yp + o, ip ? ip + o : nullptr);
      for (int64_t ow = ow_hi; ow < d.out_w; ++ow) store_window(d, xp, oh, ow, yp, ip);
    }
  }
}

}  // namespace

template <typename T, typename J>
void max_pool2d_forward(const Pool2dDims& d, const T* x, T* y, J* idx) {
  // bf16 keeps the reference (the fast row compares raw values: f32 / f64 only).
  if constexpr (std::is_same_v<T, bf16>) {
    return ref::max_pool2d_forward(d, x, y, idx);
  } else {
    if (is_2x2_s2(d)) return max_pool2d_forward_2x2(d, x, y, idx);
    max_pool2d_forward_any(d, x, y, idx);
  }
}

template <typename T, typename J>
void max_pool2d_backward(const Pool2dDims& d, const J* idx, const T* gy, T* gx) {
  using C = compute_t<T>;
  const bool disjoint = d.stride_h >= d.kernel_h && d.stride_w >= d.kernel_w;
  const int64_t in_plane = d.in_h * d.in_w, out_plane = d.out_h * d.out_w;
  if (!disjoint) {
    // Overlapping windows: an input may collect several gradients. In f32 / f64 the compute
    // type is the storage type, so gx itself is the reference's accumulator (zeroed, summed
    // in output order: the same bits) without its per-plane buffer and copy; bf16 sums in
    // float: the reference.
    if constexpr (std::is_same_v<T, bf16>) {
      return ref::max_pool2d_backward(d, idx, gy, gx);
    } else {
#pragma omp parallel for if (d.planes * in_plane > (1 << 16))
      for (int64_t p = 0; p < d.planes; ++p) {
        T* gxp = gx + p * in_plane;
        std::fill(gxp, gxp + in_plane, T(0));
        for (int64_t o = 0; o < out_plane; ++o) gxp[idx[p * out_plane + o]] += gy[p * out_plane + o];
      }
      return;
    }
  }
  const bool two = is_2x2_s2(d);
  const int64_t fh = two ? std::min(d.out_h, d.in_h / 2) : 0, fw = two ? std::min(d.out_w, d.in_w / 2) : 0;
  auto row = run_isa<MaxPool2x2BwdRow, int64_t, const J*, const T*, T*, T*, J, J>(isa_active());
  const J in_w = static_cast<J>(d.in_w);
  const T zero = from_compute<T>(C(0));
#pragma omp parallel for if (d.planes * in_plane > (1 << 16))
  for (int64_t p = 0; p < d.planes; ++p) {
    const J* ip = idx + p * out_plane;
    const T* gp = gy + p * out_plane;
    T* gxp = gx + p * in_plane;
    // Rows [0, 2 fh) x columns [0, 2 fw) are written window by window; the rest is zeroed and
    // then gets the remaining windows' gradients (at most one per input: windows are disjoint).
    for (int64_t oh = 0; oh < fh; ++oh) {
      const int64_t r = 2 * oh * d.in_w;
      row(fw, ip + oh * d.out_w, gp + oh * d.out_w, gxp + r, gxp + r + d.in_w, static_cast<J>(r), in_w);
      std::fill(gxp + r + 2 * fw, gxp + r + d.in_w, zero);
      std::fill(gxp + r + d.in_w + 2 * fw, gxp + r + 2 * d.in_w, zero);
    }
    std::fill(gxp + 2 * fh * d.in_w, gxp + in_plane, zero);
    for (int64_t oh = 0; oh < d.out_h; ++oh) {
      for (int64_t ow = oh < fh ? fw : 0; ow < d.out_w; ++ow) {
        const int64_t o = oh * d.out_w + ow;
        T& dst = gxp[ip[o]];
        dst = from_compute<T>(to_compute(dst) + to_compute(gp[o]));
      }
    }
  }
}

#define KERN_INSTANTIATE(T, J)                                                              \
  template void max_pool2d_forward<T, J>(const Pool2dDims&, const T*, T*, J*);             \
  template void max_pool2d_backward<T, J>(const Pool2dDims&, const J*, const T*, T*);      \
  template void ref::max_pool2d_forward<T, J>(const Pool2dDims&, const T*, T*, J*);        \
  template void ref::max_pool2d_backward<T, J>(const Pool2dDims&, const J*, const T*, T*);
KERN_INSTANTIATE(float, int32_t)
KERN_INSTANTIATE(double, int32_t)
KERN_INSTANTIATE(bf16, int32_t)
KERN_INSTANTIATE(float, int64_t)
KERN_INSTANTIATE(double, int64_t)
KERN_INSTANTIATE(bf16, int64_t)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
