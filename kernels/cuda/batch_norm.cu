#include "kernels/batch_norm.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;  // power of two: the tree reduction halves it

// Sum of `v` over the block (every thread gets the result). `buf` holds kBlock doubles.
__device__ double block_sum(double v, double* buf) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = kBlock / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  const double r = buf[0];
  __syncthreads();  // buf may be reused by the caller's next block_sum
  return r;
}

template <typename T>
__device__ T rstd_of(T var, double eps) {
  return T(1) / sqrt(var + static_cast<T>(eps));
}

// Value k (0 <= k < M) of channel c: element [n, c, i] with n = k / HW, i = k % HW.
__device__ int64_t channel_offset(const BatchNormDims& d, int64_t c, int64_t k) {
  return (k / d.HW * d.C + c) * d.HW + k % d.HW;
}

// S is the storage type of x / y / gy / gx (kernels/cuda_storage.cuh); T = compute_of<S> is
// the type of the per-channel arrays and of the maths (float for bf16).

// One block per channel: mean, then the biased variance from a second pass.
template <typename S, typename T = compute_of<S>>
__global__ void stats_kernel(BatchNormDims d, const S* __restrict__ x, T* __restrict__ mean, T* __restrict__ var) {
  using L = Storage<S>;
  __shared__ double buf[kBlock];
  const int64_t c = blockIdx.x, M = d.N * d.HW;
  double s = 0;
  for (int64_t k = threadIdx.x; k < M; k += blockDim.x) s += L::load(x, channel_offset(d, c, k));
  const double m = block_sum(s, buf) / static_cast<double>(M);
  double ss = 0;
  for (int64_t k = threadIdx.x; k < M; k += blockDim.x) {
    const double dev = L::load(x, channel_offset(d, c, k)) - m;
    ss += dev * dev;
  }
  const double v = block_sum(ss, buf) / static_cast<double>(M);
  if (threadIdx.x == 0) {
    mean[c] = static_cast<T>(m);
    var[c] = static_cast<T>(v);
  }
}

// One thread per element.
template <typename S, typename T = compute_of<S>>
__global__ void forward_kernel(BatchNormDims d, const S* __restrict__ x, const T* __restrict__ mean,
                               const T* __restrict__ var, const T* __restrict__ w, const T* __restrict__ b,
                               double eps, S* __restrict__ y) {
  using L = Storage<S>;
  const int64_t n = d.N * d.C * d.HW;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = (k / d.HW) % d.C;
    const T rstd = rstd_of(var[c], eps);
    const T wc = w ? w[c] : T(1), bc = b ? b[c] : T(0);
    L::store(y, k, (L::load(x, k) - mean[c]) * rstd * wc + bc);
  }
}

// One block per channel: sum dy and sum dy * xhat.
template <typename S, typename T = compute_of<S>>
__global__ void backward_reduce_kernel(BatchNormDims d, const S* __restrict__ x, const T* __restrict__ mean,
                                       const T* __restrict__ var, double eps, const S* __restrict__ gy,
                                       T* __restrict__ sum_dy, T* __restrict__ sum_dy_xhat) {
  using L = Storage<S>;
  __shared__ double buf[kBlock];
  const int64_t c = blockIdx.x, M = d.N * d.HW;
  const T rstd = rstd_of(var[c], eps), mc = mean[c];
  double s_dy = 0, s_dy_xhat = 0;
  for (int64_t k = threadIdx.x; k < M; k += blockDim.x) {
    const int64_t off = channel_offset(d, c, k);
    const T g = L::load(gy, off);
    s_dy += g;
    s_dy_xhat += g * ((L::load(x, off) - mc) * rstd);
  }
  const double a = block_sum(s_dy, buf);
  const double b = block_sum(s_dy_xhat, buf);
  if (threadIdx.x == 0) {
    sum_dy[c] = static_cast<T>(a);
    sum_dy_xhat[c] = static_cast<T>(b);
  }
}

