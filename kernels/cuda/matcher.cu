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
// Every thread of the block must call it (it synchronises). With `free_only`, anchors whose
// entry there is not background (already matched) are skipped.
template <typename T>
__device__ void row_best(const T* __restrict__ row, int64_t A, T* sv, int64_t* si, T& best_v, int64_t& best_a,
                         const int64_t* free_only = nullptr) {
  T v = static_cast<T>(-INFINITY);
  int64_t i = match::kNoIndex;
  for (int64_t a = threadIdx.x; a < A; a += blockDim.x) {
    if (free_only != nullptr && free_only[a] != kMatchBackground) continue;
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

// Bipartite step (1), one block per image (grid-stride over images). Scratch per image b:
// cand_v = values + b * 2G (each GT's best free anchor's IoU), gt_max = cand_v + G (its column
// maximum), cand_a = indices + b * G (that anchor; kGtTaken once the GT is matched).
// matches holds -1 everywhere beforehand. Thread 0 picks each winner (a scan of n GTs); the
// block rescans the rows of the GTs that lost their anchor. Same order and ties as the CPU.
constexpr int64_t kGtTaken = -1;

template <typename T>
__global__ void bipartite_greedy_kernel(MatchDims d, const T* __restrict__ iou, const int64_t* __restrict__ counts,
                                        T eps, T* __restrict__ values, int64_t* __restrict__ indices,
                                        int64_t* __restrict__ matches) {
  __shared__ T sv[kBlock];
  __shared__ int64_t si[kBlock];
  __shared__ int64_t taken[1];  // the anchor matched in this step, or -1: the greedy step is over
  for (int64_t b = blockIdx.x; b < d.B; b += gridDim.x) {
    const int64_t n = match::real_rows(counts[b], d.G);
    const T* img = iou + b * d.G * d.A;
    T* cand_v = values + b * 2 * d.G;
    T* gt_max = cand_v + d.G;
    int64_t* cand_a = indices + b * d.G;
    int64_t* out = matches + b * d.A;
    for (int64_t g = 0; g < n; ++g) {
      T v;
      int64_t a;
      row_best(img + g * d.A, d.A, sv, si, v, a);
      if (threadIdx.x == 0) {
        cand_v[g] = gt_max[g] = v;
        cand_a[g] = a;
      }
    }
    __syncthreads();
    for (int64_t step = 0; step < n; ++step) {
      if (threadIdx.x == 0) {
        int64_t win = -1;
        for (int64_t g = 0; g < n; ++g) {
          if (cand_a[g] == kGtTaken) continue;
          if (win < 0 || cand_v[g] > cand_v[win] || (cand_v[g] == cand_v[win] && cand_a[g] < cand_a[win])) win = g;
        }
        if (win < 0 || !(cand_v[win] > eps)) {
          taken[0] = -1;
        } else {
          taken[0] = cand_a[win];
          out[cand_a[win]] = win;
          cand_a[win] = kGtTaken;
        }
      }
      __syncthreads();
      const int64_t t = taken[0];
      if (t < 0) break;  // uniform: every thread read the same shared value
      for (int64_t g = 0; g < n; ++g) {
        if (cand_a[g] != t) continue;  // uniform too (global, written before the barrier)
        T v;
        int64_t a;
        row_best(img + g * d.A, d.A, sv, si, v, a, out);
        if (threadIdx.x == 0) {
          cand_v[g] = v;
          cand_a[g] = a;
        }
      }
      __syncthreads();
    }
    __syncthreads();  // taken[] is reused by the next image
  }
}

// Bipartite steps (2) and (3): one thread per (b, a) still free.
template <typename T>
__global__ void bipartite_assign_kernel(MatchDims d, const T* __restrict__ iou, const int64_t* __restrict__ counts,
                                        T thr, T eps, const T* __restrict__ values, int64_t* __restrict__ matches) {
  const int64_t total = d.B * d.A;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
    if (matches[k] != kMatchBackground) continue;  // taken by the greedy step
    const int64_t b = k / d.A, a = k % d.A;
    const int64_t n = match::real_rows(counts[b], d.G);
    if (n == 0) continue;
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
    const T gm = values[b * 2 * d.G + d.G + best_g];
    if ((gm > eps && best_v >= gm - eps) || best_v >= thr) matches[k] = best_g;
  }
}

}  // namespace

template <typename T>
void match_bipartite(const MatchDims& d, const T* iou, const int64_t* gt_counts, double threshold, int64_t* matches,
                     T* value_scratch, int64_t* index_scratch, Stream stream) {
  if (d.B * d.A == 0) return;
  KERN_CUDA_CHECK(cudaMemsetAsync(matches, 0xFF, sizeof(int64_t) * static_cast<size_t>(d.B * d.A), stream));
  if (d.G == 0) return;
  const T eps = static_cast<T>(kBipartiteEps);
  bipartite_greedy_kernel<T><<<row_grid(d.B), kBlock, 0, stream>>>(d, iou, gt_counts, eps, value_scratch,
                                                                   index_scratch, matches);
  KERN_LAUNCH_CHECK();
  bipartite_assign_kernel<T><<<kern_grid_1d(d.B * d.A), kBlock, 0, stream>>>(
      d, iou, gt_counts, static_cast<T>(threshold), eps, value_scratch, matches);
  KERN_LAUNCH_CHECK();
}

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
                                   T*, Stream);                                                       \
  template void match_bipartite<T>(const MatchDims&, const T*, const int64_t*, double, int64_t*, T*, int64_t*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
