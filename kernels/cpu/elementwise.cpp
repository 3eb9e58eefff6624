#include "kernels/elementwise.h"

#include "kernels/bf16.h"
#include "kernels/elementwise_math.h"

// T is the storage type: float, double, or bf16 (loaded as float, the maths in float, the
// result rounded to nearest even on the store: kernels/bf16.h).

namespace kern::cpu {

template <typename T>
void binary_forward(BinaryOp op, const BroadcastDims& d, const T* a, const T* b, T* out) {
  using C = compute_t<T>;
  auto f = [op](T x, T y) { return from_compute<T>(math::binary<C>(op, to_compute(x), to_compute(y))); };
  int64_t n = 1;
  for (int i = 0; i < d.ndim; ++i) n *= d.sizes[i];
  if (n == 0) return;
  if (d.ndim == 0) {
    out[0] = f(a[0], b[0]);
    return;
  }
  // Odometer over all dims but the last; the last dim is the inner loop.
  const int last = d.ndim - 1;
  const int64_t inner = d.sizes[last], as = d.a_strides[last], bs = d.b_strides[last];
  int64_t idx[kMaxDims] = {};
  for (int64_t base = 0; base < n; base += inner) {
    int64_t ao = 0, bo = 0;
    for (int i = 0; i < last; ++i) {
      ao += idx[i] * d.a_strides[i];
      bo += idx[i] * d.b_strides[i];
    }
    T* o = out + base;
    for (int64_t j = 0; j < inner; ++j) o[j] = f(a[ao + j * as], b[bo + j * bs]);
    for (int i = last - 1; i >= 0; --i) {
      if (++idx[i] < d.sizes[i]) break;
      idx[i] = 0;
    }
  }
}

template <typename T>
void unary_forward(UnaryOp op, int64_t n, const T* x, T* y, double p0, double p1) {
  using C = compute_t<T>;
  const C q0 = static_cast<C>(p0), q1 = static_cast<C>(p1);
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) y[i] = from_compute<T>(math::unary<C>(op, to_compute(x[i]), q0, q1));
}

template <typename T>
void unary_inplace(UnaryOp op, int64_t n, T* x, double p0, double p1) {
  using C = compute_t<T>;
  const C q0 = static_cast<C>(p0), q1 = static_cast<C>(p1);
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) x[i] = from_compute<T>(math::unary<C>(op, to_compute(x[i]), q0, q1));
}

template <typename T>
void unary_backward(UnaryOp op, int64_t n, const T* x, const T* y, const T* gy, T* gx, double p0, double p1) {
  using C = compute_t<T>;
  const C q0 = static_cast<C>(p0), q1 = static_cast<C>(p1);
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i)
    gx[i] = from_compute<T>(math::unary_grad<C>(op, x ? to_compute(x[i]) : C(0), y ? to_compute(y[i]) : C(0),
                                                to_compute(gy[i]), q0, q1));
}

#define KERN_INSTANTIATE(T)                                                                        \
  template void binary_forward<T>(BinaryOp, const BroadcastDims&, const T*, const T*, T*);        \
  template void unary_forward<T>(UnaryOp, int64_t, const T*, T*, double, double);                 \
  template void unary_inplace<T>(UnaryOp, int64_t, T*, double, double);                              \
  template void unary_backward<T>(UnaryOp, int64_t, const T*, const T*, const T*, T*, double, double);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
