// CUDA target assignment (maths and launch plan in kernels/include/kernels/assign_targets.h).
#include "kernels/assign_targets.h"
#include "kernels/cuda_check.h"
#include "kernels/matcher.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;  // a power of two: the count reduction halves it

// Grid: x walks chunks of anchors, y walks images (both grid-stride). The image loop is
// uniform within a block, so every thread reaches the barriers of the count reduction.
template <typename T>
__global__ void assign_targets_kernel(AssignTargetsDims d, const int64_t* __restrict__ matched,
                                      const T* __restrict__ gt_boxes, const int64_t* __restrict__ gt_labels,
                                      const uint8_t* __restrict__ gt_ignore, const T* __restrict__ anchors,
                                      int64_t* __restrict__ labels, T* __restrict__ boxes, T* __restrict__ positive, int64_t* __restrict__ num_pos) {
  __shared__ int s_count[kBlock];
  for (int64_t b = blockIdx.y; b < d.B; b += gridDim.y) {
    int count = 0;
    for (int64_t a = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; a < d.A; a += (int64_t)gridDim.x * blockDim.x) {
      const int64_t i = b * d.A + a, m = matched[i];
      const T* src = anchors + a * 4;
      const bool to_gt = m >= 0 && m < d.G;
      if (to_gt && gt_ignore != nullptr && gt_ignore[b * d.G + m] != 0) {
        labels[i] = d.ignore_label;  // matched to an ignored GT: neither positive nor negative
        positive[i] = T(0);
      } else if (to_gt) {
        labels[i] = gt_labels[b * d.G + m];
        positive[i] = T(1);
        src = gt_boxes + (b * d.G + m) * 4;
        ++count;
      } else {
        labels[i] = m == kMatchIgnore ? d.ignore_label : d.background_label;
        positive[i] = T(0);
      }
      for (int j = 0; j < 4; ++j) boxes[i * 4 + j] = src[j];
    }
    s_count[threadIdx.x] = count;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) s_count[threadIdx.x] += s_count[threadIdx.x + s];
      __syncthreads();
    }
    if (threadIdx.x == 0 && s_count[0] != 0)
      atomicAdd(reinterpret_cast<unsigned long long*>(num_pos + b), static_cast<unsigned long long>(s_count[0]));
    __syncthreads();  // s_count is reused by the next image
  }
}

}  // namespace

template <typename T>
void assign_targets(const AssignTargetsDims& d, const int64_t* matched, const T* gt_boxes, const int64_t* gt_labels,
                    const uint8_t* gt_ignore, const T* anchors, int64_t* labels, T* boxes, T* positive,
                    int64_t* num_pos, Stream stream) {
  if (d.B == 0) return;
  KERN_CUDA_CHECK(cudaMemsetAsync(num_pos, 0, sizeof(int64_t) * static_cast<size_t>(d.B), stream));
  if (d.A == 0) return;
  const int64_t chunks = (d.A + kBlock - 1) / kBlock;
  const dim3 grid(static_cast<unsigned>(chunks < 1024 ? chunks : 1024),
                  static_cast<unsigned>(d.B < 65535 ? d.B : 65535));
  assign_targets_kernel<T><<<grid, kBlock, 0, stream>>>(d, matched, gt_boxes, gt_labels, gt_ignore, anchors, labels,
                                                        boxes, positive, num_pos);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                              \
  template void assign_targets<T>(const AssignTargetsDims&, const int64_t*, const T*, const int64_t*,               \
                                  const uint8_t*, const T*, int64_t*, T*, T*, int64_t*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
