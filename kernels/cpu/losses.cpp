// CPU reference for the loss kernels (maths in kernels/losses.h).
#include "kernels/losses.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kern::cpu {

int64_t find_invalid_target(int64_t n, const int64_t* target, int64_t C, int64_t ignore_index) {
  for (int64_t e = 0; e < n; ++e) {
    const int64_t t = target[e];
    if (t != ignore_index && (t < 0 || t >= C)) return e;
  }
  return -1;
}

template <typename S>
void cross_entropy_forward(const CrossEntropyDims& d, const S* x, const int64_t* target, int64_t ignore_index,
                           compute_t<S>* loss, compute_t<S>* lse, compute_t<S>* valid) {
  using T = compute_t<S>;  // S: storage of the logits; T: the maths (float for bf16)
  const int64_t C = d.C, inner = d.inner;
#pragma omp parallel for if (d.N * C * inner > (1 << 16))
  for (int64_t n = 0; n < d.N; ++n) {
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t e = n * inner + i;
      const S* xr = x + n * C * inner + i;  // class c at xr[c * inner]
      T m = to_compute(xr[0]);
      for (int64_t c = 1; c < C; ++c) m = std::max(m, to_compute(xr[c * inner]));
      T s = T(0);
      for (int64_t c = 0; c < C; ++c) s += std::exp(to_compute(xr[c * inner]) - m);
      lse[e] = m + std::log(s);

      const int64_t t = target[e];
      if (t == ignore_index) {
        loss[e] = T(0);
        if (valid) valid[e] = T(0);
        continue;
      }
      loss[e] = (t >= 0 && t < C) ? lse[e] - to_compute(xr[t * inner]) : std::numeric_limits<T>::quiet_NaN();
      if (valid) valid[e] = T(1);
    }
  }
}

template <typename S>
void cross_entropy_backward(const CrossEntropyDims& d, const S* x, const int64_t* target, const compute_t<S>* lse,
                            int64_t ignore_index, const compute_t<S>* g, int64_t g_stride, S* gx) {
  using T = compute_t<S>;
  const int64_t C = d.C, inner = d.inner;
#pragma omp parallel for if (d.N * C * inner > (1 << 16))
  for (int64_t n = 0; n < d.N; ++n) {
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t e = n * inner + i;
      const int64_t base = n * C * inner + i;
      const int64_t t = target[e];
      if (t == ignore_index) {
        for (int64_t c = 0; c < C; ++c) gx[base + c * inner] = from_compute<S>(T(0));
        continue;
      }
      const bool ok = t >= 0 && t < C;
      const T ge = g[e * g_stride];
      for (int64_t c = 0; c < C; ++c) {
        const T p = std::exp(to_compute(x[base + c * inner]) - lse[e]);
        gx[base + c * inner] =
            from_compute<S>(ok ? (p - (c == t ? T(1) : T(0))) * ge : std::numeric_limits<T>::quiet_NaN());
      }
    }
  }
}

template <typename S>
void smooth_l1_forward(int64_t n, const S* input, const compute_t<S>* target, double beta, compute_t<S>* loss) {
  using T = compute_t<S>;
  const T b = static_cast<T>(beta);
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t k = 0; k < n; ++k) {
    const T a = std::fabs(to_compute(input[k]) - target[k]);
    loss[k] = a < b ? T(0.5) * a * a / b : a - T(0.5) * b;
  }
}

template <typename S>
void smooth_l1_backward(int64_t n, const S* input, const compute_t<S>* target, double beta, const compute_t<S>* g,
                        int64_t g_stride, S* gx) {
  using T = compute_t<S>;
  const T b = static_cast<T>(beta);
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t k = 0; k < n; ++k) {
    const T diff = to_compute(input[k]) - target[k];
    const T sign = diff > T(0) ? T(1) : (diff < T(0) ? T(-1) : T(0));
    const T slope = std::fabs(diff) < b ? diff / b : sign;
    gx[k] = from_compute<S>(slope * g[k * g_stride]);
  }
}

#define KERN_INSTANTIATE_CE(T)                                                                               \
  template void cross_entropy_forward<T>(const CrossEntropyDims&, const T*, const int64_t*, int64_t,           \
                                         compute_t<T>*, compute_t<T>*, compute_t<T>*);                         \
  template void cross_entropy_backward<T>(const CrossEntropyDims&, const T*, const int64_t*,                   \
                                          const compute_t<T>*, int64_t, const compute_t<T>*, int64_t, T*);
#define KERN_INSTANTIATE(T)                                                                                    \
  KERN_INSTANTIATE_CE(T)                                                                                       \
  template void smooth_l1_forward<T>(int64_t, const T*, const compute_t<T>*, double, compute_t<T>*);         \
  template void smooth_l1_backward<T>(int64_t, const T*, const compute_t<T>*, double, const compute_t<T>*,   \
                                      int64_t, T*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE
#undef KERN_INSTANTIATE_CE

}  // namespace kern::cpu
