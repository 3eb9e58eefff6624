// Winograd F(4x4, 3x3) convolution on the CPU, f32: the fast path for 3x3, stride-1,
// undilated, ungrouped convolutions (any padding), forward and both backward passes.
//
// The CPU convolution variants, in one place (engine/src/ops/conv2d.cpp picks one per shape):
//   variant 0  im2col + GEMM (kernels/conv2d.h): every shape, f32 and f64; the readable
//              reference and the oracle every fast path is tested against.
//   variant 1  Winograd F(4x4, 3x3) (this file): f32, conv2d_winograd_supported(d); chosen
//              when conv2d_winograd_preferred(d) or ENGINE_CPU_CONV=winograd. f64 always
//              takes variant 0.
//
// Maths (Lavin & Gray's minimal filtering). A 4x4 block of outputs of one image and one
// output channel o reads a 6x6 input tile d_c per input channel c. With the constant matrices
//   B^T (6x6) = [4  0 -5  0 1 0;  0 -4 -4  1 1 0;  0 4 -4 -1 1 0;
//                0 -2 -1  2 1 0;  0  2 -1 -2 1 0;  0 4  0 -5 0 1]
//   G   (6x3) = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
//   A^T (4x6) = [1 1 1 1 1 0;  0 1 -1 2 -2 0;  0 1 1 4 4 0;  0 1 -1 8 -8 1]
// the block is  Y = A^T [ sum_c (G g_oc G^T) (.) (B^T d_c B) ] A   ((.) = elementwise).
// For each of the 36 positions k of the 6x6 transformed tile the channel sum is a GEMM:
//   M_k [O x tiles] = U_k [O x C] x V_k [C x tiles],  U_k = (G g G^T)_k, V_k = (B^T d B)_k,
// 36 GEMMs where im2col does one of 9x the depth: 36 / (16 * 9 / 16) = 4x fewer multiplies
// per output for the GEMM part, plus the O(C + O) per-tile transforms.
//
// Backward data (stride 1, 3x3): gx = conv(gy padded by 2 - pad, w'), w'[c, o, i, j] =
// w[o, c, 2 - i, 2 - j]: the same forward machinery with C and O exchanged (a negative
// padding, pad > 2, crops; the tile gather handles any offset).
// Backward weights: y is linear in g, so per tile gw += G^T [ (A gy A^T) (.) (B^T d B) ] G
// (the adjoint of the forward); summed over tiles it is again 36 GEMMs,
//   dU_k [O x C] += P_k [O x tiles] x V_k^T [tiles x C],  P_k = (A gy_tile A^T)_k,
// and gw = G^T dU G once at the end (in double). Partial tiles at the right/bottom edge read
// zeros beyond the input and write (or take gradient from) only the outputs that exist.
//
// Layout and threads: tiles are numbered across the batch (n, tile row, tile column) and run
// in chunks of `tiles` (a multiple of 8; conv2d_winograd_chunk_tiles; forward and backward
// data: chunks within one image; weight gradient: chunks across the batch). Per chunk, inside one
// OpenMP region: the input transform (8 tiles at a time, one SIMD lane per tile, writing
// V[k][c][tile] contiguously), the 36 GEMMs (split over the threads by k, each a
// single-threaded cpu::gemm = OpenBLAS sgemm), the output transform with bias and the
// optional ReLU applied while the tile is in registers. Workspace (the caller's `ws`, or one
// buffer per calling thread kept between calls): U [36][O][C]
// (the transformed weights, 4x the weight) plus the chunk's V and M, 36 (C + O) floats per
// tile and at most 4 Mi floats (16 MB) in all: SSD300's conv1_2 needs 9.4 MB where im2col's
// col matrix is 207 MB; the largest, conv4_x (512 -> 512), 38 MB of U + 15 MB.
//
// Error (docs/_pending/winograd.md): exact in exact arithmetic, but the transforms grow
// magnitudes (entries up to 8 in A^T, 5 in B^T). Measured max |e_wino - e_f64| / max(S), S the
// same computation on absolute values (sum |w||x| for y), is <= 1.5e-6 on VGG / ResNet
// channel counts, 5-40x im2col's; tests/ops/test_conv2d_winograd.cpp bounds y, gx and gw by
// 1e-5 max(S).
//
// NaN/Inf: a non-finite value in an input (x and w forward; w and gy for gx; x and gy for
// gw) would spread through a whole 6x6 tile, further than the direct convolution spreads it.
// The entry points therefore return false without a result when any operand is non-finite;
// the caller then runs the im2col reference, so non-finite inputs give exactly the
// reference's outputs.
#pragma once
#include "kernels/conv2d.h"

namespace kern {

// Shapes the Winograd path computes: 3x3, stride 1, dilation 1, groups 1, any padding.
inline bool conv2d_winograd_supported(const Conv2dDims& d) {
  return d.groups == 1 && d.kh == 3 && d.kw == 3 && d.stride_h == 1 && d.stride_w == 1 && d.dil_h == 1 &&
         d.dil_w == 1 && d.N > 0 && d.C > 0 && d.O > 0 && d.Ho > 0 && d.Wo > 0;
}

namespace cpu {
// The cost rule (measured on this project's 2-core machine; docs/kernels.md): supported,
// C >= 32, O >= 8, and at least 64 output tiles per image (ceil(Ho/4) ceil(Wo/4): from a 32x32
// map). Per image, not per batch, so that an image's path and result do not depend on the
// batch it is in; the forward and backward-data passes chunk each image's tiles apart too.
bool conv2d_winograd_preferred(const Conv2dDims& d);

// Tiles per chunk for a Winograd pass with `cin` channels in and `cout` out (multiple of 8).
int64_t conv2d_winograd_chunk_tiles(int64_t cin, int64_t cout, int64_t total_tiles);

// True when none of the n floats is NaN or +-Inf.
bool all_finite(int64_t n, const float* p);

// Floats of workspace a forward (backward = false) or a backward call needs (0 when the
// shape is not supported). Pass that much as `ws`, or ws = nullptr: the kernel then uses a
// buffer of its own per calling thread, kept between calls (outside any allocator's count).
int64_t conv2d_winograd_workspace_floats(const Conv2dDims& d, bool backward);

// y [N, O, Ho, Wo] = conv(x, w) + bias (bias nullable), then max(y, 0) when relu.
// Returns false, leaving y unspecified, when x or w holds a NaN/Inf (run the reference).
// Throws std::runtime_error for a shape conv2d_winograd_supported rejects.
bool conv2d_winograd_forward(const Conv2dDims& d, const float* x, const float* w, const float* bias, bool relu,
                             float* y, float* ws = nullptr);

// Gradients given gy [N, O, Ho, Wo]; each of gx, gw, gb may be null (skipped), non-null ones
// are overwritten. x is needed for gw, w for gx. Returns false (nothing written) when an
// operand a requested gradient reads holds a NaN/Inf. gb is the plain sum over (n, oh, ow).
bool conv2d_winograd_backward(const Conv2dDims& d, const float* x, const float* w, const float* gy, float* gx,
                              float* gw, float* gb, float* ws = nullptr);
}  // namespace cpu

}  // namespace kern
