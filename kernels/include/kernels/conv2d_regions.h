// CPU conv2d, variant 3: padding-free regions. Dilated convolutions (SSD's fc6) without the
// padding's multiply-adds and without a whole-image col matrix; f32.
//
// The maths is kernels/conv2d.h's (same sum, same terms). What changes is which products are
// computed. For tap i of the kernel's rows, output row oh reads input row
// oh*stride_h - pad_h + i*dil_h; the taps i for which that row is inside [0, H) form a range
// [i0, i1) (the input row grows with i). As oh runs from 0 to Ho, that range changes only at a
// few rows, so the output rows split into intervals with a constant row-tap range; the same
// for columns. A region is one row interval x one column interval: all its pixels read inside
// the input for exactly the taps [i0, i1) x [j0, j1) and read padding for all the others.
// SSD300's fc6 (3x3, dilation 6, pad 6, 19x19): rows 0-5 use taps {1, 2}, rows 6-12 {0, 1, 2},
// rows 13-18 {0, 1}; 3 x 3 regions of 6x6 .. 7x7 pixels; 62% of the im2col matrix's
// (tap, pixel) pairs are inside (the other 38% multiply the padding's zeros).
//
// Per image and region R (P_R pixels, taps T_R):
//   B_R [K_R = |T_R| C, P_R]   B_R[(t, c), p] = x[c, input pixel of p under tap t]   (packed, no zeros)
//   A_t [O, C]                 A_t[o, c] = w[o, c, t]
//   Y_R [O, P_R] = sum over t in T_R of A_t x B_R[(t, .), .]      then y[:, pixels of R] = Y_R + bias (ReLU)
// computed by our own blocked GEMM (kernels/cpu/conv2d_regions_gemm.cpp): a block of A_t
// (rows of o, a block of c) is packed once and multiplied into every region that has tap t, so
// the weight is read once per image; the regions' outputs live in one [O, sum P_R] buffer whose
// rows a thread owns. Micro-kernel: 6 rows x 16 pixels, AVX2 + FMA (runtime dispatch,
// kernels/cpu_isa.h), or a plain C++ loop below AVX2. Bias and ReLU are applied when the
// output is copied from that buffer to y (the fused epilogue). Pixels are padded to multiples
// of 8 per region, so a region's last panel may compute a few zero lanes.
//
// Backward:
//   grad input   (stride 1 only) the adjoint of a stride-1 convolution is again a convolution:
//                gx = conv(gy, w', pad' = dil (k - 1) - pad, same dilation), with
//                w'[c, o, i, j] = w[o, c, kh-1-i, kw-1-j]; it runs through the same regions
//                GEMM (the packing reads w transposed and flipped; no copy of w').
//   grad weight  per tap t, over the output rectangle whose tap-t pixels are inside:
//                G_t[o, t] = sum_n gy_n[:, rect] x x_n[:, rect shifted by t]^T   (OpenBLAS, all
//                images of a chunk in one GEMM), into a tap-major [taps, O, C] buffer that one
//                pass then transposes into gw [O, C, kh, kw].
//   grad bias    per channel, as the reference.
//
// Summation order differs from the reference (tap by tap, blocks of 256 channels): the error
// is of the same size as im2col's (tested to 1e-5 of sum |w||x|, f32). An image's result never
// depends on the other images of its batch (images are computed one after another).
//
// Non-finite values: the reference multiplies the padding's zeros by the weight (0 * inf = NaN)
// in the forward and by gy in the weight gradient. Those products are left out here, so the
// forward returns false (nothing usable written) when w has a non-finite value, and the weight
// gradient when gy has one: the caller then runs the im2col reference. The input gradient
// sums exactly the reference's in-image terms.
#pragma once
#include <cstddef>
#include <vector>

#include "kernels/conv2d.h"

namespace kern {

struct ConvRegion {
  int64_t r0, r1, c0, c1;  // output rows [r0, r1), columns [c0, c1)
  int64_t i0, i1, j0, j1;  // the taps inside the input: rows [i0, i1), columns [j0, j1)
  int64_t pixels() const { return (r1 - r0) * (c1 - c0); }
  int64_t taps() const { return (i1 - i0) * (j1 - j0); }
};

// The regions of d's output, row-interval major; regions with no tap inside (pixels that see
// only padding: only the bias reaches them) are included with an empty tap range.
std::vector<ConvRegion> conv2d_regions(const Conv2dDims& d);

// Which shapes the path covers: f32 (the caller's part), groups 1, stride 1, a non-empty
// output, and pad <= dil * (k - 1) on both axes (so that the input gradient is again a
// convolution with non-negative padding, see above).
bool conv2d_regions_supported(const Conv2dDims& d);

namespace cpu {

// The cost rule of ENGINE_CPU_CONV=auto: regions for dilated convolutions of which at least
// 20% of the (tap, pixel) pairs read padding (conv2d_tap_coverage <= 0.8: SSD300's fc6 0.62,
// SSD512's 0.77) with C >= 64 and O >= 64 (the packing must pay). Undilated layers keep
// Winograd / im2col (their 3x3 pad-1 layers read 1-10% padding; small maps not measured).
bool conv2d_regions_preferred(const Conv2dDims& d);

// Workspace, in floats, for the forward and for the backward (the larger of the two passes).
size_t conv2d_regions_forward_workspace(const Conv2dDims& d);
size_t conv2d_regions_backward_workspace(const Conv2dDims& d);

// As kern::cpu::conv2d_forward (+ ReLU when relu). Returns false, having written nothing
// usable, when w holds a NaN or an infinity (see above).
bool conv2d_regions_forward(const Conv2dDims& d, const float* x, const float* w, const float* bias, bool relu,
                            float* y, float* ws);
// As kern::cpu::conv2d_backward: each non-null gradient overwritten. Returns false when gy holds
// a NaN or an infinity and gw was asked for: gw is then unusable (gx and gb are right) and the
// caller computes it with the reference.
bool conv2d_regions_backward(const Conv2dDims& d, const float* x, const float* w, const float* gy, float* gx,
                             float* gw, float* gb, float* ws);
// The input gradient's convolution: d's transpose (C and O swapped, Ho x Wo -> H x W, stride 1,
// pad dil (k - 1) - pad).
Conv2dDims conv2d_regions_transposed(const Conv2dDims& d);
// Whether the micro-kernel in use is the AVX2 + FMA one (else the plain C++ loop).
bool conv2d_regions_fma();

// The blocked GEMM over regions (conv2d_regions_gemm.cpp), exposed for the tests: one image.
// A is read through `wa`: A_t[o, c] = w[o * so + c * sc + tap_offset[t]] (sc, so in floats), so
// the forward passes w itself and the input gradient passes w transposed and flipped.
struct RegionsWeight {
  const float* w;
  int64_t so, sc;                    // strides of the GEMM's row (o) and column (c) index in w
  std::vector<int64_t> tap_offset;   // per tap t = i * kw + j
};
// y_img [O, Ho*Wo] = conv of x_img [C, H, W] (the region sums; every output pixel written,
// bias and ReLU applied). Returns false when a weight read was non-finite.
bool conv2d_regions_image(const Conv2dDims& d, const std::vector<ConvRegion>& regions, const RegionsWeight& a,
                          const float* x_img, const float* bias, bool relu, float* y_img, float* ws);
size_t conv2d_regions_image_workspace(const Conv2dDims& d, const std::vector<ConvRegion>& regions);

}  // namespace cpu
}  // namespace kern
