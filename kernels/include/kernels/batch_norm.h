// Batch normalisation over NCHW (torch.nn.functional.batch_norm / nn.BatchNorm2d) and the
// per-channel affine map behind torchvision's FrozenBatchNorm2d.
//
// Layout: x, y, gy, gx [N, C, HW] contiguous (HW = H * W); per-channel arrays are [C].
// Per channel c the statistics run over the M = N * HW values x[n, c, i].
//
// batch_norm_stats:   mean[c] = (1/M) sum x,   var[c] = (1/M) sum (x - mean)^2  (biased;
//                     two passes, accumulated in double).
// batch_norm_forward: y = (x - mean[c]) * rstd[c] * w[c] + b[c],  rstd = 1 / sqrt(var + eps)
//                     mean/var are the batch statistics (train) or the running ones (eval);
//                     w == nullptr means w = 1, b == nullptr means b = 0 (affine off).
// Backward, with xhat = (x - mean) * rstd:
//   batch_norm_backward_reduce: sum_dy[c] = sum dy,  sum_dy_xhat[c] = sum dy * xhat
//                     (so dbias = sum_dy and dweight = sum_dy_xhat; accumulated in double).
//   batch_norm_backward_input:
//     training: dx = w rstd / M * (M dy - sum_dy - xhat sum_dy_xhat)  (mean and var depend
//               on x; equals autograd through torch's training-mode batch_norm)
//     eval:     dx = dy * w * rstd  (the running stats are constants; sums unused, may be null)
//
// channel_affine:     y = x * scale[c] + shift[c]   (shift == nullptr means 0). FrozenBatchNorm2d
//                     forward with scale = w / sqrt(rv + eps), shift = b - rm * scale, and its
//                     backward dx = dy * scale (the same kernel with shift == nullptr).
//
// bf16: every kernel also takes T = kern::bf16 as the storage type of x / y / gy / gx; the
// per-channel arrays (mean, var, w, b, sums, scale, shift) are compute_t<T> = float, the
// maths runs in float (sums in double as above), outputs are rounded once to nearest even.
//
// CUDA: the reductions run one block per channel with a shared-memory tree; the
// elementwise parts run one thread per element.
#pragma once
#include "kernels/bf16.h"
#include "kernels/common.h"

namespace kern {

struct BatchNormDims {
  int64_t N = 0, C = 0, HW = 0;
};

namespace cpu {
template <typename T>
void batch_norm_stats(const BatchNormDims& d, const T* x, compute_t<T>* mean, compute_t<T>* var);
template <typename T>
void batch_norm_forward(const BatchNormDims& d, const T* x, const compute_t<T>* mean, const compute_t<T>* var,
                        const compute_t<T>* w, const compute_t<T>* b, double eps, T* y);
template <typename T>
void batch_norm_backward_reduce(const BatchNormDims& d, const T* x, const compute_t<T>* mean,
                                const compute_t<T>* var, double eps, const T* gy, compute_t<T>* sum_dy,
                                compute_t<T>* sum_dy_xhat);
template <typename T>
void batch_norm_backward_input(const BatchNormDims& d, const T* x, const compute_t<T>* mean, const compute_t<T>* var,
                               const compute_t<T>* w, double eps, bool training, const T* gy,
                               const compute_t<T>* sum_dy, const compute_t<T>* sum_dy_xhat, T* gx);
template <typename T>
void channel_affine(const BatchNormDims& d, const T* x, const compute_t<T>* scale, const compute_t<T>* shift, T* y);
// Training backward in one pass over the channels (variant 2): per channel, the two sums, then
// at once that channel's gx (when gx is not null) while its x and dy planes are still in cache.
// The same lane sums and the same gx expression as batch_norm_backward_reduce followed by
// batch_norm_backward_input(training = true): the same bits, half the memory traffic when a
// channel's N planes of x and dy fit in the per-core cache.
template <typename T>
void batch_norm_backward_train(const BatchNormDims& d, const T* x, const compute_t<T>* mean, const compute_t<T>* var,
                               const compute_t<T>* w, double eps, const T* gy, compute_t<T>* sum_dy,
                               compute_t<T>* sum_dy_xhat, T* gx);
// The reference loops (variant 0) the ones above are checked against: the ones above run
// per-plane loops compiled per ISA level (kernels/cpu_isa.h); forward, backward_input and
// channel_affine give the same bits, the two reductions sum over 8 interleaved double lanes
// (within a few double ulps of the reference's sequential sum, the same on every ISA).
namespace ref {
template <typename T>
void batch_norm_stats(const BatchNormDims& d, const T* x, compute_t<T>* mean, compute_t<T>* var);
template <typename T>
void batch_norm_forward(const BatchNormDims& d, const T* x, const compute_t<T>* mean, const compute_t<T>* var,
                        const compute_t<T>* w, const compute_t<T>* b, double eps, T* y);
template <typename T>
void batch_norm_backward_reduce(const BatchNormDims& d, const T* x, const compute_t<T>* mean,
                                const compute_t<T>* var, double eps, const T* gy, compute_t<T>* sum_dy,
                                compute_t<T>* sum_dy_xhat);
template <typename T>
void batch_norm_backward_input(const BatchNormDims& d, const T* x, const compute_t<T>* mean, const compute_t<T>* var,
                               const compute_t<T>* w, double eps, bool training, const T* gy,
                               const compute_t<T>* sum_dy, const compute_t<T>* sum_dy_xhat, T* gx);
template <typename T>
void channel_affine(const BatchNormDims& d, const T* x, const compute_t<T>* scale, const compute_t<T>* shift, T* y);
}  // namespace ref
}  // namespace cpu

namespace cuda {
template <typename T>
void batch_norm_stats(const BatchNormDims& d, const T* x, compute_t<T>* mean, compute_t<T>* var, Stream stream);
template <typename T>
void batch_norm_forward(const BatchNormDims& d, const T* x, const compute_t<T>* mean, const compute_t<T>* var,
                        const compute_t<T>* w, const compute_t<T>* b, double eps, T* y, Stream stream);
template <typename T>
void batch_norm_backward_reduce(const BatchNormDims& d, const T* x, const compute_t<T>* mean,
                                const compute_t<T>* var, double eps, const T* gy, compute_t<T>* sum_dy,
                                compute_t<T>* sum_dy_xhat, Stream stream);
template <typename T>
void batch_norm_backward_input(const BatchNormDims& d, const T* x, const compute_t<T>* mean, const compute_t<T>* var,
                               const compute_t<T>* w, double eps, bool training, const T* gy,
                               const compute_t<T>* sum_dy, const compute_t<T>* sum_dy_xhat, T* gx, Stream stream);
template <typename T>
void channel_affine(const BatchNormDims& d, const T* x, const compute_t<T>* scale, const compute_t<T>* shift, T* y,
                    Stream stream);
}  // namespace cuda

}  // namespace kern
