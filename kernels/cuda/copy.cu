#include <type_traits>

#include "kernels/copy.h"
#include "kernels/cuda_check.h"

namespace kern::cuda {
namespace {

template <typename D, typename S>
__device__ inline D cast_value(S v) {
  if constexpr (std::is_same_v<D, bool>) return v != S(0);
  else return static_cast<D>(v);
}

// One thread per element of the index space; the linear index is unravelled over sizes.
template <typename S, typename D>
__global__ void strided_copy_kernel(CopyDims d, int64_t n, const S* __restrict__ src, D* __restrict__ dst) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t rem = i, so = 0, doff = 0;
    for (int k = d.ndim - 1; k >= 0; --k) {
      int64_t c = rem % d.sizes[k];
      rem /= d.sizes[k];
      so += c * d.src_strides[k];
      doff += c * d.dst_strides[k];
    }
    dst[doff] = cast_value<D>(src[so]);
  }
}

template <typename T>
__global__ void fill_kernel(T* dst, int64_t n, T v) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = v;
}

template <typename S, typename D>
void launch_copy(const CopyDims& d, const S* src, D* dst, Stream stream) {
  int64_t n = 1;
  for (int i = 0; i < d.ndim; ++i) n *= d.sizes[i];
  if (n == 0) return;
  strided_copy_kernel<S, D><<<kern_grid_1d(n), 256, 0, stream>>>(d, n, src, dst);
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
  }
}

template <typename T>
void launch_fill(T* dst, int64_t n, double value, Stream stream) {
  if (n == 0) return;
  T v;
  if constexpr (std::is_same_v<T, bool>) v = value != 0.0;
  else v = static_cast<T>(value);
  fill_kernel<T><<<kern_grid_1d(n), 256, 0, stream>>>(dst, n, v);
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
  }
}

void memcpy_h2d(void* dst, const void* src, size_t nbytes, Stream s) {
  KERN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, s));
  KERN_CUDA_CHECK(cudaStreamSynchronize(s));
}
void memcpy_d2h(void* dst, const void* src, size_t nbytes, Stream s) {
  KERN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s));
  KERN_CUDA_CHECK(cudaStreamSynchronize(s));
}
void memcpy_h2d_async(void* dst, const void* src, size_t nbytes, Stream s) {
  KERN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, s));
}
void memcpy_d2d(void* dst, const void* src, size_t nbytes, Stream s) {
  KERN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, s));
}

}  // namespace kern::cuda
