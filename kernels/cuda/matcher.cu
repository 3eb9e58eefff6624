// CUDA SSD and RetinaNet matchers (maths, tie rules and the launch plan in kernels/matcher.h).
//
// Two kinds of kernel:
//   per GT row    one block per (b, g) with g < n_b; a shared-memory tree reduction finds the
//                 row's best (IoU, anchor) with match::better, so ties go to the lowest anchor
//                 whatever order the threads finish in.
//   per anchor    one thread per (b, a); it walks the real rows of its column in GT order
//                 (reads are coalesced across neighbouring anchors).
#include "kernels/cuda_check.h"
#include "kernels/matcher.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;  // a power of two: the tree reduction halves it

// Grid for a grid-stride loop over `rows` blocks of work.
unsigned row_grid(int64_t rows) {
  const int64_t cap = 65535LL * 8;
  return static_cast<unsigned>(rows < 1 ? 1 : (rows > cap ? cap : rows));
}

// The best (value, anchor) of one GT row of A IoUs, returned to every thread of the block.
// Every thread of the block must call it (it synchronises).
template <typename T>
__device__ void row_best(const T* __restrict__ row, int64_t A, T* sv, int64_t* si, T& best_v, int64_t& best_a) {
  T v = static_cast<T>(-INFINITY);
  int64_t i = match::kNoIndex;
  for (int64_t a = threadIdx.x; a < A; a += blockDim.x) {
    const T x = match::sanitize(row[a]);
    if (match::better(x, a, v, i)) {
      v = x;
      i = a;
    }
  }
  sv[threadIdx.x] = v;
  si[threadIdx.x] = i;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s && match::better(sv[threadIdx.x + s], si[threadIdx.x + s], sv[threadIdx.x], si[threadIdx.x])) {
      sv[threadIdx.x] = sv[threadIdx.x + s];
      si[threadIdx.x] = si[threadIdx.x + s];
    }
    __syncthreads();
  }
  best_v = sv[0];
  best_a = si[0];
  __syncthreads();  // sv / si are reused by the next row
}

// SSD forcing: each real GT writes its index into its best anchor with atomicMax, so when
// several GTs pick the same anchor the highest index wins regardless of block order.
// matches holds -1 everywhere beforehand.
template <typename T>
__global__ void ssd_force_kernel(MatchDims d, const T* __restrict__ iou, const int64_t* __restrict__ counts,
                                 int64_t* __restrict__ matches) {
  __shared__ T sv[kBlock];
  __shared__ int64_t si[kBlock];
  for (int64_t r = blockIdx.x; r < d.B * d.G; r += gridDim.x) {  // r = b * G + g, uniform in the block
    const int64_t b = r / d.G, g = r % d.G;
    if (g >= match::real_rows(counts[b], d.G)) continue;
    T best_v;
    int64_t best_a;
    row_best(iou + r * d.A, d.A, sv, si, best_v, best_a);
    if (threadIdx.x == 0)
      atomicMax(reinterpret_cast<long long*>(matches + b * d.A + best_a), static_cast<long long>(g));
  }
}

// SSD merge: a forced anchor keeps its GT; any other takes its best GT when that IoU reaches
// the threshold, else stays background.
template <typename T>
__global__ void ssd_assign_kernel(MatchDims d, const T* __restrict__ iou, const int64_t* __restrict__ counts, T thr,
                                  int64_t* __restrict__ matches) {
  const int64_t total = d.B * d.A;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
    if (matches[k] >= 0) continue;  // forced
    const int64_t b = k / d.A, a = k % d.A;
    const int64_t n = match::real_rows(counts[b], d.G);
    const T* col = iou + b * d.G * d.A + a;
    T best_v = static_cast<T>(-INFINITY);
    int64_t best_g = match::kNoIndex;
    for (int64_t g = 0; g < n; ++g) {
      const T v = match::sanitize(col[g * d.A]);
      if (match::better(v, g, best_v, best_g)) {
        best_v = v;
        best_g = g;
      }
    }
    matches[k] = (n > 0 && best_v >= thr) ? best_g : kMatchBackground;
  }
}

