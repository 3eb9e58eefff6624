#include "kernels/batch_norm.h"

#include <cmath>

#include "isa_dispatch.h"

// Variants, llm.c style:
//   ref::*   variant 0, the reference: plain per-channel loops, sums accumulated in double
//            in element order.
//   the rest variant 1: the per-plane loops with every per-channel value hoisted into a
//            local (so the compiler vectorises them without alias checks against the
//            per-channel arrays), compiled per ISA level (isa_dispatch.h). The elementwise
//            kernels (forward, backward_input, channel_affine) evaluate the reference's
//            expression in the same order: same bits. The reductions (stats,
//            backward_reduce) sum in double over 8 interleaved lanes (element i into lane
//            i mod 8 of each plane, lanes combined in a fixed tree at the end): the same
//            on every ISA, within a few double ulps of the reference's sequential sum
//            (tests/ops/test_cpu_vector_paths.cpp).

namespace kern::cpu {

namespace {
template <typename T>
T rstd_of(T var, double eps) {
  return T(1) / std::sqrt(var + static_cast<T>(eps));
}
}  // namespace

// ---- variant 0: the reference ----------------------------------------------------------
namespace ref {

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

}  // namespace ref

// ---- variant 1 ---------------------------------------------------------------------------
namespace {

constexpr int kLanes = 8;

double combine_lanes(const double* a) { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }

// acc[i mod 8] += x[i] (in double), over one plane.
struct SumLanes {
  template <typename S>
  static KERN_CPU_INLINE void run(int64_t n, const S* x, double* acc_io) {
    double acc[kLanes];
    for (int j = 0; j < kLanes; ++j) acc[j] = acc_io[j];
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) acc[j] += static_cast<double>(to_compute(x[i + j]));
    for (; i < n; ++i) acc[i % kLanes] += static_cast<double>(to_compute(x[i]));
    for (int j = 0; j < kLanes; ++j) acc_io[j] = acc[j];
  }
};

// acc[i mod 8] += (x[i] - m)^2 in double, over one plane.
struct SqDevLanes {
  template <typename S>
  static KERN_CPU_INLINE void run(int64_t n, const S* x, double m, double* acc_io) {
    double acc[kLanes];
    for (int j = 0; j < kLanes; ++j) acc[j] = acc_io[j];
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const double v = static_cast<double>(to_compute(x[i + j])) - m;
        acc[j] += v * v;
      }
    for (; i < n; ++i) {
      const double v = static_cast<double>(to_compute(x[i])) - m;
      acc[i % kLanes] += v * v;
    }
    for (int j = 0; j < kLanes; ++j) acc_io[j] = acc[j];
  }
};

// dy and dy * xhat summed into lanes (xhat and the product in the compute type, as in ref).
struct DyLanes {
  template <typename S, typename T>
  static KERN_CPU_INLINE void run(int64_t n, const S* x, const S* gy, T m, T r, double* a_io, double* b_io) {
    double a[kLanes], b[kLanes];
    for (int j = 0; j < kLanes; ++j) a[j] = a_io[j], b[j] = b_io[j];
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      T g[kLanes], p[kLanes];  // the products first, in separate lane loops (so they vectorise too)
      for (int j = 0; j < kLanes; ++j) g[j] = to_compute(gy[i + j]);
      for (int j = 0; j < kLanes; ++j) p[j] = g[j] * ((to_compute(x[i + j]) - m) * r);
      for (int j = 0; j < kLanes; ++j) a[j] += static_cast<double>(g[j]);
      for (int j = 0; j < kLanes; ++j) b[j] += static_cast<double>(p[j]);
    }
    for (; i < n; ++i) {
      const T g = to_compute(gy[i]);
      a[i % kLanes] += static_cast<double>(g);
      b[i % kLanes] += static_cast<double>(g * ((to_compute(x[i]) - m) * r));
    }
    for (int j = 0; j < kLanes; ++j) a_io[j] = a[j], b_io[j] = b[j];
  }
};

// y = (x - m) * r * w + b, the reference's expression and order.
struct FwdPlane {
  template <typename S, typename T>
  static KERN_CPU_INLINE void run(int64_t n, const S* x, S* y, T m, T r, T w, T b) {
    for (int64_t i = 0; i < n; ++i) y[i] = from_compute<S>((to_compute(x[i]) - m) * r * w + b);
  }
};

