// 2-D convolution (cross-correlation, as in every DL framework) by im2col + GEMM.
//
// Shapes (all contiguous, NCHW):
//   x [N, C, H, W], w [O, C, kh, kw], bias [O] (nullable), y [N, O, Ho, Wo]
//   Ho = (H + 2 pad_h - dil_h (kh - 1) - 1) / stride_h + 1   (integer division; same for Wo)
//
// Forward (== torch.nn.functional.conv2d(x, w, bias, stride, padding, dilation), groups=1):
//   y[n, o, oh, ow] = bias[o] + sum_{c, i, j} w[o, c, i, j] * x[n, c, h, v]
//       with h = oh * stride_h - pad_h + i * dil_h,  v = ow * stride_w - pad_w + j * dil_w,
//       and x read as 0 outside [0, H) x [0, W) (zero padding).
//
// im2col lays one image out as a matrix col [C*kh*kw, Ho*Wo]:
//   col[(c*kh + i)*kw + j, oh*Wo + ow] = x[n, c, h, v]  (0 when (h, v) is in the padding)
// so that per image the convolution is one GEMM:
//   y_n [O, Ho*Wo] = w [O, C*kh*kw] x col [C*kh*kw, Ho*Wo]   (+ bias[o] on row o)
//
// Backward, given gy [N, O, Ho, Wo]:
//   gw [O, C*kh*kw] = sum_n gy_n [O, Ho*Wo] x col_n^T          (GEMM per image, beta = 1 after the first)
//   gcol_n = w^T [C*kh*kw, O] x gy_n [O, Ho*Wo];  gx_n = col2im(gcol_n)
//       col2im is the adjoint of im2col: every col entry is added back to the x pixel it was
//       read from; entries that came from the padding are dropped.
//   gb[o] = sum_{n, oh, ow} gy[n, o, oh, ow]
// Every gradient pointer may be null (that gradient is then skipped); non-null ones are
// fully overwritten (not accumulated into).
//
// Workspace: the caller passes `col`, conv2d_col_size(d) elements (one image's col matrix),
// reused image after image. A 1x1 kernel with stride 1 and no padding needs no im2col
// (col_n == x_n); then `col` may be null (conv2d_is_pointwise).
//
// CPU: plain im2col / col2im loops (col2im scatters) + cpu::gemm (OpenBLAS).
// CUDA: hand-written im2col (one thread per col entry) and col2im (one thread per input
// pixel gathering its contributions, so no atomics) + cuBLAS GEMMs; images run one after
// another on the stream.
#pragma once
#include "kernels/common.h"

namespace kern {

struct Conv2dDims {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t O = 0, kh = 1, kw = 1;        // weight [O, C / groups, kh, kw]
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  int64_t Ho = 0, Wo = 0;               // output, filled by conv2d_output_size / the front-end
  int64_t groups = 1;                   // divides C and O; 1 = the plain convolution above
};

inline int64_t conv2d_output_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}
inline int64_t conv2d_col_rows(const Conv2dDims& d) { return d.C * d.kh * d.kw; }
inline int64_t conv2d_col_size(const Conv2dDims& d) { return d.C * d.kh * d.kw * d.Ho * d.Wo; }
inline bool conv2d_is_pointwise(const Conv2dDims& d) {
  return d.kh == 1 && d.kw == 1 && d.stride_h == 1 && d.stride_w == 1 && d.pad_h == 0 && d.pad_w == 0;
}

namespace cpu {
// One image: x_img [C, H, W] -> col [C*kh*kw, Ho*Wo].
template <typename T>
void im2col(const Conv2dDims& d, const T* x_img, T* col);
// One image: col [C*kh*kw, Ho*Wo] -> gx_img [C, H, W] (overwritten).
template <typename T>
void col2im(const Conv2dDims& d, const T* col, T* gx_img);

template <typename T>
void conv2d_forward(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y, T* col);
template <typename T>
void conv2d_backward(const Conv2dDims& d, const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb, T* col);
}  // namespace cpu

// ---- grouped convolution (groups = G > 1; kernels/cpu/conv2d_grouped.cpp) ----
// The channels split into G groups: Cg = C / G input and Og = O / G output channels each;
// output channel o belongs to group g = o / Og and sees only the input channels
// g*Cg .. g*Cg + Cg - 1. Weight [O, Cg, kh, kw] (torch's layout). Forward:
//   y[n, o, oh, ow] = bias[o] + sum_{c' < Cg, i, j} w[o, c', i, j] * x[n, g*Cg + c', h, v]
// (h, v as above). That is G independent convolutions of the plain kind, one per channel
// slice, and the reference runs exactly that: per image n and group g, the slice
// x[n, g*Cg : (g+1)*Cg] (contiguous [Cg, H, W]) through conv2d_forward / conv2d_backward with
// dims {N = 1, C = Cg, O = Og}, weight slice w[g*Og : (g+1)*Og] and output slice
// y[n, g*Og : (g+1)*Og]. Backward per slice as above; the weight gradient of a group is the
// sum over the images of each image's slice gradient (added image after image, n = 0 first,
// into gw), the bias gradient gb[o] = sum_{n, oh, ow} gy[n, o, oh, ow] as before.
// Depthwise is G = C = O (Cg = Og = 1); O = M*C with G = C is a depthwise conv with channel
// multiplier M (output channel o reads input channel o / M).
// `col`: conv2d_grouped_col_size(d) elements (one slice's col matrix); may be null when the
// slice is pointwise. `gw_tmp` (backward with gw): Og*Cg*kh*kw elements.
inline bool conv2d_group_dims_ok(const Conv2dDims& d) {
  return d.groups >= 1 && d.C % d.groups == 0 && d.O % d.groups == 0;
}
// The plain convolution of one group on one image.
inline Conv2dDims conv2d_group_slice(const Conv2dDims& d) {
  Conv2dDims s = d;
  s.N = 1;
  s.C = d.C / d.groups;
  s.O = d.O / d.groups;
  s.groups = 1;
  return s;
}
inline int64_t conv2d_grouped_col_size(const Conv2dDims& d) { return conv2d_col_size(conv2d_group_slice(d)); }

namespace cpu {
template <typename T>
void conv2d_grouped_forward(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y, T* col);
template <typename T>
void conv2d_grouped_backward(const Conv2dDims& d, const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb, T* col,
                             T* gw_tmp);
}  // namespace cpu

namespace cuda {
template <typename T>
void im2col(const Conv2dDims& d, const T* x_img, T* col, Stream stream);
template <typename T>
void col2im(const Conv2dDims& d, const T* col, T* gx_img, Stream stream);

template <typename T>
void conv2d_forward(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y, T* col, BlasHandle blas,
                    Stream stream);
template <typename T>
void conv2d_backward(const Conv2dDims& d, const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb, T* col,
                     BlasHandle blas, Stream stream);
}  // namespace cuda

}  // namespace kern
