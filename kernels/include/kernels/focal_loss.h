// Sigmoid focal loss (RetinaNet) over one-hot targets built from integer labels, fused:
// one pass computes the loss and, when asked, its derivative, which backward then only
// multiplies by the incoming gradient.
//
// Layout: logits x contiguous [rows, C] (the front-end flattens [..., C]); labels int64
// contiguous [rows]. Element (m, c) is x[m * C + c].
//
// Targets from labels, checked in this order:
//   label == ignore_index      -> the whole row is ignored: loss 0, derivative 0
//   label == background_label  -> t[c] = 0 for every c
//   0 <= label < C             -> t[c] = (c == label)
//   anything else              -> invalid: loss and derivative NaN for the whole row (so a
//                                 sum over it is NaN); memory is never read out of range.
// The front-end refuses invalid labels on the CPU before calling the kernel
// (find_invalid_focal_label); on CUDA it does not copy the labels to the host, so the NaN
// is how the error shows.
//
// Per element, with p = sigmoid(x), write s = x when t = 1 and s = -x when t = 0 (the
// logit signed towards the target), so that
//   p_t      = t p + (1 - t)(1 - p)      = sigmoid(s)
//   1 - p_t                              = sigmoid(-s)                  =: q
//   ce       = -ln(p_t)                  = softplus(-s) = max(-s, 0) + log1p(exp(-|s|))
//   alpha_t  = t alpha + (1 - t)(1 - alpha), or 1 when alpha < 0 (no weighting)
//   loss     = alpha_t q^gamma ce
// == torchvision.ops.sigmoid_focal_loss(x, t, alpha, gamma, reduction='none'), whose ce is
// binary_cross_entropy_with_logits. Every quantity is formed from exp(-|s|) in (0, 1], so
// logits of +-30 or +-1000 give finite values (no log(0), no overflow), and q^gamma uses
// pow with 0^0 = 1 (gamma = 0 is alpha-weighted BCE).
//
// Derivative. With dq/ds = -p_t q and dce/ds = -q:
//   dloss/ds = alpha_t (gamma q^(gamma-1) (-p_t q) ce + q^gamma (-q))
//            = -alpha_t q^gamma (gamma p_t ce + q)
//   dloss/dx = (t ? +1 : -1) * dloss/ds
// (no q^(gamma-1) remains, so gamma in (0, 1) is fine at q = 0). Check at gamma = 0:
// t = 1 gives -alpha (1 - p) and t = 0 gives (1 - alpha) p, the weighted BCE gradient p - t.
//
// Forward outputs (any may be null; all are fully written when given):
//   loss[rows * C]   per-element loss (reduction None)
//   loss_sum[1]      sum of the loss over all elements (reductions Sum and Mean). The sum is
//                    formed as partial sums over a fixed split of the elements (at most
//                    kFocalLossPartials parts, written to `partials`, which must then hold
//                    that many values) added in a fixed order: the same inputs give the
//                    same bits on every run.
//   dloss[rows * C]  per-element dloss/dx, saved for backward when a gradient is needed
// Backward: gx[k] = dloss[k] * g[k * g_stride], with g_stride 1 (reduction None, one
// gradient per element) or 0 (Sum / Mean: one value, already divided by the count for Mean).
//
// Memory traffic floor per element (T = float; labels add 8 bytes per row = 8 / C per
// element): forward reads x (4) and writes dloss (4) when a gradient is needed, plus loss
// (4) for reduction None; backward reads dloss (4) (and g (4) for None) and writes gx (4).
// Sum/Mean forward + backward: 16 bytes per element. Recomputing the derivative from x in
// backward instead would move 12; the saved derivative keeps the exp / log1p / pow work out
// of backward, as asked of this design.
//
// bf16 logits: T = kern::bf16 is the storage type of x and gx only. The maths runs in float
// (focal_loss_element<float>), and loss / loss_sum / partials / dloss / g are float
// (compute_t<T>, kernels/bf16.h); backward rounds gx to nearest even on the store.
#pragma once
#include "kernels/bf16.h"
#include "kernels/common.h"
#include "kernels/elementwise_math.h"  // KERN_HD (host + device inline)

