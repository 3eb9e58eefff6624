// CUDA loss kernels (maths in kernels/losses.h).
//
// cross_entropy_forward: inner == 1 -> one warp per element (its C logits are contiguous;
// lanes stride over C and combine max / sum with shuffles); inner > 1 -> one thread per
// element (neighbouring threads read neighbouring i). cross_entropy_backward and the
// smooth-L1 kernels: one thread per output value, grid-stride loops.
#include <cmath>

#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"
#include "kernels/cuda_warp.cuh"
#include "kernels/losses.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = kBlock / kWarp;

template <typename T>
__device__ __forceinline__ T quiet_nan() {
  return T(NAN);
}


// Writes loss / lse / valid of element e from its logsumexp and its logit at the target.
template <typename T>
__device__ __forceinline__ void write_element(int64_t e, int64_t t, int64_t C, int64_t ignore_index, T lse_e,
                                              T x_t, T* loss, T* lse, T* valid) {
  lse[e] = lse_e;
  if (t == ignore_index) {
    loss[e] = T(0);
    if (valid) valid[e] = T(0);
    return;
  }
  loss[e] = (t >= 0 && t < C) ? lse_e - x_t : quiet_nan<T>();
  if (valid) valid[e] = T(1);
}

// Cross entropy: S is the storage type of the logits (kernels/cuda_storage.cuh), T the
// maths and the loss / lse / valid / g arrays (float for bf16 logits).
template <typename S, typename T = compute_of<S>>
__global__ void ce_forward_warp_kernel(int64_t rows, int64_t C, const S* __restrict__ x,
                                       const int64_t* __restrict__ target, int64_t ignore_index, T* __restrict__ loss,
                                       T* __restrict__ lse, T* __restrict__ valid) {
  using L = Storage<S>;
  const int lane = threadIdx.x % kWarp;
  const int64_t warp = blockIdx.x * (int64_t)kWarpsPerBlock + threadIdx.x / kWarp;
  const int64_t n_warps = (int64_t)gridDim.x * kWarpsPerBlock;
  for (int64_t e = warp; e < rows; e += n_warps) {  // the whole warp shares e
    const S* xr = x + e * C;
    T m = L::load(xr, 0);
    for (int64_t c = lane; c < C; c += kWarp) m = max(m, L::load(xr, c));
    m = warp_max(m);
    T s = T(0);
    for (int64_t c = lane; c < C; c += kWarp) s += ::exp(L::load(xr, c) - m);
    s = warp_sum(s);
    if (lane == 0) {
      const int64_t t = target[e];
      const T x_t = (t >= 0 && t < C) ? L::load(xr, t) : T(0);
      write_element(e, t, C, ignore_index, m + ::log(s), x_t, loss, lse, valid);
    }
  }
}

template <typename S, typename T = compute_of<S>>
__global__ void ce_forward_strided_kernel(int64_t N, int64_t C, int64_t inner, const S* __restrict__ x,
                                          const int64_t* __restrict__ target, int64_t ignore_index,
                                          T* __restrict__ loss, T* __restrict__ lse, T* __restrict__ valid) {
  using L = Storage<S>;
  const int64_t total = N * inner;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = e / inner, i = e % inner;
    const S* xr = x + n * C * inner + i;
    T m = L::load(xr, 0);
    for (int64_t c = 1; c < C; ++c) m = max(m, L::load(xr, c * inner));
    T s = T(0);
    for (int64_t c = 0; c < C; ++c) s += ::exp(L::load(xr, c * inner) - m);
    const int64_t t = target[e];
    const T x_t = (t >= 0 && t < C) ? L::load(xr, t * inner) : T(0);
    write_element(e, t, C, ignore_index, m + ::log(s), x_t, loss, lse, valid);
  }
}

// One thread per logit: k = (n * C + c) * inner + i.
template <typename S, typename T = compute_of<S>>
__global__ void ce_backward_kernel(int64_t N, int64_t C, int64_t inner, const S* __restrict__ x,
                                   const int64_t* __restrict__ target, const T* __restrict__ lse, int64_t ignore_index,
                                   const T* __restrict__ g, int64_t g_stride, S* __restrict__ gx) {
  using L = Storage<S>;
  const int64_t total = N * C * inner;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = k % inner, c = (k / inner) % C, n = k / (inner * C);
    const int64_t e = n * inner + i;
    const int64_t t = target[e];
    if (t == ignore_index) {
      L::store(gx, k, T(0));
    } else if (t < 0 || t >= C) {
      L::store(gx, k, quiet_nan<T>());
    } else {
      const T p = ::exp(L::load(x, k) - lse[e]);
      L::store(gx, k, (p - (c == t ? T(1) : T(0))) * g[e * g_stride]);
    }
  }
}

