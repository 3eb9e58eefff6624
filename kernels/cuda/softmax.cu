// CUDA softmax / log_softmax (maths in kernels/softmax.h).
//
// inner == 1: rows are contiguous. One warp per row: each lane strides over C, then the
//             lanes combine their partial max / sum with butterfly shuffles (every lane
//             ends with the full value).
// inner > 1:  one thread per (o, i) row; thread k handles o = k / inner, i = k % inner and
//             walks c with stride inner (neighbouring threads read neighbouring addresses).
#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"
#include "kernels/cuda_warp.cuh"
#include "kernels/softmax.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = kBlock / kWarp;


// T is the storage type (kernels/cuda_storage.cuh): bf16 is widened to float on load, the
// maths runs in float, results are rounded to nearest even on the store.

// ---- inner == 1: one warp per row ----

template <typename T>
__global__ void forward_warp_kernel(int64_t rows, int64_t C, const T* __restrict__ x, T* __restrict__ y,
                                    bool log_space) {
  using S = Storage<T>;
  using F = compute_of<T>;
  const int lane = threadIdx.x % kWarp;
  const int64_t warp = blockIdx.x * (int64_t)kWarpsPerBlock + threadIdx.x / kWarp;
  const int64_t n_warps = (int64_t)gridDim.x * kWarpsPerBlock;
  for (int64_t r = warp; r < rows; r += n_warps) {  // the whole warp takes the same branch
    const T* xr = x + r * C;
    T* yr = y + r * C;
    F m = S::load(xr, 0);
    for (int64_t c = lane; c < C; c += kWarp) m = max(m, S::load(xr, c));
    m = warp_max(m);
    F s = F(0);
    for (int64_t c = lane; c < C; c += kWarp) s += ::exp(S::load(xr, c) - m);
    s = warp_sum(s);
    if (log_space) {
      const F log_s = ::log(s);
      for (int64_t c = lane; c < C; c += kWarp) S::store(yr, c, S::load(xr, c) - m - log_s);
    } else {
      for (int64_t c = lane; c < C; c += kWarp) S::store(yr, c, ::exp(S::load(xr, c) - m) / s);
    }
  }
}

template <typename T>
__global__ void backward_warp_kernel(int64_t rows, int64_t C, const T* __restrict__ y, const T* __restrict__ gy,
                                     T* __restrict__ gx, bool log_space) {
  using S = Storage<T>;
  using F = compute_of<T>;
  const int lane = threadIdx.x % kWarp;
  const int64_t warp = blockIdx.x * (int64_t)kWarpsPerBlock + threadIdx.x / kWarp;
  const int64_t n_warps = (int64_t)gridDim.x * kWarpsPerBlock;
  for (int64_t r = warp; r < rows; r += n_warps) {
    const T* yr = y + r * C;
    const T* gr = gy + r * C;
    T* out = gx + r * C;
    // log_softmax needs sum(gy); softmax needs sum(gy * y).
    F acc = F(0);
    for (int64_t c = lane; c < C; c += kWarp) acc += log_space ? S::load(gr, c) : S::load(gr, c) * S::load(yr, c);
    acc = warp_sum(acc);
    if (log_space) {
      for (int64_t c = lane; c < C; c += kWarp) S::store(out, c, S::load(gr, c) - ::exp(S::load(yr, c)) * acc);
    } else {
      for (int64_t c = lane; c < C; c += kWarp) S::store(out, c, S::load(yr, c) * (S::load(gr, c) - acc));
    }
  }
}

// ---- inner > 1: one thread per (o, i) ----

template <typename T>
__global__ void forward_strided_kernel(int64_t outer, int64_t C, int64_t inner, const T* __restrict__ x,
                                       T* __restrict__ y, bool log_space) {
  using S = Storage<T>;
  using F = compute_of<T>;
  const int64_t n = outer * inner;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = k / inner, i = k % inner;
    const T* xr = x + o * C * inner + i;
    T* yr = y + o * C * inner + i;
    F m = S::load(xr, 0);
    for (int64_t c = 1; c < C; ++c) m = max(m, S::load(xr, c * inner));
    F s = F(0);
    for (int64_t c = 0; c < C; ++c) s += ::exp(S::load(xr, c * inner) - m);
    if (log_space) {
      const F log_s = ::log(s);
      for (int64_t c = 0; c < C; ++c) S::store(yr, c * inner, S::load(xr, c * inner) - m - log_s);
    } else {
      for (int64_t c = 0; c < C; ++c) S::store(yr, c * inner, ::exp(S::load(xr, c * inner) - m) / s);
    }
  }
}