// Training: gx = k * (M * gy - sdy - xhat * sdx), xhat = (x - m) * r.
struct BwdTrainPlane {
  template <typename S, typename T>
  static KERN_CPU_INLINE void run(int64_t n, const S* x, const S* gy, S* gx, T m, T r, T k, T M, T sdy, T sdx) {
    for (int64_t i = 0; i < n; ++i) {
      const T xhat = (to_compute(x[i]) - m) * r;
      gx[i] = from_compute<S>(k * (M * to_compute(gy[i]) - sdy - xhat * sdx));
    }
  }
};

// Eval: gx = gy * w * r.
struct BwdEvalPlane {
  template <typename S, typename T>
  static KERN_CPU_INLINE void run(int64_t n, const S* gy, S* gx, T w, T r) {
    for (int64_t i = 0; i < n; ++i) gx[i] = from_compute<S>(to_compute(gy[i]) * w * r);
  }
};

// y = x * s + t.
struct AffinePlane {
  template <typename S, typename T>
  static KERN_CPU_INLINE void run(int64_t n, const S* x, S* y, T s, T t) {
    for (int64_t i = 0; i < n; ++i) y[i] = from_compute<S>(to_compute(x[i]) * s + t);
  }
};

}  // namespace

template <typename S>
void batch_norm_stats(const BatchNormDims& d, const S* x, compute_t<S>* mean, compute_t<S>* var) {
  using T = compute_t<S>;
  const int64_t M = d.N * d.HW;
  const Isa isa = isa_active();
  auto sum = run_isa<SumLanes, int64_t, const S*, double*>(isa);
  auto sqdev = run_isa<SqDevLanes, int64_t, const S*, double, double*>(isa);
#pragma omp parallel for if (d.N * d.C * d.HW > (1 << 16))
  for (int64_t c = 0; c < d.C; ++c) {
    double acc[kLanes] = {};
    for (int64_t n = 0; n < d.N; ++n) sum(d.HW, x + (n * d.C + c) * d.HW, acc);
    const double m = combine_lanes(acc) / static_cast<double>(M);
    double acc2[kLanes] = {};  // second pass: sum of squared deviations (no cancellation)
    for (int64_t n = 0; n < d.N; ++n) sqdev(d.HW, x + (n * d.C + c) * d.HW, m, acc2);
    mean[c] = static_cast<T>(m);
    var[c] = static_cast<T>(combine_lanes(acc2) / static_cast<double>(M));
  }
}

template <typename S>
void batch_norm_forward(const BatchNormDims& d, const S* x, const compute_t<S>* mean, const compute_t<S>* var,
                        const compute_t<S>* w, const compute_t<S>* b, double eps, S* y) {
  using T = compute_t<S>;
  auto plane = run_isa<FwdPlane, int64_t, const S*, S*, T, T, T, T>(isa_active());
#pragma omp parallel for if (d.N * d.C * d.HW > (1 << 16))
  for (int64_t nc = 0; nc < d.N * d.C; ++nc) {
    const int64_t c = nc % d.C;
    plane(d.HW, x + nc * d.HW, y + nc * d.HW, mean[c], rstd_of(var[c], eps), w ? w[c] : T(1), b ? b[c] : T(0));
  }
}

template <typename S>
void batch_norm_backward_reduce(const BatchNormDims& d, const S* x, const compute_t<S>* mean,
                                const compute_t<S>* var, double eps, const S* gy, compute_t<S>* sum_dy,
                                compute_t<S>* sum_dy_xhat) {
  // The sums alone: the one-pass backward without gx (its per-channel lane sums are these).
  batch_norm_backward_train<S>(d, x, mean, var, nullptr, eps, gy, sum_dy, sum_dy_xhat, nullptr);
}

template <typename S>
void batch_norm_backward_input(const BatchNormDims& d, const S* x, const compute_t<S>* mean, const compute_t<S>* var,
                               const compute_t<S>* w, double eps, bool training, const S* gy,
                               const compute_t<S>* sum_dy, const compute_t<S>* sum_dy_xhat, S* gx) {
  using T = compute_t<S>;
  const T M = static_cast<T>(d.N * d.HW);
  const Isa isa = isa_active();
  auto train = run_isa<BwdTrainPlane, int64_t, const S*, const S*, S*, T, T, T, T, T, T>(isa);
  auto eval = run_isa<BwdEvalPlane, int64_t, const S*, S*, T, T>(isa);
#pragma omp parallel for if (d.N * d.C * d.HW > (1 << 16))
  for (int64_t nc = 0; nc < d.N * d.C; ++nc) {
    const int64_t c = nc % d.C;
    const T rstd = rstd_of(var[c], eps);
    const T wc = w ? w[c] : T(1);
    const int64_t off = nc * d.HW;
    if (training)
      train(d.HW, x + off, gy + off, gx + off, mean[c], rstd, wc * rstd / M, M, sum_dy[c], sum_dy_xhat[c]);
    else
      eval(d.HW, gy + off, gx + off, wc, rstd);
  }
}

