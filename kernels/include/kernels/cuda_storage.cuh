// Device-side loads and stores for kernels templated on a STORAGE type T (float, double or
// kern::bf16). Storage<T>::C is the type the maths runs in (T, or float for bf16);
// load() widens an element, store() narrows a result back. A kern::bf16 buffer is read as
// CUDA's __nv_bfloat16 (the same 16 bits) and narrowed with __float2bfloat16_rn (round to
// nearest even). The CPU twins use kern::to_compute / kern::from_compute (kernels/bf16.h),
// written independently, so the [cuda] tests that compare the two check the conversions too.
// Only for .cu files: it includes <cuda_bf16.h>.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/bf16.h"

namespace kern::cuda {

template <typename T>
struct Storage {
  using C = T;
  __device__ __forceinline__ static C load(const T* p, int64_t i) { return p[i]; }
  __device__ __forceinline__ static void store(T* p, int64_t i, C v) { p[i] = v; }
};

template <>
struct Storage<bf16> {
  using C = float;
  __device__ __forceinline__ static float load(const bf16* p, int64_t i) {
    return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(p)[i]);
  }
  __device__ __forceinline__ static void store(bf16* p, int64_t i, float v) {
    reinterpret_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  }
};

template <typename T>
using compute_of = typename Storage<T>::C;

}  // namespace kern::cuda