// RetinaNet step 1: gt_max[b * G + g] = the row's best IoU, for real rows only.
template <typename T>
__global__ void gt_max_kernel(MatchDims d, const T* __restrict__ iou, const int64_t* __restrict__ counts,
                              T* __restrict__ gt_max) {
  __shared__ T sv[kBlock];
  __shared__ int64_t si[kBlock];
  for (int64_t r = blockIdx.x; r < d.B * d.G; r += gridDim.x) {
    const int64_t b = r / d.G, g = r % d.G;
    if (g >= match::real_rows(counts[b], d.G)) continue;
    T best_v;
    int64_t best_a;
    row_best(iou + r * d.A, d.A, sv, si, best_v, best_a);
    if (threadIdx.x == 0) gt_max[r] = best_v;
  }
}

// RetinaNet step 2: per anchor, the best GT, the low-quality test against gt_max, the bands.
template <typename T>
__global__ void retinanet_assign_kernel(MatchDims d, const T* __restrict__ iou, const int64_t* __restrict__ counts,
                                        T fg, T bg, bool allow_low_quality, const T* __restrict__ gt_max,
                                        int64_t* __restrict__ matches) {
  const int64_t total = d.B * d.A;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = k / d.A, a = k % d.A;
    const int64_t n = match::real_rows(counts[b], d.G);
    const T* col = iou + b * d.G * d.A + a;
    T best_v = static_cast<T>(-INFINITY);
    int64_t best_g = match::kNoIndex;
    bool low_quality = false;
    for (int64_t g = 0; g < n; ++g) {
      const T v = match::sanitize(col[g * d.A]);
      if (match::better(v, g, best_v, best_g)) {
        best_v = v;
        best_g = g;
      }
      if (allow_low_quality) {
        const T m = gt_max[b * d.G + g];
        if (m > T(0) && v == m) low_quality = true;
      }
    }
    int64_t out;
    if (n == 0) out = kMatchBackground;
    else if (best_v >= fg || low_quality) out = best_g;
    else if (best_v >= bg) out = kMatchIgnore;
    else out = kMatchBackground;
    matches[k] = out;
  }
}

}  // namespace

template <typename T>
void match_ssd(const MatchDims& d, const T* iou, const int64_t* gt_counts, double threshold, int64_t* matches,
               Stream stream) {
  if (d.B * d.A == 0) return;
  // Every byte 0xFF makes every int64 -1 (background, and "not forced" for the atomicMax).
  KERN_CUDA_CHECK(cudaMemsetAsync(matches, 0xFF, sizeof(int64_t) * static_cast<size_t>(d.B * d.A), stream));
  if (d.G > 0) {
    ssd_force_kernel<T><<<row_grid(d.B * d.G), kBlock, 0, stream>>>(d, iou, gt_counts, matches);
    KERN_LAUNCH_CHECK();
  }
  ssd_assign_kernel<T><<<kern_grid_1d(d.B * d.A), kBlock, 0, stream>>>(d, iou, gt_counts, static_cast<T>(threshold),
                                                                       matches);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void match_retinanet(const MatchDims& d, const T* iou, const int64_t* gt_counts, double fg_threshold,
                     double bg_threshold, bool allow_low_quality, int64_t* matches, T* gt_max_scratch,
                     Stream stream) {
  if (d.B * d.A == 0) return;
  if (d.G > 0 && allow_low_quality) {
    gt_max_kernel<T><<<row_grid(d.B * d.G), kBlock, 0, stream>>>(d, iou, gt_counts, gt_max_scratch);
    KERN_LAUNCH_CHECK();
  }
  retinanet_assign_kernel<T><<<kern_grid_1d(d.B * d.A), kBlock, 0, stream>>>(
      d, iou, gt_counts, static_cast<T>(fg_threshold), static_cast<T>(bg_threshold), allow_low_quality,
      gt_max_scratch, matches);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                                \
  template void match_ssd<T>(const MatchDims&, const T*, const int64_t*, double, int64_t*, Stream);       \
  template void match_retinanet<T>(const MatchDims&, const T*, const int64_t*, double, double, bool, int64_t*, \
                                   T*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
