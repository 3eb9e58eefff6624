// Depthwise convolution on CUDA, hand-written: groups == C, O = M * C (channel multiplier M;
// M = 1 is MobileNet's depthwise layer). Output channel o reads input channel c = o / M only:
//   y[n, o, oh, ow]   = bias[o] + sum_{i, j} w[o, 0, i, j] * x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
//   gx[n, c, h, v]    = sum_{m < M} sum_{i, j : (h + ph - i*dh) % sh == 0, (v + pw - j*dw) % sw == 0}
//                           w[c*M + m, 0, i, j] * gy[n, c*M + m, (h + ph - i*dh) / sh, (v + pw - j*dw) / sw]
//   gw[o, 0, i, j]    = sum_{n, oh, ow} gy[n, o, oh, ow] * x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
// (x read as 0 in the padding, gy as 0 outside [0, Ho) x [0, Wo)). The CPU reference is the
// grouped convolution of kernels/conv2d.h (G = C).
//
// Tiling (16 x 16 = 256 threads a block, one thread per pixel of a tile):
//   forward          a block = one (n, o) plane's 16x16 output tile; it stages the input tile
//                    plus halo, ((16-1) sh + (kh-1) dh + 1) x ((16-1) sw + (kw-1) dw + 1) pixels,
//                    and the kh*kw weights in shared memory, then each thread sums its taps.
//   backward data    a block = one (n, c) plane's 16x16 input tile; for each m it stages the
//                    gy rows/columns that reach the tile (at most (15 + (kh-1) dh) / sh + 2 of
//                    them each way) and the weights, then each thread gathers its taps (no
//                    atomics).
//   backward weight  pass 1: a block = one (o, n, output tile); it stages the input tile plus
//                    halo, each thread takes its gy value, and for each tap the block sums
//                    gy * x over its 256 pixels (warp shuffles then the 8 warp sums: a fixed
//                    tree, in double) into partials[(o*kh*kw + tap) * tiles + tile];
//                    pass 2: one block per (o, tap) adds its row of partials in a fixed order
//                    (kernels/cuda_block_sum.cuh) and rounds once to T. No atomics anywhere, so
//                    every result is the same bits run after run.
// Types: T = float, double or kern::bf16 (stored bf16, computed in float with the sums of
// backward weight in double, rounded once on the store), as kernels/cuda_storage.cuh.
// Sizes: depthwise_supported() says whether the staged tiles fit in 48 KB of shared memory
// and the block counts fit the grid loop; otherwise the caller takes another path (cuDNN).
#pragma once
#include "kernels/common.h"
#include "kernels/conv2d.h"

namespace kern {

inline bool conv2d_is_depthwise(const Conv2dDims& d) {
  return d.groups > 1 && d.groups == d.C && d.O % d.C == 0;
}

// CPU, direct loops (kernels/cpu/conv2d_depthwise.cpp): the fast CPU path the engine takes for
// depthwise convs, beside the per-slice im2col reference of kernels/conv2d.h, which checks it.
// Each plane / weight row by one thread in a fixed order; gw accumulated in double. Null
// gradient pointers are skipped; the others are overwritten.
namespace cpu {
template <typename T>
void depthwise_forward(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y);
template <typename T>
void depthwise_backward(const Conv2dDims& d, const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb);
}  // namespace cpu

namespace cuda {
constexpr int kDwTile = 16;  // output (forward, backward weight) or input (backward data) tile side

// Shared memory bytes of each pass for element compute size `elem` (4: float/bf16, 8: double).
int64_t depthwise_smem_forward(const Conv2dDims& d, int elem);
int64_t depthwise_smem_backward_data(const Conv2dDims& d, int elem);
bool depthwise_supported(const Conv2dDims& d, int elem);
// Doubles of workspace backward weight needs (its partial sums).
int64_t depthwise_weight_partials(const Conv2dDims& d);

template <typename T>
void depthwise_forward(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y, Stream stream);
template <typename T>
void depthwise_backward_data(const Conv2dDims& d, const T* w, const T* gy, T* gx, Stream stream);
template <typename T>
void depthwise_backward_weight(const Conv2dDims& d, const T* x, const T* gy, T* gw, double* partials,
                               Stream stream);
}  // namespace cuda

}  // namespace kern
