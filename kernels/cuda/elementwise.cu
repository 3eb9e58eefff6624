#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"
#include "kernels/elementwise.h"
#include "kernels/elementwise_math.h"
#include "kernels/index32.h"

#include <algorithm>

namespace kern::cuda {
namespace {

// T is the storage type (kernels/cuda_storage.cuh): bf16 is loaded as float, the maths runs
// in float and the result is stored rounded to nearest even, as in the CPU twin
// (kernels/cpu/elementwise.cpp); the [cuda] tests compare the two.
// I is the index type: int32_t when index32_fits (kernels/index32.h), else int64_t.
template <typename T>
using Elem = Storage<T>;
template <typename T>
using ComputeT = compute_of<T>;

template <typename T, typename I>
__global__ void binary_kernel(BinaryOp op, BroadcastDims d, I n, const T* __restrict__ a,
                              const T* __restrict__ b, T* __restrict__ out) {
  for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < n; i += (I)gridDim.x * (I)blockDim.x) {
    I rem = i, ao = 0, bo = 0;
    for (int k = d.ndim - 1; k >= 0; --k) {
      const I size = static_cast<I>(d.sizes[k]);
      const I c = rem % size;
      rem /= size;
      ao += c * static_cast<I>(d.a_strides[k]);
      bo += c * static_cast<I>(d.b_strides[k]);
    }
    Elem<T>::store(out, i, math::binary<ComputeT<T>>(op, Elem<T>::load(a, ao), Elem<T>::load(b, bo)));
  }
}

// Same-shape contiguous fast path: no index arithmetic.
template <typename T, typename I>
__global__ void binary_flat_kernel(BinaryOp op, I n, const T* __restrict__ a, const T* __restrict__ b,
                                   T* __restrict__ out) {
  for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < n; i += (I)gridDim.x * (I)blockDim.x)
    Elem<T>::store(out, i, math::binary<ComputeT<T>>(op, Elem<T>::load(a, i), Elem<T>::load(b, i)));
}

template <typename T, typename I>
__global__ void unary_kernel(UnaryOp op, I n, const T* __restrict__ x, T* __restrict__ y, ComputeT<T> p0,
                             ComputeT<T> p1) {
  for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < n; i += (I)gridDim.x * (I)blockDim.x)
    Elem<T>::store(y, i, math::unary<ComputeT<T>>(op, Elem<T>::load(x, i), p0, p1));
}

// In place: x is read and written through one pointer (no __restrict__).
template <typename T, typename I>
__global__ void unary_inplace_kernel(UnaryOp op, I n, T* x, ComputeT<T> p0, ComputeT<T> p1) {
  for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < n; i += (I)gridDim.x * (I)blockDim.x)
    Elem<T>::store(x, i, math::unary<ComputeT<T>>(op, Elem<T>::load(x, i), p0, p1));
}

template <typename T, typename I>
__global__ void unary_backward_kernel(UnaryOp op, I n, const T* x, const T* y, const T* __restrict__ gy,
                                      T* __restrict__ gx, ComputeT<T> p0, ComputeT<T> p1) {
  using C = ComputeT<T>;
  for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < n; i += (I)gridDim.x * (I)blockDim.x)
    Elem<T>::store(gx, i, math::unary_grad<C>(op, x ? Elem<T>::load(x, i) : C(0), y ? Elem<T>::load(y, i) : C(0),
                                              Elem<T>::load(gy, i), p0, p1));
}

bool is_flat(const BroadcastDims& d) {
  int64_t expect = 1;
  for (int k = d.ndim - 1; k >= 0; --k) {
    if (d.sizes[k] != 1 && (d.a_strides[k] != expect || d.b_strides[k] != expect)) return false;
    expect *= d.sizes[k];
  }
  return true;
}

}  // namespace

