#include <cuda_bf16.h>

#include <algorithm>
#include <type_traits>

#include "kernels/copy.h"
#include "kernels/cuda_check.h"
#include "kernels/index32.h"

namespace kern::cuda {
namespace {

using bf16_t = __nv_bfloat16;  // kern::bf16's bits (ElemType::bf16)

// C++ conversions, except: to bool is v != 0; bf16 is read exactly as float and written with
// CUDA's round-to-nearest-even conversion from the source type (one rounding, also from
// double and 64-bit ints). kernels/cpu/copy.cpp does the same with kern::bf16 helpers and
// the [cuda] test compares the two bit for bit.
template <typename D, typename S>
__host__ __device__ inline D cast_value(S v) {
  if constexpr (std::is_same_v<S, bf16_t> && std::is_same_v<D, bf16_t>) return v;
  else if constexpr (std::is_same_v<S, bf16_t>) return cast_value<D>(__bfloat162float(v));
  else if constexpr (std::is_same_v<D, bf16_t>) {
    if constexpr (std::is_same_v<S, float>) return __float2bfloat16_rn(v);
    else if constexpr (std::is_same_v<S, double>) return __double2bfloat16(v);
    else if constexpr (std::is_same_v<S, bool>) return __ushort_as_bfloat16(v ? 0x3F80u : 0u);
    else if constexpr (std::is_same_v<S, uint8_t>) return __uint2bfloat16_rn(v);
    else if constexpr (std::is_same_v<S, int32_t>) return __int2bfloat16_rn(v);
    else return __ll2bfloat16_rn(static_cast<long long>(v));
  } else if constexpr (std::is_same_v<D, bool>) return v != S(0);
  else if constexpr (std::is_floating_point_v<S> && std::is_integral_v<D>) return float_to_int_saturate<D>(v);
  else return static_cast<D>(v);
}

// One thread per element of the index space; the linear index is unravelled over sizes.
// I: int32_t when every index and offset fits (kernels/index32.h), else int64_t.
template <typename S, typename D, typename I>
__global__ void strided_copy_kernel(CopyDims d, I n, const S* __restrict__ src, D* __restrict__ dst) {
  for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < n; i += (I)gridDim.x * (I)blockDim.x) {
    I rem = i, so = 0, doff = 0;
    for (int k = d.ndim - 1; k >= 0; --k) {
      const I size = static_cast<I>(d.sizes[k]);
      const I c = rem % size;
      rem /= size;
      so += c * static_cast<I>(d.src_strides[k]);
      doff += c * static_cast<I>(d.dst_strides[k]);
    }
    dst[doff] = cast_value<D>(src[so]);
  }
}

template <typename T, typename I>
__global__ void fill_kernel(T* dst, I n, T v) {
  for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < n; i += (I)gridDim.x * (I)blockDim.x) dst[i] = v;
}

template <typename S, typename D>
void launch_copy(const CopyDims& d, const S* src, D* dst, Stream stream) {
  int64_t n = 1;
  for (int i = 0; i < d.ndim; ++i) n *= d.sizes[i];
  if (n == 0) return;
  const int64_t rs = max_strided_offset(d.ndim, d.sizes, d.src_strides);
  const int64_t rd = max_strided_offset(d.ndim, d.sizes, d.dst_strides);
  if (index32_fits(n, (rs < 0 || rd < 0) ? -1 : std::max({rs, rd, n - 1}))) {
    strided_copy_kernel<S, D, int32_t><<<kern_grid_1d(n), 256, 0, stream>>>(d, static_cast<int32_t>(n), src, dst);
  } else {
    strided_copy_kernel<S, D, int64_t><<<kern_grid_1d(n), 256, 0, stream>>>(d, n, src, dst);
  }
  KERN_LAUNCH_CHECK();
}

template <typename S>
void copy_from(const CopyDims& d, const S* src, void* dst, ElemType dt, Stream s) {
  switch (dt) {
    case ElemType::f32: return launch_copy(d, src, static_cast<float*>(dst), s);
    case ElemType::f64: return launch_copy(d, src, static_cast<double*>(dst), s);
    case ElemType::i32: return launch_copy(d, src, static_cast<int32_t*>(dst), s);
    case ElemType::i64: return launch_copy(d, src, static_cast<int64_t*>(dst), s);
    case ElemType::u8: return launch_copy(d, src, static_cast<uint8_t*>(dst), s);
    case ElemType::b8: return launch_copy(d, src, static_cast<bool*>(dst), s);
    case ElemType::bf16: return launch_copy(d, src, static_cast<bf16_t*>(dst), s);
  }
}

template <typename T>
void launch_fill(T* dst, int64_t n, double value, Stream stream) {
  if (n == 0) return;
  const T v = cast_value<T>(value);
  if (index32_fits(n, n - 1)) {
    fill_kernel<T, int32_t><<<kern_grid_1d(n), 256, 0, stream>>>(dst, static_cast<int32_t>(n), v);
  } else {
    fill_kernel<T, int64_t><<<kern_grid_1d(n), 256, 0, stream>>>(dst, n, v);
  }
  KERN_LAUNCH_CHECK();
}

}  // namespace

void strided_copy(const CopyDims& d, const void* src, ElemType st, void* dst, ElemType dt, Stream s) {
  switch (st) {
    case ElemType::f32: return copy_from(d, static_cast<const float*>(src), dst, dt, s);
    case ElemType::f64: return copy_from(d, static_cast<const double*>(src), dst, dt, s);
    case ElemType::i32: return copy_from(d, static_cast<const int32_t*>(src), dst, dt, s);
    case ElemType::i64: return copy_from(d, static_cast<const int64_t*>(src), dst, dt, s);
    case ElemType::u8: return copy_from(d, static_cast<const uint8_t*>(src), dst, dt, s);
    case ElemType::b8: return copy_from(d, static_cast<const bool*>(src), dst, dt, s);
    case ElemType::bf16: return copy_from(d, static_cast<const bf16_t*>(src), dst, dt, s);
  }
}

void fill(void* dst, ElemType type, int64_t n, double value, Stream s) {
  switch (type) {
    case ElemType::f32: return launch_fill(static_cast<float*>(dst), n, value, s);
    case ElemType::f64: return launch_fill(static_cast<double*>(dst), n, value, s);
    case ElemType::i32: return launch_fill(static_cast<int32_t*>(dst), n, value, s);
    case ElemType::i64: return launch_fill(static_cast<int64_t*>(dst), n, value, s);
    case ElemType::u8: return launch_fill(static_cast<uint8_t*>(dst), n, value, s);
    case ElemType::b8: return launch_fill(static_cast<bool*>(dst), n, value, s);
    case ElemType::bf16: return launch_fill(static_cast<bf16_t*>(dst), n, value, s);
  }
}

// Bytes each way and the waits are counted (kernels/counters.h): a synchronous copy is one
// host sync.
void memcpy_h2d(void* dst, const void* src, size_t nbytes, Stream s) {
  counters::add_bytes_h2d(nbytes);
  KERN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, s));
  KERN_HOST_SYNC(cudaStreamSynchronize(s));
}
void memcpy_d2h(void* dst, const void* src, size_t nbytes, Stream s) {
  counters::add_bytes_d2h(nbytes);
  KERN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s));
  KERN_HOST_SYNC(cudaStreamSynchronize(s));
}
void memcpy_h2d_async(void* dst, const void* src, size_t nbytes, Stream s) {
  counters::add_bytes_h2d(nbytes);
  KERN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, s));
}
void memcpy_d2d(void* dst, const void* src, size_t nbytes, Stream s) {
  KERN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, s));
}

}  // namespace kern::cuda
