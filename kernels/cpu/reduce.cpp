#include "kernels/reduce.h"
#include "kernels/reduce_multiblock.h"

#include <vector>

#include "kernels/bf16.h"

// T is the storage type (float, double, bf16). bf16 values are widened exactly, summed in
// double like the others, and each result is rounded once from double (nearest even).

namespace kern::cpu {
namespace {
template <typename T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, bf16>) return double_to_bf16_rne(v);
  else return static_cast<T>(v);
}
}  // namespace

template <typename T>
void sum_dim(int64_t outer, int64_t R, int64_t inner, const T* x, T* y, double scale) {
  if (outer == 1 && inner == 1) {  // a whole-tensor sum: split R over the threads
    double acc = 0;
#pragma omp parallel for reduction(+ : acc) if (R > (1 << 16))
    for (int64_t r = 0; r < R; ++r) acc += to_compute(x[r]);
    y[0] = from_double<T>(acc * scale);
    return;
  }
#pragma omp parallel for if (outer * R * inner > (1 << 16))
  for (int64_t o = 0; o < outer; ++o) {
    std::vector<double> acc(static_cast<size_t>(inner), 0.0);
    for (int64_t r = 0; r < R; ++r) {
      const T* xr = x + (o * R + r) * inner;
      for (int64_t i = 0; i < inner; ++i) acc[i] += to_compute(xr[i]);
    }
    T* yo = y + o * inner;
    for (int64_t i = 0; i < inner; ++i) yo[i] = from_double<T>(acc[i] * scale);
  }
}

template <typename T>
void max_dim(int64_t outer, int64_t R, int64_t inner, const T* x, T* y, int64_t* idx) {
#pragma omp parallel for if (outer * R * inner > (1 << 16))
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      const T* xp = x + o * R * inner + i;
      compute_t<T> best = to_compute(xp[0]);
      int64_t arg = 0;
      for (int64_t r = 1; r < R; ++r) {
        if (to_compute(xp[r * inner]) > best) {
          best = to_compute(xp[r * inner]);
          arg = r;
        }
      }
      y[o * inner + i] = xp[arg * inner];  // the element itself
      idx[o * inner + i] = arg;
    }
  }
}

template <typename T>
void max_dim_backward(int64_t outer, int64_t R, int64_t inner, const int64_t* idx, const T* gy, T* gx) {
  for (int64_t k = 0; k < outer * R * inner; ++k) gx[k] = T{};  // zero (bits 0 for bf16)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) gx[(o * R + idx[o * inner + i]) * inner + i] = gy[o * inner + i];
}

#define KERN_INSTANTIATE(T)                                                                        \
  template void sum_dim<T>(int64_t, int64_t, int64_t, const T*, T*, double);                      \
  template void max_dim<T>(int64_t, int64_t, int64_t, const T*, T*, int64_t*);                    \
  template void max_dim_backward<T>(int64_t, int64_t, int64_t, const int64_t*, const T*, T*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu

// The reference of kernels/reduce_multiblock.h: y[o] = scale * sum_{a, b} x[(a * O + o) * B + b].
namespace kern::cpu {
template <typename T>
void sum_outer_inner(int64_t A, int64_t O, int64_t B, const T* x, T* y, double scale) {
#pragma omp parallel for if (A * O * B > (1 << 16))
  for (int64_t o = 0; o < O; ++o) {
    double acc = 0;
    for (int64_t a = 0; a < A; ++a) {
      const T* row = x + (a * O + o) * B;
      for (int64_t b = 0; b < B; ++b) acc += to_compute(row[b]);
    }
    if constexpr (std::is_same_v<T, bf16>) y[o] = double_to_bf16_rne(acc * scale);
    else y[o] = static_cast<T>(acc * scale);
  }
}
template void sum_outer_inner<float>(int64_t, int64_t, int64_t, const float*, float*, double);
template void sum_outer_inner<double>(int64_t, int64_t, int64_t, const double*, double*, double);
template void sum_outer_inner<bf16>(int64_t, int64_t, int64_t, const bf16*, bf16*, double);
}  // namespace kern::cpu
