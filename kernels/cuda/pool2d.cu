#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"
#include "kernels/pool2d.h"

#include <algorithm>

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;

// T is the storage type (kernels/cuda_storage.cuh): bf16 is compared and summed in float,
// the sums rounded to nearest even on the store, as in the CPU twin
// (kernels/cpu/pool2d.cpp), which sums in the same order.
template <typename T>
using PoolElem = Storage<T>;

// One thread per output element (plane, oh, ow). J: argmax type; I: index-maths type.
template <typename T, typename J, typename I>
__global__ void max_pool2d_forward_kernel(Pool2dDims d, const T* __restrict__ x, T* __restrict__ y,
                                          J* __restrict__ idx) {
  const I n = static_cast<I>(d.planes * d.out_h * d.out_w);
  const I in_h = static_cast<I>(d.in_h), in_w = static_cast<I>(d.in_w);
  const I out_h = static_cast<I>(d.out_h), out_w = static_cast<I>(d.out_w);
  const I sh = static_cast<I>(d.stride_h), sw = static_cast<I>(d.stride_w);
  const I ph = static_cast<I>(d.pad_h), pw = static_cast<I>(d.pad_w);
  const I kh = static_cast<I>(d.kernel_h), kw = static_cast<I>(d.kernel_w);
  for (I k = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; k < n; k += (I)gridDim.x * (I)blockDim.x) {
    const I ow = k % out_w, oh = (k / out_w) % out_h, p = k / (out_w * out_h);
    const T* xp = x + p * in_h * in_w;
    const I h0 = max(oh * sh - ph, (I)0);
    const I h1 = min(oh * sh - ph + kh, in_h);
    const I w0 = max(ow * sw - pw, (I)0);
    const I w1 = min(ow * sw - pw + kw, in_w);
    using E = PoolElem<T>;
    I best_i = h0 * in_w + w0;
    typename E::C best = E::load(xp, best_i);
    for (I h = h0; h < h1; ++h) {
      for (I w = w0; w < w1; ++w) {
        const typename E::C v = E::load(xp, h * in_w + w);
        if (v > best || isnan(v)) {  // same test as the CPU reference (torch's)
          best = v;
          best_i = h * in_w + w;
        }
      }
    }
    y[k] = xp[best_i];  // the element itself: no rounding
    if (idx) idx[k] = static_cast<J>(best_i);
  }
}

// One thread per input element (plane, h, w): sums gy over the windows that cover it and
// chose it as their maximum.
template <typename T, typename J, typename I>
__global__ void max_pool2d_backward_kernel(Pool2dDims d, const J* __restrict__ idx, const T* __restrict__ gy,
                                           T* __restrict__ gx) {
  const I n = static_cast<I>(d.planes * d.in_h * d.in_w);
  const I in_h = static_cast<I>(d.in_h), in_w = static_cast<I>(d.in_w);
  const I out_h = static_cast<I>(d.out_h), out_w = static_cast<I>(d.out_w);
  const I sh = static_cast<I>(d.stride_h), sw = static_cast<I>(d.stride_w);
  const I ph = static_cast<I>(d.pad_h), pw = static_cast<I>(d.pad_w);
  const I kh = static_cast<I>(d.kernel_h), kw = static_cast<I>(d.kernel_w);
  for (I k = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; k < n; k += (I)gridDim.x * (I)blockDim.x) {
    const I w = k % in_w, h = (k / in_w) % in_h, p = k / (in_w * in_h);
    // Window oh covers row h iff oh*sh - ph <= h < oh*sh - ph + kh.
    const I oh_lo = (h + ph < kh) ? 0 : (h + ph - kh) / sh + 1;
    const I oh_hi = min((h + ph) / sh, out_h - 1);
    const I ow_lo = (w + pw < kw) ? 0 : (w + pw - kw) / sw + 1;
    const I ow_hi = min((w + pw) / sw, out_w - 1);
    const I self = h * in_w + w;
    const J* ip = idx + p * out_h * out_w;
    const T* gp = gy + p * out_h * out_w;
    using E = PoolElem<T>;
    typename E::C acc = 0;
    for (I oh = oh_lo; oh <= oh_hi; ++oh)
      for (I ow = ow_lo; ow <= ow_hi; ++ow)
        if (static_cast<I>(ip[oh * out_w + ow]) == self) acc += E::load(gp, oh * out_w + ow);
    E::store(gx, k, acc);
  }
}

// Every index either kernel forms (thread index, offsets into x, y, idx and gy, window
// coordinates, which stay within a plane's rows/columns plus a kernel) stays below the larger
// of the two element counts (plus small window terms far inside kIndex32Limit's margin).
bool pool_index32(const Pool2dDims& d) {
  const int64_t n = std::max(d.planes * d.in_h * d.in_w, d.planes * d.out_h * d.out_w);
  return index32_fits(n, n);
}

}  // namespace

template <typename T, typename J>
void max_pool2d_forward(const Pool2dDims& d, const T* x, T* y, J* idx, Stream stream) {
  const int64_t n = d.planes * d.out_h * d.out_w;
  if (n == 0) return;
  if (pool_index32(d)) {
    max_pool2d_forward_kernel<T, J, int32_t><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, x, y, idx);
  } else {
    max_pool2d_forward_kernel<T, J, int64_t><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, x, y, idx);
  }
  KERN_LAUNCH_CHECK();
}

template <typename T, typename J>
void max_pool2d_backward(const Pool2dDims& d, const J* idx, const T* gy, T* gx, Stream stream) {
  const int64_t n = d.planes * d.in_h * d.in_w;
  if (n == 0) return;
  if (pool_index32(d)) {
    max_pool2d_backward_kernel<T, J, int32_t><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, idx, gy, gx);
  } else {
    max_pool2d_backward_kernel<T, J, int64_t><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, idx, gy, gx);
  }
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T, J)                                                                      \
  template void max_pool2d_forward<T, J>(const Pool2dDims&, const T*, T*, J*, Stream);             \
  template void max_pool2d_backward<T, J>(const Pool2dDims&, const J*, const T*, T*, Stream);
KERN_INSTANTIATE(float, int32_t)
KERN_INSTANTIATE(double, int32_t)
KERN_INSTANTIATE(bf16, int32_t)
KERN_INSTANTIATE(float, int64_t)
KERN_INSTANTIATE(double, int64_t)
KERN_INSTANTIATE(bf16, int64_t)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
