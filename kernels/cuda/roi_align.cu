// CUDA RoIAlign, single- and multi-level (maths in kernels/roi_align.h; the geometry and the
// bilinear rule are kern::roi_math, shared with the CPU reference).
//
// Forward: one thread per output element (k, c, ph, pw), grid-stride loop (torchvision's
// launch shape, blocks of 256 instead of 512). Neighbouring threads are neighbouring bins of
// one RoI and channel: they read nearby feature pixels.
// Backward (atomic): gx is zeroed, then one thread per output element adds gy * w / count
// into the 4 neighbours of each of its samples with atomicAdd.
// Backward (deterministic): one thread per (level, image, channel) plane; it walks the RoIs
// in order, skips those on another level or image, and adds the contributions of the others
// with plain stores (it owns the plane). No float atomics: bit-identical from run to run.
#include <algorithm>

#include "kernels/cuda_check.h"
#include "kernels/roi_align.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 4096;

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kBlock - 1) / kBlock, kMaxBlocks)));
}

template <typename T>
__global__ void roi_align_forward_kernel(RoiAlignDims d, RoiAlignLevelPtrs<const T*> x, const T* __restrict__ rois,
                                         const int64_t* __restrict__ levels, T* __restrict__ y) {
  const int64_t total = d.K * d.C * d.PH * d.PW;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t pw = i % d.PW, ph = (i / d.PW) % d.PH, c = (i / (d.PW * d.PH)) % d.C;
    const int64_t k = i / (d.PW * d.PH * d.C);
    const roi_math::Box<T> b = roi_math::box_of(d, rois + 5 * k, levels ? levels[k] : 0);
    if (!b.valid) {
      y[i] = T(0);
      continue;
    }
    const int64_t H = d.H[b.level], W = d.W[b.level];
    y[i] = roi_math::pool_bin(b, x.p[b.level] + (b.n * d.C + c) * H * W, H, W, ph, pw);
  }
}

template <typename T>
__global__ void roi_align_backward_atomic_kernel(RoiAlignDims d, const T* __restrict__ rois,
                                                 const int64_t* __restrict__ levels, const T* __restrict__ gy,
                                                 RoiAlignLevelPtrs<T*> gx) {
  const int64_t total = d.K * d.C * d.PH * d.PW;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t pw = i % d.PW, ph = (i / d.PW) % d.PH, c = (i / (d.PW * d.PH)) % d.C;
    const int64_t k = i / (d.PW * d.PH * d.C);
    const roi_math::Box<T> b = roi_math::box_of(d, rois + 5 * k, levels ? levels[k] : 0);
    if (!b.valid || !gx.p[b.level]) continue;
    const int64_t H = d.H[b.level], W = d.W[b.level];
    T* plane = gx.p[b.level] + (b.n * d.C + c) * H * W;
    const T gb = gy[i];
    for (int64_t iy = 0; iy < b.gh; ++iy) {
      const T yy = roi_math::sample_at(b.ys, ph, b.bin_h, iy, b.gh);
      for (int64_t ix = 0; ix < b.gw; ++ix) {
        const T xx = roi_math::sample_at(b.xs, pw, b.bin_w, ix, b.gw);
        const roi_math::Bilinear<T> q = roi_math::bilinear(H, W, yy, xx);
        if (!q.inside) continue;
        atomicAdd(plane + q.o1, gb * q.w1 / b.count);
        atomicAdd(plane + q.o2, gb * q.w2 / b.count);
        atomicAdd(plane + q.o3, gb * q.w3 / b.count);
        atomicAdd(plane + q.o4, gb * q.w4 / b.count);
      }
    }
  }
}

