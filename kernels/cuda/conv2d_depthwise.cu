// The hand-written depthwise convolution (forward, backward data, backward weight) with
// shared-memory tiles. Maths, tiling and determinism: kernels/conv2d_depthwise.h.
#include "kernels/conv2d_depthwise.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cuda_block_sum.cuh"
#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"

namespace kern::cuda {
namespace {

constexpr int kThreads = kDwTile * kDwTile;  // == kSumBlock (block_sum_double's block)
static_assert(kThreads == kSumBlock, "backward weight sums over one kSumBlock-thread block");
constexpr int64_t kSmemLimit = 48 * 1024 - 256;  // static shared memory of block_sum_double aside
constexpr int64_t kMaxGrid = 65535LL * 8;        // blocks launched; kernels loop over the rest

// The input tile plus halo that a kDwTile x kDwTile output tile reads.
int64_t in_tile_h(const Conv2dDims& d) { return (kDwTile - 1) * d.stride_h + (d.kh - 1) * d.dil_h + 1; }
int64_t in_tile_w(const Conv2dDims& d) { return (kDwTile - 1) * d.stride_w + (d.kw - 1) * d.dil_w + 1; }
// The gy rows / columns that reach a kDwTile input tile (an upper bound, see the header).
int64_t gy_tile_h(const Conv2dDims& d) { return (kDwTile - 1 + (d.kh - 1) * d.dil_h) / d.stride_h + 2; }
int64_t gy_tile_w(const Conv2dDims& d) { return (kDwTile - 1 + (d.kw - 1) * d.dil_w) / d.stride_w + 2; }
int64_t tiles(int64_t n) { return (n + kDwTile - 1) / kDwTile; }
unsigned grid_of(int64_t blocks) { return static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks, kMaxGrid))); }

__device__ __forceinline__ int64_t floor_div(int64_t a, int64_t s) { return a >= 0 ? a / s : -((-a + s - 1) / s); }

