// CUDA sigmoid focal loss (maths in kernels/focal_loss.h; the per-element formula is the
// shared focal_loss_element, so CPU and CUDA differ only in rounding).
//
// Forward: one thread per element, grid-stride. Element k belongs to row k / C; the C
// neighbouring threads of a row read the same label (one L1 broadcast). When the element
// count fits in 32 bits the row index is computed with 32-bit division (int64 division is
// a long emulated sequence on the GPU and would cost more than the element's maths).
// With loss_sum, the grid has at most kFocalLossPartials blocks: each thread accumulates
// its elements, the block reduces with warp shuffles and shared memory into
// partials[block], and a second, one-block kernel adds the partials in a fixed order, so
// the sum is the same on every run. Invalid labels give NaN loss and derivative (the
// front-end cannot check them without copying the labels to the host).
//
// Backward: one thread per element, gx = dloss * g[k * g_stride].
//
// S is the storage type of the logits and of gx (kernels/cuda_storage.cuh); the maths and
// every other array use T = compute_of<S> (float for bf16 logits).
#include <cmath>

#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"
#include "kernels/focal_loss.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarp = 32;

template <typename T>
struct ElementParams {
  T alpha, gamma;
  bool alpha_on;
  int64_t background_label, ignore_index;
};

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int off = kWarp / 2; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Sum of v over the block (every thread must call it); the result is valid in thread 0.
template <typename T>
__device__ T block_sum(T v) {
  __shared__ T warp_sums[kBlock / kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = warp_sum(v);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  T total = T(0);
  if (warp == 0) {
    total = lane < kBlock / kWarp ? warp_sums[lane] : T(0);
    total = warp_sum(total);
  }
  return total;
}

// Index is uint32_t when rows * C < 2^32, else int64_t.
template <typename S, typename Index, typename T = compute_of<S>>
__global__ void __launch_bounds__(kBlock)
    focal_forward_kernel(Index n, Index C, ElementParams<T> p, const S* __restrict__ x,
                         const int64_t* __restrict__ labels, T* __restrict__ loss, T* __restrict__ partials,
                         T* __restrict__ dloss) {
  T acc = T(0);
  for (Index k = blockIdx.x * (Index)blockDim.x + threadIdx.x; k < n; k += (Index)gridDim.x * blockDim.x) {
    const Index m = k / C;
    const int64_t c = static_cast<int64_t>(k - m * C);
    const int64_t label = labels[m];
    T l = T(0), dl = T(0);
    if (label == p.ignore_index) {
      // ignored row: 0 and no gradient
    } else if (label == p.background_label || (label >= 0 && label < static_cast<int64_t>(C))) {
      const bool target = label != p.background_label && c == label;
      focal_loss_element<T>(Storage<S>::load(x, k), target, p.alpha, p.alpha_on, p.gamma, &l, &dl);
    } else {
      l = dl = T(NAN);  // invalid label
    }
    if (loss) loss[k] = l;
    if (dloss) dloss[k] = dl;
    acc += l;
  }
  if (partials) {  // the same for the whole block
    const T total = block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
  }
}

// One block: thread t adds partials t, t + kBlock, ... in order, then a fixed-shape tree.
template <typename T>
__global__ void __launch_bounds__(kBlock) sum_partials_kernel(int n, const T* __restrict__ partials, T* __restrict__ out) {
  T acc = T(0);
  for (int i = threadIdx.x; i < n; i += kBlock) acc += partials[i];
  const T total = block_sum(acc);
  if (threadIdx.x == 0) *out = total;
}

template <typename S, typename T = compute_of<S>>
__global__ void focal_backward_kernel(int64_t n, const T* __restrict__ dloss, const T* __restrict__ g, int64_t g_stride,
                                      S* __restrict__ gx) {
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x)
    Storage<S>::store(gx, k, dloss[k] * g[k * g_stride]);
}

template <typename S, typename Index, typename T = compute_of<S>>
void launch_forward(const FocalLossDims& d, const ElementParams<T>& ep, const S* x, const int64_t* labels, T* loss,
                    T* loss_sum, T* partials, T* dloss, Stream stream) {
  const int64_t n = d.rows * d.C;
  unsigned grid = kern_grid_1d(n, kBlock);
  if (loss_sum && grid > kFocalLossPartials) grid = static_cast<unsigned>(kFocalLossPartials);
  focal_forward_kernel<S, Index><<<grid, kBlock, 0, stream>>>(static_cast<Index>(n), static_cast<Index>(d.C), ep, x,
                                                              labels, loss, loss_sum ? partials : nullptr, dloss);
  KERN_LAUNCH_CHECK();
  if (loss_sum) {
    sum_partials_kernel<T><<<1, kBlock, 0, stream>>>(static_cast<int>(grid), partials, loss_sum);
    KERN_LAUNCH_CHECK();
  }
}

}  // namespace

template <typename S>
void sigmoid_focal_loss_forward(const FocalLossDims& d, const FocalLossParams& p, const S* x, const int64_t* labels,
                                compute_t<S>* loss, compute_t<S>* loss_sum, compute_t<S>* partials,
                                compute_t<S>* dloss, Stream stream) {
  using T = compute_t<S>;
  const int64_t n = d.rows * d.C;
  if (n == 0) {
    if (loss_sum) KERN_CUDA_CHECK(cudaMemsetAsync(loss_sum, 0, sizeof(T), stream));
    return;
  }
  ElementParams<T> ep;
  ep.alpha = static_cast<T>(p.alpha);
  ep.gamma = static_cast<T>(p.gamma);
  ep.alpha_on = p.alpha >= 0.0;
  ep.background_label = p.background_label;
  ep.ignore_index = p.ignore_index;
  if (n < (int64_t{1} << 32) - kBlock * int64_t{65535} * 8)  // k + grid stride stays below 2^32
    launch_forward<S, uint32_t>(d, ep, x, labels, loss, loss_sum, partials, dloss, stream);
  else
    launch_forward<S, int64_t>(d, ep, x, labels, loss, loss_sum, partials, dloss, stream);
}

template <typename S>
void sigmoid_focal_loss_backward(int64_t n, const compute_t<S>* dloss, const compute_t<S>* g, int64_t g_stride, S* gx,
                                 Stream stream) {
  if (n == 0) return;
  focal_backward_kernel<S><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(n, dloss, g, g_stride, gx);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                                        \
  template void sigmoid_focal_loss_forward<T>(const FocalLossDims&, const FocalLossParams&, const T*,               \
                                              const int64_t*, compute_t<T>*, compute_t<T>*, compute_t<T>*,          \
                                              compute_t<T>*, Stream);                                               \
  template void sigmoid_focal_loss_backward<T>(int64_t, const compute_t<T>*, const compute_t<T>*, int64_t, T*,      \
                                               Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
