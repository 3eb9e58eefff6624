// SSD's L2Norm: per-pixel L2 normalisation over the channels, times a learned per-channel
// scale (conv4_3 in SSD300 / SSD512).
//
// Layout: x, y, gy, gx contiguous [N, C, H, W]; scale, gscale [C]. Write P = H * W; the
// "column" (n, p) is the C values x[(n * C + c) * P + p], c = 0..C-1.
//
// Forward, per column (eps > 0):
//   r       = sqrt(sum_c x[c]^2)
//   d       = max(r, eps)
//   xhat[c] = x[c] / d
//   y[c]    = scale[c] * xhat[c]
// == torchvision's SSD L2Norm: scale.view(1, -1, 1, 1) * F.normalize(x, dim=1, eps=eps).
// An all-zero column has r = 0 < eps, so d = eps and y = 0 (no 0/0).
//
// Backward, per column, from gy (write g = gy). F.normalize divides by
// clamp_min(r, eps), and a clamp passes the gradient where r >= eps (PyTorch's rule: the
// boundary value passes), so there are two cases:
//   r >= eps (d = r, and dr/dx[j] = x[j] / r = xhat[j]):
//     dy[c]/dx[j] = scale[c] (delta_cj - xhat[c] xhat[j]) / d
//     gx[j] = (scale[j] g[j] - xhat[j] * S) / d,      S = sum_k scale[k] g[k] xhat[k]
//   r <  eps (d = eps is a constant):
//     gx[j] = scale[j] g[j] / eps
// and for the scale, summed over every column:
//   gscale[c] = sum_{n, p} g[n, c, p] * xhat[n, c, p]
// With raw x (what the kernels use; inv = 1 / d): xhat[j] * S = x[j] * inv^2 * sum_k scale[k]
// g[k] x[k], so gx[j] = inv * scale[j] g[j] - x[j] * [r >= eps] * inv^3 * sum_k scale[k] g[k] x[k].
//
// Backward needs only x, scale and gy: the norm is recomputed in the same pass over the
// column that forms S, so the forward saves nothing. Either of gx / gscale may be null
// (that gradient is not computed). gx is fully written; gscale is fully written (not
// accumulated into). Sums are accumulated in T, without rescaling (values whose squares
// overflow T give inf, as in PyTorch).
//
// Memory traffic floor (per element of x, T = float): forward reads x, writes y: 8 bytes;
// backward reads x and gy, writes gx: 12 bytes (scale and gscale are C values).
//
// bf16 activations: T = kern::bf16 is the storage type of x, y, gy and gx; scale and gscale
// stay in the compute type (compute_t<T> = float, the f32 parameter), the sums and the
// maths run in float, and y / gx are rounded to nearest even on the store.
#pragma once
#include "kernels/bf16.h"
#include "kernels/common.h"

namespace kern {

struct L2NormDims {
  int64_t N = 0;
  int64_t C = 0;
  int64_t P = 0;  // H * W
};

namespace cpu {
template <typename T>
void l2norm_forward(const L2NormDims& d, const T* x, const compute_t<T>* scale, double eps, T* y);
template <typename T>
void l2norm_backward(const L2NormDims& d, const T* x, const compute_t<T>* scale, const T* gy, double eps, T* gx,
                     compute_t<T>* gscale);
}  // namespace cpu

// CUDA (kernels/cuda/l2norm.cu): a block of 256 threads per tile of TW neighbouring columns
// of one image (TW = 32, 16 or 8). The block copies the C x TW tile (x, and gy in backward)
// from global memory into shared memory once, reduces each column's sums there, and writes
// y (or gx) from shared memory, so x is read from DRAM once. gscale: each block owns a
// per-channel partial sum in shared memory across the tiles it processes (a grid of about
// as many blocks as fit on the device at once), then adds it to gscale with one float
// atomicAdd per channel per block, so gscale can differ in the last bits from run to run.
// When even TW = 8 does not fit in shared memory (C in the thousands), the same kernels
// run without the shared copy and read x (and gy) twice, the second time mostly from L2.
namespace cuda {
template <typename T>
void l2norm_forward(const L2NormDims& d, const T* x, const compute_t<T>* scale, double eps, T* y, Stream stream);
template <typename T>
void l2norm_backward(const L2NormDims& d, const T* x, const compute_t<T>* scale, const T* gy, double eps, T* gx,
                     compute_t<T>* gscale, Stream stream);

// The scale gradient alone, in a fixed order (eng::cuda::set_deterministic): bit-identical
// from run to run. Two kernels: one thread per column writes inv[n, p] = 1 / max(||x[n, :, p]||,
// eps) to `inv_ws` (N * P compute_t<T> elements); then one block per channel sums g * x * inv
// over (n, p), each thread over a fixed stride of columns, then a fixed-shape tree in shared
// memory. It reads x and gy once more than the fused kernel: call l2norm_backward with
// gscale = null for gx, then this.
template <typename T>
void l2norm_backward_scale_deterministic(const L2NormDims& d, const T* x, const T* gy, double eps,
                                         compute_t<T>* gscale, compute_t<T>* inv_ws, Stream stream);
}  // namespace cuda

}  // namespace kern
