// CPU reference of the weighted, summed sigmoid focal loss (kernels/focal_weighted_sum.h).
#include "kernels/focal_weighted_sum.h"

#include <algorithm>
#include <limits>

namespace kern::cpu {
namespace {

enum class RowKind { ignored, background, foreground, invalid };

RowKind row_kind(int64_t label, int64_t C, const FocalLossParams& p) {
  if (label == p.ignore_index) return RowKind::ignored;
  if (label == p.background_label) return RowKind::background;
  return (label >= 0 && label < C) ? RowKind::foreground : RowKind::invalid;
}

// Loss and derivative of element c of a row of kind `kind` (label `label`).
template <typename T>
void element(RowKind kind, int64_t label, int64_t c, T xv, const FocalLossParams& p, T* l, T* dl) {
  *l = *dl = T(0);
  if (kind == RowKind::ignored) return;
  if (kind == RowKind::invalid) {
    *l = *dl = std::numeric_limits<T>::quiet_NaN();
    return;
  }
  const bool target = kind == RowKind::foreground && c == label;
  focal_loss_element<T>(xv, target, static_cast<T>(p.alpha), p.alpha >= 0.0, static_cast<T>(p.gamma), l, dl);
}

}  // namespace

template <typename S>
void focal_weighted_sum_forward(const FocalWeightedDims& d, const FocalLossParams& p, const S* x,
                                const int64_t* labels, const compute_t<S>* weights, compute_t<S>* out,
                                double* partials, compute_t<S>* dloss_w) {
  using T = compute_t<S>;
  const int64_t rows = d.B * d.A, C = d.C;
  if (rows * C == 0) {
    *out = T(0);
    return;
  }
  // The rows in at most kFocalWeightedPartials consecutive parts, added in order.
  const int64_t per_part = std::max<int64_t>(1, (rows + kFocalWeightedPartials - 1) / kFocalWeightedPartials);
  const int64_t parts = (rows + per_part - 1) / per_part;
#pragma omp parallel for if (rows * C > (1 << 16))
  for (int64_t part = 0; part < parts; ++part) {
    double s = 0.0;
    for (int64_t m = part * per_part; m < std::min(rows, (part + 1) * per_part); ++m) {
      const RowKind kind = row_kind(labels[m], C, p);
      const T wt = weights[m / d.A];
      const double w = static_cast<double>(wt);
      for (int64_t c = 0; c < C; ++c) {
        T l, dl;
        element<T>(kind, labels[m], c, to_compute(x[m * C + c]), p, &l, &dl);
        s += static_cast<double>(l) * w;
        if (dloss_w) dloss_w[m * C + c] = dl * wt;
      }
    }
    partials[part] = s;
  }
  double total = 0.0;
  for (int64_t part = 0; part < parts; ++part) total += partials[part];
  *out = static_cast<T>(total);
}

template <typename S>
void focal_weighted_sum_backward(const FocalWeightedDims& d, const FocalLossParams& p, const S* x,
                                 const int64_t* labels, const compute_t<S>* weights, const compute_t<S>* g, S* gx) {
  using T = compute_t<S>;
  const int64_t rows = d.B * d.A, C = d.C;
#pragma omp parallel for if (rows * C > (1 << 16))
  for (int64_t m = 0; m < rows; ++m) {
    const RowKind kind = row_kind(labels[m], C, p);
    const T wg = weights[m / d.A] * g[0];
    for (int64_t c = 0; c < C; ++c) {
      T l, dl;
      element<T>(kind, labels[m], c, to_compute(x[m * C + c]), p, &l, &dl);
      gx[m * C + c] = from_compute<S>(dl * wg);
    }
  }
}

#define KERN_INSTANTIATE(S)                                                                                      \
  template void focal_weighted_sum_forward<S>(const FocalWeightedDims&, const FocalLossParams&, const S*,         \
                                              const int64_t*, const compute_t<S>*, compute_t<S>*, double*,        \
                                              compute_t<S>*);                                                     \
  template void focal_weighted_sum_backward<S>(const FocalWeightedDims&, const FocalLossParams&, const S*,        \
                                               const int64_t*, const compute_t<S>*, const compute_t<S>*, S*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
