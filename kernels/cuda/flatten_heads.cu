#include "kernels/cuda_check.h"
#include "kernels/bf16.h"
#include "kernels/flatten_heads.h"
#include "kernels/index32.h"

// One launch moves up to kMaxHeadLevels levels: one thread per element of the flat output
// rows those levels own, so the writes (forward) / reads (backward) of the flat tensor are
// coalesced. The level of an anchor is found by a short scan of the level offsets.
// Elements are copied unchanged (T = float, double or kern::bf16). Index maths in 32 bits
// when the sizes allow (kernels/index32.h).

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;

template <typename T>
struct LevelPtrs {
  T* p[kMaxHeadLevels];
};

// Index of element i (over B x chunk_anchors x K) in the level buffer and in the flat tensor.
// I: int32_t when every index fits (kernels/index32.h), else int64_t.
template <typename I>
struct Pair {
  int level;
  I src, dst;
};

template <typename I>
__device__ __forceinline__ Pair<I> map_index(const FlattenHeadsDims& d, I chunk_anchors, I i) {
  const I K = static_cast<I>(d.k);
  const I per_image = chunk_anchors * K;
  const I b = i / per_image, r = i - b * per_image;
  const I anchor = r / K + static_cast<I>(d.offset[0]), k = r - (r / K) * K;  // anchor index in the flat tensor
  int l = 0;
  while (l + 1 < d.levels && static_cast<I>(d.offset[l + 1]) <= anchor) ++l;
  const I local = anchor - static_cast<I>(d.offset[l]), A = static_cast<I>(d.anchors[l]);
  const I pos = local / A, a = local - pos * A;
  Pair<I> out;
  out.level = l;
  out.src = ((b * A + a) * K + k) * static_cast<I>(d.hw[l]) + pos;
  out.dst = (b * static_cast<I>(d.total) + anchor) * K + k;
  return out;
}

template <typename T, typename I>
__global__ void flatten_heads_forward_kernel(FlattenHeadsDims d, I chunk_anchors, LevelPtrs<const T> x,
                                             T* __restrict__ flat) {
  const I n = static_cast<I>(d.batch) * chunk_anchors * static_cast<I>(d.k);
  for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < n; i += (I)gridDim.x * (I)blockDim.x) {
    const Pair<I> m = map_index<I>(d, chunk_anchors, i);
    flat[m.dst] = x.p[m.level][m.src];
  }
}

template <typename T, typename I>
__global__ void flatten_heads_backward_kernel(FlattenHeadsDims d, I chunk_anchors, const T* __restrict__ flat,
                                              LevelPtrs<T> gx) {
  const I n = static_cast<I>(d.batch) * chunk_anchors * static_cast<I>(d.k);
  for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < n; i += (I)gridDim.x * (I)blockDim.x) {
    const Pair<I> m = map_index<I>(d, chunk_anchors, i);
    gx.p[m.level][m.src] = flat[m.dst];
  }
}

int64_t chunk_anchor_count(const FlattenHeadsDims& d) {
  int64_t a = 0;
  for (int l = 0; l < d.levels; ++l) a += d.anchors[l] * d.hw[l];
  return a;
}

// Every index the kernels form stays below the flat tensor's element count B * N * K.
bool flat_index32(const FlattenHeadsDims& d) {
  const int64_t n = d.batch * d.total * d.k;
  return index32_fits(n, n);
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
  if (flat_index32(d)) {
    flatten_heads_forward_kernel<T, int32_t><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(
        d, static_cast<int32_t>(chunk), x, flat);
  } else {
    flatten_heads_forward_kernel<T, int64_t><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, chunk, x, flat);
  }
  KERN_LAUNCH_CHECK();
}

template <typename T>
void flatten_heads_backward(const FlattenHeadsDims& d, const T* flat, T* const* levels, Stream stream) {
  check_dims(d);
  const int64_t chunk = chunk_anchor_count(d), n = d.batch * chunk * d.k;
  if (n == 0) return;
  LevelPtrs<T> gx{};
  for (int l = 0; l < d.levels; ++l) gx.p[l] = levels[l];
  if (flat_index32(d)) {
    flatten_heads_backward_kernel<T, int32_t><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(
        d, static_cast<int32_t>(chunk), flat, gx);
  } else {
    flatten_heads_backward_kernel<T, int64_t><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, chunk, flat, gx);
  }
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
