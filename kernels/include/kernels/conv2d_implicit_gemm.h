// 2-D convolution forward as an implicit GEMM: the im2col matrix is never stored, its
// entries are gathered from x while the GEMM tiles are loaded. Used on CUDA for the dilated
// convolutions (SSD fc6: 512 -> 1024, 3x3, dilation 6, pad 6 on 19x19), float only; the CPU
// twin below is the same formulation in plain loops, the reference the CUDA kernel is
// tested against. Backward is not here: conv2d.h (im2col + col2im) does it.
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
// Tiling (CUDA; the CPU twin walks the same block tiles and K steps):
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
// the 32-bit parts fit. The front-end (engine/src/ops/conv2d.cpp) routes a CUDA float
// forward here when conv2d_implicit_gemm_preferred() (dilation > 1 and supported).
#pragma once
#include <cstdint>

#include "kernels/common.h"
#include "kernels/conv2d.h"

#ifdef __CUDACC__
#define KERN_IGEMM_HD __host__ __device__ __forceinline__
#else
#define KERN_IGEMM_HD inline
#endif

namespace kern {

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
  if (h < 0 || h >= s.H || v < 0 || v >= s.W) return T(0);
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

namespace cpu {
// The implicit GEMM in plain loops, block tile by block tile (tile: automatic = 64x64).
// Requires conv2d_implicit_gemm_supported(d). y is overwritten.
template <typename T>
void conv2d_implicit_gemm_forward(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y,
                                  IgemmTile tile = IgemmTile::automatic);
}  // namespace cpu

namespace cuda {
// Float only. Throws std::invalid_argument when !conv2d_implicit_gemm_supported(d).
void conv2d_implicit_gemm_forward(const Conv2dDims& d, const float* x, const float* w, const float* bias, float* y,
                                  Stream stream, IgemmTile tile = IgemmTile::automatic);
// The configuration `automatic` resolves to for these dims on the current device.
IgemmTile conv2d_implicit_gemm_pick_tile(const Conv2dDims& d);
}  // namespace cuda

}  // namespace kern