template <typename S>
void batch_norm_backward_train(const BatchNormDims& d, const S* x, const compute_t<S>* mean, const compute_t<S>* var,
                               const compute_t<S>* w, double eps, const S* gy, compute_t<S>* sum_dy,
                               compute_t<S>* sum_dy_xhat, S* gx) {
  using T = compute_t<S>;
  const T M = static_cast<T>(d.N * d.HW);
  const Isa isa = isa_active();
  auto lanes = run_isa<DyLanes, int64_t, const S*, const S*, T, T, double*, double*>(isa);
  auto train = run_isa<BwdTrainPlane, int64_t, const S*, const S*, S*, T, T, T, T, T, T>(isa);
#pragma omp parallel for if (d.N * d.C * d.HW > (1 << 16))
  for (int64_t c = 0; c < d.C; ++c) {
    const T rstd = rstd_of(var[c], eps), m = mean[c];
    double a[kLanes] = {}, bsum[kLanes] = {};
    for (int64_t n = 0; n < d.N; ++n) {
      const int64_t off = (n * d.C + c) * d.HW;
      lanes(d.HW, x + off, gy + off, m, rstd, a, bsum);
    }
    const T sdy = static_cast<T>(combine_lanes(a)), sdx = static_cast<T>(combine_lanes(bsum));
    sum_dy[c] = sdy;
    sum_dy_xhat[c] = sdx;
    if (!gx) continue;
    const T wc = w ? w[c] : T(1);
    for (int64_t n = 0; n < d.N; ++n) {
      const int64_t off = (n * d.C + c) * d.HW;
      train(d.HW, x + off, gy + off, gx + off, m, rstd, wc * rstd / M, M, sdy, sdx);
    }
  }
}

template <typename T>
void channel_affine(const BatchNormDims& d, const T* x, const compute_t<T>* scale, const compute_t<T>* shift, T* y) {
  using F = compute_t<T>;
  auto plane = run_isa<AffinePlane, int64_t, const T*, T*, F, F>(isa_active());
#pragma omp parallel for if (d.N * d.C * d.HW > (1 << 16))
  for (int64_t nc = 0; nc < d.N * d.C; ++nc) {
    const int64_t c = nc % d.C;
    plane(d.HW, x + nc * d.HW, y + nc * d.HW, scale[c], shift ? shift[c] : F(0));
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
  template void batch_norm_backward_train<T>(const BatchNormDims&, const T*, const compute_t<T>*,          \
                                             const compute_t<T>*, const compute_t<T>*, double, const T*,   \
                                             compute_t<T>*, compute_t<T>*, T*);                            \
  template void batch_norm_backward_input<T>(const BatchNormDims&, const T*, const compute_t<T>*,          \
                                             const compute_t<T>*, const compute_t<T>*, double, bool,       \
                                             const T*, const compute_t<T>*, const compute_t<T>*, T*);      \
  template void channel_affine<T>(const BatchNormDims&, const T*, const compute_t<T>*, const compute_t<T>*, T*);  \
  template void ref::batch_norm_stats<T>(const BatchNormDims&, const T*, compute_t<T>*, compute_t<T>*);         \
  template void ref::batch_norm_forward<T>(const BatchNormDims&, const T*, const compute_t<T>*,                 \
                                      const compute_t<T>*, const compute_t<T>*, const compute_t<T>*, double, \
                                      T*);                                                                 \
  template void ref::batch_norm_backward_reduce<T>(const BatchNormDims&, const T*, const compute_t<T>*,         \
                                              const compute_t<T>*, double, const T*, compute_t<T>*,        \
                                              compute_t<T>*);                                              \
  template void ref::batch_norm_backward_input<T>(const BatchNormDims&, const T*, const compute_t<T>*,          \
                                             const compute_t<T>*, const compute_t<T>*, double, bool,       \
                                             const T*, const compute_t<T>*, const compute_t<T>*, T*);      \
  template void ref::channel_affine<T>(const BatchNormDims&, const T*, const compute_t<T>*, const compute_t<T>*, T*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
