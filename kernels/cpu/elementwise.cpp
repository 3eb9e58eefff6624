#include "kernels/elementwise.h"

#include <algorithm>

#include "isa_dispatch.h"
#include "kernels/bf16.h"
#include "kernels/elementwise_math.h"

// T is the storage type: float, double, or bf16 (loaded as float, the maths in float, the
// result rounded to nearest even on the store: kernels/bf16.h).
//
// Two variants of each kernel, llm.c style:
//   ref::*         variant 0, the reference: one loop, the op switched per element (binary:
//                  an odometer over the output's dims, the last one the inner loop).
//   the rest       variant 1: the switch hoisted out of the loop (one loop per op, which the
//                  compiler vectorises where the maths allows), compiled for each ISA level
//                  (isa_dispatch.h), split over threads in chunks. ReLU / ReLU6 backward are
//                  the dedicated loops relu_backward / relu6_backward. binary_forward first
//                  merges dims that are contiguous for both operands (same pairs, same order)
//                  and runs each row through a loop for its stride pattern (both contiguous,
//                  or one operand constant along the row). Bit-identical to variant 0
//                  (tests/ops/test_cpu_vector_paths.cpp).

namespace kern::cpu {

// ---- variant 0: the reference loops -------------------------------------------------------
namespace ref {

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

namespace {

template <BinaryOp OP, typename C>
inline C binary_op(C x, C y) {
  return math::binary<C>(OP, x, y);
}

// One output row of a broadcasting binary op: the common stride patterns get their own
// loops (a stride of 0 reads one element for the whole row) so that they vectorise.
template <BinaryOp OP>
struct BinaryRow {
  template <typename T>
  static KERN_CPU_INLINE void run(int64_t n, const T* a, int64_t as, const T* b, int64_t bs, T* o) {
    using C = compute_t<T>;
    if (as == 1 && bs == 1) {
      for (int64_t j = 0; j < n; ++j) o[j] = from_compute<T>(binary_op<OP, C>(to_compute(a[j]), to_compute(b[j])));
    } else if (as == 1 && bs == 0) {
      const C bv = to_compute(b[0]);
      for (int64_t j = 0; j < n; ++j) o[j] = from_compute<T>(binary_op<OP, C>(to_compute(a[j]), bv));
    } else if (as == 0 && bs == 1) {
      const C av = to_compute(a[0]);
      for (int64_t j = 0; j < n; ++j) o[j] = from_compute<T>(binary_op<OP, C>(av, to_compute(b[j])));
    } else {
      for (int64_t j = 0; j < n; ++j)
        o[j] = from_compute<T>(binary_op<OP, C>(to_compute(a[j * as]), to_compute(b[j * bs])));
    }
  }
};

// The same element pairs in the same order over fewer dims: size-1 dims dropped, and a dim
// merged into the one outside it where both a's and b's strides allow it.
BroadcastDims coalesce(const BroadcastDims& d) {
  BroadcastDims c;
  for (int i = 0; i < d.ndim; ++i) {
    if (d.sizes[i] == 1) continue;
    const int l = c.ndim - 1;
    if (l >= 0 && c.a_strides[l] == d.a_strides[i] * d.sizes[i] && c.b_strides[l] == d.b_strides[i] * d.sizes[i]) {
      c.sizes[l] *= d.sizes[i];
      c.a_strides[l] = d.a_strides[i];
      c.b_strides[l] = d.b_strides[i];
    } else {
      c.sizes[c.ndim] = d.sizes[i];
      c.a_strides[c.ndim] = d.a_strides[i];
      c.b_strides[c.ndim] = d.b_strides[i];
      ++c.ndim;
    }
  }
  if (c.ndim == 0) c.ndim = 1, c.sizes[0] = 1;  // one element (strides 0)
  return c;
}

}  // namespace

template <typename T>
void binary_forward(BinaryOp op, const BroadcastDims& d_in, const T* a, const T* b, T* out) {
  int64_t n = 1;
  for (int i = 0; i < d_in.ndim; ++i) n *= d_in.sizes[i];
  if (n == 0) return;
  const BroadcastDims d = coalesce(d_in);
  using Fn = void (*)(int64_t, const T*, int64_t, const T*, int64_t, T*);
  const Isa isa = isa_active();
  Fn row = nullptr;
  switch (op) {
    case BinaryOp::Add: row = run_isa<BinaryRow<BinaryOp::Add>, int64_t, const T*, int64_t, const T*, int64_t, T*>(isa); break;
    case BinaryOp::Sub: row = run_isa<BinaryRow<BinaryOp::Sub>, int64_t, const T*, int64_t, const T*, int64_t, T*>(isa); break;
    case BinaryOp::Mul: row = run_isa<BinaryRow<BinaryOp::Mul>, int64_t, const T*, int64_t, const T*, int64_t, T*>(isa); break;
    case BinaryOp::Div: row = run_isa<BinaryRow<BinaryOp::Div>, int64_t, const T*, int64_t, const T*, int64_t, T*>(isa); break;
  }
  if (row == nullptr) return ref::binary_forward<T>(op, d_in, a, b, out);
  const int last = d.ndim - 1;
  const int64_t inner = d.sizes[last], rows = n / inner;
  // Rows [r0, r1): the odometer over the outer dims starts from r0's coordinates.
  auto run_rows = [&](int64_t r0, int64_t r1) {
    int64_t idx[kMaxDims] = {};
    for (int64_t r = r0, i = last - 1; i >= 0; --i) {
      idx[i] = r % d.sizes[i];
      r /= d.sizes[i];
    }
    for (int64_t r = r0; r < r1; ++r) {
      int64_t ao = 0, bo = 0;
      for (int i = 0; i < last; ++i) ao += idx[i] * d.a_strides[i], bo += idx[i] * d.b_strides[i];
      row(inner, a + ao, d.a_strides[last], b + bo, d.b_strides[last], out + r * inner);
      for (int i = last - 1; i >= 0; --i) {
        if (++idx[i] < d.sizes[i]) break;
        idx[i] = 0;
      }
    }
  };
  // Rows per chunk so that a chunk holds about kChunk elements.
  const int64_t rows_per_chunk = std::max<int64_t>(1, kChunk / inner);
  if (n <= kMinParallel || rows == 1) {
    if (rows == 1 && n > kMinParallel) {  // one long row: split it
      parallel_ranges(n, kMinParallel, kChunk, [&](int64_t s, int64_t e) {
        const int64_t as = d.a_strides[last], bs = d.b_strides[last];
        row(e - s, a + s * as, as, b + s * bs, bs, out + s);
      });
    } else {
      run_rows(0, rows);
    }
    return;
  }
  parallel_ranges(rows, 0, rows_per_chunk, run_rows);
}

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
  template void ref::binary_forward<T>(BinaryOp, const BroadcastDims&, const T*, const T*, T*);      \
  template void ref::unary_forward<T>(UnaryOp, int64_t, const T*, T*, double, double);               \
  template void ref::unary_inplace<T>(UnaryOp, int64_t, T*, double, double);                         \
  template void ref::unary_backward<T>(UnaryOp, int64_t, const T*, const T*, const T*, T*, double, double);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
