// CPU Winograd F(4x4, 3x3) convolution, f32: transforms, chunked 36-GEMM passes, cost rule.
// Maths, layouts and the error bound: kernels/conv2d_winograd.h.
#include "kernels/conv2d_winograd.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "isa_dispatch.h"
#include "kernels/cpu_isa.h"
#include "kernels/gemm.h"

namespace kern::cpu {
namespace {

constexpr int kTile = 4;   // outputs per tile side (m)
constexpr int kIn = 6;     // input tile side (m + 3 - 1)
constexpr int kPos = 36;   // transformed positions per tile
constexpr int kL = 8;      // tiles transformed together, one SIMD lane each

// One Winograd convolution pass: in [N, Cin, Hin, Win] -> out [N, Cout, Hout, Wout] with
// out[n, o, h, v] = sum_{c, i, j} g[o, c, i, j] in[n, c, h - pad_h + i, v - pad_w + j]
// (zero outside the input; pad may be negative). Tiles cover the output.
struct Pass {
  int64_t N, Cin, Hin, Win, Cout, Hout, Wout, pad_h, pad_w;
  int64_t th, tw, per_image, total;  // tile rows, tile columns, tiles per image, all tiles
  Pass(int64_t n, int64_t cin, int64_t hin, int64_t win, int64_t cout, int64_t hout, int64_t wout, int64_t ph,
       int64_t pw)
      : N(n), Cin(cin), Hin(hin), Win(win), Cout(cout), Hout(hout), Wout(wout), pad_h(ph), pad_w(pw) {
    th = (Hout + kTile - 1) / kTile;
    tw = (Wout + kTile - 1) / kTile;
    per_image = th * tw;
    total = N * per_image;
  }
  // Image and top-left output pixel of global tile t.
  void locate(int64_t t, int64_t& n, int64_t& oh0, int64_t& ow0) const {
    n = t / per_image;
    const int64_t r = t % per_image;
    oh0 = (r / tw) * kTile;
    ow0 = (r % tw) * kTile;
  }
};

// ---- 1-D transforms on kL lanes; element e of lane l at p[e * stride + l] ----------------

// t = B^T d (6 -> 6): one row or column of an input tile.
KERN_CPU_INLINE void input_1d(const float* s, int64_t ss, float* t, int64_t ts) {
  for (int l = 0; l < kL; ++l) {
    const float d0 = s[0 * ss + l], d1 = s[1 * ss + l], d2 = s[2 * ss + l];
    const float d3 = s[3 * ss + l], d4 = s[4 * ss + l], d5 = s[5 * ss + l];
    t[0 * ts + l] = 4.0f * d0 - 5.0f * d2 + d4;
    t[1 * ts + l] = -4.0f * (d1 + d2) + d3 + d4;
    t[2 * ts + l] = 4.0f * (d1 - d2) - d3 + d4;
    t[3 * ts + l] = 2.0f * (d3 - d1) - d2 + d4;
    t[4 * ts + l] = 2.0f * (d1 - d3) - d2 + d4;
    t[5 * ts + l] = 4.0f * d1 - 5.0f * d3 + d5;
  }
}

// o = A^T m (6 -> 4): one row or column of a transformed product.
KERN_CPU_INLINE void output_1d(const float* s, int64_t ss, float* o, int64_t os) {
  for (int l = 0; l < kL; ++l) {
    const float m0 = s[0 * ss + l], m1 = s[1 * ss + l], m2 = s[2 * ss + l];
    const float m3 = s[3 * ss + l], m4 = s[4 * ss + l], m5 = s[5 * ss + l];
    const float a = m1 + m2, b = m1 - m2, c = m3 + m4, e = m3 - m4;
    o[0 * os + l] = m0 + a + c;
    o[1 * os + l] = b + 2.0f * e;
    o[2 * os + l] = a + 4.0f * c;
    o[3 * os + l] = b + 8.0f * e + m5;
  }
}

// k = A g (4 -> 6): the adjoint of output_1d, for the gradient of an output tile.
KERN_CPU_INLINE void grad_1d(const float* s, int64_t ss, float* k, int64_t ks) {
  for (int l = 0; l < kL; ++l) {
    const float g0 = s[0 * ss + l], g1 = s[1 * ss + l], g2 = s[2 * ss + l], g3 = s[3 * ss + l];
    const float ev = g0 + g2, od = g1 + g3, ev4 = g0 + 4.0f * g2, od8 = 2.0f * g1 + 8.0f * g3;
    k[0 * ks + l] = g0;
    k[1 * ks + l] = ev + od;
    k[2 * ks + l] = ev - od;
    k[3 * ks + l] = ev4 + od8;
    k[4 * ks + l] = ev4 - od8;
    k[5 * ks + l] = g3;
  }
}

// G^T u (6 -> 3), the adjoint of G, in double for the weight gradient (constants as products).
constexpr double k1_4 = 1.0 / 4, k1_6 = 1.0 / 6, k1_12 = 1.0 / 12, k1_24 = 1.0 / 24;
inline void weight_adjoint_1d(const double* u, int64_t us, double* g, int64_t gs) {
  const double u0 = u[0], u1 = u[us], u2 = u[2 * us], u3 = u[3 * us], u4 = u[4 * us], u5 = u[5 * us];
  const double s12 = u1 + u2, s34 = u3 + u4;
  g[0] = u0 * k1_4 - s12 * k1_6 + s34 * k1_24;
  g[gs] = (u2 - u1) * k1_6 + (u3 - u4) * k1_12;
  g[2 * gs] = (s34 - s12) * k1_6 + u5;
}

// u = G g (3 -> 6) on kL lanes, in float (the rounding of U adds ~1e-7 relative, far below
// the transform's own error): this runs O*C times per call, as much as the GEMMs on small maps.
KERN_CPU_INLINE void weight_1d_lanes(const float* g, int64_t gs, float* u, int64_t us) {
  constexpr float c4 = 0.25f, c6 = 1.0f / 6, c12 = 1.0f / 12, c24 = 1.0f / 24;
  for (int l = 0; l < kL; ++l) {
    const float g0 = g[l], g1 = g[gs + l], g2 = g[2 * gs + l];
    const float a = g0 + g2, b = g0 * c24 + g2 * c6, c = g1 * c12;
    u[l] = g0 * c4;
    u[us + l] = -(a + g1) * c6;
    u[2 * us + l] = -(a - g1) * c6;
    u[3 * us + l] = b + c;
    u[4 * us + l] = b - c;
    u[5 * us + l] = g2;
  }
}

// U[k][row][col] = (G g G^T)_k for the 3x3 kernel g = w[o, c] (flip: w[o, c, 2-i, 2-j] and
// row = c, col = o, the kernel of the backward-data pass). kL consecutive U entries at a time
// (one lane each), so every store run covers whole cache lines of each of the 36 planes.
KERN_CPU_INLINE void weight_block(const float* w, int64_t O, int64_t C, bool flip, float* U, int64_t blk) {
  const int64_t cols = flip ? O : C;
  const int64_t n = O * C, lo = blk * kL, cnt = std::min<int64_t>(kL, n - lo);
  alignas(32) float k[9 * kL], t[18 * kL], u[kPos * kL];
  for (int64_t q = 0; q < kL; ++q) {
    const int64_t rc = lo + std::min(q, cnt - 1), r = rc / cols, cl = rc % cols;
    const float* g = w + ((flip ? cl : r) * C + (flip ? r : cl)) * 9;
    for (int e = 0; e < 9; ++e) k[e * kL + q] = flip ? g[8 - e] : g[e];
  }
  for (int i = 0; i < 3; ++i) weight_1d_lanes(k + 3 * i * kL, kL, t + 6 * i * kL, kL);  // rows: g G^T
  for (int j = 0; j < 6; ++j) weight_1d_lanes(t + j * kL, 6 * kL, u + j * kL, 6 * kL);  // columns: G (.)
  for (int e = 0; e < kPos; ++e) std::copy(u + e * kL, u + e * kL + cnt, U + e * n + lo);
}

// Loads the 6x6 input tiles of tiles t0 .. t0 + kL - 1 (channel c) into d[(r*6 + j)*kL + l];
// tiles past the last one, and pixels outside the input, read 0.
KERN_CPU_INLINE
void gather_input(const Pass& p, const float* in, int64_t c, int64_t t0, float* d) {
  for (int l = 0; l < kL; ++l) {
    const int64_t t = t0 + l;
    if (t >= p.total) {
      for (int e = 0; e < kPos; ++e) d[e * kL + l] = 0.0f;
      continue;
    }
    int64_t n, oh0, ow0;
    p.locate(t, n, oh0, ow0);
    const int64_t h0 = oh0 - p.pad_h, v0 = ow0 - p.pad_w;
    const float* xc = in + (n * p.Cin + c) * p.Hin * p.Win;
    if (h0 >= 0 && v0 >= 0 && h0 + kIn <= p.Hin && v0 + kIn <= p.Win) {
      for (int r = 0; r < kIn; ++r) {
        const float* row = xc + (h0 + r) * p.Win + v0;
        for (int j = 0; j < kIn; ++j) d[(r * kIn + j) * kL + l] = row[j];
      }
    } else {
      for (int r = 0; r < kIn; ++r) {
        const int64_t h = h0 + r;
        const bool row_in = h >= 0 && h < p.Hin;
        for (int j = 0; j < kIn; ++j) {
          const int64_t v = v0 + j;
          d[(r * kIn + j) * kL + l] = row_in && v >= 0 && v < p.Win ? xc[h * p.Win + v] : 0.0f;
        }
      }
    }
  }
}

// V[k][c][off .. off + kL) = (B^T d B)_k for the kL tiles starting at global tile t0.
KERN_CPU_INLINE
void input_transform(const Pass& p, const float* in, int64_t c, int64_t t0, float* V, int64_t ldv, int64_t off) {
  alignas(32) float d[kPos * kL], t[kPos * kL], u[kPos * kL];
  gather_input(p, in, c, t0, d);
  for (int r = 0; r < kIn; ++r) input_1d(d + r * kIn * kL, kL, t + r * kIn * kL, kL);  // rows: d B
  for (int j = 0; j < kIn; ++j) input_1d(t + j * kL, kIn * kL, u + j * kL, kIn * kL);  // columns: B^T (d B)
  for (int e = 0; e < kPos; ++e) {
    float* dst = V + (e * p.Cin + c) * ldv + off;
    for (int l = 0; l < kL; ++l) dst[l] = u[e * kL + l];
  }
}

// out tiles (channel o) = A^T M A + bias, ReLU optional, for the kL tiles at global t0.
KERN_CPU_INLINE
void output_transform(const Pass& p, const float* M, int64_t ldm, int64_t off, int64_t o, int64_t t0, float bias,
                      bool relu, float* out) {
  alignas(32) float m[kPos * kL], t[kIn * kTile * kL], y[kTile * kTile * kL];
  for (int e = 0; e < kPos; ++e) {
    const float* src = M + (e * p.Cout + o) * ldm + off;
    for (int l = 0; l < kL; ++l) m[e * kL + l] = src[l];
  }
  for (int r = 0; r < kIn; ++r) output_1d(m + r * kIn * kL, kL, t + r * kTile * kL, kL);       // rows: m A
  for (int j = 0; j < kTile; ++j) output_1d(t + j * kL, kTile * kL, y + j * kL, kTile * kL);  // columns
  for (int l = 0; l < kL; ++l) {
    const int64_t tt = t0 + l;
    if (tt >= p.total) break;
    int64_t n, oh0, ow0;
    p.locate(tt, n, oh0, ow0);
    float* yo = out + (n * p.Cout + o) * p.Hout * p.Wout;
    const int rows = static_cast<int>(std::min<int64_t>(kTile, p.Hout - oh0));
    const int cols = static_cast<int>(std::min<int64_t>(kTile, p.Wout - ow0));
    for (int i = 0; i < rows; ++i) {
      float* dst = yo + (oh0 + i) * p.Wout + ow0;
      for (int j = 0; j < cols; ++j) {
        const float v = y[(i * kTile + j) * kL + l] + bias;
        dst[j] = relu ? (v > 0.0f ? v : 0.0f) : v;
      }
    }
  }
}

// P[k][o][off .. off + kL) = (A g A^T)_k for the output-gradient tiles (channel o) at t0;
// outputs past the edge count as 0.
KERN_CPU_INLINE
void grad_transform(const Pass& p, const float* gy, int64_t o, int64_t t0, float* P, int64_t ldp, int64_t off) {
  alignas(32) float g[kTile * kTile * kL], t[kTile * kIn * kL], u[kPos * kL];
  for (int l = 0; l < kL; ++l) {
    const int64_t tt = t0 + l;
    int rows = 0, cols = 0;
    const float* go = nullptr;
    int64_t oh0 = 0, ow0 = 0;
    if (tt < p.total) {
      int64_t n;
      p.locate(tt, n, oh0, ow0);
      go = gy + (n * p.Cout + o) * p.Hout * p.Wout;
      rows = static_cast<int>(std::min<int64_t>(kTile, p.Hout - oh0));
      cols = static_cast<int>(std::min<int64_t>(kTile, p.Wout - ow0));
    }
    for (int i = 0; i < kTile; ++i)
      for (int j = 0; j < kTile; ++j)
        g[(i * kTile + j) * kL + l] = i < rows && j < cols ? go[(oh0 + i) * p.Wout + ow0 + j] : 0.0f;
  }
  for (int i = 0; i < kTile; ++i) grad_1d(g + i * kTile * kL, kL, t + i * kIn * kL, kL);  // rows: g A^T
  for (int j = 0; j < kIn; ++j) grad_1d(t + j * kL, kIn * kL, u + j * kL, kIn * kL);     // columns: A (g A^T)
  for (int e = 0; e < kPos; ++e) {
    float* dst = P + (e * p.Cout + o) * ldp + off;
    for (int l = 0; l < kL; ++l) dst[l] = u[e * kL + l];
  }
}

// The transforms compiled for each ISA level (isa_dispatch.h): the 8 lanes are one AVX2
// register, two SSE ones below AVX2. This file is compiled with -ffp-contract=off
// (kernels/CMakeLists.txt), so every level gives the same bits.
struct WeightBlockK {
  static KERN_CPU_INLINE void run(const float* w, int64_t O, int64_t C, bool flip, float* U, int64_t blk) {
    weight_block(w, O, C, flip, U, blk);
  }
};
struct InputTransformK {
  static KERN_CPU_INLINE void run(const Pass* p, const float* in, int64_t c, int64_t t0, float* V, int64_t ldv,
                                  int64_t off) {
    input_transform(*p, in, c, t0, V, ldv, off);
  }
};
struct OutputTransformK {
  static KERN_CPU_INLINE void run(const Pass* p, const float* M, int64_t ldm, int64_t off, int64_t o, int64_t t0,
                                  float bias, bool relu, float* out) {
    output_transform(*p, M, ldm, off, o, t0, bias, relu, out);
  }
};
struct GradTransformK {
  static KERN_CPU_INLINE void run(const Pass* p, const float* gy, int64_t o, int64_t t0, float* P, int64_t ldp,
                                  int64_t off) {
    grad_transform(*p, gy, o, t0, P, ldp, off);
  }
};
using TileFn = void (*)(const Pass*, const float*, int64_t, int64_t, float*, int64_t, int64_t);
TileFn input_transform_fn() {
  return run_isa<InputTransformK, const Pass*, const float*, int64_t, int64_t, float*, int64_t, int64_t>(isa_active());
}

void transform_weights(const float* w, int64_t O, int64_t C, bool flip, float* U) {
  const auto block = run_isa<WeightBlockK, const float*, int64_t, int64_t, bool, float*, int64_t>(isa_active());
  const int64_t n = O * C, blocks = (n + kL - 1) / kL;
#pragma omp parallel for schedule(static) if (n > 1024)
  for (int64_t blk = 0; blk < blocks; ++blk) block(w, O, C, flip, U, blk);
}

// The workspace: the caller's (ws, at least conv2d_winograd_workspace_floats), or else the
// calling thread's own buffer, grown on demand and kept (a fresh multi-MB buffer per call
// costs more in page faults than the transforms).
float* workspace(float* ws, size_t floats) {
  if (ws) return ws;
  thread_local std::vector<float> own;
  if (own.size() < floats) {
    own = std::vector<float>();
    own.resize(floats);
  }
  return own.data();
}

// Floats of one pass's workspace: U (36 O C) and a chunk's two transform buffers.
int64_t pass_floats(int64_t O, int64_t C, int64_t cin, int64_t cout, int64_t tiles) {
  return kPos * (O * C + (cin + cout) * conv2d_winograd_chunk_tiles(cin, cout, tiles));
}
int64_t tiles_of(int64_t N, int64_t Ho, int64_t Wo) {
  return N * ((Ho + kTile - 1) / kTile) * ((Wo + kTile - 1) / kTile);
}

// Runs one pass with transformed weights U [36][Cout][Cin]: out = pass(in) + bias, ReLU.
// Chunks never span two images (tc comes from the tiles of one image), so an image's result
// is the same whatever else is in the batch: the same GEMMs over the same columns.
void run_pass(const Pass& p, const float* in, const float* U, const float* bias, bool relu, float* out, float* V,
              float* M, int64_t tc) {
  const int64_t per_image_chunks = (p.per_image + tc - 1) / tc;
  const int64_t chunks = p.N * per_image_chunks;
  const bool par = p.total * (p.Cin + p.Cout) * kPos > (1 << 15);
  const TileFn in_tf = input_transform_fn();
  const auto out_tf = run_isa<OutputTransformK, const Pass*, const float*, int64_t, int64_t, int64_t, int64_t, float,
                              bool, float*>(isa_active());
#pragma omp parallel if (par)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t image = ch / per_image_chunks, in_image = (ch % per_image_chunks) * tc;
    const int64_t first = image * p.per_image + in_image, count = std::min(tc, p.per_image - in_image);
    const int64_t groups = (count + kL - 1) / kL, width = groups * kL;
#pragma omp for collapse(2) schedule(static)
    for (int64_t c = 0; c < p.Cin; ++c)
      for (int64_t g = 0; g < groups; ++g) in_tf(&p, in, c, first + g * kL, V, tc, g * kL);
#pragma omp for schedule(static)
    for (int64_t k = 0; k < kPos; ++k)
      gemm<float>(false, false, p.Cout, width, p.Cin, 1.0f, U + k * p.Cout * p.Cin, p.Cin, V + k * p.Cin * tc, tc,
                  0.0f, M + k * p.Cout * tc, tc);
#pragma omp for collapse(2) schedule(static)
    for (int64_t o = 0; o < p.Cout; ++o)
      for (int64_t g = 0; g < groups; ++g)
        out_tf(&p, M, tc, g * kL, o, first + g * kL, bias ? bias[o] : 0.0f, relu, out);
  }
}

void check_supported(const Conv2dDims& d, const char* what) {
  if (!conv2d_winograd_supported(d) || d.Ho != d.H + 2 * d.pad_h - 2 || d.Wo != d.W + 2 * d.pad_w - 2)
    throw std::runtime_error(std::string(what) + ": not a 3x3 stride-1 undilated ungrouped convolution (N=" +
                             std::to_string(d.N) + " C=" + std::to_string(d.C) + " O=" + std::to_string(d.O) +
                             " k=" + std::to_string(d.kh) + "x" + std::to_string(d.kw) + " stride=" +
                             std::to_string(d.stride_h) + " dilation=" + std::to_string(d.dil_h) + " groups=" +
                             std::to_string(d.groups) + " out=" + std::to_string(d.Ho) + "x" + std::to_string(d.Wo) +
                             ")");
}

}  // namespace

