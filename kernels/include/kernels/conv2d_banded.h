// CPU conv2d in bands of output rows: the im2col path with a bounded col workspace.
//
// Same maths and layouts as kernels/conv2d.h (which stays the readable whole-image
// reference). The whole-image col matrix [K = C*kh*kw, Ho*Wo] can be very large (SSD300
// conv1_2: K = 576, Ho*Wo = 90000 -> 207 MB in f32); here one image's output rows are cut
// into bands of `band_rows` rows (the last band may be shorter) and each band has its own
// col matrix [K, band_rows*Wo] (its columns are the output pixels oh0*Wo .. (oh0+rows)*Wo - 1,
// which are contiguous in y_n, so the GEMM writes y in place with ldc = Ho*Wo):
//   forward      y_n[:, band]  = w [O, K] x col_band [K, rows*Wo]   (+ bias, as the reference)
//   grad weight  gw          (+)= gy_n[:, band] [O, rows*Wo] x col_band^T  (bands in order, images in order)
//   grad input   gcol_band    = w^T [K, O] x gy_n[:, band];  gx_n += col2im_band(gcol_band)
// The forward sums every output element over the same K in one GEMM call, as the reference
// does (only the GEMM's N extent differs, which may change the BLAS's blocking; tested to
// 1e-13 relative in f64, 2e-6 in f32). The two gradients add the bands' partial sums in
// band order instead of in one GEMM / one col2im pass: a different summation order, same
// terms; tested against the reference to 1e-5 relative (f32) / 1e-12 (f64).
//
// 1x1 kernels with stride 1 and no padding need no col at all (x_n is the col matrix): all
// three passes are plain GEMMs on x_n / gx_n, as in the reference. Other 1x1 kernels (the
// ResNet stride-2 downsample) go through the band gather, which for a 1x1 kernel is a
// strided gather of x (K = C) and, for the input gradient, a strided scatter.
//
// A band is at least one output row: a conv whose single output row has a col larger than
// the budget (K * Wo elements) gets a one-row band anyway (documented; no real SSD/ResNet
// layer comes near: the largest row is VGG conv1_2's 576 x 300 floats = 0.7 MB).
#pragma once
#include <cstddef>

#include "kernels/conv2d.h"

namespace kern {

// Output rows per band for a col budget of `budget_bytes` (elements of `elem_size` bytes):
// the rows are spread evenly over the fewest bands that fit the budget, so the bands are
// of near-equal size (a short last band would make one GEMM much thinner). budget 0 (or a
// budget that holds the whole image) gives Ho: one band, the whole-image col.
inline int64_t conv2d_band_rows(const Conv2dDims& d, size_t budget_bytes, size_t elem_size) {
  if (d.Ho <= 0) return 1;
  const int64_t row_bytes = conv2d_col_rows(d) * d.Wo * static_cast<int64_t>(elem_size);
  if (budget_bytes == 0 || row_bytes <= 0) return d.Ho;
  int64_t fit = static_cast<int64_t>(budget_bytes) / row_bytes;
  if (fit < 1) fit = 1;
  if (fit >= d.Ho) return d.Ho;
  const int64_t bands = (d.Ho + fit - 1) / fit;
  return (d.Ho + bands - 1) / bands;
}
// Elements of the col workspace for bands of `band_rows` rows (0 for a pointwise conv).
inline int64_t conv2d_band_col_size(const Conv2dDims& d, int64_t band_rows) {
  return conv2d_is_pointwise(d) ? 0 : conv2d_col_rows(d) * band_rows * d.Wo;
}

namespace cpu {
// Output rows [oh0, oh0 + rows) of one image: x_img [C, H, W] -> col [K, rows*Wo].
template <typename T>
void im2col_band(const Conv2dDims& d, const T* x_img, int64_t oh0, int64_t rows, T* col);
// The adjoint: adds col [K, rows*Wo] back onto gx_img [C, H, W] (which it does not clear).
template <typename T>
void col2im_band_add(const Conv2dDims& d, const T* col, int64_t oh0, int64_t rows, T* gx_img);

// As conv2d_forward / conv2d_backward (kernels/conv2d.h, groups = 1) with a col workspace of
// conv2d_band_col_size(d, band_rows) elements (null allowed when pointwise); band_rows >= 1.
// relu: y > 0 ? y : 0 applied to each band right after its GEMM, while the band's output is
// still in cache (the fused epilogue; the separate ReLU's rule, kernels/elementwise_math.h).
template <typename T>
void conv2d_forward_banded(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y, T* col,
                           int64_t band_rows, bool relu = false);
template <typename T>
void conv2d_backward_banded(const Conv2dDims& d, const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb, T* col,
                            int64_t band_rows);
}  // namespace cpu
}  // namespace kern
