#include "kernels/elementwise.h"

#include "isa_dispatch.h"
#include "kernels/bf16.h"
#include "kernels/elementwise_math.h"

// T is the storage type: float, double, or bf16 (loaded as float, the maths in float, the
// result rounded to nearest even on the store: kernels/bf16.h).
//
// Two variants of the unary kernels, llm.c style:
//   ref::unary_*   variant 0, the reference: one loop, the op switched per element.
//   unary_*        variant 1: the switch hoisted out of the loop (one loop per op, which the
//                  compiler vectorises where the maths allows), compiled for each ISA level
//                  (isa_dispatch.h), split over threads in chunks. ReLU / ReLU6 backward are
//                  the dedicated loops relu_backward / relu6_backward. Bit-identical to
//                  variant 0 (tests/ops/test_cpu_vector_paths.cpp).

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

// ---- variant 0: the reference loops -------------------------------------------------------
namespace ref {

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

}  // namespace ref

// ---- variant 1: one loop per op, per ISA --------------------------------------------------
namespace {

constexpr int64_t kMinParallel = 1 << 16;  // as the reference's omp if()
constexpr int64_t kChunk = 1 << 14;

// Which of x / y math::unary_grad reads for each op (the other may be null). Relu reads x,
// which the engine fills with the output y (equal in sign: kernels/elementwise.h).
constexpr bool grad_reads_x(UnaryOp op) {
  return op == UnaryOp::Relu || op == UnaryOp::Log || op == UnaryOp::Square || op == UnaryOp::Abs ||
         op == UnaryOp::Clamp || op == UnaryOp::Hardsigmoid || op == UnaryOp::Hardswish;
}
constexpr bool grad_reads_y(UnaryOp op) {
  return op == UnaryOp::Sigmoid || op == UnaryOp::Exp || op == UnaryOp::Sqrt || op == UnaryOp::Relu6;
}

template <UnaryOp OP>
struct UnaryFwd {
  template <typename T, typename C>
  static KERN_CPU_INLINE void run(int64_t n, const T* x, T* y, C q0, C q1) {
    for (int64_t i = 0; i < n; ++i) y[i] = from_compute<T>(math::unary<C>(OP, to_compute(x[i]), q0, q1));
  }
};

template <UnaryOp OP>
struct UnaryInplace {
  template <typename T, typename C>
  static KERN_CPU_INLINE void run(int64_t n, T* x, C q0, C q1) {
    for (int64_t i = 0; i < n; ++i) x[i] = from_compute<T>(math::unary<C>(OP, to_compute(x[i]), q0, q1));
  }
};

template <UnaryOp OP>
struct UnaryBwd {
  template <typename T, typename C>
  static KERN_CPU_INLINE void run(int64_t n, const T* x, const T* y, const T* gy, T* gx, C q0, C q1) {
    for (int64_t i = 0; i < n; ++i) {
      const C xv = grad_reads_x(OP) ? to_compute(x[i]) : C(0);
      const C yv = grad_reads_y(OP) ? to_compute(y[i]) : C(0);
      gx[i] = from_compute<T>(math::unary_grad<C>(OP, xv, yv, to_compute(gy[i]), q0, q1));
    }
  }
};

// gx = y > 0 ? gy : 0, the rule of math::unary_grad(Relu) (0 at y = 0; a NaN y gives 0; a
// NaN gy where y > 0 passes). Written as a select, not gy * mask, so 0 * Inf never appears.
struct ReluBwd {
  template <typename T>
  static KERN_CPU_INLINE void run(int64_t n, const T* y, const T* gy, T* gx) {
    using C = compute_t<T>;
    // gy is loaded whatever the mask: a load under the condition would be a branch (no
    // vector select without masked loads), mispredicted half the time on activations.
    for (int64_t i = 0; i < n; ++i) {
      const C g = to_compute(gy[i]);
      gx[i] = from_compute<T>(to_compute(y[i]) > C(0) ? g : C(0));
    }
  }
};

// gx = 0 < y < 6 ? gy : 0 (math::unary_grad(Relu6); 0 at both kinks).
struct Relu6Bwd {
  template <typename T>
  static KERN_CPU_INLINE void run(int64_t n, const T* y, const T* gy, T* gx) {
    using C = compute_t<T>;
    for (int64_t i = 0; i < n; ++i) {
      const C v = to_compute(y[i]), g = to_compute(gy[i]);
      gx[i] = from_compute<T>(((v > C(0)) & (v < C(6))) ? g : C(0));
    }
  }
};

// The per-op function pointer for kernel family K<OP> with argument types A...
template <template <UnaryOp> class K, class... A>
auto pick_unary(UnaryOp op, Isa isa) -> void (*)(A...) {
  switch (op) {
#define KERN_UNARY_CASE(O) \
  case UnaryOp::O: return run_isa<K<UnaryOp::O>, A...>(isa);
    KERN_UNARY_CASE(Neg)
    KERN_UNARY_CASE(AddScalar)
    KERN_UNARY_CASE(MulScalar)
    KERN_UNARY_CASE(RSubScalar)
    KERN_UNARY_CASE(Relu)
    KERN_UNARY_CASE(Sigmoid)
    KERN_UNARY_CASE(Exp)
    KERN_UNARY_CASE(Log)
    KERN_UNARY_CASE(Sqrt)
    KERN_UNARY_CASE(Square)
    KERN_UNARY_CASE(Abs)
    KERN_UNARY_CASE(Clamp)
    KERN_UNARY_CASE(Relu6)
    KERN_UNARY_CASE(Hardsigmoid)
    KERN_UNARY_CASE(Hardswish)
#undef KERN_UNARY_CASE
  }
  return nullptr;
}

}  // namespace

