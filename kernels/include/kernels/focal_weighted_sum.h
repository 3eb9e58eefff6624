// Sigmoid focal loss weighted per image and summed in one pass (RetinaNet's classification
// loss): logits x [B, A, C] contiguous, labels int64 [B, A], weights w [B] (compute type),
//   out = sum_{b, a, c} w[b] * loss(x[b, a, c], t[b, a, c])
// where loss and the targets t are those of kernels/focal_loss.h (same focal_loss_element,
// same labels: ignore_index -> no loss and no gradient for the row, background_label ->
// all-zero targets, 0 <= label < C -> one-hot). The [B, A, C] loss is never stored.
//
// Out-of-range labels (not ignore, not background, not in [0, C)): every element of that
// row contributes NaN to the sum and gets a NaN gradient, so the loss is NaN and the
// trainer's NaN stop fires. The engine front-end refuses them with an error on the CPU
// only (there the labels are in host memory); on CUDA it copies nothing to the host.
//
// Forward: partial sums over a fixed split of the elements (at most
// kFocalWeightedPartials parts, in `partials`, double), then added in order: the same
// bits on every run. Each element adds double(loss) * double(w[b]); sums run in double.
// Backward (given the upstream gradient g of the scalar, a device/host pointer to ONE value
// on the same side as x): recomputes the derivative from the logits,
//   gx[k] = dloss/dx[k] * (w[b] * g[0])       (compute type, rounded once to S)
// Memory traffic per element: forward reads x (4 B for f32), backward reads x and writes
// gx (8 B): 12 B in all, against 16 B for sigmoid_focal_loss(Sum) + a separate weighting.
//
// S is the storage type of x and gx (float, double, bf16); weights, out and g are
// compute_t<S> (float for bf16 logits), the maths runs in compute_t<S>.
#pragma once
#include "kernels/bf16.h"
#include "kernels/common.h"
#include "kernels/focal_loss.h"

namespace kern {

struct FocalWeightedDims {
  int64_t B = 0, A = 0, C = 0;
};

constexpr int64_t kFocalWeightedPartials = 1024;

// CPU. The forward may also write dloss_w[k] = dloss/dx[k] * w[b] (nullable): on the CPU the
// exp / log1p / pow work, not memory, bounds the op, so the engine saves this derivative
// and its backward is gx = dloss_w * g[0] (cpu::sigmoid_focal_loss_backward with
// g_stride 0) instead of recomputing. focal_weighted_sum_backward (recompute) is the
// reference of the CUDA backward.
namespace cpu {
template <typename S>
void focal_weighted_sum_forward(const FocalWeightedDims& d, const FocalLossParams& p, const S* x,
                                const int64_t* labels, const compute_t<S>* weights, compute_t<S>* out,
                                double* partials, compute_t<S>* dloss_w = nullptr);
template <typename S>
void focal_weighted_sum_backward(const FocalWeightedDims& d, const FocalLossParams& p, const S* x,
                                 const int64_t* labels, const compute_t<S>* weights, const compute_t<S>* g, S* gx);
}  // namespace cpu

// CUDA: forward one thread per element in a grid-stride loop over at most
// kFocalWeightedPartials blocks (the grid depends on B*A*C only), each block's sum to
// partials[block], then one block adds them in order into *out. Backward one thread per
// element. Neither reads anything back to the host.
namespace cuda {
template <typename S>
void focal_weighted_sum_forward(const FocalWeightedDims& d, const FocalLossParams& p, const S* x,
                                const int64_t* labels, const compute_t<S>* weights, compute_t<S>* out,
                                double* partials, Stream stream);
template <typename S>
void focal_weighted_sum_backward(const FocalWeightedDims& d, const FocalLossParams& p, const S* x,
                                 const int64_t* labels, const compute_t<S>* weights, const compute_t<S>* g, S* gx,
                                 Stream stream);
}  // namespace cuda

}  // namespace kern
