// Multi-block, deterministic sums: the whole GPU works on one reduction.
//
//   sum_outer_inner:  y[o] = scale * sum_{a < A, b < B} x[(a * O + o) * B + b]
//
// x is a contiguous [A, O, B] array and the sum runs over A and B for every o. It covers
//   - a whole-tensor sum / mean:              A = 1, O = 1, B = numel
//   - sum_dim over trailing dims ([O, R]):    A = 1, O = rows, B = R   (few rows, long R)
//   - the conv bias gradient (gy [N, O, HW]): A = N, O = channels, B = H * W
//   - any sum over dims around one kept run:  [A, kept..., B] with no permute copy
//
// Two passes (no atomics, so the result is the same bits on every run):
//   pass 1: the A*B elements of each output are split into S consecutive slices
//           (sum_outer_inner_slices); block (o, s) adds its slice and writes one partial,
//           partials[o * S + s] (double).
//   pass 2: one block per output adds its S partials in a fixed order (thread t takes
//           t, t + 256, ..., then a fixed tree) and stores scale * total, rounded once to T.
// With S == 1 pass 1 writes y directly (no partials, one launch).
// S depends only on (A, O, B) and two constants, not on the device: the same call gives
// the same bits on any GPU (sm count, timing). About kSumTargetBlocks blocks of 256 threads
// in pass 1 (a little under one wave of 8 resident blocks on each of an H100's 132 SMs),
// each slice at least kSumMinSlice elements so that small sums stay one block.
//
// Accumulation is in double for every T (f32, f64, bf16 widened exactly), as the simple
// kernels in kernels/reduce.h: on the GPUs we target the double adds hide behind the
// loads, and float sums of 10^7..10^8 small terms (the focal-loss map) keep float accuracy.
//
// The simple kernels stay: kern::cuda::sum_dim (one block per row) is the baseline the
// tests and bench_kernels compare against.
#pragma once
#include <algorithm>

#include "kernels/common.h"

namespace kern {

constexpr int64_t kSumTargetBlocks = 1024;
constexpr int64_t kSumMinSlice = 8192;  // elements; 32 per thread of a 256-thread block

// Slices per output (S above); >= 1.
inline int64_t sum_outer_inner_slices(int64_t A, int64_t O, int64_t B) {
  const int64_t per_out = A * B;
  if (O <= 0 || per_out <= kSumMinSlice) return 1;
  const int64_t want = (kSumTargetBlocks + O - 1) / O;
  const int64_t most = (per_out + kSumMinSlice - 1) / kSumMinSlice;
  return std::max<int64_t>(1, std::min(want, most));
}
// Doubles the `partials` workspace must hold (0: pass 1 writes y, partials may be null).
inline int64_t sum_outer_inner_partials(int64_t A, int64_t O, int64_t B) {
  const int64_t s = sum_outer_inner_slices(A, O, B);
  return s > 1 ? O * s : 0;
}

namespace cpu {
// Reference: plain loops, double accumulation, each result rounded once.
template <typename T>
void sum_outer_inner(int64_t A, int64_t O, int64_t B, const T* x, T* y, double scale);
}  // namespace cpu

namespace cuda {
// O * S must fit in 31 bits (the grid); the front-end falls back to sum_dim otherwise.
// A*B == 0 writes zeros.
template <typename T>
void sum_outer_inner(int64_t A, int64_t O, int64_t B, const T* x, T* y, double scale, double* partials,
                     Stream stream);
}  // namespace cuda

}  // namespace kern
