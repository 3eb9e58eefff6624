// CPU reference for softmax / log_softmax (maths in kernels/softmax.h).
#include "kernels/softmax.h"

#include <algorithm>
#include <cmath>

#include "kernels/bf16.h"

// T is the storage type (float, double, bf16); the maths runs in compute_t<T> (float for
// bf16: values widened on load, results rounded to nearest even on the store).

namespace kern::cpu {
namespace {

// One row: C values at p[0], p[inner], p[2 * inner], ...
template <typename T>
void forward_row(int64_t C, int64_t inner, const T* x, T* y, bool log_space) {
  using F = compute_t<T>;
  F m = to_compute(x[0]);
  for (int64_t c = 1; c < C; ++c) m = std::max(m, to_compute(x[c * inner]));
  F s = F(0);
  for (int64_t c = 0; c < C; ++c) s += std::exp(to_compute(x[c * inner]) - m);
  if (log_space) {
    const F log_s = std::log(s);
    for (int64_t c = 0; c < C; ++c) y[c * inner] = from_compute<T>(to_compute(x[c * inner]) - m - log_s);
  } else {
    for (int64_t c = 0; c < C; ++c) y[c * inner] = from_compute<T>(std::exp(to_compute(x[c * inner]) - m) / s);
  }
}

template <typename T>
void forward(const SoftmaxDims& d, const T* x, T* y, bool log_space) {
  if (d.C == 0) return;
#pragma omp parallel for if (d.outer * d.C * d.inner > (1 << 16))
  for (int64_t o = 0; o < d.outer; ++o)
    for (int64_t i = 0; i < d.inner; ++i) {
      const int64_t base = o * d.C * d.inner + i;
      forward_row(d.C, d.inner, x + base, y + base, log_space);
    }
}

template <typename T>
void backward(const SoftmaxDims& d, const T* y, const T* gy, T* gx, bool log_space) {
  if (d.C == 0) return;
#pragma omp parallel for if (d.outer * d.C * d.inner > (1 << 16))
  for (int64_t o = 0; o < d.outer; ++o)
    for (int64_t i = 0; i < d.inner; ++i) {
      const int64_t base = o * d.C * d.inner + i;
      const T* yr = y + base;
      const T* gr = gy + base;
      T* out = gx + base;
      const int64_t st = d.inner;
      using F = compute_t<T>;
      if (log_space) {
        F sum_g = F(0);
        for (int64_t c = 0; c < d.C; ++c) sum_g += to_compute(gr[c * st]);
        for (int64_t c = 0; c < d.C; ++c)
          out[c * st] = from_compute<T>(to_compute(gr[c * st]) - std::exp(to_compute(yr[c * st])) * sum_g);
      } else {
        F dot = F(0);
        for (int64_t c = 0; c < d.C; ++c) dot += to_compute(gr[c * st]) * to_compute(yr[c * st]);
        for (int64_t c = 0; c < d.C; ++c)
          out[c * st] = from_compute<T>(to_compute(yr[c * st]) * (to_compute(gr[c * st]) - dot));
      }
    }
}

}  // namespace

template <typename T>
void softmax_forward(const SoftmaxDims& d, const T* x, T* y) { forward(d, x, y, false); }
template <typename T>
void log_softmax_forward(const SoftmaxDims& d, const T* x, T* y) { forward(d, x, y, true); }
template <typename T>
void softmax_backward(const SoftmaxDims& d, const T* y, const T* gy, T* gx) { backward(d, y, gy, gx, false); }
template <typename T>
void log_softmax_backward(const SoftmaxDims& d, const T* y, const T* gy, T* gx) { backward(d, y, gy, gx, true); }

#define KERN_INSTANTIATE(T)                                                              \
  template void softmax_forward<T>(const SoftmaxDims&, const T*, T*);                   \
  template void log_softmax_forward<T>(const SoftmaxDims&, const T*, T*);               \
  template void softmax_backward<T>(const SoftmaxDims&, const T*, const T*, T*);        \
  template void log_softmax_backward<T>(const SoftmaxDims&, const T*, const T*, T*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
