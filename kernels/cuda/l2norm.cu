// CUDA L2Norm (maths in kernels/l2norm.h).
//
// Work split: a block of kThreads = 256 threads handles a tile of TW neighbouring columns
// (n, p0 .. p0 + TW - 1) of one image, TW in {32, 16, 8}. Thread t owns column j = t % TW
// and the channels c = g, g + G, g + 2G, ... with g = t / TW and G = 256 / TW groups. A
// warp therefore reads 32 / TW channel rows of TW consecutive floats: full 32-byte sectors.
//
// Cached variant (the normal one): pass 1 reads the C x TW tile of x (and gy) from global
// memory once, keeps it in shared memory and accumulates each thread's partial column
// sums; the partials are combined through shared memory; pass 2 reads the tile back from
// shared memory and writes y (or gx). DRAM traffic is the floor: x read once and y written
// once (forward, 8 B per float element); x and gy read once, gx written once (backward,
// 12 B). The tile is C * TW * sizeof(T) bytes per array (64 KB for C = 512, TW = 32, f32),
// above the default 48 KB, so the kernels opt in to large dynamic shared memory. TW is the
// widest of 32, 16, 8 whose shared memory stays within kTargetSmem (about 100 KB, so two
// or three blocks fit on an SM): SSD's C = 512 f32 gives TW = 32 forward (65 KB) and
// TW = 16 backward (two arrays, 70 KB).
//
// Uncached variant (C in the thousands, when even TW = 8 exceeds the device's opt-in
// limit): the same loops without the shared copy; pass 2 reads x (and gy) again, mostly
// from L2, so DRAM traffic is 8-12 B per element plus whatever misses L2 (at worst 12 / 20).
//
// Scale gradient: the backward grid has about as many blocks as fit on the device at once,
// each looping over tiles. In pass 2 the TW threads of one channel row reduce g * xhat with
// warp shuffles and the row's first thread adds the result to the block's partial sum for
// that channel in shared memory (always the same thread for a given channel, so no race).
// At the end each block adds its C partial sums to gscale (zeroed first) with one
// atomicAdd per channel: about (blocks on the device) x C atomics in all, not one per
// element, and gscale may change in its last bits from run to run (the order of the float
// additions varies). The uncached variant adds each tile's per-channel sum directly.
#include <algorithm>

#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"
#include "kernels/l2norm.h"

// S is the storage type of x / y / gy / gx (kernels/cuda_storage.cuh); T = compute_of<S> is
// the type of scale / gscale, of the sums and of the shared-memory tiles (float for bf16:
// the tiles hold the widened values).

namespace kern::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr size_t kTargetSmem = 100 * 1024;
constexpr size_t kDefaultSmem = 48 * 1024;

// Where tile `tile` of the [N, tiles_per_image] grid of tiles starts.
struct TileOrigin {
  int64_t base;  // offset of element (n, c = 0, p0)
  int width;     // columns in this tile (the last tile of an image may be narrower)
};

__device__ __forceinline__ TileOrigin tile_origin(int64_t tile, int64_t C, int64_t P, int tw,
                                                  int64_t tiles_per_image) {
  const int64_t n = tile / tiles_per_image;
  const int64_t p0 = (tile % tiles_per_image) * tw;
  TileOrigin o;
  o.base = n * C * P + p0;
  o.width = static_cast<int>(min(static_cast<int64_t>(tw), P - p0));
  return o;
}

// Shared memory layout (in T): forward  red[kThreads] inv[kWarp] tile[C * tw]
//                              backward red_ss[kThreads] red_sg[kThreads] inv[kWarp]
//                                       coef[kWarp] part[C] xt[C * tw] gt[C * tw]
// (the tiles and part only in the cached variant).
template <typename T>
size_t forward_smem(int64_t C, int tw, bool cached) {
  return sizeof(T) * (kThreads + kWarp + (cached ? static_cast<size_t>(C) * tw : 0));
}
template <typename T>
size_t backward_smem(int64_t C, int tw, bool cached) {
  return sizeof(T) * (2 * kThreads + 2 * kWarp + (cached ? static_cast<size_t>(C) * (2 * tw + 1) : 0));
}