// One thread per plane (l, n, c); planes are numbered level by level.
template <typename T>
__global__ void roi_align_backward_plane_kernel(RoiAlignDims d, const T* __restrict__ rois,
                                                const int64_t* __restrict__ levels, const T* __restrict__ gy,
                                                RoiAlignLevelPtrs<T*> gx) {
  const int64_t planes_per_level = d.N * d.C;
  const int64_t total = planes_per_level * d.levels;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int l = static_cast<int>(i / planes_per_level);
    const int64_t n = (i % planes_per_level) / d.C, c = i % d.C;
    if (!gx.p[l]) continue;
    const int64_t H = d.H[l], W = d.W[l];
    T* plane = gx.p[l] + (n * d.C + c) * H * W;
    for (int64_t k = 0; k < d.K; ++k) {
      const roi_math::Box<T> b = roi_math::box_of(d, rois + 5 * k, levels ? levels[k] : 0);
      if (!b.valid || b.level != l || b.n != n) continue;
      const T* g = gy + (k * d.C + c) * d.PH * d.PW;
      for (int64_t ph = 0; ph < d.PH; ++ph)
        for (int64_t pw = 0; pw < d.PW; ++pw) {
          const T gb = g[ph * d.PW + pw];
          for (int64_t iy = 0; iy < b.gh; ++iy) {
            const T yy = roi_math::sample_at(b.ys, ph, b.bin_h, iy, b.gh);
            for (int64_t ix = 0; ix < b.gw; ++ix) {
              const T xx = roi_math::sample_at(b.xs, pw, b.bin_w, ix, b.gw);
              const roi_math::Bilinear<T> q = roi_math::bilinear(H, W, yy, xx);
              if (!q.inside) continue;
              plane[q.o1] += gb * q.w1 / b.count;
              plane[q.o2] += gb * q.w2 / b.count;
              plane[q.o3] += gb * q.w3 / b.count;
              plane[q.o4] += gb * q.w4 / b.count;
            }
          }
        }
    }
  }
}

template <typename T>
__global__ void roi_levels_kernel(int64_t K, const T* __restrict__ rois, RoiLevelParams p,
                                  int64_t* __restrict__ levels_out) {
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < K; k += (int64_t)gridDim.x * blockDim.x)
    levels_out[k] = roi_math::level_of(rois + 5 * k, p);
}

template <typename T>
void zero_grads(const RoiAlignDims& d, const RoiAlignLevelPtrs<T*>& gx, Stream stream) {
  for (int l = 0; l < d.levels; ++l) {
    const int64_t n = d.N * d.C * d.H[l] * d.W[l];
    if (gx.p[l] && n > 0) KERN_CUDA_CHECK(cudaMemsetAsync(gx.p[l], 0, sizeof(T) * static_cast<size_t>(n), stream));
  }
}

}  // namespace

template <typename T>
void roi_align_forward(const RoiAlignDims& d, const RoiAlignLevelPtrs<const T*>& x, const T* rois,
                       const int64_t* levels, T* y, Stream stream) {
  const int64_t total = d.K * d.C * d.PH * d.PW;
  if (total == 0) return;
  roi_align_forward_kernel<T><<<grid_for(total), kBlock, 0, stream>>>(d, x, rois, levels, y);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void roi_align_backward(const RoiAlignDims& d, const T* rois, const int64_t* levels, const T* gy,
                        const RoiAlignLevelPtrs<T*>& gx, Stream stream) {
  zero_grads(d, gx, stream);
  const int64_t total = d.K * d.C * d.PH * d.PW;
  if (total == 0) return;
  roi_align_backward_atomic_kernel<T><<<grid_for(total), kBlock, 0, stream>>>(d, rois, levels, gy, gx);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void roi_align_backward_deterministic(const RoiAlignDims& d, const T* rois, const int64_t* levels, const T* gy,
                                      const RoiAlignLevelPtrs<T*>& gx, Stream stream) {
  zero_grads(d, gx, stream);
  const int64_t planes = d.levels * d.N * d.C;
  if (planes == 0 || d.K == 0) return;
  // Small blocks: there are few threads (one per plane), spread them over the SMs.
  constexpr int kPlaneBlock = 64;
  const unsigned grid = static_cast<unsigned>(std::max<int64_t>(1, (planes + kPlaneBlock - 1) / kPlaneBlock));
  roi_align_backward_plane_kernel<T><<<grid, kPlaneBlock, 0, stream>>>(d, rois, levels, gy, gx);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void roi_levels(int64_t K, const T* rois, const RoiLevelParams& p, int64_t* levels_out, Stream stream) {
  if (K == 0) return;
  roi_levels_kernel<T><<<grid_for(K), kBlock, 0, stream>>>(K, rois, p, levels_out);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                                     \
  template void roi_align_forward<T>(const RoiAlignDims&, const RoiAlignLevelPtrs<const T*>&, const T*,        \
                                     const int64_t*, T*, Stream);                                               \
  template void roi_align_backward<T>(const RoiAlignDims&, const T*, const int64_t*, const T*,                 \
                                      const RoiAlignLevelPtrs<T*>&, Stream);                                    \
  template void roi_align_backward_deterministic<T>(const RoiAlignDims&, const T*, const int64_t*, const T*,   \
                                                    const RoiAlignLevelPtrs<T*>&, Stream);                      \
  template void roi_levels<T>(int64_t, const T*, const RoiLevelParams&, int64_t*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
