#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"
#include "kernels/upsample.h"

// T is the storage type (kernels/cuda_storage.cuh): forward copies elements unchanged;
// backward sums in float for bf16 (in the CPU twin's order) and rounds each sum once.

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;

// One thread per output element (plane, oh, ow).
template <typename T>
__global__ void upsample_nearest2d_forward_kernel(Upsample2dDims d, float scale_h, float scale_w,
                                                  const T* __restrict__ x, T* __restrict__ y) {
  const int64_t n = d.planes * d.out_h * d.out_w;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t ow = k % d.out_w, oh = (k / d.out_w) % d.out_h, p = k / (d.out_w * d.out_h);
    const int64_t ih = nearest_src_index(oh, scale_h, d.in_h), iw = nearest_src_index(ow, scale_w, d.in_w);
    y[k] = x[(p * d.in_h + ih) * d.in_w + iw];
  }
}

// One thread per input element (plane, ih, iw): sums the outputs that read it, which form
// the rectangle [first_dst(ih), first_dst(ih + 1)) x [first_dst(iw), first_dst(iw + 1)).
template <typename T>
__global__ void upsample_nearest2d_backward_kernel(Upsample2dDims d, float scale_h, float scale_w,
                                                   const T* __restrict__ gy, T* __restrict__ gx) {
  const int64_t n = d.planes * d.in_h * d.in_w;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t iw = k % d.in_w, ih = (k / d.in_w) % d.in_h, p = k / (d.in_w * d.in_h);
    const int64_t oh0 = nearest_first_dst(ih, scale_h, d.in_h, d.out_h);
    const int64_t oh1 = nearest_first_dst(ih + 1, scale_h, d.in_h, d.out_h);
    const int64_t ow0 = nearest_first_dst(iw, scale_w, d.in_w, d.out_w);
    const int64_t ow1 = nearest_first_dst(iw + 1, scale_w, d.in_w, d.out_w);
    const T* gp = gy + p * d.out_h * d.out_w;
    compute_of<T> acc = 0;
    for (int64_t oh = oh0; oh < oh1; ++oh)
      for (int64_t ow = ow0; ow < ow1; ++ow) acc += Storage<T>::load(gp, oh * d.out_w + ow);
    Storage<T>::store(gx, k, acc);
  }
}

float axis_scale(int64_t in, int64_t out) { return static_cast<float>(in) / static_cast<float>(out); }

}  // namespace

template <typename T>
void upsample_nearest2d_forward(const Upsample2dDims& d, const T* x, T* y, Stream stream) {
  const int64_t n = d.planes * d.out_h * d.out_w;
  if (n == 0) return;
  upsample_nearest2d_forward_kernel<T><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(
      d, axis_scale(d.in_h, d.out_h), axis_scale(d.in_w, d.out_w), x, y);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void upsample_nearest2d_backward(const Upsample2dDims& d, const T* gy, T* gx, Stream stream) {
  const int64_t n = d.planes * d.in_h * d.in_w;
  if (n == 0) return;
  upsample_nearest2d_backward_kernel<T><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(
      d, axis_scale(d.in_h, d.out_h), axis_scale(d.in_w, d.out_w), gy, gx);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                          \
  template void upsample_nearest2d_forward<T>(const Upsample2dDims&, const T*, T*, Stream);          \
  template void upsample_nearest2d_backward<T>(const Upsample2dDims&, const T*, T*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
