// The blocked GEMM of the padding-free regions convolution, one image (maths and layouts:
// kernels/conv2d_regions.h).
//
// Workspace of one image, in floats:
//   B   the regions' packed inputs. Region R's pixels are padded to Ppad = round_up(P, 4) and
//       cut into panels of 4 pixels; panel q holds [K_R][4] with k = t_local * C + c (t_local:
//       the tap's index within R's taps). Padding lanes are zeros.
//   Cb  the regions' sums, pixel-major: [sum Ppad][Opad] (Opad = O rounded up to 24), so that
//       the micro-kernel's accumulators (8 consecutive output channels of one pixel) are
//       stored without a transpose.
//   A   per thread: every tap's packed block of the weight, [taps][MCpad/24][kc][24].
// Loops (each thread owns a contiguous range of output channels, so no two threads write the
// same data): for each block of at most 144 channels: for each block of 256 input channels:
// pack A for all taps (one pass over the weight); for each chunk of 192 pixels (its B for one
// tap and its sums stay in L2): for each tap: for each 24-channel slice of A (L1): for each
// region with that tap: for each 4-pixel panel in the chunk: Cb[4 x 24] += B^T[4 x kc] x
// A^T[kc x 24]. Then the epilogue copies Cb to y with the bias and the ReLU.
// Micro-kernel 24 x 4: per k, 3 vector loads of A, 4 broadcasts of B, 12 FMAs into 12
// accumulators (16 registers in all). A 4-pixel panel keeps the padding of a region's last
// panel small (fc6's regions of 36, 42 and 49 pixels compute 36, 44 and 52 lanes).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "kernels/conv2d_regions.h"
#include "kernels/cpu_isa.h"