bool conv2d_winograd_preferred(const Conv2dDims& d) {
  if (!conv2d_winograd_supported(d)) return false;
  // Per call the weight transform and the U reads cost ~ O*C, the GEMM savings ~ O*C*tiles:
  // Winograd needs enough tiles. Narrow inputs (C < 32) leave the transforms dominant.
  // Tiles of one image, not of the batch: the choice (and so the result) of an image must not
  // depend on the batch it is in (distributed evaluation equals single-process evaluation).
  const int64_t tiles = ((d.Ho + 3) / 4) * ((d.Wo + 3) / 4);
  return d.C >= 32 && d.O >= 8 && tiles >= 64;
}

int64_t conv2d_winograd_chunk_tiles(int64_t cin, int64_t cout, int64_t total_tiles) {
  // V and M of a chunk together: 36 (cin + cout) floats per tile, kept under 4 Mi floats
  // (16 MB: one chunk covers a 38x38 map of 512 -> 512 channels); 8 to 512 tiles.
  const int64_t budget = int64_t(1) << 22;
  int64_t tc = budget / (kPos * (cin + cout));
  tc = std::max<int64_t>(kL, std::min<int64_t>(tc, 512)) / kL * kL;
  const int64_t need = (total_tiles + kL - 1) / kL * kL;
  return std::max<int64_t>(kL, std::min(tc, need));
}

