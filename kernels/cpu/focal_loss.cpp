// CPU reference for the sigmoid focal loss (maths in kernels/focal_loss.h).
#include "kernels/focal_loss.h"

#include <algorithm>
#include <limits>

namespace kern::cpu {

int64_t find_invalid_focal_label(int64_t rows, const int64_t* labels, int64_t C, const FocalLossParams& p) {
  for (int64_t m = 0; m < rows; ++m) {
    const int64_t l = labels[m];
    if (l == p.ignore_index || l == p.background_label) continue;
    if (l < 0 || l >= C) return m;
  }
  return -1;
}

namespace {

// Loss and derivative of the C elements of row m; returns the row's loss sum. S is the
// storage type of the logits, T = compute_t<S> the maths and the outputs.
template <typename S, typename T = compute_t<S>>
double focal_row(int64_t m, int64_t C, const FocalLossParams& p, const S* x, const int64_t* labels, T* loss,
                 T* dloss) {
  const int64_t label = labels[m];
  const T alpha = static_cast<T>(p.alpha), gamma = static_cast<T>(p.gamma);
  const bool alpha_on = p.alpha >= 0.0;
  const bool ignored = label == p.ignore_index;
  const bool background = !ignored && label == p.background_label;
  const bool valid = ignored || background || (label >= 0 && label < C);
  double row_sum = 0.0;
  for (int64_t c = 0; c < C; ++c) {
    const int64_t k = m * C + c;
    T l = T(0), dl = T(0);
    if (!valid) {
      l = dl = std::numeric_limits<T>::quiet_NaN();
    } else if (!ignored) {
      const bool target = !background && c == label;
      focal_loss_element<T>(to_compute(x[k]), target, alpha, alpha_on, gamma, &l, &dl);
    }
    if (loss) loss[k] = l;
    if (dloss) dloss[k] = dl;
    row_sum += static_cast<double>(l);
  }
  return row_sum;
}

}  // namespace

template <typename S>
void sigmoid_focal_loss_forward(const FocalLossDims& d, const FocalLossParams& p, const S* x, const int64_t* labels,
                                compute_t<S>* loss, compute_t<S>* loss_sum, compute_t<S>* partials,
                                compute_t<S>* dloss) {
  using T = compute_t<S>;
  const int64_t rows = d.rows, C = d.C;
  if (!loss_sum) {
#pragma omp parallel for if (rows * C > (1 << 16))
    for (int64_t m = 0; m < rows; ++m) focal_row(m, C, p, x, labels, loss, dloss);
    return;
  }
  // The rows in at most kFocalLossPartials consecutive parts; each part's sum (in double)
  // goes to partials[part], and the parts are added in order.
  const int64_t per_part = std::max<int64_t>(1, (rows + kFocalLossPartials - 1) / kFocalLossPartials);
  const int64_t parts = (rows + per_part - 1) / per_part;
#pragma omp parallel for if (rows * C > (1 << 16))
  for (int64_t part = 0; part < parts; ++part) {
    double s = 0.0;
    for (int64_t m = part * per_part; m < std::min(rows, (part + 1) * per_part); ++m)
      s += focal_row(m, C, p, x, labels, loss, dloss);
    partials[part] = static_cast<T>(s);
  }
  double total = 0.0;
  for (int64_t part = 0; part < parts; ++part) total += static_cast<double>(partials[part]);
  *loss_sum = static_cast<T>(total);
}

template <typename S>
void sigmoid_focal_loss_backward(int64_t n, const compute_t<S>* dloss, const compute_t<S>* g, int64_t g_stride,
                                 S* gx) {
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t k = 0; k < n; ++k) gx[k] = from_compute<S>(dloss[k] * g[k * g_stride]);
}

#define KERN_INSTANTIATE(T)                                                                                       \
  template void sigmoid_focal_loss_forward<T>(const FocalLossDims&, const FocalLossParams&, const T*,              \
                                              const int64_t*, compute_t<T>*, compute_t<T>*, compute_t<T>*,         \
                                              compute_t<T>*);                                                      \
  template void sigmoid_focal_loss_backward<T>(int64_t, const compute_t<T>*, const compute_t<T>*, int64_t, T*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
