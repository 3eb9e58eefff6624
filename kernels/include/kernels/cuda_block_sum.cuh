// Deterministic block-wide sums in double and the one rounding of a double result to a
// storage type, shared by the two-pass reductions (reduce_multiblock.cu,
// focal_weighted_sum.cu). Include only from .cu files.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/bf16.h"
#include "kernels/cuda_warp.cuh"

namespace kern::cuda {

constexpr int kSumBlock = 256;  // threads of every block that calls block_sum_double

// Sum of v over a kSumBlock-thread block (every thread must call it); valid in thread 0.
// Warp shuffles, then the 8 warp sums by warp 0: a fixed tree, the same bits every run.
__device__ inline double block_sum_double(double v) {
  __shared__ double warp_sums[kSumBlock / kWarpSize];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  v = warp_sum(v);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  double total = 0.0;
  if (warp == 0) {
    total = lane < kSumBlock / kWarpSize ? warp_sums[lane] : 0.0;
    total = warp_sum(total);
  }
  return total;
}

// p[i] = v rounded once to T (bf16: nearest even straight from double).
template <typename T>
__device__ __forceinline__ void store_from_double(T* p, int64_t i, double v) {
  p[i] = static_cast<T>(v);
}
template <>
__device__ __forceinline__ void store_from_double<bf16>(bf16* p, int64_t i, double v) {
  reinterpret_cast<__nv_bfloat16*>(p)[i] = __double2bfloat16(v);
}

// One block per output o: out[o] = scale * (partials[o * S + 0] + ... + partials[o * S + S - 1])
// in a fixed order (thread t adds t, t + kSumBlock, ... then block_sum_double).
template <typename T>
__global__ void __launch_bounds__(kSumBlock)
    sum_partials_rows_kernel(int64_t S, const double* __restrict__ partials, T* __restrict__ out, double scale) {
  const double* row = partials + static_cast<int64_t>(blockIdx.x) * S;
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < S; i += kSumBlock) acc += row[i];
  const double total = block_sum_double(acc);
  if (threadIdx.x == 0) store_from_double(out, blockIdx.x, total * scale);
}

}  // namespace kern::cuda