template <typename T>
__global__ void backward_strided_kernel(int64_t outer, int64_t C, int64_t inner, const T* __restrict__ y,
                                        const T* __restrict__ gy, T* __restrict__ gx, bool log_space) {
  using S = Storage<T>;
  using F = compute_of<T>;
  const int64_t n = outer * inner;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = k / inner, i = k % inner;
    const int64_t base = o * C * inner + i;
    const T* yr = y + base;
    const T* gr = gy + base;
    T* out = gx + base;
    F acc = F(0);
    for (int64_t c = 0; c < C; ++c)
      acc += log_space ? S::load(gr, c * inner) : S::load(gr, c * inner) * S::load(yr, c * inner);
    if (log_space) {
      for (int64_t c = 0; c < C; ++c)
        S::store(out, c * inner, S::load(gr, c * inner) - ::exp(S::load(yr, c * inner)) * acc);
    } else {
      for (int64_t c = 0; c < C; ++c)
        S::store(out, c * inner, S::load(yr, c * inner) * (S::load(gr, c * inner) - acc));
    }
  }
}

unsigned warp_grid(int64_t rows) {
  int64_t g = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (g < 1) g = 1;
  if (g > 65535LL * 8) g = 65535LL * 8;  // the grid-stride loop covers the rest
  return static_cast<unsigned>(g);
}

template <typename T>
void forward(const SoftmaxDims& d, const T* x, T* y, bool log_space, Stream stream) {
  if (d.outer * d.C * d.inner == 0) return;
  if (d.inner == 1) {
    forward_warp_kernel<T><<<warp_grid(d.outer), kBlock, 0, stream>>>(d.outer, d.C, x, y, log_space);
  } else {
    forward_strided_kernel<T><<<kern_grid_1d(d.outer * d.inner), kBlock, 0, stream>>>(d.outer, d.C, d.inner, x, y,
                                                                                        log_space);
  }
  KERN_LAUNCH_CHECK();
}

template <typename T>
void backward(const SoftmaxDims& d, const T* y, const T* gy, T* gx, bool log_space, Stream stream) {
  if (d.outer * d.C * d.inner == 0) return;
  if (d.inner == 1) {
    backward_warp_kernel<T><<<warp_grid(d.outer), kBlock, 0, stream>>>(d.outer, d.C, y, gy, gx, log_space);
  } else {
    backward_strided_kernel<T><<<kern_grid_1d(d.outer * d.inner), kBlock, 0, stream>>>(d.outer, d.C, d.inner, y,
                                                                                         gy, gx, log_space);
  }
  KERN_LAUNCH_CHECK();
}

}  // namespace

template <typename T>
void softmax_forward(const SoftmaxDims& d, const T* x, T* y, Stream stream) { forward(d, x, y, false, stream); }
template <typename T>
void log_softmax_forward(const SoftmaxDims& d, const T* x, T* y, Stream stream) { forward(d, x, y, true, stream); }
template <typename T>
void softmax_backward(const SoftmaxDims& d, const T* y, const T* gy, T* gx, Stream stream) {
  backward(d, y, gy, gx, false, stream);
}
template <typename T>
void log_softmax_backward(const SoftmaxDims& d, const T* y, const T* gy, T* gx, Stream stream) {
  backward(d, y, gy, gx, true, stream);
}

#define KERN_INSTANTIATE(T)                                                                      \
  template void softmax_forward<T>(const SoftmaxDims&, const T*, T*, Stream);                   \
  template void log_softmax_forward<T>(const SoftmaxDims&, const T*, T*, Stream);               \
  template void softmax_backward<T>(const SoftmaxDims&, const T*, const T*, T*, Stream);        \
  template void log_softmax_backward<T>(const SoftmaxDims&, const T*, const T*, T*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