namespace kern::cpu {
namespace {

constexpr int64_t kMR = 24;   // micro-kernel output channels (3 vectors of 8)
constexpr int64_t kNR = 4;    // micro-kernel pixels
constexpr int64_t kKC = 256;  // input channels per packed block
constexpr int64_t kMCmax = 144;

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// ---- micro-kernels: C[j * ldc + r] += sum_k B[k][j] A[k][r], j < 4, r < 24 ----------------
void micro_plain(int64_t kc, const float* A, const float* B, float* C, int64_t ldc) {
  float acc[kNR][kMR] = {};
  for (int64_t k = 0; k < kc; ++k)
    for (int j = 0; j < kNR; ++j)
      for (int r = 0; r < kMR; ++r) acc[j][r] += B[k * kNR + j] * A[k * kMR + r];
  for (int j = 0; j < kNR; ++j)
    for (int r = 0; r < kMR; ++r) C[j * ldc + r] += acc[j][r];
}

#if defined(__x86_64__) && defined(__GNUC__)
#define KERN_REGIONS_HAVE_AVX2 1
// Named accumulators: GCC keeps an array of __m256 on the stack and stores it back every
// iteration (an array version measured 2x slower).
#define KR_PIX(j)                                       \
  {                                                     \
    const __m256 b = _mm256_broadcast_ss(B + k * 4 + j); \
    c##j##0 = _mm256_fmadd_ps(a0, b, c##j##0);          \
    c##j##1 = _mm256_fmadd_ps(a1, b, c##j##1);          \
    c##j##2 = _mm256_fmadd_ps(a2, b, c##j##2);          \
  }
#define KR_STORE(j)                                                          \
  {                                                                          \
    float* c = C + j * ldc;                                                  \
    _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), c##j##0));         \
    _mm256_storeu_ps(c + 8, _mm256_add_ps(_mm256_loadu_ps(c + 8), c##j##1)); \
    _mm256_storeu_ps(c + 16, _mm256_add_ps(_mm256_loadu_ps(c + 16), c##j##2)); \
  }
__attribute__((target("avx2,fma"))) void micro_avx2(int64_t kc, const float* A, const float* B, float* C,
                                                     int64_t ldc) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 a0 = _mm256_loadu_ps(A + k * 24), a1 = _mm256_loadu_ps(A + k * 24 + 8);
    const __m256 a2 = _mm256_loadu_ps(A + k * 24 + 16);
    KR_PIX(0) KR_PIX(1) KR_PIX(2) KR_PIX(3)
  }
  KR_STORE(0) KR_STORE(1) KR_STORE(2) KR_STORE(3)
}
#undef KR_PIX
#undef KR_STORE
#endif

using Micro = void (*)(int64_t, const float*, const float*, float*, int64_t);
struct Micros {
  Micro run;
  bool fma;
};
Micros pick_micros() {
#ifdef KERN_REGIONS_HAVE_AVX2
  static const bool has_fma = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("fma") != 0;
  }();
  if (isa_active() >= Isa::Avx2 && has_fma) return {&micro_avx2, true};
#endif
  return {&micro_plain, false};
}

// The geometry of one image's regions in the workspace.
struct Layout {
  std::vector<int64_t> b_base, c_base, ppad;  // per region: B offset, first Cb pixel row, padded pixels
  int64_t b_size = 0, c_cols = 0, opad = 0, mc = 0, nc = 0, a_per_thread = 0;  // c_cols: Cb pixel rows
};
Layout layout_of(const Conv2dDims& d, const std::vector<ConvRegion>& regions) {
  Layout L;
  for (const ConvRegion& r : regions) {
    const int64_t ppad = round_up(r.pixels(), kNR);
    L.b_base.push_back(L.b_size);
    L.c_base.push_back(L.c_cols);
    L.ppad.push_back(ppad);
    L.b_size += r.taps() * d.C * ppad;
    L.c_cols += ppad;
  }
  L.opad = round_up(d.O, kMR);
  // Each thread owns one contiguous range of output channels (boundaries at multiples of 24,
  // so the ranges differ by at most 24 rows), cut into blocks of at most kMCmax rows.
  L.mc = std::min(kMCmax, round_up(d.O, kMR));
  // Pixels per chunk: one tap's packed inputs of a chunk (nc x kKC floats) within about 192 KB
  // of a core's L2 (Zen 3: 512 KB), next to the chunk's sums (nc x mc).
  L.nc = 192;
  L.a_per_thread = d.kh * d.kw * L.mc * std::min<int64_t>(kKC, d.C);
  return L;
}

// B: region by region, tap by tap, channel by channel, the panels' lanes (one parallel region).
void pack_inputs(const Conv2dDims& d, const std::vector<ConvRegion>& regions, const Layout& L, const float* x,
                 float* B) {
  const int64_t HW = d.H * d.W;
  // base[ri][p]: the input offset of region ri's pixel p for tap (0, 0) (may be outside the
  // image: the taps of the region add their offsets to it and land inside).
  std::vector<std::vector<int64_t>> base(regions.size());
  for (size_t ri = 0; ri < regions.size(); ++ri) {
    const ConvRegion& R = regions[ri];
    const int64_t width = R.c1 - R.c0;
    base[ri].resize(R.pixels());
    for (int64_t p = 0; p < R.pixels(); ++p) {
      const int64_t oh = R.r0 + p / width, ow = R.c0 + p % width;
      base[ri][p] = (oh * d.stride_h - d.pad_h) * d.W + (ow * d.stride_w - d.pad_w);
    }
  }
#pragma omp parallel if (L.b_size > (1 << 16))
  for (size_t ri = 0; ri < regions.size(); ++ri) {
    const ConvRegion& R = regions[ri];
    const int64_t P = R.pixels(), ppad = L.ppad[ri], K = R.taps() * d.C, tw = R.j1 - R.j0;
    const int64_t* bp = base[ri].data();
#pragma omp for schedule(static) nowait
    for (int64_t k = 0; k < K; ++k) {
      const int64_t tl = k / d.C, c = k % d.C;
      const int64_t i = R.i0 + tl / tw, j = R.j0 + tl % tw;
      // The offset of channel c and this tap; offset + bp[p] is inside the image for every
      // pixel of the region (the pointer itself is only formed for in-image elements).
      const int64_t off = c * HW + i * d.dil_h * d.W + j * d.dil_w;
      for (int64_t q0 = 0; q0 < ppad; q0 += kNR) {
        float* dst = B + L.b_base[ri] + q0 * K + k * kNR;
        const int64_t n = std::max<int64_t>(0, std::min(kNR, P - q0));
        for (int64_t l = 0; l < n; ++l) dst[l] = x[off + bp[q0 + l]];
        for (int64_t l = n; l < kNR; ++l) dst[l] = 0.0f;
      }
    }
  }
}

#ifdef KERN_REGIONS_HAVE_AVX2
// col[e][q] = v[q][e]: an 8 x 8 transpose in registers.
__attribute__((target("avx2,fma"))) inline void transpose8(const __m256* v, __m256* col) {
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
  const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
  const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  col[0] = _mm256_permute2f128_ps(u0, u4, 0x20), col[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  col[2] = _mm256_permute2f128_ps(u2, u6, 0x20), col[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  col[4] = _mm256_permute2f128_ps(u0, u4, 0x31), col[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  col[6] = _mm256_permute2f128_ps(u2, u6, 0x31), col[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
#endif

#ifdef KERN_REGIONS_HAVE_AVX2
// The forward's A (w read in place: row o, column c, tap t at w[o so + c taps + t]) by 8 x 8
// transposes: 8 rows' runs of 8 consecutive (c, t) floats become 8 vectors of 8 rows, each
// stored whole into its tap's slice. Rows past mc read as zeros. Returns false on a
// non-finite value. (A scalar gather of the same, one float at a time, took a third of the
// micro-kernels' time on fc6.)
__attribute__((target("avx2,fma"))) bool pack_weights_forward_avx2(const RegionsWeight& a, int64_t taps, int64_t o0,
                                                                   int64_t mc, int64_t c0, int64_t kc, float* Ap) {
  const int64_t mcpad = round_up(mc, kMR), tap_stride = mcpad * kc, run = kc * taps, run8 = run / 8 * 8;
  __m256 nonfinite = _mm256_setzero_ps();  // accumulates v - v: NaN somewhere iff a value was not finite
  for (int64_t r0 = 0; r0 < mcpad; r0 += 8) {
    const float* rows[8];
    for (int q = 0; q < 8; ++q) rows[q] = r0 + q < mc ? a.w + (o0 + r0 + q) * a.so + c0 * taps : nullptr;
    float* base = Ap + (r0 / kMR) * kMR * kc + r0 % kMR;
    for (int64_t j = 0; j < run8; j += 8) {
      __m256 v[8];
      for (int q = 0; q < 8; ++q) v[q] = rows[q] ? _mm256_loadu_ps(rows[q] + j) : _mm256_setzero_ps();
      __m256 col[8];  // col[e]: element j + e of the 8 rows
      transpose8(v, col);
      for (int e = 0; e < 8; ++e) {
        const int64_t k = (j + e) / taps, t = (j + e) % taps;
        nonfinite = _mm256_add_ps(nonfinite, _mm256_sub_ps(col[e], col[e]));
        _mm256_storeu_ps(base + t * tap_stride + k * kMR, col[e]);
      }
    }
    for (int64_t j = run8; j < run; ++j) {  // the tail of the run, one element at a time
      const int64_t k = j / taps, t = j % taps;
      for (int q = 0; q < 8; ++q) {
        const float v = rows[q] ? rows[q][j] : 0.0f;
        nonfinite = _mm256_add_ps(nonfinite, _mm256_set1_ps(v - v));
        base[t * tap_stride + k * kMR + q] = v;
      }
    }
  }
  return _mm256_movemask_ps(_mm256_cmp_ps(nonfinite, nonfinite, _CMP_UNORD_Q)) == 0;
}
#endif

#ifdef KERN_REGIONS_HAVE_AVX2
// The input gradient's A (w read transposed and flipped: GEMM row r (a channel of x), column k
// (a channel of y), tap t at w[r so + k sc + tap_offset[t]] with so = taps): for one k the rows'
// taps are one contiguous block [rows][taps]; 8 rows x 8 consecutive taps are transposed in
// registers, each resulting vector (8 rows of one tap) stored whole. Rows past mc read as
// zeros. Returns false on a non-finite value.
__attribute__((target("avx2,fma"))) bool pack_weights_transposed_avx2(const RegionsWeight& a, int64_t taps,
                                                                      int64_t r_0, int64_t mc, int64_t c0,
                                                                      int64_t kc, float* Ap) {
  const int64_t mcpad = round_up(mc, kMR), tap_stride = mcpad * kc, taps8 = taps / 8 * 8;
  std::vector<int64_t> dst_tap(taps);  // the packed tap that source offset s belongs to
  for (int64_t t = 0; t < taps; ++t) dst_tap[a.tap_offset[t]] = t;
  __m256 nonfinite = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const float* colk = a.w + (c0 + k) * a.sc;
    for (int64_t r0 = 0; r0 < mcpad; r0 += 8) {
      const float* rows[8];
      for (int q = 0; q < 8; ++q) rows[q] = r0 + q < mc ? colk + (r_0 + r0 + q) * a.so : nullptr;
      float* base = Ap + (r0 / kMR) * kMR * kc + k * kMR + r0 % kMR;
      for (int64_t s0 = 0; s0 < taps8; s0 += 8) {
        __m256 v[8], col[8];
        for (int q = 0; q < 8; ++q) v[q] = rows[q] ? _mm256_loadu_ps(rows[q] + s0) : _mm256_setzero_ps();
        transpose8(v, col);
        for (int e = 0; e < 8; ++e) {
          nonfinite = _mm256_add_ps(nonfinite, _mm256_sub_ps(col[e], col[e]));
          _mm256_storeu_ps(base + dst_tap[s0 + e] * tap_stride, col[e]);
        }
      }
      for (int64_t s1 = taps8; s1 < taps; ++s1) {  // the last taps (9 = 8 + 1), one row at a time
        float* dst = base + dst_tap[s1] * tap_stride;
        for (int q = 0; q < 8; ++q) {
          const float v = rows[q] ? rows[q][s1] : 0.0f;
          nonfinite = _mm256_add_ps(nonfinite, _mm256_set1_ps(v - v));
          dst[q] = v;
        }
      }
    }
  }
  return _mm256_movemask_ps(_mm256_cmp_ps(nonfinite, nonfinite, _CMP_UNORD_Q)) == 0;
}
#endif

// A for rows [o0, o0 + mc) and columns [c0, c0 + kc), every tap: Ap[t][mp][k][24]. Returns
// false when a value read is not finite.
bool pack_weights(const Conv2dDims& d, const RegionsWeight& a, int64_t o0, int64_t mc, int64_t c0, int64_t kc,
                  float* Ap) {
  const int64_t taps = d.kh * d.kw, mcpad = round_up(mc, kMR), tap_stride = mcpad * kc;
#ifdef KERN_REGIONS_HAVE_AVX2
  bool identity = a.sc == taps;
  for (int64_t t = 0; t < taps; ++t) identity = identity && a.tap_offset[t] == t;
  if (identity && pick_micros().fma) return pack_weights_forward_avx2(a, taps, o0, mc, c0, kc, Ap);
  if (a.so == taps && pick_micros().fma) return pack_weights_transposed_avx2(a, taps, o0, mc, c0, kc, Ap);
#endif
  bool finite = true;  // v - v == 0 exactly for finite v (a chain of ANDs, not of float adds)
  auto put = [&](int64_t r, int64_t k) {
    const float* src = a.w + (o0 + r) * a.so + (c0 + k) * a.sc;
    float* dst = Ap + (r / kMR) * kMR * kc + k * kMR + r % kMR;
    for (int64_t t = 0; t < taps; ++t) {
      const float v = src[a.tap_offset[t]];
      finite &= (v - v == 0.0f);
      dst[t * tap_stride] = v;
    }
  };
  if (a.sc <= a.so) {  // the channel index runs fastest in memory
    for (int64_t r = 0; r < mc; ++r)
      for (int64_t k = 0; k < kc; ++k) put(r, k);
  } else {
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t r = 0; r < mc; ++r) put(r, k);
  }
  for (int64_t r = mc; r < mcpad; ++r)  // padding rows of the last slice
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t t = 0; t < taps; ++t) Ap[t * tap_stride + (r / kMR) * kMR * kc + k * kMR + r % kMR] = 0.0f;
  return finite;
}

}  // namespace

bool conv2d_regions_image(const Conv2dDims& d, const std::vector<ConvRegion>& regions, const RegionsWeight& a,
                          const float* x_img, const float* bias, bool relu, float* y_img, float* ws) {
  const int threads = omp_get_max_threads();
  const Layout L = layout_of(d, regions);
  float* B = ws;
  float* Cb = B + L.b_size;
  float* Aall = Cb + L.opad * L.c_cols;
  const Micros mk = pick_micros();
  const int64_t taps = d.kh * d.kw, HWo = d.Ho * d.Wo;

  pack_inputs(d, regions, L, x_img, B);
  int finite = 1;
#pragma omp parallel num_threads(threads) reduction(& : finite)
  {
    float* Ap = Aall + omp_get_thread_num() * L.a_per_thread;
    const int64_t nth = omp_get_num_threads(), th = omp_get_thread_num(), slices = L.opad / kMR;
    const int64_t lo = std::min(d.O, slices * th / nth * kMR), hi = std::min(d.O, slices * (th + 1) / nth * kMR);
    for (int64_t o0 = lo; o0 < hi; o0 += L.mc) {
      const int64_t mc = std::min(L.mc, hi - o0), mcpad = round_up(mc, kMR);
      for (int64_t p = 0; p < L.c_cols; ++p) std::memset(Cb + p * L.opad + o0, 0, mcpad * sizeof(float));
      for (int64_t c0 = 0; c0 < d.C; c0 += kKC) {
        const int64_t kc = std::min(kKC, d.C - c0);
        if (!pack_weights(d, a, o0, mc, c0, kc, Ap)) finite = 0;
        // Pixel chunks [p0, p1) of the Cb rows: a chunk's B for one tap (nc x kc) and its sums
        // (nc x mc) stay in L2 while the 24-channel slices of A pass through L1.
        for (int64_t p0 = 0; p0 < L.c_cols; p0 += L.nc) {
          const int64_t p1 = std::min(L.c_cols, p0 + L.nc);
          for (int64_t t = 0; t < taps; ++t) {
            const int64_t i = t / d.kw, j = t % d.kw;
            for (int64_t s = 0; s < mcpad; s += kMR) {
              const float* As = Ap + t * mcpad * kc + s * kc;
              for (size_t ri = 0; ri < regions.size(); ++ri) {
                const ConvRegion& R = regions[ri];
                if (i < R.i0 || i >= R.i1 || j < R.j0 || j >= R.j1) continue;
                const int64_t q_lo = std::max<int64_t>(0, p0 - L.c_base[ri]);
                const int64_t q_hi = std::min(L.ppad[ri], p1 - L.c_base[ri]);
                if (q_lo >= q_hi) continue;
                const int64_t K = R.taps() * d.C, tl = (i - R.i0) * (R.j1 - R.j0) + (j - R.j0);
                const float* Bk = B + L.b_base[ri] + (tl * d.C + c0) * kNR;
                float* Cs = Cb + L.c_base[ri] * L.opad + o0 + s;
                for (int64_t q0 = q_lo; q0 < q_hi; q0 += kNR) mk.run(kc, As, Bk + q0 * K, Cs + q0 * L.opad, L.opad);
              }
            }
          }
        }
      }
      // Epilogue: y = Cb + bias (ReLU), pixels back to their places; pixel-major reads.
      for (size_t ri = 0; ri < regions.size(); ++ri) {
        const ConvRegion& R = regions[ri];
        const int64_t width = R.c1 - R.c0;
        for (int64_t p = 0; p < R.pixels(); ++p) {
          const float* src = Cb + (L.c_base[ri] + p) * L.opad;
          float* dst = y_img + (R.r0 + p / width) * d.Wo + R.c0 + p % width;
          for (int64_t o = o0; o < o0 + mc; ++o) {
            const float v = src[o] + (bias ? bias[o] : 0.0f);
            dst[o * HWo] = relu ? (v > 0.0f ? v : 0.0f) : v;  // the separate ReLU's rule (NaN -> 0)
          }
        }
      }
    }
  }
  return finite != 0;
}

// Workspace of conv2d_regions_image for d (the thread count of the calling thread's next
// parallel region).
size_t conv2d_regions_image_workspace(const Conv2dDims& d, const std::vector<ConvRegion>& regions) {
  const int threads = omp_get_max_threads();
  const Layout L = layout_of(d, regions);
  return size_t(L.b_size + L.opad * L.c_cols + threads * L.a_per_thread);
}

bool conv2d_regions_fma() { return pick_micros().fma; }

}  // namespace kern::cpu