template <typename S, bool kCached, typename T = compute_of<S>>
__global__ void __launch_bounds__(kThreads)
    l2norm_forward_kernel(int64_t C, int64_t P, int tw, int64_t tiles_per_image, int64_t n_tiles,
                          const S* __restrict__ x, const T* __restrict__ scale, T eps, S* __restrict__ y) {
  using L = Storage<S>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* red = reinterpret_cast<T*>(smem_raw);
  T* inv = red + kThreads;
  T* tile = inv + kWarp;  // used only when kCached

  const int t = threadIdx.x;
  const int j = t % tw;
  const int group = t / tw, groups = kThreads / tw;

  for (int64_t tl = blockIdx.x; tl < n_tiles; tl += gridDim.x) {
    const TileOrigin o = tile_origin(tl, C, P, tw, tiles_per_image);
    const bool active = j < o.width;
    const S* xb = x + o.base;
    S* yb = y + o.base;

    // Pass 1: this thread's share of sum_c x^2 for column j (and the copy into shared).
    T ss = T(0);
    if (active) {
#pragma unroll 4
      for (int64_t c = group; c < C; c += groups) {
        const T v = L::load(xb, c * P + j);
        if (kCached) tile[c * tw + j] = v;
        ss += v * v;
      }
    }
    red[t] = ss;
    __syncthreads();
    if (t < tw) {
      T s = T(0);
      for (int g = 0; g < groups; ++g) s += red[g * tw + t];
      inv[t] = T(1) / max(sqrt(s), eps);
    }
    __syncthreads();

    // Pass 2: y = scale * x / d. Each thread reads back exactly the tile entries it wrote.
    if (active) {
      const T iv = inv[j];
#pragma unroll 4
      for (int64_t c = group; c < C; c += groups) {
        const T v = kCached ? tile[c * tw + j] : L::load(xb, c * P + j);
        L::store(yb, c * P + j, scale[c] * v * iv);
      }
    }
    // The next tile's pass 1 overwrites red / inv only after everyone passed the first
    // barrier of that iteration, so no third barrier is needed here.
  }
}

template <typename S, bool kCached, typename T = compute_of<S>>
__global__ void __launch_bounds__(kThreads)
    l2norm_backward_kernel(int64_t C, int64_t P, int tw, int64_t tiles_per_image, int64_t n_tiles,
                           const S* __restrict__ x, const T* __restrict__ scale, const S* __restrict__ gy, T eps,
                           S* __restrict__ gx, T* __restrict__ gscale) {
  using L = Storage<S>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* red_ss = reinterpret_cast<T*>(smem_raw);
  T* red_sg = red_ss + kThreads;
  T* inv = red_sg + kThreads;
  T* coef = inv + kWarp;
  T* part = coef + kWarp;  // [C], cached variant only
  T* xt = part + C;        // [C * tw], cached variant only
  T* gt = xt + C * tw;     // [C * tw], cached variant only

  const int t = threadIdx.x;
  const int j = t % tw;
  const int group = t / tw, groups = kThreads / tw;

  if (kCached && gscale) {
    for (int64_t c = t; c < C; c += kThreads) part[c] = T(0);
    __syncthreads();
  }

  for (int64_t tl = blockIdx.x; tl < n_tiles; tl += gridDim.x) {
    const TileOrigin o = tile_origin(tl, C, P, tw, tiles_per_image);
    const bool active = j < o.width;
    const S* xb = x + o.base;
    const S* gb = gy + o.base;

    // Pass 1: sum_c x^2 and sum_c scale g x for column j.
    T ss = T(0), sg = T(0);
    if (active) {
#pragma unroll 4
      for (int64_t c = group; c < C; c += groups) {
        const T xv = L::load(xb, c * P + j);
        const T gv = L::load(gb, c * P + j);
        if (kCached) {
          xt[c * tw + j] = xv;
          gt[c * tw + j] = gv;
        }
        ss += xv * xv;
        sg += scale[c] * gv * xv;
      }
    }
    red_ss[t] = ss;
    red_sg[t] = sg;
    __syncthreads();
    if (t < tw) {
      T s = T(0), q = T(0);
      for (int g = 0; g < groups; ++g) {
        s += red_ss[g * tw + t];
        q += red_sg[g * tw + t];
      }
      const T r = sqrt(s);
      const T iv = T(1) / max(r, eps);
      inv[t] = iv;
      coef[t] = r >= eps ? iv * iv * iv * q : T(0);  // 0: the denominator is the constant eps
    }
    __syncthreads();

    // Pass 2: gx and the per-channel sums of g * xhat. The loop bound is the same for every
    // thread (c0 steps over whole channel rows) so that the shuffles below see full warps.
    const T iv = inv[j], cf = coef[j];
    for (int64_t c0 = 0; c0 < C; c0 += groups) {
      const int64_t c = c0 + group;
      T contrib = T(0);
      if (active && c < C) {
        const T xv = kCached ? xt[c * tw + j] : L::load(xb, c * P + j);
        const T gv = kCached ? gt[c * tw + j] : L::load(gb, c * P + j);
        if (gx) L::store(gx, o.base + c * P + j, iv * scale[c] * gv - xv * cf);
        contrib = gv * xv * iv;
      }
      if (gscale) {
        // The tw threads of this channel row are neighbouring lanes of one warp.
        for (int off = tw / 2; off > 0; off >>= 1) contrib += __shfl_xor_sync(0xffffffffu, contrib, off);
        if (j == 0 && c < C) {
          if (kCached) part[c] += contrib;  // always this thread for channel c
          else atomicAdd(gscale + c, contrib);
        }
      }
    }
  }

  if (kCached && gscale) {
    __syncthreads();
    for (int64_t c = t; c < C; c += kThreads) atomicAdd(gscale + c, part[c]);
  }
}

