// Warp-level reductions shared by the CUDA kernels (include only from .cu files).
// Every lane of the warp must call them (full mask); each returns the result in every lane.
#pragma once

namespace kern::cuda {

constexpr int kWarpSize = 32;

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
  for (int off = kWarpSize / 2; off > 0; off >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int off = kWarpSize / 2; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

}  // namespace kern::cuda
