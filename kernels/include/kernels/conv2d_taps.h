// CPU conv2d forward, variant 2: one GEMM per kernel tap over only the output pixels whose
// tap lands inside the input (the taps that read the zero padding are never multiplied).
//
// For a dilated convolution much of the im2col matrix is padding: SSD300's fc6 (3x3,
// dilation 6, pad 6 on 19x19) reads inside the input for (13 + 19 + 13)^2 / 57^2 = 62% of its
// (tap, output pixel) pairs, so 38% of the reference's multiply-adds multiply zeros. Here,
// per image and per tap t = (i, j), the output pixels whose input pixel
// (oh*stride_h - pad_h + i*dil_h, ow*stride_w - pad_w + j*dil_w) is inside form one rectangle
// rows [a, b) x cols [l, r); then
//   Xs [C, R] = x_n[:, rect shifted by the tap]          (gather, R = (b-a)*(r-l))
//   P  [O, R] = W_t [O, C] x Xs                          (GEMM; W_t = w[:, :, i, j], repacked)
//   y_n[:, rect] += P
// after y_n = bias. Each output element is the same sum of the same products as in the
// reference, the padding terms (exact zeros) left out, added tap by tap instead of in one
// K = C*kh*kw GEMM: a different summation order, tested against the whole-image reference to
// 1e-5 relative (f32) / 1e-12 (f64). NaN / Inf in x reach every output the reference's do;
// a NaN / Inf weight multiplies only in-image values here, where the reference multiplies it
// by the padding's zeros too (NaN there): the one documented difference.
//
// Workspace (conv2d_taps_workspace_size): the repacked weight [kh*kw, O, C] (once per call),
// one gather [C, Ho*Wo] and one product [O, Ho*Wo] at most.
#pragma once
#include "kernels/conv2d.h"

namespace kern {

// The fraction of (tap, output pixel) pairs that read inside the input (1 = no padding read).
double conv2d_tap_coverage(const Conv2dDims& d);
inline int64_t conv2d_taps_workspace_size(const Conv2dDims& d) {
  return d.O * d.C * d.kh * d.kw + (d.C + d.O) * d.Ho * d.Wo;
}

namespace cpu {
// As conv2d_forward (kernels/conv2d.h, groups = 1); ws: conv2d_taps_workspace_size(d) elements.
template <typename T>
void conv2d_forward_taps(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y, T* ws);
}  // namespace cpu
}  // namespace kern
