#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"
#include "kernels/pool2d.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;

// T is the storage type (kernels/cuda_storage.cuh): bf16 is compared and summed in float,
// the sums rounded to nearest even on the store, as in the CPU twin
// (kernels/cpu/pool2d.cpp), which sums in the same order.
template <typename T>
using PoolElem = Storage<T>;

// One thread per output element (plane, oh, ow).
template <typename T>
__global__ void max_pool2d_forward_kernel(Pool2dDims d, const T* __restrict__ x, T* __restrict__ y,
                                          int64_t* __restrict__ idx) {
  const int64_t n = d.planes * d.out_h * d.out_w;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t ow = k % d.out_w, oh = (k / d.out_w) % d.out_h, p = k / (d.out_w * d.out_h);
    const T* xp = x + p * d.in_h * d.in_w;
    const int64_t h0 = max(oh * d.stride_h - d.pad_h, (int64_t)0);
    const int64_t h1 = min(oh * d.stride_h - d.pad_h + d.kernel_h, d.in_h);
    const int64_t w0 = max(ow * d.stride_w - d.pad_w, (int64_t)0);
    const int64_t w1 = min(ow * d.stride_w - d.pad_w + d.kernel_w, d.in_w);
    using E = PoolElem<T>;
    int64_t best_i = h0 * d.in_w + w0;
    typename E::C best = E::load(xp, best_i);
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t w = w0; w < w1; ++w) {
        const typename E::C v = E::load(xp, h * d.in_w + w);
        if (v > best || isnan(v)) {  // same test as the CPU reference (torch's)
          best = v;
          best_i = h * d.in_w + w;
        }
      }
    }
    y[k] = xp[best_i];  // the element itself: no rounding
    idx[k] = best_i;
  }
}

// One thread per input element (plane, h, w): sums gy over the windows that cover it and
// chose it as their maximum.
template <typename T>
__global__ void max_pool2d_backward_kernel(Pool2dDims d, const int64_t* __restrict__ idx, const T* __restrict__ gy,
                                           T* __restrict__ gx) {
  const int64_t n = d.planes * d.in_h * d.in_w;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t w = k % d.in_w, h = (k / d.in_w) % d.in_h, p = k / (d.in_w * d.in_h);
    // Window oh covers row h iff oh*sh - ph <= h < oh*sh - ph + kh.
    const int64_t oh_lo = (h + d.pad_h < d.kernel_h) ? 0 : (h + d.pad_h - d.kernel_h) / d.stride_h + 1;
    const int64_t oh_hi = min((h + d.pad_h) / d.stride_h, d.out_h - 1);
    const int64_t ow_lo = (w + d.pad_w < d.kernel_w) ? 0 : (w + d.pad_w - d.kernel_w) / d.stride_w + 1;
    const int64_t ow_hi = min((w + d.pad_w) / d.stride_w, d.out_w - 1);
    const int64_t self = h * d.in_w + w;
    const int64_t* ip = idx + p * d.out_h * d.out_w;
    const T* gp = gy + p * d.out_h * d.out_w;
    using E = PoolElem<T>;
    typename E::C acc = 0;
    for (int64_t oh = oh_lo; oh <= oh_hi; ++oh)
      for (int64_t ow = ow_lo; ow <= ow_hi; ++ow)
        if (ip[oh * d.out_w + ow] == self) acc += E::load(gp, oh * d.out_w + ow);
    E::store(gx, k, acc);
  }
}

}  // namespace

template <typename T>
void max_pool2d_forward(const Pool2dDims& d, const T* x, T* y, int64_t* idx, Stream stream) {
  const int64_t n = d.planes * d.out_h * d.out_w;
  if (n == 0) return;
  max_pool2d_forward_kernel<T><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, x, y, idx);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void max_pool2d_backward(const Pool2dDims& d, const int64_t* idx, const T* gy, T* gx, Stream stream) {
  const int64_t n = d.planes * d.in_h * d.in_w;
  if (n == 0) return;
  max_pool2d_backward_kernel<T><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, idx, gy, gx);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                         \
  template void max_pool2d_forward<T>(const Pool2dDims&, const T*, T*, int64_t*, Stream);           \
  template void max_pool2d_backward<T>(const Pool2dDims&, const int64_t*, const T*, T*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
