#include "kernels/cuda_check.h"
#include "kernels/bf16.h"
#include "kernels/flatten_heads.h"

// One launch moves up to kMaxHeadLevels levels: one thread per element of the flat output
// rows those levels own, so the writes (forward) / reads (backward) of the flat tensor are
// coalesced. The level of an anchor is found by a short scan of the level offsets.
// Elements are copied unchanged (T = float, double or kern::bf16).

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;

template <typename T>
struct LevelPtrs {
  T* p[kMaxHeadLevels];
};

// Index of element i (over B x chunk_anchors x K) in the level buffer and in the flat tensor.
struct Pair {
  int level;
  int64_t src, dst;
};

__device__ __forceinline__ Pair map_index(const FlattenHeadsDims& d, int64_t chunk_anchors, int64_t i) {
  const int64_t per_image = chunk_anchors * d.k;
  const int64_t b = i / per_image, r = i - b * per_image;
  const int64_t anchor = r / d.k + d.offset[0], k = r % d.k;  // anchor index in the flat tensor
  int l = 0;
  while (l + 1 < d.levels && d.offset[l + 1] <= anchor) ++l;
  const int64_t local = anchor - d.offset[l], A = d.anchors[l];
  const int64_t pos = local / A, a = local - pos * A;
  Pair out;
  out.level = l;
  out.src = ((b * A + a) * d.k + k) * d.hw[l] + pos;
  out.dst = (b * d.total + anchor) * d.k + k;
  return out;
}

template <typename T>
__global__ void flatten_heads_forward_kernel(FlattenHeadsDims d, int64_t chunk_anchors, LevelPtrs<const T> x,
                                             T* __restrict__ flat) {
  const int64_t n = d.batch * chunk_anchors * d.k;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const Pair m = map_index(d, chunk_anchors, i);
    flat[m.dst] = x.p[m.level][m.src];
  }
}

template <typename T>
__global__ void flatten_heads_backward_kernel(FlattenHeadsDims d, int64_t chunk_anchors, const T* __restrict__ flat,
                                              LevelPtrs<T> gx) {
  const int64_t n = d.batch * chunk_anchors * d.k;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const Pair m = map_index(d, chunk_anchors, i);
    gx.p[m.level][m.src] = flat[m.dst];
  }
}

int64_t chunk_anchor_count(const FlattenHeadsDims& d) {
  int64_t a = 0;
  for (int l = 0; l < d.levels; ++l) a += d.anchors[l] * d.hw[l];
  return a;
}

void check_dims(const FlattenHeadsDims& d) {
  if (d.levels < 1 || d.levels > kMaxHeadLevels)
    throw std::runtime_error("flatten_heads: " + std::to_string(d.levels) + " levels in one launch (1.." +
                             std::to_string(kMaxHeadLevels) + ")");
}

}  // namespace

template <typename T>
void flatten_heads_forward(const FlattenHeadsDims& d, const T* const* levels, T* flat, Stream stream) {
  check_dims(d);
  const int64_t chunk = chunk_anchor_count(d), n = d.batch * chunk * d.k;
  if (n == 0) return;
  LevelPtrs<const T> x{};
  for (int l = 0; l < d.levels; ++l) x.p[l] = levels[l];
  flatten_heads_forward_kernel<T><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, chunk, x, flat);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void flatten_heads_backward(const FlattenHeadsDims& d, const T* flat, T* const* levels, Stream stream) {
  check_dims(d);
  const int64_t chunk = chunk_anchor_count(d), n = d.batch * chunk * d.k;
  if (n == 0) return;
  LevelPtrs<T> gx{};
  for (int l = 0; l < d.levels; ++l) gx.p[l] = levels[l];
  flatten_heads_backward_kernel<T><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, chunk, flat, gx);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                          \
  template void flatten_heads_forward<T>(const FlattenHeadsDims&, const T* const*, T*, Stream);      \
  template void flatten_heads_backward<T>(const FlattenHeadsDims&, const T*, T* const*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
