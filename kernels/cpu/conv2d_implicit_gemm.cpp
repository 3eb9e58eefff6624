// CPU twin of the CUDA implicit-GEMM convolution (maths and tiling in
// conv2d_implicit_gemm.h): the same block tiles, the same K steps, the same on-the-fly
// gather of the B tile from x, the same epilogue, written as plain loops. It is the reference
// the CUDA kernel is checked against, not a fast path (eng::conv2d on the CPU uses im2col +
// OpenBLAS).
#include "kernels/conv2d_implicit_gemm.h"

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace kern {

float conv_math_round(float v, ConvMath math) {
  if (math == ConvMath::fp32) return v;
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return v;  // NaN, infinity
  if (math == ConvMath::tf32) {
    u = (u + 0x1000u) & 0xffffe000u;  // half of the dropped 13 bits' range: ties away from zero
  } else {
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;  // ties to the even bf16 mantissa
  }
  std::memcpy(&v, &u, 4);
  return v;
}

namespace cpu {

template <typename T>
void conv2d_implicit_gemm_forward(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y,
                                  IgemmTile tile) {
  if (!conv2d_implicit_gemm_supported(d))
    throw std::invalid_argument("conv2d_implicit_gemm: dims outside the kernel's 32-bit index range");
  const IgemmShape s = igemm_shape(d);
  if (s.ncol == 0) return;
  const IgemmTileShape t = igemm_tile_shape(tile == IgemmTile::automatic ? IgemmTile::t64x64 : tile);
  const int64_t CHW = int64_t(s.C) * s.H * s.W;
  const int64_t row_tiles = (s.O + t.bm - 1) / t.bm, col_tiles = (s.ncol + t.bn - 1) / t.bn;

  // One iteration = one CUDA thread block: the block tile Y[m0 : m0+BM, q0 : q0+BN].
#pragma omp parallel for schedule(dynamic) if (row_tiles * col_tiles > 1)
  for (int64_t blk = 0; blk < row_tiles * col_tiles; ++blk) {
    const int m0 = int(blk / col_tiles) * t.bm;
    const int64_t q0 = (blk % col_tiles) * t.bn;
    std::vector<T> As(size_t(t.bk) * t.bm), Bs(size_t(t.bk) * t.bn), acc(size_t(t.bm) * t.bn, T(0));

    // The block's columns, decoded once (as each CUDA thread decodes the column it loads).
    std::vector<IgemmColumn> cols(t.bn);
    std::vector<bool> col_ok(t.bn);
    for (int b = 0; b < t.bn; ++b) {
      col_ok[b] = q0 + b < s.ncol;
      if (col_ok[b]) cols[b] = igemm_column(s, q0 + b);
    }

    for (int k0 = 0; k0 < s.K; k0 += t.bk) {
      // A tile As[kk][a] = w[m0 + a, k0 + kk], zero past O or K.
      for (int kk = 0; kk < t.bk; ++kk)
        for (int a = 0; a < t.bm; ++a) {
          const int m = m0 + a, k = k0 + kk;
          As[size_t(kk) * t.bm + a] = (m < s.O && k < s.K) ? w[int64_t(m) * s.K + k] : T(0);
        }
      // B tile Bs[kk][b] = B[k0 + kk, q0 + b], gathered from x; zero past ncol or K.
      for (int kk = 0; kk < t.bk; ++kk)
        for (int b = 0; b < t.bn; ++b) {
          const int k = k0 + kk;
          T v = T(0);
          if (col_ok[b] && k < s.K) v = igemm_b_element<0, 0>(s, x + cols[b].img * CHW, cols[b].ih0, cols[b].iw0, k);
          Bs[size_t(kk) * t.bn + b] = v;
        }
      // acc += As^T Bs, k in increasing order (the order each CUDA thread accumulates in).
      for (int kk = 0; kk < t.bk; ++kk)
        for (int a = 0; a < t.bm; ++a) {
          const T av = As[size_t(kk) * t.bm + a];
          T* acc_row = acc.data() + size_t(a) * t.bn;
          const T* b_row = Bs.data() + size_t(kk) * t.bn;
          for (int b = 0; b < t.bn; ++b) acc_row[b] += av * b_row[b];
        }
    }

    // Epilogue: + bias, write the valid part of the tile into NCHW y.
    for (int a = 0; a < t.bm; ++a) {
      const int m = m0 + a;
      if (m >= s.O) break;
      const T bv = bias ? bias[m] : T(0);
      for (int b = 0; b < t.bn; ++b)
        if (col_ok[b]) y[igemm_y_index(s, cols[b], m)] = acc[size_t(a) * t.bn + b] + bv;
    }
  }
}

// ---- CPU twins of kernels 2 and 3: any GEMM problem, plain loops ----------------------------
namespace {
template <typename T, class Problem>
void run_problem(const Problem& p, ConvMath math) {
  const int rows = p.rows(), depth = p.depth();
  const int64_t cols = p.cols();
  // The rounded A rows, once (a(m, k) gathers are the expensive part of the loops).
  std::vector<T> A(size_t(rows) * depth);
  for (int m = 0; m < rows; ++m)
    for (int k = 0; k < depth; ++k) A[size_t(m) * depth + k] = conv_math_round(p.a(m, k), math);
#pragma omp parallel for schedule(dynamic, 16) if (cols > 64)
  for (int64_t q = 0; q < cols; ++q) {
    const typename Problem::Col col = p.column(q);
    std::vector<T> b(depth);
    for (int k = 0; k < depth; ++k) b[k] = conv_math_round(p.b(col, k), math);
    for (int m = 0; m < rows; ++m) {
      const T* a = A.data() + size_t(m) * depth;
      T acc = T(0);
      for (int k = 0; k < depth; ++k) acc += a[k] * b[k];
      if (p.bias) acc += p.bias[m];
      if (p.relu && acc < T(0)) acc = T(0);
      *p.out(col, m) = acc;
    }
  }
}
void check(bool ok, const char* what, const Conv2dDims& d) {
  if (!ok)
    throw std::invalid_argument(std::string(what) + ": dims outside the kernel's 32-bit index range: " +
                                igemm_dims_str(d));
}
}  // namespace

template <typename T>
void conv2d_igemm_forward(const Conv2dDims& d, ConvMath math, const T* x, const T* w, const T* bias, bool relu, T* y) {
  check(conv2d_implicit_gemm_supported(d), "conv2d_igemm_forward", d);
  run_problem<T>(IgemmForward<T>{igemm_shape(d), x, w, bias, relu, y}, math);
}
template <typename T>
void conv2d_igemm_backward_data(const Conv2dDims& d, ConvMath math, const T* dy, const T* w, T* dx) {
  check(conv2d_implicit_gemm_backward_supported(d), "conv2d_igemm_backward_data", d);
  run_problem<T>(IgemmBackwardData<T>{igemm_shape(d), dy, w, dx}, math);
}
template <typename T>
void conv2d_igemm_backward_filter(const Conv2dDims& d, ConvMath math, const T* x, const T* dy, T* dw) {
  check(conv2d_implicit_gemm_backward_supported(d), "conv2d_igemm_backward_filter", d);
  run_problem<T>(IgemmBackwardFilter<T>{igemm_shape(d), x, dy, dw}, math);
}

#define KERN_IGEMM_TWINS(T)                                                                                   \
  template void conv2d_igemm_forward<T>(const Conv2dDims&, ConvMath, const T*, const T*, const T*, bool, T*); \
  template void conv2d_igemm_backward_data<T>(const Conv2dDims&, ConvMath, const T*, const T*, T*);         \
  template void conv2d_igemm_backward_filter<T>(const Conv2dDims&, ConvMath, const T*, const T*, T*);
KERN_IGEMM_TWINS(float)
KERN_IGEMM_TWINS(double)
#undef KERN_IGEMM_TWINS

template void conv2d_implicit_gemm_forward<float>(const Conv2dDims&, const float*, const float*, const float*, float*,
                                                  IgemmTile);
template void conv2d_implicit_gemm_forward<double>(const Conv2dDims&, const double*, const double*, const double*,
                                                   double*, IgemmTile);

}  // namespace cpu
}  // namespace kern