template <typename T>
void binary_forward(BinaryOp op, const BroadcastDims& d, const T* a, const T* b, T* out, Stream stream) {
  int64_t n = 1;
  for (int i = 0; i < d.ndim; ++i) n *= d.sizes[i];
  if (n == 0) return;
  if (is_flat(d)) {
    if (index32_fits(n, n - 1)) {
      binary_flat_kernel<T, int32_t><<<kern_grid_1d(n), 256, 0, stream>>>(op, static_cast<int32_t>(n), a, b, out);
    } else {
      binary_flat_kernel<T, int64_t><<<kern_grid_1d(n), 256, 0, stream>>>(op, n, a, b, out);
    }
  } else {
    // Offsets into a and b reach max_strided_offset (-1 with a negative stride: 64-bit).
    const int64_t ra = max_strided_offset(d.ndim, d.sizes, d.a_strides);
    const int64_t rb = max_strided_offset(d.ndim, d.sizes, d.b_strides);
    if (index32_fits(n, (ra < 0 || rb < 0) ? -1 : std::max({ra, rb, n - 1}))) {
      binary_kernel<T, int32_t><<<kern_grid_1d(n), 256, 0, stream>>>(op, d, static_cast<int32_t>(n), a, b, out);
    } else {
      binary_kernel<T, int64_t><<<kern_grid_1d(n), 256, 0, stream>>>(op, d, n, a, b, out);
    }
  }
  KERN_LAUNCH_CHECK();
}

template <typename T>
void unary_forward(UnaryOp op, int64_t n, const T* x, T* y, double p0, double p1, Stream stream) {
  if (n == 0) return;
  const ComputeT<T> q0 = static_cast<ComputeT<T>>(p0), q1 = static_cast<ComputeT<T>>(p1);
  if (index32_fits(n, n - 1)) {
    unary_kernel<T, int32_t><<<kern_grid_1d(n), 256, 0, stream>>>(op, static_cast<int32_t>(n), x, y, q0, q1);
  } else {
    unary_kernel<T, int64_t><<<kern_grid_1d(n), 256, 0, stream>>>(op, n, x, y, q0, q1);
  }
  KERN_LAUNCH_CHECK();
}

template <typename T>
void unary_inplace(UnaryOp op, int64_t n, T* x, double p0, double p1, Stream stream) {
  if (n == 0) return;
  const ComputeT<T> q0 = static_cast<ComputeT<T>>(p0), q1 = static_cast<ComputeT<T>>(p1);
  if (index32_fits(n, n - 1)) {
    unary_inplace_kernel<T, int32_t><<<kern_grid_1d(n), 256, 0, stream>>>(op, static_cast<int32_t>(n), x, q0, q1);
  } else {
    unary_inplace_kernel<T, int64_t><<<kern_grid_1d(n), 256, 0, stream>>>(op, n, x, q0, q1);
  }
  KERN_LAUNCH_CHECK();
}

template <typename T>
void unary_backward(UnaryOp op, int64_t n, const T* x, const T* y, const T* gy, T* gx, double p0, double p1,
                    Stream stream) {
  if (n == 0) return;
  const ComputeT<T> q0 = static_cast<ComputeT<T>>(p0), q1 = static_cast<ComputeT<T>>(p1);
  if (index32_fits(n, n - 1)) {
    unary_backward_kernel<T, int32_t><<<kern_grid_1d(n), 256, 0, stream>>>(op, static_cast<int32_t>(n), x, y, gy,
                                                                           gx, q0, q1);
  } else {
    unary_backward_kernel<T, int64_t><<<kern_grid_1d(n), 256, 0, stream>>>(op, n, x, y, gy, gx, q0, q1);
  }
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                            \
  template void binary_forward<T>(BinaryOp, const BroadcastDims&, const T*, const T*, T*, Stream);    \
  template void unary_forward<T>(UnaryOp, int64_t, const T*, T*, double, double, Stream);             \
  template void unary_inplace<T>(UnaryOp, int64_t, T*, double, double, Stream);                          \
  template void unary_backward<T>(UnaryOp, int64_t, const T*, const T*, const T*, T*, double, double, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