// Deterministic scale gradient, step 1: inv[n, p] = 1 / max(sqrt(sum_c x^2), eps), one thread
// per column (neighbouring threads read neighbouring p: coalesced).
template <typename S>
__global__ void l2norm_column_inv_kernel(int64_t N, int64_t C, int64_t P, const S* __restrict__ x,
                                         compute_of<S> eps, compute_of<S>* __restrict__ inv) {
  using L = Storage<S>;
  using T = compute_of<S>;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= N * P) return;
  const int64_t n = col / P, p = col % P;
  const S* xb = x + n * C * P + p;
  T ss = T(0);
  for (int64_t c = 0; c < C; ++c) {
    const T v = L::load(xb, c * P);
    ss += v * v;
  }
  inv[col] = T(1) / max(sqrt(ss), eps);
}

// Step 2: gscale[c] = sum_{n, p} gy[n, c, p] * x[n, c, p] * inv[n, p], one block per channel.
// Thread t sums the columns t, t + kThreads, ... in that order; the block then halves the
// partials in shared memory in a fixed pattern: the same additions in the same order every run.
template <typename S>
__global__ void __launch_bounds__(kThreads)
    l2norm_scale_grad_kernel(int64_t N, int64_t C, int64_t P, const S* __restrict__ x, const S* __restrict__ gy,
                             const compute_of<S>* __restrict__ inv, compute_of<S>* __restrict__ gscale) {
  using L = Storage<S>;
  using T = compute_of<S>;
  __shared__ T red[kThreads];
  const int64_t c = blockIdx.x;
  T acc = T(0);
  for (int64_t col = threadIdx.x; col < N * P; col += kThreads) {
    const int64_t n = col / P, p = col % P;
    const int64_t i = (n * C + c) * P + p;
    acc += L::load(gy, i) * L::load(x, i) * inv[col];
  }
  red[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half >>= 1) {
    if (static_cast<int>(threadIdx.x) < half) red[threadIdx.x] += red[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) gscale[c] = red[0];
}

struct Plan {
  int tw = 32;
  bool cached = true;
  size_t smem = 0;
};

int device_attribute(cudaDeviceAttr attr) {
  int dev = 0, value = 0;
  KERN_CUDA_CHECK(cudaGetDevice(&dev));
  KERN_CUDA_CHECK(cudaDeviceGetAttribute(&value, attr, dev));
  return value;
}

// The widest tile (32, 16, 8) within kTargetSmem; else TW = 8 if the device allows its
// shared memory; else the uncached variant.
template <typename SmemFn>
Plan choose_plan(int64_t C, SmemFn smem_for) {
  for (int tw = 32; tw >= 8; tw /= 2) {
    if (smem_for(C, tw, true) <= kTargetSmem) return {tw, true, smem_for(C, tw, true)};
  }
  const size_t optin = static_cast<size_t>(device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin));
  if (smem_for(C, 8, true) <= optin) return {8, true, smem_for(C, 8, true)};
  return {32, false, smem_for(C, 32, false)};
}

