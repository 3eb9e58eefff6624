// Loss kernels: fused cross-entropy over classes, smooth-L1 / L1 elementwise.
//
// ---- cross_entropy ----------------------------------------------------------------------
// Layout: logits x contiguous [N, C, inner] (classes on dim 1; inner = product of the
// trailing dims d..., 1 for plain [N, C]); target int64 contiguous [N, inner]. Element
// e = n * inner + i has its C logits at x[(n * C + c) * inner + i] and its label target[e].
//
// Forward, per element e with t = target[e] (stable logsumexp, max subtracted first):
//   lse[e]  = m + log(sum_c exp(x[c] - m)),  m = max_c x[c]
//   loss[e] = lse[e] - x[t]                  (== -log_softmax(x, 1)[t])
//   valid[e] = 1                             (when `valid` is not null)
// Ignored element (t == ignore_index): loss[e] = 0, valid[e] = 0 (lse[e] is still written).
// A target outside [0, C) that is not ignore_index: loss[e] = NaN, valid[e] = 1 (so a mean
// or a sum over it is NaN and the fault is visible); memory is never read out of range.
// The front-end refuses such targets on the CPU before calling the kernel (find_invalid_target);
// on CUDA it does not copy targets to the host, so the NaN is how the error shows.
// This equals torch.nn.functional.cross_entropy(x, target, reduction='none',
// ignore_index=ignore_index).
//
// Backward, with the per-element output gradient read as g[e * g_stride] (g_stride 1: one
// value per element, reduction None; g_stride 0: one value for all, Sum/Mean, where the
// front-end has already divided a Mean's gradient by the count):
//   gx[n, c, i] = (exp(x[c] - lse[e]) - [c == t]) * g[e * g_stride]   (softmax - onehot)
//   gx[n, c, i] = 0 for an ignored element, NaN for an invalid target.
// gx is fully written. The target gets no gradient.
//
// ---- smooth_l1 / l1 ----------------------------------------------------------------------
// Elementwise over n contiguous values, d = input - target:
//   loss = |d| < beta ? 0.5 d^2 / beta : |d| - 0.5 beta     (torch smooth_l1_loss, beta >= 0)
//   dloss/dd = |d| < beta ? d / beta : sign(d)               (sign(0) = 0)
// beta == 0 is plain L1 (torch l1_loss): loss = |d|, dloss/dd = sign(d). l1_loss uses these
// kernels with beta = 0.
// Backward: gx[k] = dloss/dd(d[k]) * g[k * g_stride] (g_stride as above); the gradient for
// the target is -gx, formed by the front-end.
//
// bf16 inputs: T = kern::bf16 is the storage type of the logits / input and of their
// gradient gx only; the maths runs in float, and loss / lse / valid / g and the smooth-L1
// target are float (compute_t<T>, kernels/bf16.h), so the loss never goes through bf16;
// gx is rounded to nearest even on the store.
#pragma once
#include "kernels/bf16.h"
#include "kernels/common.h"

namespace kern {

struct CrossEntropyDims {
  int64_t N = 0;      // batch
  int64_t C = 0;      // classes
  int64_t inner = 1;  // product of the trailing spatial dims (1 for [N, C])
};

namespace cpu {
// Index e of the first target that is neither in [0, C) nor ignore_index, or -1.
int64_t find_invalid_target(int64_t n, const int64_t* target, int64_t C, int64_t ignore_index);

template <typename T>
void cross_entropy_forward(const CrossEntropyDims& d, const T* x, const int64_t* target, int64_t ignore_index,
                           compute_t<T>* loss, compute_t<T>* lse, compute_t<T>* valid);
template <typename T>
void cross_entropy_backward(const CrossEntropyDims& d, const T* x, const int64_t* target, const compute_t<T>* lse,
                            int64_t ignore_index, const compute_t<T>* g, int64_t g_stride, T* gx);

template <typename T>
void smooth_l1_forward(int64_t n, const T* input, const compute_t<T>* target, double beta, compute_t<T>* loss);
template <typename T>
void smooth_l1_backward(int64_t n, const T* input, const compute_t<T>* target, double beta, const compute_t<T>* g,
                        int64_t g_stride, T* gx);
}  // namespace cpu

// CUDA: cross_entropy_forward uses one warp per element when inner == 1 (contiguous class
// rows) and one thread per element when inner > 1; the backward and smooth_l1 kernels use
// one thread per output value.
namespace cuda {
template <typename T>
void cross_entropy_forward(const CrossEntropyDims& d, const T* x, const int64_t* target, int64_t ignore_index,
                           compute_t<T>* loss, compute_t<T>* lse, compute_t<T>* valid, Stream stream);
template <typename T>
void cross_entropy_backward(const CrossEntropyDims& d, const T* x, const int64_t* target, const compute_t<T>* lse,
                            int64_t ignore_index, const compute_t<T>* g, int64_t g_stride, T* gx, Stream stream);

template <typename T>
void smooth_l1_forward(int64_t n, const T* input, const compute_t<T>* target, double beta, compute_t<T>* loss,
                       Stream stream);
template <typename T>
void smooth_l1_backward(int64_t n, const T* input, const compute_t<T>* target, double beta, const compute_t<T>* g,
                        int64_t g_stride, T* gx, Stream stream);
}  // namespace cuda

}  // namespace kern
