// CUDA weighted, summed sigmoid focal loss (kernels/focal_weighted_sum.h). The per-element
// maths is the shared focal_loss_element, so CPU and CUDA differ only in rounding.
//
// Forward: one thread per element, grid-stride over a grid of at most
// kFocalWeightedPartials blocks (a function of the element count only); each thread adds
// double(loss) * double(w[b]) of its elements, the block reduces them (block_sum_double) into
// partials[block], and one block adds the partials in order (sum_partials_rows_kernel).
// Backward: one thread per element recomputes dloss/dx from the logit and writes
// dloss/dx * (w[b] * g[0]). The row m = k / C and image b = m / A use 32-bit division when
// the element count allows (64-bit division is a long emulated sequence on the GPU).
#include <cmath>

#include "kernels/cuda_block_sum.cuh"
#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"
#include "kernels/focal_weighted_sum.h"

namespace kern::cuda {
namespace {

template <typename T>
struct Params {
  T alpha, gamma;
  bool alpha_on;
  int64_t background_label, ignore_index;
};

// Loss and derivative of element c of a row labelled `label` (kernels/focal_loss.h rules;
// an out-of-range label gives NaN for both).
template <typename T>
__device__ __forceinline__ void element(int64_t label, int64_t c, int64_t C, T xv, const Params<T>& p, T* l,
                                        T* dl) {
  *l = *dl = T(0);
  if (label == p.ignore_index) return;
  if (label == p.background_label || (label >= 0 && label < C)) {
    const bool target = label != p.background_label && c == label;
    focal_loss_element<T>(xv, target, p.alpha, p.alpha_on, p.gamma, l, dl);
  } else {
    *l = *dl = T(NAN);
  }
}

template <typename S, typename Index, typename T = compute_of<S>>
__global__ void __launch_bounds__(kSumBlock)
    forward_kernel(Index n, Index A, Index C, Params<T> p, const S* __restrict__ x, const int64_t* __restrict__ labels,
                   const T* __restrict__ w, double* __restrict__ partials) {
  double acc = 0.0;
  for (Index k = blockIdx.x * (Index)blockDim.x + threadIdx.x; k < n; k += (Index)gridDim.x * blockDim.x) {
    const Index m = k / C;
    T l, dl;
    element<T>(labels[m], static_cast<int64_t>(k - m * C), static_cast<int64_t>(C), Storage<S>::load(x, k), p, &l,
               &dl);
    acc += static_cast<double>(l) * static_cast<double>(w[m / A]);
  }
  const double total = block_sum_double(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

template <typename S, typename Index, typename T = compute_of<S>>
__global__ void backward_kernel(Index n, Index A, Index C, Params<T> p, const S* __restrict__ x,
                                const int64_t* __restrict__ labels, const T* __restrict__ w, const T* __restrict__ g,
                                S* __restrict__ gx) {
  const T g0 = g[0];
  for (Index k = blockIdx.x * (Index)blockDim.x + threadIdx.x; k < n; k += (Index)gridDim.x * blockDim.x) {
    const Index m = k / C;
    T l, dl;
    element<T>(labels[m], static_cast<int64_t>(k - m * C), static_cast<int64_t>(C), Storage<S>::load(x, k), p, &l,
               &dl);
    Storage<S>::store(gx, k, dl * (w[m / A] * g0));
  }
}

template <typename T>
Params<T> params_of(const FocalLossParams& fp) {
  Params<T> p;
  p.alpha = static_cast<T>(fp.alpha);
  p.gamma = static_cast<T>(fp.gamma);
  p.alpha_on = fp.alpha >= 0.0;
  p.background_label = fp.background_label;
  p.ignore_index = fp.ignore_index;
  return p;
}

// k + grid stride stays below 2^32 for the 32-bit index.
bool fits_32(int64_t n) { return n < (int64_t{1} << 32) - kSumBlock * int64_t{65535} * 8; }

}  // namespace

template <typename S>
void focal_weighted_sum_forward(const FocalWeightedDims& d, const FocalLossParams& fp, const S* x,
                                const int64_t* labels, const compute_t<S>* weights, compute_t<S>* out,
                                double* partials, Stream stream) {
  using T = compute_t<S>;
  const int64_t n = d.B * d.A * d.C;
  if (n == 0) {
    KERN_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(T), stream));
    return;
  }
  unsigned grid = kern_grid_1d(n, kSumBlock);
  if (grid > kFocalWeightedPartials) grid = static_cast<unsigned>(kFocalWeightedPartials);
  const Params<T> p = params_of<T>(fp);
  if (fits_32(n))
    forward_kernel<S, uint32_t><<<grid, kSumBlock, 0, stream>>>(static_cast<uint32_t>(n), static_cast<uint32_t>(d.A),
                                                                static_cast<uint32_t>(d.C), p, x, labels, weights,
                                                                partials);
  else
    forward_kernel<S, int64_t><<<grid, kSumBlock, 0, stream>>>(n, d.A, d.C, p, x, labels, weights, partials);
  KERN_LAUNCH_CHECK();
  sum_partials_rows_kernel<T><<<1, kSumBlock, 0, stream>>>(static_cast<int64_t>(grid), partials, out, 1.0);
  KERN_LAUNCH_CHECK();
}

template <typename S>
void focal_weighted_sum_backward(const FocalWeightedDims& d, const FocalLossParams& fp, const S* x,
                                 const int64_t* labels, const compute_t<S>* weights, const compute_t<S>* g, S* gx,
                                 Stream stream) {
  using T = compute_t<S>;
  const int64_t n = d.B * d.A * d.C;
  if (n == 0) return;
  const Params<T> p = params_of<T>(fp);
  const unsigned grid = kern_grid_1d(n, kSumBlock);
  if (fits_32(n))
    backward_kernel<S, uint32_t><<<grid, kSumBlock, 0, stream>>>(static_cast<uint32_t>(n), static_cast<uint32_t>(d.A),
                                                                 static_cast<uint32_t>(d.C), p, x, labels, weights, g,
                                                                 gx);
  else
    backward_kernel<S, int64_t><<<grid, kSumBlock, 0, stream>>>(n, d.A, d.C, p, x, labels, weights, g, gx);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(S)                                                                                      \
  template void focal_weighted_sum_forward<S>(const FocalWeightedDims&, const FocalLossParams&, const S*,         \
                                              const int64_t*, const compute_t<S>*, compute_t<S>*, double*,        \
                                              Stream);                                                            \
  template void focal_weighted_sum_backward<S>(const FocalWeightedDims&, const FocalLossParams&, const S*,        \
                                               const int64_t*, const compute_t<S>*, const compute_t<S>*, S*,      \
                                               Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