template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > kDefaultSmem)
    KERN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

unsigned cap_grid(int64_t blocks) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 1 << 20)));
}

}  // namespace

template <typename T>
void l2norm_forward(const L2NormDims& d, const T* x, const compute_t<T>* scale, double eps, T* y, Stream stream) {
  using F = compute_t<T>;
  if (d.N * d.C * d.P == 0) return;
  const Plan plan = choose_plan(d.C, forward_smem<F>);
  const int64_t tiles_per_image = (d.P + plan.tw - 1) / plan.tw;
  const int64_t n_tiles = d.N * tiles_per_image;
  auto kernel = plan.cached ? l2norm_forward_kernel<T, true> : l2norm_forward_kernel<T, false>;
  allow_smem(kernel, plan.smem);
  kernel<<<cap_grid(n_tiles), kThreads, plan.smem, stream>>>(d.C, d.P, plan.tw, tiles_per_image, n_tiles, x, scale,
                                                             static_cast<F>(eps), y);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void l2norm_backward(const L2NormDims& d, const T* x, const compute_t<T>* scale, const T* gy, double eps, T* gx,
                     compute_t<T>* gscale, Stream stream) {
  using F = compute_t<T>;
  if (gscale && d.C > 0) KERN_CUDA_CHECK(cudaMemsetAsync(gscale, 0, sizeof(F) * d.C, stream));
  if (d.N * d.C * d.P == 0 || (!gx && !gscale)) return;
  const Plan plan = choose_plan(d.C, backward_smem<F>);
  const int64_t tiles_per_image = (d.P + plan.tw - 1) / plan.tw;
  const int64_t n_tiles = d.N * tiles_per_image;
  auto kernel = plan.cached ? l2norm_backward_kernel<T, true> : l2norm_backward_kernel<T, false>;
  allow_smem(kernel, plan.smem);
  // About one wave of resident blocks, each looping over tiles (fewer gscale atomics).
  int per_sm = 0;
  KERN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, plan.smem));
  const int64_t wave = static_cast<int64_t>(std::max(per_sm, 1)) * device_attribute(cudaDevAttrMultiProcessorCount);
  kernel<<<cap_grid(std::min(n_tiles, wave)), kThreads, plan.smem, stream>>>(
      d.C, d.P, plan.tw, tiles_per_image, n_tiles, x, scale, gy, static_cast<F>(eps), gx, gscale);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void l2norm_backward_scale_deterministic(const L2NormDims& d, const T* x, const T* gy, double eps,
                                         compute_t<T>* gscale, compute_t<T>* inv_ws, Stream stream) {
  using F = compute_t<T>;
  if (d.C == 0) return;
  if (d.N * d.P == 0) {
    KERN_CUDA_CHECK(cudaMemsetAsync(gscale, 0, sizeof(F) * d.C, stream));
    return;
  }
  const int64_t cols = d.N * d.P;
  l2norm_column_inv_kernel<T><<<cap_grid((cols + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      d.N, d.C, d.P, x, static_cast<F>(eps), inv_ws);
  KERN_LAUNCH_CHECK();
  l2norm_scale_grad_kernel<T><<<cap_grid(d.C), kThreads, 0, stream>>>(d.N, d.C, d.P, x, gy, inv_ws, gscale);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                               \
  template void l2norm_forward<T>(const L2NormDims&, const T*, const compute_t<T>*, double, T*, Stream);  \
  template void l2norm_backward<T>(const L2NormDims&, const T*, const compute_t<T>*, const T*, double, T*, \
                                   compute_t<T>*, Stream);                                                \
  template void l2norm_backward_scale_deterministic<T>(const L2NormDims&, const T*, const T*, double,     \
                                                       compute_t<T>*, compute_t<T>*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