template <typename T>
__global__ void __launch_bounds__(kThreads)
    dw_forward_kernel(Conv2dDims d, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                      T* __restrict__ y, int in_th, int in_tw) {
  using E = Storage<T>;
  using A = typename E::C;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* xs = reinterpret_cast<A*>(smem_raw);
  A* ws = xs + in_th * in_tw;
  const int taps = static_cast<int>(d.kh * d.kw), kw = static_cast<int>(d.kw);
  const int sh = static_cast<int>(d.stride_h), sw = static_cast<int>(d.stride_w);
  const int dh = static_cast<int>(d.dil_h), dw = static_cast<int>(d.dil_w);
  const int64_t M = d.O / d.C, tiles_h = (d.Ho + kDwTile - 1) / kDwTile, tiles_w = (d.Wo + kDwTile - 1) / kDwTile;
  const int64_t nblocks = d.N * d.O * tiles_h * tiles_w;
  const int ty = threadIdx.x / kDwTile, tx = threadIdx.x % kDwTile;
  for (int64_t b = blockIdx.x; b < nblocks; b += gridDim.x) {
    const int64_t tw = b % tiles_w, th = (b / tiles_w) % tiles_h, r = b / (tiles_w * tiles_h);
    const int64_t o = r % d.O, n = r / d.O, c = o / M;
    const int64_t oh0 = th * kDwTile, ow0 = tw * kDwTile;
    const int64_t h_base = oh0 * d.stride_h - d.pad_h, w_base = ow0 * d.stride_w - d.pad_w;
    const T* xp = x + (n * d.C + c) * d.H * d.W;
    __syncthreads();  // the previous tile is done with the shared buffers
    for (int k = threadIdx.x; k < in_th * in_tw; k += kThreads) {
      const int64_t h = h_base + k / in_tw, v = w_base + k % in_tw;
      xs[k] = (h >= 0 && h < d.H && v >= 0 && v < d.W) ? E::load(xp, h * d.W + v) : A(0);
    }
    for (int k = threadIdx.x; k < taps; k += kThreads) ws[k] = E::load(w, o * taps + k);
    __syncthreads();
    const int64_t oh = oh0 + ty, ow = ow0 + tx;
    if (oh < d.Ho && ow < d.Wo) {
      A acc = bias ? E::load(bias, o) : A(0);
      for (int i = 0; i < static_cast<int>(d.kh); ++i) {
        const A* row = xs + (ty * sh + i * dh) * in_tw + tx * sw;
        for (int j = 0; j < kw; ++j) acc += ws[i * kw + j] * row[j * dw];
      }
      E::store(y, ((n * d.O + o) * d.Ho + oh) * d.Wo + ow, acc);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    dw_backward_data_kernel(Conv2dDims d, const T* __restrict__ w, const T* __restrict__ gy, T* __restrict__ gx,
                            int g_th, int g_tw) {
  using E = Storage<T>;
  using A = typename E::C;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* gs = reinterpret_cast<A*>(smem_raw);
  A* ws = gs + g_th * g_tw;
  const int taps = static_cast<int>(d.kh * d.kw), kw = static_cast<int>(d.kw);
  const int64_t M = d.O / d.C, tiles_h = (d.H + kDwTile - 1) / kDwTile, tiles_w = (d.W + kDwTile - 1) / kDwTile;
  const int64_t nblocks = d.N * d.C * tiles_h * tiles_w;
  const int ty = threadIdx.x / kDwTile, tx = threadIdx.x % kDwTile;
  for (int64_t b = blockIdx.x; b < nblocks; b += gridDim.x) {
    const int64_t tw = b % tiles_w, th = (b / tiles_w) % tiles_h, r = b / (tiles_w * tiles_h);
    const int64_t c = r % d.C, n = r / d.C;
    const int64_t h0 = th * kDwTile, v0 = tw * kDwTile;
    // First gy row / column that can reach the tile: every (h + ph - i dh) of the tile is
    // >= oh_lo * sh, so the local offsets below are non-negative.
    const int64_t oh_lo = floor_div(h0 + d.pad_h - (d.kh - 1) * d.dil_h, d.stride_h);
    const int64_t ow_lo = floor_div(v0 + d.pad_w - (d.kw - 1) * d.dil_w, d.stride_w);
    const int64_t h = h0 + ty, v = v0 + tx;
    __syncthreads();
    for (int k = threadIdx.x; k < M * taps; k += kThreads) ws[k] = E::load(w, c * M * taps + k);
    A acc = A(0);
    for (int64_t m = 0; m < M; ++m) {
      const T* gp = gy + (n * d.O + c * M + m) * d.Ho * d.Wo;
      __syncthreads();  // the previous m is done with gs (and ws is written)
      for (int k = threadIdx.x; k < g_th * g_tw; k += kThreads) {
        const int64_t oh = oh_lo + k / g_tw, ow = ow_lo + k % g_tw;
        gs[k] = (oh >= 0 && oh < d.Ho && ow >= 0 && ow < d.Wo) ? E::load(gp, oh * d.Wo + ow) : A(0);
      }
      __syncthreads();
      if (h < d.H && v < d.W) {
        const A* wm = ws + m * taps;
        for (int i = 0; i < static_cast<int>(d.kh); ++i) {
          const int64_t t = h + d.pad_h - i * d.dil_h - oh_lo * d.stride_h;
          if (t % d.stride_h != 0) continue;
          const A* grow = gs + (t / d.stride_h) * g_tw;
          for (int j = 0; j < kw; ++j) {
            const int64_t u = v + d.pad_w - j * d.dil_w - ow_lo * d.stride_w;
            if (u % d.stride_w != 0) continue;
            acc += wm[i * kw + j] * grow[u / d.stride_w];
          }
        }
      }
    }
    if (h < d.H && v < d.W) E::store(gx, ((n * d.C + c) * d.H + h) * d.W + v, acc);
  }
}

// Pass 1 of backward weight: partials[(o * taps + tap) * S + n * tiles + tile], S = N * tiles.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    dw_backward_weight_partials_kernel(Conv2dDims d, const T* __restrict__ x, const T* __restrict__ gy,
                                       double* __restrict__ partials, int in_th, int in_tw) {
  using E = Storage<T>;
  using A = typename E::C;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* xs = reinterpret_cast<A*>(smem_raw);
  const int taps = static_cast<int>(d.kh * d.kw), kw = static_cast<int>(d.kw);
  const int sh = static_cast<int>(d.stride_h), sw = static_cast<int>(d.stride_w);
  const int dh = static_cast<int>(d.dil_h), dw = static_cast<int>(d.dil_w);
  const int64_t M = d.O / d.C, tiles_h = (d.Ho + kDwTile - 1) / kDwTile, tiles_w = (d.Wo + kDwTile - 1) / kDwTile;
  const int64_t per_image = tiles_h * tiles_w, S = d.N * per_image, nblocks = d.O * S;
  const int ty = threadIdx.x / kDwTile, tx = threadIdx.x % kDwTile;
  for (int64_t b = blockIdx.x; b < nblocks; b += gridDim.x) {
    const int64_t chunk = b % S, o = b / S, n = chunk / per_image, t = chunk % per_image;
    const int64_t c = o / M, oh0 = (t / tiles_w) * kDwTile, ow0 = (t % tiles_w) * kDwTile;
    const int64_t h_base = oh0 * d.stride_h - d.pad_h, w_base = ow0 * d.stride_w - d.pad_w;
    const T* xp = x + (n * d.C + c) * d.H * d.W;
    __syncthreads();
    for (int k = threadIdx.x; k < in_th * in_tw; k += kThreads) {
      const int64_t h = h_base + k / in_tw, v = w_base + k % in_tw;
      xs[k] = (h >= 0 && h < d.H && v >= 0 && v < d.W) ? E::load(xp, h * d.W + v) : A(0);
    }
    const int64_t oh = oh0 + ty, ow = ow0 + tx;
    const bool inside = oh < d.Ho && ow < d.Wo;
    const double g = inside ? static_cast<double>(E::load(gy, ((n * d.O + o) * d.Ho + oh) * d.Wo + ow)) : 0.0;
    __syncthreads();
    for (int tap = 0; tap < taps; ++tap) {
      const int i = tap / kw, j = tap % kw;
      const double p = inside ? g * static_cast<double>(xs[(ty * sh + i * dh) * in_tw + tx * sw + j * dw]) : 0.0;
      const double s = block_sum_double(p);
      if (threadIdx.x == 0) partials[(o * taps + tap) * S + chunk] = s;
      __syncthreads();  // warp 0 has read the warp sums before the next tap writes them
    }
  }
}

void check_supported(const Conv2dDims& d, int elem, const char* op) {
  if (!depthwise_supported(d, elem))
    throw std::runtime_error(std::string(op) + ": not a depthwise convolution this kernel takes (C " +
                             std::to_string(d.C) + ", O " + std::to_string(d.O) + ", groups " +
                             std::to_string(d.groups) + ", kernel " + std::to_string(d.kh) + "x" +
                             std::to_string(d.kw) + ", stride " + std::to_string(d.stride_h) + "x" +
                             std::to_string(d.stride_w) + ", dilation " + std::to_string(d.dil_h) + "x" +
                             std::to_string(d.dil_w) + ")");
}

template <typename T>
constexpr int elem_of() {
  return static_cast<int>(sizeof(compute_of<T>));
}

}  // namespace

int64_t depthwise_smem_forward(const Conv2dDims& d, int elem) {
  return (in_tile_h(d) * in_tile_w(d) + d.kh * d.kw) * elem;
}
int64_t depthwise_smem_backward_data(const Conv2dDims& d, int elem) {
  return (gy_tile_h(d) * gy_tile_w(d) + (d.C > 0 ? d.O / d.C : 0) * d.kh * d.kw) * elem;
}
bool depthwise_supported(const Conv2dDims& d, int elem) {
  if (!conv2d_is_depthwise(d) || d.stride_h < 1 || d.stride_w < 1 || d.dil_h < 1 || d.dil_w < 1) return false;
  if (d.kh > 4096 || d.kw > 4096 || d.stride_h > 4096 || d.stride_w > 4096 || d.dil_h > 4096 || d.dil_w > 4096)
    return false;  // keeps the tile arithmetic below far from overflow
  return depthwise_smem_forward(d, elem) <= kSmemLimit && depthwise_smem_backward_data(d, elem) <= kSmemLimit &&
         d.kh * d.kw <= (1 << 20);
}
int64_t depthwise_weight_partials(const Conv2dDims& d) {
  return d.O * d.kh * d.kw * d.N * tiles(d.Ho) * tiles(d.Wo);
}

template <typename T>
void depthwise_forward(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y, Stream stream) {
  check_supported(d, elem_of<T>(), "depthwise_forward");
  const int64_t blocks = d.N * d.O * tiles(d.Ho) * tiles(d.Wo);
  if (blocks == 0) return;
  dw_forward_kernel<T><<<grid_of(blocks), kThreads, depthwise_smem_forward(d, elem_of<T>()), stream>>>(
      d, x, w, bias, y, static_cast<int>(in_tile_h(d)), static_cast<int>(in_tile_w(d)));
  KERN_LAUNCH_CHECK();
}

template <typename T>
void depthwise_backward_data(const Conv2dDims& d, const T* w, const T* gy, T* gx, Stream stream) {
  check_supported(d, elem_of<T>(), "depthwise_backward_data");
  const int64_t blocks = d.N * d.C * tiles(d.H) * tiles(d.W);
  if (blocks == 0) return;
  dw_backward_data_kernel<T><<<grid_of(blocks), kThreads, depthwise_smem_backward_data(d, elem_of<T>()), stream>>>(
      d, w, gy, gx, static_cast<int>(gy_tile_h(d)), static_cast<int>(gy_tile_w(d)));
  KERN_LAUNCH_CHECK();
}

template <typename T>
void depthwise_backward_weight(const Conv2dDims& d, const T* x, const T* gy, T* gw, double* partials,
                               Stream stream) {
  check_supported(d, elem_of<T>(), "depthwise_backward_weight");
  const int64_t S = d.N * tiles(d.Ho) * tiles(d.Wo), rows = d.O * d.kh * d.kw;
  if (rows == 0) return;
  if (S > 0) {
    const int64_t smem = in_tile_h(d) * in_tile_w(d) * elem_of<T>();
    dw_backward_weight_partials_kernel<T><<<grid_of(d.O * S), kThreads, smem, stream>>>(
        d, x, gy, partials, static_cast<int>(in_tile_h(d)), static_cast<int>(in_tile_w(d)));
    KERN_LAUNCH_CHECK();
  }
  // Pass 2: one block per (o, tap) adds its S partials (S = 0: an empty sum, zero).
  sum_partials_rows_kernel<T><<<static_cast<unsigned>(rows), kSumBlock, 0, stream>>>(S, partials, gw, 1.0);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                            \
  template void depthwise_forward<T>(const Conv2dDims&, const T*, const T*, const T*, T*, Stream);     \
  template void depthwise_backward_data<T>(const Conv2dDims&, const T*, const T*, T*, Stream);         \
  template void depthwise_backward_weight<T>(const Conv2dDims&, const T*, const T*, T*, double*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