bool all_finite(int64_t n, const float* p) {
  // x - x is 0 for finite x and NaN for NaN/Inf; the sum stays 0 only if every term is 0.
  float acc = 0.0f;
#pragma omp parallel for reduction(+ : acc) schedule(static) if (n > (1 << 18))
  for (int64_t i = 0; i < n; ++i) acc += p[i] - p[i];
  return acc == 0.0f;
}

int64_t conv2d_winograd_workspace_floats(const Conv2dDims& d, bool backward) {
  if (!conv2d_winograd_supported(d)) return 0;
  // Forward and backward data chunk one image's tiles; the weight gradient all tiles.
  const int64_t fwd = pass_floats(d.O, d.C, d.C, d.O, tiles_of(1, d.Ho, d.Wo));
  if (!backward) return fwd;
  return std::max({fwd, pass_floats(d.O, d.C, d.O, d.C, tiles_of(1, d.H, d.W)),
                   pass_floats(d.O, d.C, d.C, d.O, tiles_of(d.N, d.Ho, d.Wo))});
}

bool conv2d_winograd_forward(const Conv2dDims& d, const float* x, const float* w, const float* bias, bool relu,
                             float* y, float* ws) {
  check_supported(d, "conv2d_winograd_forward");
  if (!all_finite(d.N * d.C * d.H * d.W, x) || !all_finite(d.O * d.C * 9, w) || (bias && !all_finite(d.O, bias)))
    return false;
  const Pass p(d.N, d.C, d.H, d.W, d.O, d.Ho, d.Wo, d.pad_h, d.pad_w);
  const int64_t tc = conv2d_winograd_chunk_tiles(d.C, d.O, p.per_image);
  float* U = workspace(ws, size_t(kPos) * (d.O * d.C + (d.C + d.O) * tc));
  float* V = U + kPos * d.O * d.C;
  float* M = V + kPos * d.C * tc;
  transform_weights(w, d.O, d.C, false, U);
  run_pass(p, x, U, bias, relu, y, V, M, tc);
  return true;
}

