// 2-D convolution as implicit GEMMs: the im2col matrix is never stored, its entries are
// gathered from x (or dy) while the GEMM tiles are loaded. Used on CUDA for the dilated
// convolutions (SSD fc6: 512 -> 1024, 3x3, dilation 6, pad 6 on 19x19): forward, backward-
// data and backward-filter, in FP32 (CUDA cores), TF32 and BF16 (tensor cores, WMMA). The
// CPU twins below are the same formulations in plain loops, the references the CUDA kernels
// are tested against. Kernels (kernels/cuda/conv2d_implicit_gemm.cu, numbered llm.c style):
//   1. forward, FP32 CUDA cores, register micro-tiles (the baseline; tiling below)
//   2. any pass, tensor cores (WMMA): TF32 m16n16k8 on float memory, BF16 m16n16k16 on
//      __nv_bfloat16 memory; FP32 accumulation; epilogue + bias, optional ReLU
//   3. backward-data / backward-filter, FP32 CUDA cores, a plain 16x16 shared-memory tile
// The three passes as GEMMs (IgemmForward, IgemmBackwardData, IgemmBackwardFilter below)
// share the kernels 2 and 3 and the CPU twin.
//
// Maths (same conv as conv2d.h; == torch.nn.functional.conv2d(x, w, bias, stride, padding,
// dilation), groups = 1; NCHW, contiguous):
//   x [N, C, H, W], w [O, C, kh, kw], bias [O] (nullable), y [N, O, Ho, Wo]
//   y[n, o, oh, ow] = bias[o] + sum_{c, i, j} w[o, c, i, j] * x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
//   (x read as 0 outside [0, H) x [0, W)).
//
// GEMM view, one GEMM for the whole batch:
//   Y [M, Ncol] = A [M, K] x B [K, Ncol]   (+ bias[m] on row m)
//   M = O, Ncol = N*Ho*Wo, K = C*kh*kw
//   row    m = o                             (an output channel)
//   column q = (n*Ho + oh)*Wo + ow           (an output pixel of one image)
//   depth  k = (c*kh + i)*kw + j             (one input channel and kernel tap)
//   A[m, k] = w[o, c, i, j] -- w is already the row-major [O, C*kh*kw] matrix, no copy.
//   B[k, q] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw], or 0 in the padding. B is the
//             im2col matrix of all images side by side; it exists only tile by tile.
//   Y[m, q] is stored at y[((n*O + o)*Ho + oh)*Wo + ow] (NCHW, so a column of Y is not one
//             contiguous run across images: the epilogue scatters per column).
//
// Tiling of kernel 1 (the CPU twin conv2d_implicit_gemm_forward walks the same block tiles
// and K steps; kernels 2 and 3 are described in the .cu):
//   The grid covers Y with BM x BN block tiles: blockIdx.y picks rows [m0, m0+BM),
//   blockIdx.x picks columns [q0, q0+BN). A block walks K in steps of BK:
//     - loads the A tile (BM x BK rows of w) and gathers the B tile (BK x BN from x, with
//       stride/pad/dilation, zero outside the image, past the last column or past K) into
//       shared memory; every thread loads BM*BK/threads A and BK*BN/threads B elements;
//     - each thread multiplies a TM x TN register micro-tile: for every k of the step it
//       reads TM values of A and TN values of B from shared memory and does TM*TN FMAs;
//     - the loads of step t+1 go to registers while step t is multiplied, then to the other
//       half of a double-buffered shared tile (one __syncthreads per step).
//   The epilogue adds bias[m] and writes the block's valid rows and columns (every tile
//   edge is bounds-checked: O, N*Ho*Wo and K need not divide the tile).
//   Tile configurations (256 threads each):
//     t128x128: BM = BN = 128, BK = 8,  micro-tile 8x8 (4 + 4 rows, 4 + 4 columns)
//     t64x64:   BM = BN = 64,  BK = 16, micro-tile 4x4
//   `automatic` takes 128x128 when that still gives at least two blocks per SM, else 64x64.
//   3x3 kernels get a specialisation with kh, kw known at compile time (the k -> (c, i, j)
//   split becomes multiplications); other sizes divide at run time.
//
// Work and traffic per call: 2*M*Ncol*K FLOPs (taps that land in the padding are multiplied
// by zero, not skipped); the floor on memory traffic is reading x and w and writing y once.
// The B gather re-reads each x pixel up to kh*kw times, from L1/L2.
//
// Index ranges: the kernel uses 32-bit offsets inside one image (C*H*W), inside w (O*K) and
// for K, and 64-bit image offsets and columns; conv2d_implicit_gemm_supported() checks that
// the 32-bit parts fit (conv2d_implicit_gemm_backward_supported() adds the backward passes
// ranges). The front-end (engine/src/ops/conv2d.cpp) routes a CUDA float forward here when
// conv2d_implicit_gemm_preferred() (dilation > 1 and supported).
//
// Tensor cores (kernel 2, tile 64 x 64 x 16, 4 warps of 2 x 2 16x16 fragments): with tf32 the
// operands are rounded once to tf32 (round to nearest) as they are stored to shared memory,
// with bf16 they are bf16 in memory; products are summed in float. Error bound per output,
// S = sum_k |a_k b_k|: (2u + u^2) S + K 2^-23 S, u = 2^-11 (tf32) or 2^-8 (bf16), plus 2^-8 |y|
// for a bf16 output (derivation and tests: tests/ops/test_conv2d_tensor_core.cpp).
#pragma once
#include <cstdint>
#include <string>