// Smooth-L1: S is the storage type of the input and of gx; the target, the loss, g and the
// maths use T = compute_of<S>.
template <typename S, typename T = compute_of<S>>
__global__ void smooth_l1_forward_kernel(int64_t n, const S* __restrict__ input, const T* __restrict__ target, T beta,
                                         T* __restrict__ loss) {
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const T a = ::fabs(Storage<S>::load(input, k) - target[k]);
    loss[k] = a < beta ? T(0.5) * a * a / beta : a - T(0.5) * beta;
  }
}

template <typename S, typename T = compute_of<S>>
__global__ void smooth_l1_backward_kernel(int64_t n, const S* __restrict__ input, const T* __restrict__ target, T beta,
                                          const T* __restrict__ g, int64_t g_stride, S* __restrict__ gx) {
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const T diff = Storage<S>::load(input, k) - target[k];
    const T sign = diff > T(0) ? T(1) : (diff < T(0) ? T(-1) : T(0));
    const T slope = ::fabs(diff) < beta ? diff / beta : sign;
    Storage<S>::store(gx, k, slope * g[k * g_stride]);
  }
}

unsigned warp_grid(int64_t rows) {
  int64_t grid = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (grid < 1) grid = 1;
  if (grid > 65535LL * 8) grid = 65535LL * 8;  // the grid-stride loop covers the rest
  return static_cast<unsigned>(grid);
}

}  // namespace

template <typename T>
void cross_entropy_forward(const CrossEntropyDims& d, const T* x, const int64_t* target, int64_t ignore_index,
                           compute_t<T>* loss, compute_t<T>* lse, compute_t<T>* valid, Stream stream) {
  if (d.N * d.inner == 0 || d.C == 0) return;
  if (d.inner == 1) {
    ce_forward_warp_kernel<T><<<warp_grid(d.N), kBlock, 0, stream>>>(d.N, d.C, x, target, ignore_index, loss, lse,
                                                                     valid);
  } else {
    ce_forward_strided_kernel<T><<<kern_grid_1d(d.N * d.inner), kBlock, 0, stream>>>(
        d.N, d.C, d.inner, x, target, ignore_index, loss, lse, valid);
  }
  KERN_LAUNCH_CHECK();
}

template <typename T>
void cross_entropy_backward(const CrossEntropyDims& d, const T* x, const int64_t* target, const compute_t<T>* lse,
                            int64_t ignore_index, const compute_t<T>* g, int64_t g_stride, T* gx, Stream stream) {
  const int64_t total = d.N * d.C * d.inner;
  if (total == 0) return;
  ce_backward_kernel<T><<<kern_grid_1d(total), kBlock, 0, stream>>>(d.N, d.C, d.inner, x, target, lse, ignore_index,
                                                                    g, g_stride, gx);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void smooth_l1_forward(int64_t n, const T* input, const compute_t<T>* target, double beta, compute_t<T>* loss,
                       Stream stream) {
  if (n == 0) return;
  smooth_l1_forward_kernel<T><<<kern_grid_1d(n), kBlock, 0, stream>>>(n, input, target,
                                                                      static_cast<compute_t<T>>(beta), loss);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void smooth_l1_backward(int64_t n, const T* input, const compute_t<T>* target, double beta, const compute_t<T>* g,
                        int64_t g_stride, T* gx, Stream stream) {
  if (n == 0) return;
  smooth_l1_backward_kernel<T><<<kern_grid_1d(n), kBlock, 0, stream>>>(n, input, target,
                                                                       static_cast<compute_t<T>>(beta), g,
                                                                       g_stride, gx);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE_CE(T)                                                                               \
  template void cross_entropy_forward<T>(const CrossEntropyDims&, const T*, const int64_t*, int64_t,           \
                                         compute_t<T>*, compute_t<T>*, compute_t<T>*, Stream);                 \
  template void cross_entropy_backward<T>(const CrossEntropyDims&, const T*, const int64_t*,                   \
                                          const compute_t<T>*, int64_t, const compute_t<T>*, int64_t, T*, Stream);
#define KERN_INSTANTIATE(T)                                                                                    \
  KERN_INSTANTIATE_CE(T)                                                                                       \
  template void smooth_l1_forward<T>(int64_t, const T*, const compute_t<T>*, double, compute_t<T>*, Stream); \
  template void smooth_l1_backward<T>(int64_t, const T*, const compute_t<T>*, double, const compute_t<T>*,   \
                                      int64_t, T*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE
#undef KERN_INSTANTIATE_CE

}  // namespace kern::cuda