bool conv2d_winograd_backward(const Conv2dDims& d, const float* x, const float* w, const float* gy, float* gx,
                              float* gw, float* gb, float* ws) {
  check_supported(d, "conv2d_winograd_backward");
  const int64_t ny = d.N * d.O * d.Ho * d.Wo;
  if ((gx || gw) && !all_finite(ny, gy)) return false;
  if (gx && !all_finite(d.O * d.C * 9, w)) return false;
  if (gw && !all_finite(d.N * d.C * d.H * d.W, x)) return false;

  if (gb) {  // the reference's sum, in the same order
    const int64_t HWo = d.Ho * d.Wo;
    for (int64_t o = 0; o < d.O; ++o) {
      float s = 0;
      for (int64_t n = 0; n < d.N; ++n) {
        const float* g = gy + (n * d.O + o) * HWo;
        for (int64_t k = 0; k < HWo; ++k) s += g[k];
      }
      gb[o] = s;
    }
  }
  if (gx) {
    // gx = conv(gy, w') with w'[c, o] = flip(w[o, c]), offset 2 - pad.
    const Pass p(d.N, d.O, d.Ho, d.Wo, d.C, d.H, d.W, 2 - d.pad_h, 2 - d.pad_w);
    const int64_t tc = conv2d_winograd_chunk_tiles(d.O, d.C, p.per_image);
    float* U = workspace(ws, size_t(kPos) * (d.O * d.C + (d.C + d.O) * tc));
    float* V = U + kPos * d.O * d.C;
    float* M = V + kPos * d.O * tc;
    transform_weights(w, d.O, d.C, true, U);
    run_pass(p, gy, U, nullptr, false, gx, V, M, tc);
  }
  if (gw) {
    // Forward geometry (x -> y); per chunk V = input transform of x, P = gradient transform
    // of gy, dU_k += P_k V_k^T; then gw = G^T dU G.
    const Pass p(d.N, d.C, d.H, d.W, d.O, d.Ho, d.Wo, d.pad_h, d.pad_w);
    const int64_t tc = conv2d_winograd_chunk_tiles(d.C, d.O, p.total);
    float* dU = workspace(ws, size_t(kPos) * (d.O * d.C + (d.C + d.O) * tc));
    float* V = dU + kPos * d.O * d.C;
    float* P = V + kPos * d.C * tc;
    const int64_t chunks = (p.total + tc - 1) / tc;
    const bool par = p.total * (p.Cin + p.Cout) * kPos > (1 << 15);
    const TileFn in_tf = input_transform_fn();
    const TileFn grad_tf =
        run_isa<GradTransformK, const Pass*, const float*, int64_t, int64_t, float*, int64_t, int64_t>(isa_active());
#pragma omp parallel if (par)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t first = ch * tc, count = std::min(tc, p.total - first);
      const int64_t groups = (count + kL - 1) / kL, width = groups * kL;
#pragma omp for collapse(2) schedule(static) nowait
      for (int64_t c = 0; c < d.C; ++c)
        for (int64_t g = 0; g < groups; ++g) in_tf(&p, x, c, first + g * kL, V, tc, g * kL);
#pragma omp for collapse(2) schedule(static)
      for (int64_t o = 0; o < d.O; ++o)
        for (int64_t g = 0; g < groups; ++g) grad_tf(&p, gy, o, first + g * kL, P, tc, g * kL);
#pragma omp for schedule(static)
      for (int64_t k = 0; k < kPos; ++k)
        gemm<float>(false, true, d.O, d.C, width, 1.0f, P + k * d.O * tc, tc, V + k * d.C * tc, tc,
                    ch == 0 ? 0.0f : 1.0f, dU + k * d.O * d.C, d.C);
    }
#pragma omp parallel for schedule(static) if (d.O * d.C > 256)
    for (int64_t oc = 0; oc < d.O * d.C; ++oc) {
      double u[36], t[18], g[9];
      for (int e = 0; e < kPos; ++e) u[e] = dU[e * d.O * d.C + oc];
      for (int r = 0; r < 6; ++r) weight_adjoint_1d(u + 6 * r, 1, t + 3 * r, 1);  // rows: u G
      for (int j = 0; j < 3; ++j) weight_adjoint_1d(t + j, 3, g + j, 3);         // columns: G^T (u G)
      for (int e = 0; e < 9; ++e) gw[oc * 9 + e] = static_cast<float>(g[e]);
    }
  }
  return true;
}

}  // namespace kern::cpu