#include "kernels/common.h"
#include "kernels/conv2d.h"

#ifdef __CUDACC__
#define KERN_IGEMM_HD __host__ __device__ __forceinline__
#else
#define KERN_IGEMM_HD inline
#endif

// __nv_bfloat16 (cuda_bf16.h) is a struct in CUDA and in tools/cuda_emu; declared here so
// that CPU code can include this header without the CUDA headers.
struct __nv_bfloat16;

namespace kern {

// The arithmetic of a conv GEMM: products of operands of this precision, accumulated in
// float. fp32: FMA on CUDA cores. tf32: operands rounded to 10 explicit mantissa bits
// (round to nearest, ties away: cvt.rna, the CUDA __float_to_tf32), relative error
// u = 2^-11 per operand. bf16: operands are __nv_bfloat16 in memory (7 explicit bits,
// u = 2^-8 after the caller's round-to-nearest-even conversion), output rounded to bf16.
enum class ConvMath : int { fp32 = 0, tf32 = 1, bf16 = 2 };

enum class IgemmTile : int { automatic = 0, t128x128 = 1, t64x64 = 2 };

// Block tile sizes of a configuration (automatic is resolved before this is asked).
struct IgemmTileShape {
  int bm, bn, bk, tm, tn;
};
inline IgemmTileShape igemm_tile_shape(IgemmTile t) {
  return t == IgemmTile::t128x128 ? IgemmTileShape{128, 128, 8, 8, 8} : IgemmTileShape{64, 64, 16, 4, 4};
}

// The dims in the 32-bit form the kernel indexes with (Conv2dDims holds int64).
struct IgemmShape {
  int C, H, W, O, kh, kw;
  int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int Ho, Wo;
  int K;          // C*kh*kw
  int64_t HWo;    // Ho*Wo
  int64_t ncol;   // N*Ho*Wo
  int64_t N, HW;  // batch, H*W
};

// True when every 32-bit index above fits (and the grid fits the launch limits).
inline bool conv2d_implicit_gemm_supported(const Conv2dDims& d) {
  const int64_t lim = (int64_t(1) << 31) - 1;
  const int64_t K = d.C * d.kh * d.kw;
  if (d.N < 0 || d.C <= 0 || d.H <= 0 || d.W <= 0 || d.O <= 0 || d.Ho <= 0 || d.Wo <= 0) return false;
  if (d.C * d.H * d.W > lim || d.O * K > lim || K > lim) return false;
  if (d.stride_h > lim || d.stride_w > lim || d.pad_h > lim || d.pad_w > lim) return false;
  if (d.dil_h * d.kh > lim || d.dil_w * d.kw > lim || d.H + 2 * d.pad_h > lim || d.W + 2 * d.pad_w > lim) return false;
  if ((d.O + 63) / 64 > 65535) return false;               // gridDim.y
  if ((d.N * d.Ho * d.Wo + 63) / 64 > lim) return false;   // gridDim.x
  return true;
}

// The routing rule of the conv2d front-end: dilated convolutions take this kernel.
inline bool conv2d_implicit_gemm_preferred(const Conv2dDims& d) {
  return (d.dil_h > 1 || d.dil_w > 1) && conv2d_implicit_gemm_supported(d);
}

inline IgemmShape igemm_shape(const Conv2dDims& d) {
  IgemmShape s;
  s.C = int(d.C), s.H = int(d.H), s.W = int(d.W), s.O = int(d.O), s.kh = int(d.kh), s.kw = int(d.kw);
  s.stride_h = int(d.stride_h), s.stride_w = int(d.stride_w), s.pad_h = int(d.pad_h), s.pad_w = int(d.pad_w);
  s.dil_h = int(d.dil_h), s.dil_w = int(d.dil_w);
  s.Ho = int(d.Ho), s.Wo = int(d.Wo);
  s.K = int(d.C * d.kh * d.kw);
  s.HWo = d.Ho * d.Wo;
  s.ncol = d.N * s.HWo;
  s.N = d.N, s.HW = d.H * d.W;
  return s;
}

// ---- index maths shared by the CPU twin and the CUDA kernel --------------------------------

// Column q of B / Y: which image, and the top-left input pixel (ih0, iw0) of its window
// (before adding the tap offsets i*dh, j*dw; negative inside the padding).
struct IgemmColumn {
  int64_t img;  // n
  int64_t pix;  // oh*Wo + ow
  int ih0, iw0;
};
KERN_IGEMM_HD IgemmColumn igemm_column(const IgemmShape& s, int64_t q) {
  IgemmColumn col;
  col.img = q / s.HWo;
  col.pix = q - col.img * s.HWo;
  const int oh = int(col.pix / s.Wo), ow = int(col.pix - int64_t(oh) * s.Wo);
  col.ih0 = oh * s.stride_h - s.pad_h;
  col.iw0 = ow * s.stride_w - s.pad_w;
  return col;
}

// B[k, q] for the column whose image starts at x_img: split k into (c, i, j) and read the
// tapped pixel, 0 in the padding. KH/KW > 0 fix the kernel size at compile time (the
// divisions by kh*kw and kw then compile to multiplications); 0 reads it from s.
template <int KH, int KW, typename T>
KERN_IGEMM_HD T igemm_b_element(const IgemmShape& s, const T* x_img, int ih0, int iw0, int k) {
  const int kh = KH > 0 ? KH : s.kh, kw = KW > 0 ? KW : s.kw;
  const int c = k / (kh * kw);
  const int tap = k - c * (kh * kw);
  const int i = tap / kw, j = tap - i * kw;
  const int h = ih0 + i * s.dil_h, v = iw0 + j * s.dil_w;
  if (h < 0 || h >= s.H || v < 0 || v >= s.W) return T(0.0f);
  const int off = (c * s.H + h) * s.W + v;
#ifdef __CUDA_ARCH__
  return __ldg(x_img + off);
#else
  return x_img[off];
#endif
}

// Where Y[m, q] lives in y.
KERN_IGEMM_HD int64_t igemm_y_index(const IgemmShape& s, const IgemmColumn& col, int m) {
  return (col.img * s.O + m) * s.HWo + col.pix;
}

// ---- the three passes as GEMM problems --------------------------------------------------
// Each is Out[m, q] = epilogue(sum_k A[m, k] * B[k, q]) over rows(), cols(), depth(), with
// a(m, k), b(column(q), k) and out(column(q), m) the gather/scatter maths; the tensor-core
// kernel 2, the CUDA-core backward kernel 3 and the CPU twin run any of them. column(q) is
// decoded once per column (valid for q < cols()). bias / relu apply to the forward only.

// Forward (GEMM view at the top of this file): rows o, columns (n, oh, ow), depth (c, i, j).
// KH, KW > 0 fix the kernel size at compile time (igemm_b_element); s must then match.
template <typename T, int KH = 0, int KW = 0>
struct IgemmForward {
  IgemmShape s;
  const T* x;
  const T* w;
  const T* bias;  // nullable
  bool relu;
  T* y;
  struct Col {
    IgemmColumn c;
    const T* x_img;
  };
  KERN_IGEMM_HD int rows() const { return s.O; }
  KERN_IGEMM_HD int64_t cols() const { return s.ncol; }
  KERN_IGEMM_HD int depth() const { return s.K; }
  KERN_IGEMM_HD Col column(int64_t q) const {
    Col r;
    r.c = igemm_column(s, q);
    r.x_img = x + r.c.img * (int64_t(s.C) * s.H * s.W);
    return r;
  }
  KERN_IGEMM_HD T a(int m, int k) const { return w[int64_t(m) * s.K + k]; }
  KERN_IGEMM_HD T b(const Col& c, int k) const { return igemm_b_element<KH, KW>(s, c.x_img, c.c.ih0, c.c.iw0, k); }
  KERN_IGEMM_HD T* out(const Col& c, int m) const { return y + igemm_y_index(s, c.c, m); }
};

// Backward-data: dx[n, c, h, v] = sum_{o, i, j} w[o, c, i, j] * dy[n, o, oh, ow] over the taps
// with h = oh*sh - ph + i*dh and v = ow*sw - pw + j*dw, i.e. oh = (h + ph - i*dh) / sh when
// that divides exactly and lands in [0, Ho) (likewise ow); other taps contribute 0.
//   rows m = c (C), columns q = (n*H + h)*W + v (N*H*W), depth k = (o*kh + i)*kw + j (O*kh*kw)
//   A[m, k] = w[o, c, i, j] (w read transposed), B[k, q] = dy[n, o, oh, ow] or 0.
// KH, KW > 0 fix the kernel size at compile time (s must then match).
template <typename T, int KH = 0, int KW = 0>
struct IgemmBackwardData {
  IgemmShape s;
  const T* dy;
  const T* w;
  T* dx;
  const T* bias = nullptr;
  bool relu = false;
  struct Col {
    int64_t img, pix;  // n, h*W + v
    int h, v;
    const T* dy_img;
  };
  KERN_IGEMM_HD int rows() const { return s.C; }
  KERN_IGEMM_HD int64_t cols() const { return s.N * s.HW; }
  KERN_IGEMM_HD int depth() const { return s.O * s.kh * s.kw; }
  KERN_IGEMM_HD int kw() const { return KW > 0 ? KW : s.kw; }
  KERN_IGEMM_HD int taps() const { return KH > 0 && KW > 0 ? KH * KW : s.kh * s.kw; }
  KERN_IGEMM_HD Col column(int64_t q) const {
    Col r;
    r.img = q / s.HW;
    r.pix = q - r.img * s.HW;
    r.h = int(r.pix / s.W), r.v = int(r.pix - int64_t(r.h) * s.W);
    r.dy_img = dy + r.img * (int64_t(s.O) * s.HWo);
    return r;
  }
  KERN_IGEMM_HD T a(int m, int k) const {
    const int o = k / taps();
    return w[(int64_t(o) * s.C + m) * taps() + (k - o * taps())];
  }
  KERN_IGEMM_HD T b(const Col& c, int k) const {
    const int o = k / taps(), tap = k - o * taps(), i = tap / kw(), j = tap - i * kw();
    const int th = c.h + s.pad_h - i * s.dil_h, tv = c.v + s.pad_w - j * s.dil_w;  // oh*sh, ow*sw
    if (th < 0 || tv < 0 || th % s.stride_h != 0 || tv % s.stride_w != 0) return T(0.0f);
    const int oh = th / s.stride_h, ow = tv / s.stride_w;
    if (oh >= s.Ho || ow >= s.Wo) return T(0.0f);
    return c.dy_img[(int64_t(o) * s.Ho + oh) * s.Wo + ow];
  }
  KERN_IGEMM_HD T* out(const Col& c, int m) const { return dx + (c.img * s.C + m) * s.HW + c.pix; }
};

// Backward-filter: dw[o, c, i, j] = sum_{n, oh, ow} dy[n, o, oh, ow] * x[n, c, oh*sh - ph + i*dh,
// ow*sw - pw + j*dw] (x read as 0 in the padding): the forward GEMM with K and Ncol swapped.
//   rows m = o (O), columns q = (c*kh + i)*kw + j (C*kh*kw), depth k = (n*Ho + oh)*Wo + ow
//   A[m, k] = dy[n, o, oh, ow], B[k, q] = the forward's B[q, k] (im2col of x, transposed).
// dw is overwritten (no accumulation into an existing gradient).
template <typename T>
struct IgemmBackwardFilter {
  IgemmShape s;
  const T* x;
  const T* dy;
  T* dw;
  const T* bias = nullptr;
  bool relu = false;
  // A column is one (c, i, j): its channel offset in an image and its tap offsets are decoded
  // once; the depth index k = n*Ho*Wo + pix is split with 32-bit divisions (N*Ho*Wo < 2^31).
  struct Col {
    int q;
    int c_off;       // c*H*W
    int dh0, dw0;    // i*dh - ph, j*dw - pw
  };
  KERN_IGEMM_HD int rows() const { return s.O; }
  KERN_IGEMM_HD int64_t cols() const { return s.K; }
  KERN_IGEMM_HD int depth() const { return int(s.ncol); }
  KERN_IGEMM_HD Col column(int64_t q) const {
    const int taps = s.kh * s.kw, c = int(q) / taps, tap = int(q) - c * taps, i = tap / s.kw, j = tap - i * s.kw;
    return Col{int(q), c * s.H * s.W, i * s.dil_h - s.pad_h, j * s.dil_w - s.pad_w};
  }
  KERN_IGEMM_HD T a(int m, int k) const {
    const int hwo = int(s.HWo), n = k / hwo;
    return dy[(int64_t(n) * s.O + m) * hwo + (k - n * hwo)];
  }
  KERN_IGEMM_HD T b(const Col& c, int k) const {
    const int hwo = int(s.HWo), n = k / hwo, pix = k - n * hwo, oh = pix / s.Wo, ow = pix - oh * s.Wo;
    const int h = oh * s.stride_h + c.dh0, v = ow * s.stride_w + c.dw0;
    if (h < 0 || h >= s.H || v < 0 || v >= s.W) return T(0.0f);
    return x[int64_t(n) * s.C * s.H * s.W + c.c_off + h * s.W + v];
  }
  KERN_IGEMM_HD T* out(const Col& c, int m) const { return dw + int64_t(m) * s.K + c.q; }
};

// The backward passes additionally need N*Ho*Wo (the filter GEMM's depth), O*Ho*Wo (one dy
// image) and the backward-data grid in range.
inline bool conv2d_implicit_gemm_backward_supported(const Conv2dDims& d) {
  const int64_t lim = (int64_t(1) << 31) - 1;
  if (!conv2d_implicit_gemm_supported(d)) return false;
  if (d.N * d.Ho * d.Wo > lim || d.O * d.Ho * d.Wo > lim || d.O * d.kh * d.kw > lim) return false;
  if ((d.C + 63) / 64 > 65535 || (d.N * d.H * d.W + 63) / 64 > lim) return false;
  return true;
}

// "x [N,C,H,W] w [O,C,kh,kw] stride s pad p dilation d" for error messages.
inline std::string igemm_dims_str(const Conv2dDims& d) {
  auto t = [](int64_t a, int64_t b) { return std::to_string(a) + "x" + std::to_string(b); };
  return "x [" + std::to_string(d.N) + "," + std::to_string(d.C) + "," + std::to_string(d.H) + "," +
         std::to_string(d.W) + "] w [" + std::to_string(d.O) + "," + std::to_string(d.C) + "," + t(d.kh, d.kw) +
         "] stride " + t(d.stride_h, d.stride_w) + " pad " + t(d.pad_h, d.pad_w) + " dilation " + t(d.dil_h, d.dil_w);
}

// Host-side operand rounding of a ConvMath (what the tensor-core kernels' operands are):
// fp32 unchanged; tf32 round to nearest, ties away, to 10 mantissa bits; bf16 round to
// nearest even to 7 mantissa bits. NaN and infinity pass unchanged.
float conv_math_round(float v, ConvMath math);
inline double conv_math_round(double v, ConvMath math) {
  return math == ConvMath::fp32 ? v : double(conv_math_round(float(v), math));
}

namespace cpu {
// The implicit GEMM in plain loops, block tile by block tile (tile: automatic = 64x64).
// Requires conv2d_implicit_gemm_supported(d). y is overwritten.
template <typename T>
void conv2d_implicit_gemm_forward(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y,
                                  IgemmTile tile = IgemmTile::automatic);

// The CPU twins of kernels 2 and 3: each output is the sum over k, in increasing k, of
// conv_math_round(a) * conv_math_round(b), accumulated in T (double: the test reference), then
// the epilogue (+ bias, ReLU when relu). Same preconditions as the CUDA entry points below;
// outputs are overwritten. With math = fp32 they are the exact maths of the three passes.
template <typename T>
void conv2d_igemm_forward(const Conv2dDims& d, ConvMath math, const T* x, const T* w, const T* bias, bool relu, T* y);
template <typename T>
void conv2d_igemm_backward_data(const Conv2dDims& d, ConvMath math, const T* dy, const T* w, T* dx);
template <typename T>
void conv2d_igemm_backward_filter(const Conv2dDims& d, ConvMath math, const T* x, const T* dy, T* dw);
}  // namespace cpu

namespace cuda {
// Kernel 1 (FP32 CUDA cores). Float only. Throws std::invalid_argument when
// !conv2d_implicit_gemm_supported(d).
void conv2d_implicit_gemm_forward(const Conv2dDims& d, const float* x, const float* w, const float* bias, float* y,
                                  Stream stream, IgemmTile tile = IgemmTile::automatic);
// The configuration `automatic` resolves to for these dims on the current device.
IgemmTile conv2d_implicit_gemm_pick_tile(const Conv2dDims& d);

// The three passes at a chosen precision, whole batch, one launch each, no workspace.
// float overloads: math fp32 (kernels 1 / 3) or tf32 (kernel 2); the __nv_bfloat16
// overloads are math bf16 (kernel 2). Preconditions (else std::invalid_argument, one line):
// forward conv2d_implicit_gemm_supported(d), backward conv2d_implicit_gemm_backward_supported(d);
// NCHW contiguous device tensors x [N,C,H,W], w [O,C,kh,kw], bias [O] (nullable), y / dy
// [N,O,Ho,Wo]; d.Ho / d.Wo filled by conv2d_output_size. Outputs are overwritten; the bias
// gradient (sum of dy over n, oh, ow) is not computed here.
void conv2d_igemm_forward(const Conv2dDims& d, ConvMath math, const float* x, const float* w, const float* bias,
                          bool relu, float* y, Stream stream);
void conv2d_igemm_forward(const Conv2dDims& d, const __nv_bfloat16* x, const __nv_bfloat16* w,
                          const __nv_bfloat16* bias, bool relu, __nv_bfloat16* y, Stream stream);
void conv2d_igemm_backward_data(const Conv2dDims& d, ConvMath math, const float* dy, const float* w, float* dx,
                                Stream stream);
void conv2d_igemm_backward_data(const Conv2dDims& d, const __nv_bfloat16* dy, const __nv_bfloat16* w,
                                __nv_bfloat16* dx, Stream stream);
void conv2d_igemm_backward_filter(const Conv2dDims& d, ConvMath math, const float* x, const float* dy, float* dw,
                                  Stream stream);
void conv2d_igemm_backward_filter(const Conv2dDims& d, const __nv_bfloat16* x, const __nv_bfloat16* dy,
                                  __nv_bfloat16* dw, Stream stream);
}  // namespace cuda

}  // namespace kern