template <typename T>
void relu_backward(int64_t n, const T* y, const T* gy, T* gx) {
  auto fn = run_isa<ReluBwd, int64_t, const T*, const T*, T*>(isa_active());
  parallel_ranges(n, kMinParallel, kChunk, [&](int64_t b, int64_t e) { fn(e - b, y + b, gy + b, gx + b); });
}

template <typename T>
void relu6_backward(int64_t n, const T* y, const T* gy, T* gx) {
  auto fn = run_isa<Relu6Bwd, int64_t, const T*, const T*, T*>(isa_active());
  parallel_ranges(n, kMinParallel, kChunk, [&](int64_t b, int64_t e) { fn(e - b, y + b, gy + b, gx + b); });
}

template <typename T>
void unary_inplace(UnaryOp op, int64_t n, T* x, double p0, double p1) {
  using C = compute_t<T>;
  const C q0 = static_cast<C>(p0), q1 = static_cast<C>(p1);
  auto fn = pick_unary<UnaryInplace, int64_t, T*, C, C>(op, isa_active());
  if (fn == nullptr) return ref::unary_inplace<T>(op, n, x, p0, p1);
  parallel_ranges(n, kMinParallel, kChunk, [&](int64_t b, int64_t e) { fn(e - b, x + b, q0, q1); });
}

template <typename T>
void unary_forward(UnaryOp op, int64_t n, const T* x, T* y, double p0, double p1) {
  if (x == y) return unary_inplace<T>(op, n, y, p0, p1);  // the same maths; no alias check in the loop
  using C = compute_t<T>;
  const C q0 = static_cast<C>(p0), q1 = static_cast<C>(p1);
  auto fn = pick_unary<UnaryFwd, int64_t, const T*, T*, C, C>(op, isa_active());
  if (fn == nullptr) return ref::unary_forward<T>(op, n, x, y, p0, p1);
  parallel_ranges(n, kMinParallel, kChunk, [&](int64_t b, int64_t e) { fn(e - b, x + b, y + b, q0, q1); });
}

template <typename T>
void unary_backward(UnaryOp op, int64_t n, const T* x, const T* y, const T* gy, T* gx, double p0, double p1) {
  // A pointer the op's gradient reads but the caller left null: the reference (reads 0).
  if ((grad_reads_x(op) && x == nullptr) || (grad_reads_y(op) && y == nullptr))
    return ref::unary_backward<T>(op, n, x, y, gy, gx, p0, p1);
  if (op == UnaryOp::Relu) return relu_backward<T>(n, x, gy, gx);
  if (op == UnaryOp::Relu6) return relu6_backward<T>(n, y, gy, gx);
  using C = compute_t<T>;
  const C q0 = static_cast<C>(p0), q1 = static_cast<C>(p1);
  auto fn = pick_unary<UnaryBwd, int64_t, const T*, const T*, const T*, T*, C, C>(op, isa_active());
  if (fn == nullptr) return ref::unary_backward<T>(op, n, x, y, gy, gx, p0, p1);
  parallel_ranges(n, kMinParallel, kChunk, [&](int64_t b, int64_t e) {
    fn(e - b, x ? x + b : nullptr, y ? y + b : nullptr, gy + b, gx + b, q0, q1);
  });
}

#define KERN_INSTANTIATE(T)                                                                           \
  template void binary_forward<T>(BinaryOp, const BroadcastDims&, const T*, const T*, T*);           \
  template void unary_forward<T>(UnaryOp, int64_t, const T*, T*, double, double);                    \
  template void unary_inplace<T>(UnaryOp, int64_t, T*, double, double);                              \
  template void unary_backward<T>(UnaryOp, int64_t, const T*, const T*, const T*, T*, double, double); \
  template void relu_backward<T>(int64_t, const T*, const T*, T*);                                   \
  template void relu6_backward<T>(int64_t, const T*, const T*, T*);                                  \
  template void ref::unary_forward<T>(UnaryOp, int64_t, const T*, T*, double, double);               \
  template void ref::unary_inplace<T>(UnaryOp, int64_t, T*, double, double);                         \
  template void ref::unary_backward<T>(UnaryOp, int64_t, const T*, const T*, const T*, T*, double, double);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
