#include "kernels/batch_norm.h"

#include <cmath>

namespace kern::cpu {

namespace {
template <typename T>
T rstd_of(T var, double eps) {
  return T(1) / std::sqrt(var + static_cast<T>(eps));
}
}  // namespace

// S is the storage type of x / y / gy / gx (float, double, bf16); T = compute_t<S> is the
// type of every per-channel array and of the maths (float for bf16).
template <typename S>
void batch_norm_stats(const BatchNormDims& d, const S* x, compute_t<S>* mean, compute_t<S>* var) {
  using T = compute_t<S>;
  const int64_t M = d.N * d.HW;
#pragma omp parallel for if (d.N * d.C * d.HW > (1 << 16))
  for (int64_t c = 0; c < d.C; ++c) {
    double s = 0;
    for (int64_t n = 0; n < d.N; ++n) {
      const S* xp = x + (n * d.C + c) * d.HW;
      for (int64_t i = 0; i < d.HW; ++i) s += to_compute(xp[i]);
    }
    const double m = s / static_cast<double>(M);
    double ss = 0;  // second pass: sum of squared deviations (no cancellation)
    for (int64_t n = 0; n < d.N; ++n) {
      const S* xp = x + (n * d.C + c) * d.HW;
      for (int64_t i = 0; i < d.HW; ++i) ss += (to_compute(xp[i]) - m) * (to_compute(xp[i]) - m);
    }
    mean[c] = static_cast<T>(m);
    var[c] = static_cast<T>(ss / static_cast<double>(M));
  }
}

template <typename S>
void batch_norm_forward(const BatchNormDims& d, const S* x, const compute_t<S>* mean, const compute_t<S>* var,
                        const compute_t<S>* w, const compute_t<S>* b, double eps, S* y) {
  using T = compute_t<S>;
#pragma omp parallel for if (d.N * d.C * d.HW > (1 << 16))
  for (int64_t nc = 0; nc < d.N * d.C; ++nc) {
    const int64_t c = nc % d.C;
    const T rstd = rstd_of(var[c], eps);
    const T wc = w ? w[c] : T(1), bc = b ? b[c] : T(0);
    const S* xp = x + nc * d.HW;
    S* yp = y + nc * d.HW;
    for (int64_t i = 0; i < d.HW; ++i) yp[i] = from_compute<S>((to_compute(xp[i]) - mean[c]) * rstd * wc + bc);
  }
}

template <typename S>
void batch_norm_backward_reduce(const BatchNormDims& d, const S* x, const compute_t<S>* mean,
                                const compute_t<S>* var, double eps, const S* gy, compute_t<S>* sum_dy,
                                compute_t<S>* sum_dy_xhat) {
  using T = compute_t<S>;
#pragma omp parallel for if (d.N * d.C * d.HW > (1 << 16))
  for (int64_t c = 0; c < d.C; ++c) {
    const T rstd = rstd_of(var[c], eps);
    double s_dy = 0, s_dy_xhat = 0;
    for (int64_t n = 0; n < d.N; ++n) {
      const S* xp = x + (n * d.C + c) * d.HW;
      const S* gp = gy + (n * d.C + c) * d.HW;
      for (int64_t i = 0; i < d.HW; ++i) {
        const T g = to_compute(gp[i]);
        s_dy += g;
        s_dy_xhat += g * ((to_compute(xp[i]) - mean[c]) * rstd);
      }
    }
    sum_dy[c] = static_cast<T>(s_dy);
    sum_dy_xhat[c] = static_cast<T>(s_dy_xhat);
  }
}

template <typename S>
void batch_norm_backward_input(const BatchNormDims& d, const S* x, const compute_t<S>* mean, const compute_t<S>* var,
                               const compute_t<S>* w, double eps, bool training, const S* gy,
                               const compute_t<S>* sum_dy, const compute_t<S>* sum_dy_xhat, S* gx) {
  using T = compute_t<S>;
  const T M = static_cast<T>(d.N * d.HW);
#pragma omp parallel for if (d.N * d.C * d.HW > (1 << 16))
  for (int64_t nc = 0; nc < d.N * d.C; ++nc) {
    const int64_t c = nc % d.C;
    const T rstd = rstd_of(var[c], eps);
    const T wc = w ? w[c] : T(1);
    const S* xp = x + nc * d.HW;
    const S* gp = gy + nc * d.HW;
    S* gxp = gx + nc * d.HW;
    if (training) {
      const T k = wc * rstd / M;
      for (int64_t i = 0; i < d.HW; ++i) {
        const T xhat = (to_compute(xp[i]) - mean[c]) * rstd;
        gxp[i] = from_compute<S>(k * (M * to_compute(gp[i]) - sum_dy[c] - xhat * sum_dy_xhat[c]));
      }
    } else {
      for (int64_t i = 0; i < d.HW; ++i) gxp[i] = from_compute<S>(to_compute(gp[i]) * wc * rstd);
    }
  }
}

template <typename T>
void channel_affine(const BatchNormDims& d, const T* x, const compute_t<T>* scale, const compute_t<T>* shift, T* y) {
  using F = compute_t<T>;  // T is the storage type; bf16 computes in float, rounds once
#pragma omp parallel for if (d.N * d.C * d.HW > (1 << 16))
  for (int64_t nc = 0; nc < d.N * d.C; ++nc) {
    const int64_t c = nc % d.C;
    const F s = scale[c], t = shift ? shift[c] : F(0);
    const T* xp = x + nc * d.HW;
    T* yp = y + nc * d.HW;
    for (int64_t i = 0; i < d.HW; ++i) yp[i] = from_compute<T>(to_compute(xp[i]) * s + t);
  }
}

#define KERN_INSTANTIATE(T)                                                                                \
  template void batch_norm_stats<T>(const BatchNormDims&, const T*, compute_t<T>*, compute_t<T>*);         \
  template void batch_norm_forward<T>(const BatchNormDims&, const T*, const compute_t<T>*,                 \
                                      const compute_t<T>*, const compute_t<T>*, const compute_t<T>*, double, \
                                      T*);                                                                 \
  template void batch_norm_backward_reduce<T>(const BatchNormDims&, const T*, const compute_t<T>*,         \
                                              const compute_t<T>*, double, const T*, compute_t<T>*,        \
                                              compute_t<T>*);                                              \
  template void batch_norm_backward_input<T>(const BatchNormDims&, const T*, const compute_t<T>*,          \
                                             const compute_t<T>*, const compute_t<T>*, double, bool,       \
                                             const T*, const compute_t<T>*, const compute_t<T>*, T*);      \
  template void channel_affine<T>(const BatchNormDims&, const T*, const compute_t<T>*, const compute_t<T>*, T*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
