#include "kernels/box_iou.h"
#include "kernels/box_math.h"
#include "kernels/cuda_check.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kGtTile = 128;  // GT boxes staged in shared memory at a time

template <typename T>
__global__ void box_iou_kernel(int64_t N, int64_t M, const T* __restrict__ a, const T* __restrict__ b,
                               T* __restrict__ out) {
  const int64_t total = N * M;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = idx / M, m = idx % M;
    out[idx] = box::iou(a + n * 4, b + m * 4);
  }
}

// blockIdx.y = image, blockIdx.x * kBlock + threadIdx.x = anchor (grid-stride over A).
template <typename T>
__global__ void box_iou_batched_kernel(BoxIouBatchedDims d, const T* __restrict__ gt,
                                       const int64_t* __restrict__ counts, const T* __restrict__ anchors,
                                       T* __restrict__ out) {
  __shared__ T tile[kGtTile * 4];
  const int64_t b = blockIdx.y;
  const int64_t count = min(max(counts[b], int64_t(0)), d.G);
  const T* img_gt = gt + b * d.G * 4;
  T* img_out = out + b * d.G * d.A;
  // The loop bound is the same for every thread of the block, so __syncthreads is safe.
  for (int64_t a0 = blockIdx.x * (int64_t)kBlock; a0 < d.A; a0 += (int64_t)gridDim.x * kBlock) {
    const int64_t a = a0 + threadIdx.x;
    const bool active = a < d.A;
    T anchor[4] = {T(0), T(0), T(0), T(0)};
    if (active)
      for (int c = 0; c < 4; ++c) anchor[c] = anchors[a * 4 + c];
    for (int64_t g0 = 0; g0 < count; g0 += kGtTile) {
      const int64_t n = min(int64_t(kGtTile), count - g0);
      __syncthreads();  // the previous tile is no longer read
      for (int64_t e = threadIdx.x; e < n * 4; e += blockDim.x) tile[e] = img_gt[g0 * 4 + e];
      __syncthreads();
      if (active)
        for (int64_t g = 0; g < n; ++g) img_out[(g0 + g) * d.A + a] = box::iou(tile + g * 4, anchor);
    }
    if (active)
      for (int64_t g = count; g < d.G; ++g) img_out[g * d.A + a] = T(0);  // padding rows
  }
}

}  // namespace

template <typename T>
void box_iou(int64_t N, int64_t M, const T* a, const T* b, T* out, Stream stream) {
  if (N * M == 0) return;
  box_iou_kernel<T><<<kern_grid_1d(N * M, kBlock), kBlock, 0, stream>>>(N, M, a, b, out);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void box_iou_batched(const BoxIouBatchedDims& d, const T* gt, const int64_t* counts, const T* anchors, T* out,
                     Stream stream) {
  if (d.B * d.G * d.A == 0) return;
  long long blocks_x = (d.A + kBlock - 1) / kBlock;
  if (blocks_x > 4096) blocks_x = 4096;  // the grid-stride loop covers the rest
  if (d.B > 65535) throw std::runtime_error("box_iou_batched: batch larger than 65535 images");
  const dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(d.B));
  box_iou_batched_kernel<T><<<grid, kBlock, 0, stream>>>(d, gt, counts, anchors, out);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                             \
  template void box_iou<T>(int64_t, int64_t, const T*, const T*, T*, Stream);           \
  template void box_iou_batched<T>(const BoxIouBatchedDims&, const T*, const int64_t*, const T*, T*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