namespace kern {

struct FocalLossDims {
  int64_t rows = 0;  // number of labels (product of the logits' leading dims)
  int64_t C = 0;     // classes
};

struct FocalLossParams {
  double alpha = 0.25;  // < 0: no alpha weighting
  double gamma = 2.0;   // >= 0
  int64_t background_label = -1;
  int64_t ignore_index = -2;
};

// Most partial sums a forward with loss_sum writes (the size of `partials`).
constexpr int64_t kFocalLossPartials = 1024;

// exp / log1p / pow in T's precision on both sides (the host's ::exp(float) would compute
// in double).
#ifdef __CUDA_ARCH__
#define KERN_FOCAL_MATH(fn) ::fn
#else
#define KERN_FOCAL_MATH(fn) std::fn
#endif

// The per-element maths above, shared by the CPU and CUDA kernels so that the two differ
// only in rounding. `target` is t; `alpha_on` is alpha >= 0.
template <typename T>
KERN_HD void focal_loss_element(T x, bool target, T alpha, bool alpha_on, T gamma, T* loss, T* dloss_dx) {
  const T s = target ? x : -x;
  const T e = KERN_FOCAL_MATH(exp)(s < T(0) ? s : -s);  // exp(-|s|) in (0, 1]: never overflows
  const T inv_1pe = T(1) / (T(1) + e);
  const T p_t = s >= T(0) ? inv_1pe : e * inv_1pe;  // sigmoid(s)
  const T q = s >= T(0) ? e * inv_1pe : inv_1pe;    // sigmoid(-s) = 1 - p_t
  const T ce = (s < T(0) ? -s : T(0)) + KERN_FOCAL_MATH(log1p)(e);  // -ln(p_t) = softplus(-s)
  const T a_t = alpha_on ? (target ? alpha : T(1) - alpha) : T(1);
  // q^gamma; the common exponents skip pow (0^0 = 1 either way).
  const T q_g = gamma == T(2) ? q * q
                              : (gamma == T(0) ? T(1) : (gamma == T(1) ? q : KERN_FOCAL_MATH(pow)(q, gamma)));
  *loss = a_t * q_g * ce;
  const T dloss_ds = -a_t * q_g * (gamma * p_t * ce + q);
  *dloss_dx = target ? dloss_ds : -dloss_ds;
}
#undef KERN_FOCAL_MATH

namespace cpu {
// Row of the first label that is not ignore_index, not background_label and not in [0, C), or -1.
int64_t find_invalid_focal_label(int64_t rows, const int64_t* labels, int64_t C, const FocalLossParams& p);

template <typename T>
void sigmoid_focal_loss_forward(const FocalLossDims& d, const FocalLossParams& p, const T* x, const int64_t* labels,
                                compute_t<T>* loss, compute_t<T>* loss_sum, compute_t<T>* partials,
                                compute_t<T>* dloss);
template <typename T>
void sigmoid_focal_loss_backward(int64_t n, const compute_t<T>* dloss, const compute_t<T>* g, int64_t g_stride,
                                 T* gx);
}  // namespace cpu

// CUDA: one thread per element in a grid-stride loop (the label of row m is read by the C
// neighbouring threads of that row, a broadcast from L1). With loss_sum, the grid has at most
// kFocalLossPartials blocks; each block reduces its threads' sums (warp shuffles, then shared
// memory) into partials[block], and a one-block kernel adds the partials in order. Invalid
// labels give NaN (see above).
namespace cuda {
template <typename T>
void sigmoid_focal_loss_forward(const FocalLossDims& d, const FocalLossParams& p, const T* x, const int64_t* labels,
                                compute_t<T>* loss, compute_t<T>* loss_sum, compute_t<T>* partials,
                                compute_t<T>* dloss, Stream stream);
template <typename T>
void sigmoid_focal_loss_backward(int64_t n, const compute_t<T>* dloss, const compute_t<T>* g, int64_t g_stride,
                                 T* gx, Stream stream);
}  // namespace cuda

}  // namespace kern