// One thread per element.
template <typename S, typename T = compute_of<S>>
__global__ void backward_input_kernel(BatchNormDims d, const S* __restrict__ x, const T* __restrict__ mean,
                                      const T* __restrict__ var, const T* __restrict__ w, double eps, bool training,
                                      const S* __restrict__ gy, const T* __restrict__ sum_dy,
                                      const T* __restrict__ sum_dy_xhat, S* __restrict__ gx) {
  using L = Storage<S>;
  const int64_t n = d.N * d.C * d.HW;
  const T M = static_cast<T>(d.N * d.HW);
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = (k / d.HW) % d.C;
    const T rstd = rstd_of(var[c], eps);
    const T wc = w ? w[c] : T(1);
    if (training) {
      const T xhat = (L::load(x, k) - mean[c]) * rstd;
      L::store(gx, k, wc * rstd / M * (M * L::load(gy, k) - sum_dy[c] - xhat * sum_dy_xhat[c]));
    } else {
      L::store(gx, k, L::load(gy, k) * wc * rstd);
    }
  }
}

template <typename T>
__global__ void channel_affine_kernel(BatchNormDims d, const T* __restrict__ x, const compute_of<T>* __restrict__ scale,
                                      const compute_of<T>* __restrict__ shift, T* __restrict__ y) {
  // T is the storage type (kernels/cuda_storage.cuh): bf16 computes in float, rounds once.
  using F = compute_of<T>;
  const int64_t n = d.N * d.C * d.HW;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = (k / d.HW) % d.C;
    Storage<T>::store(y, k, Storage<T>::load(x, k) * scale[c] + (shift ? shift[c] : F(0)));
  }
}

}  // namespace

template <typename T>
void batch_norm_stats(const BatchNormDims& d, const T* x, compute_t<T>* mean, compute_t<T>* var, Stream stream) {
  if (d.C == 0) return;
  stats_kernel<T><<<static_cast<unsigned>(d.C), kBlock, 0, stream>>>(d, x, mean, var);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void batch_norm_forward(const BatchNormDims& d, const T* x, const compute_t<T>* mean, const compute_t<T>* var,
                        const compute_t<T>* w, const compute_t<T>* b, double eps, T* y, Stream stream) {
  const int64_t n = d.N * d.C * d.HW;
  if (n == 0) return;
  forward_kernel<T><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, x, mean, var, w, b, eps, y);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void batch_norm_backward_reduce(const BatchNormDims& d, const T* x, const compute_t<T>* mean,
                                const compute_t<T>* var, double eps, const T* gy, compute_t<T>* sum_dy,
                                compute_t<T>* sum_dy_xhat, Stream stream) {
  if (d.C == 0) return;
  backward_reduce_kernel<T><<<static_cast<unsigned>(d.C), kBlock, 0, stream>>>(d, x, mean, var, eps, gy, sum_dy,
                                                                              sum_dy_xhat);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void batch_norm_backward_input(const BatchNormDims& d, const T* x, const compute_t<T>* mean, const compute_t<T>* var,
                               const compute_t<T>* w, double eps, bool training, const T* gy,
                               const compute_t<T>* sum_dy, const compute_t<T>* sum_dy_xhat, T* gx, Stream stream) {
  const int64_t n = d.N * d.C * d.HW;
  if (n == 0) return;
  backward_input_kernel<T><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, x, mean, var, w, eps, training, gy,
                                                                          sum_dy, sum_dy_xhat, gx);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void channel_affine(const BatchNormDims& d, const T* x, const compute_t<T>* scale, const compute_t<T>* shift, T* y,
                    Stream stream) {
  const int64_t n = d.N * d.C * d.HW;
  if (n == 0) return;
  channel_affine_kernel<T><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, x, scale, shift, y);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                                \
  template void batch_norm_stats<T>(const BatchNormDims&, const T*, compute_t<T>*, compute_t<T>*, Stream); \
  template void batch_norm_forward<T>(const BatchNormDims&, const T*, const compute_t<T>*,                 \
                                      const compute_t<T>*, const compute_t<T>*, const compute_t<T>*, double, \
                                      T*, Stream);                                                         \
  template void batch_norm_backward_reduce<T>(const BatchNormDims&, const T*, const compute_t<T>*,         \
                                              const compute_t<T>*, double, const T*, compute_t<T>*,        \
                                              compute_t<T>*, Stream);                                      \
  template void batch_norm_backward_input<T>(const BatchNormDims&, const T*, const compute_t<T>*,          \
                                             const compute_t<T>*, const compute_t<T>*, double, bool,       \
                                             const T*, const compute_t<T>*, const compute_t<T>*, T*,       \
                                             Stream);                                                      \
  template void channel_affine<T>(const BatchNormDims&, const T*, const compute_t<T>*, const compute_t<T>*, T*, \
                                  Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
