#include "kernels/box_coder.h"
#include "kernels/box_math.h"
#include "kernels/cuda_check.h"

namespace kern::cuda {
namespace {

template <typename T>
__global__ void box_encode_kernel(int64_t n, int64_t A, const T* __restrict__ boxes, const T* __restrict__ anchors,
                                  T wx, T wy, T ww, T wh, T* __restrict__ deltas) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    box::encode(boxes + i * 4, anchors + (i % A) * 4, wx, wy, ww, wh, deltas + i * 4);
}

template <typename T>
__global__ void box_decode_kernel(int64_t n, int64_t A, const T* __restrict__ deltas, const T* __restrict__ anchors,
                                  T wx, T wy, T ww, T wh, T clamp, T* __restrict__ boxes) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    box::decode(deltas + i * 4, anchors + (i % A) * 4, wx, wy, ww, wh, clamp, boxes + i * 4);
}

}  // namespace

template <typename T>
void box_encode(const BoxCoderDims& d, const T* boxes, const T* anchors, T* deltas, Stream stream) {
  if (d.n == 0) return;
  box_encode_kernel<T><<<kern_grid_1d(d.n), 256, 0, stream>>>(
      d.n, d.A, boxes, anchors, static_cast<T>(d.wx), static_cast<T>(d.wy), static_cast<T>(d.ww),
      static_cast<T>(d.wh), deltas);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void box_decode(const BoxCoderDims& d, const T* deltas, const T* anchors, T* boxes, Stream stream) {
  if (d.n == 0) return;
  box_decode_kernel<T><<<kern_grid_1d(d.n), 256, 0, stream>>>(
      d.n, d.A, deltas, anchors, static_cast<T>(d.wx), static_cast<T>(d.wy), static_cast<T>(d.ww),
      static_cast<T>(d.wh), static_cast<T>(d.clamp), boxes);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                       \
  template void box_encode<T>(const BoxCoderDims&, const T*, const T*, T*, Stream);               \
  template void box_decode<T>(const BoxCoderDims&, const T*, const T*, T*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
