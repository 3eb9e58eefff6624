#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"
#include "kernels/reduce.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;

// T is the storage type (kernels/cuda_storage.cuh): bf16 is widened on load, summed in
// double, and each sum rounded once from double (__double2bfloat16, nearest even).
template <typename T>
__device__ __forceinline__ void store_double(T* p, int64_t i, double v) {
  p[i] = static_cast<T>(v);
}
template <>
__device__ __forceinline__ void store_double<bf16>(bf16* p, int64_t i, double v) {
  reinterpret_cast<__nv_bfloat16*>(p)[i] = __double2bfloat16(v);
}

// Sums accumulate in double (kernels/reduce.h).
// inner == 1: one block per output row, a shared-memory tree over R.
template <typename T>
__global__ void sum_rows_kernel(int64_t R, const T* __restrict__ x, T* __restrict__ y, double scale) {
  __shared__ double buf[kBlock];
  const T* row = x + blockIdx.x * R;
  double acc = 0;
  for (int64_t r = threadIdx.x; r < R; r += blockDim.x) acc += Storage<T>::load(row, r);
  buf[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) store_double(y, blockIdx.x, buf[0] * scale);
}

// inner > 1: one thread per (o, i), reads along r are coalesced across i.
template <typename T>
__global__ void sum_strided_kernel(int64_t outer, int64_t R, int64_t inner, const T* __restrict__ x,
                                   T* __restrict__ y, double scale) {
  const int64_t n = outer * inner;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = k / inner, i = k % inner;
    const T* p = x + o * R * inner + i;
    double acc = 0;
    for (int64_t r = 0; r < R; ++r) acc += Storage<T>::load(p, r * inner);
    store_double(y, k, acc * scale);
  }
}

template <typename T>
__global__ void max_kernel(int64_t outer, int64_t R, int64_t inner, const T* __restrict__ x, T* __restrict__ y,
                           int64_t* __restrict__ idx) {
  const int64_t n = outer * inner;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = k / inner, i = k % inner;
    const T* p = x + o * R * inner + i;
    compute_of<T> best = Storage<T>::load(p, 0);
    int64_t arg = 0;
    for (int64_t r = 1; r < R; ++r) {
      const compute_of<T> v = Storage<T>::load(p, r * inner);
      if (v > best) {
        best = v;
        arg = r;
      }
    }
    y[k] = p[arg * inner];  // the element itself
    idx[k] = arg;
  }
}

template <typename T>
__global__ void max_backward_kernel(int64_t outer, int64_t R, int64_t inner, const int64_t* __restrict__ idx,
                                    const T* __restrict__ gy, T* __restrict__ gx) {
  const int64_t n = outer * R * inner;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = k % inner, r = (k / inner) % R, o = k / (inner * R);
    gx[k] = (idx[o * inner + i] == r) ? gy[o * inner + i] : T{};  // T{}: zero bits for bf16
  }
}

}  // namespace

template <typename T>
void sum_dim(int64_t outer, int64_t R, int64_t inner, const T* x, T* y, double scale, Stream stream) {
  if (outer * inner == 0) return;
  if (inner == 1 && outer <= 2147483647LL) {
    sum_rows_kernel<T><<<static_cast<unsigned>(outer), kBlock, 0, stream>>>(R, x, y, scale);
  } else {
    sum_strided_kernel<T><<<kern_grid_1d(outer * inner), kBlock, 0, stream>>>(outer, R, inner, x, y, scale);
  }
  KERN_LAUNCH_CHECK();
}

template <typename T>
void max_dim(int64_t outer, int64_t R, int64_t inner, const T* x, T* y, int64_t* idx, Stream stream) {
  if (outer * inner == 0) return;
  max_kernel<T><<<kern_grid_1d(outer * inner), kBlock, 0, stream>>>(outer, R, inner, x, y, idx);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void max_dim_backward(int64_t outer, int64_t R, int64_t inner, const int64_t* idx, const T* gy, T* gx,
                      Stream stream) {
  if (outer * R * inner == 0) return;
  max_backward_kernel<T><<<kern_grid_1d(outer * R * inner), kBlock, 0, stream>>>(outer, R, inner, idx, gy, gx);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                          \
  template void sum_dim<T>(int64_t, int64_t, int64_t, const T*, T*, double, Stream);                \
  template void max_dim<T>(int64_t, int64_t, int64_t, const T*, T*, int64_t*, Stream);              \
  template void max_dim_backward<T>(int64_t, int64_t, int64_t, const int64_t*, const T*, T*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
