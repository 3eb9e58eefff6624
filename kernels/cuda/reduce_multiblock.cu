// Multi-block deterministic sums (kernels/reduce_multiblock.h): pass 1 one partial per
// (output, slice) block, pass 2 one block per output adds its partials in order.
#include <stdexcept>
#include <string>

#include "kernels/cuda_block_sum.cuh"
#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"
#include "kernels/reduce_multiblock.h"

namespace kern::cuda {
namespace {

// Block bid = o * S + s adds the elements k in [s * chunk, min((s + 1) * chunk, A * B)) of
// output o, where k = a * B + b is element x[(a * O + o) * B + b].
// Rows of at least a block's width (and A == 1) walk row by row with no division, the
// threads striding along b (coalesced); short rows (B < kSumBlock, e.g. a 5x5 bias
// gradient) stride over k and divide.
template <typename T>
__global__ void __launch_bounds__(kSumBlock)
    sum_slices_kernel(int64_t A, int64_t O, int64_t B, int64_t S, int64_t chunk, const T* __restrict__ x,
                      T* __restrict__ y, double* __restrict__ partials, double scale) {
  const int64_t o = blockIdx.x / S, s = blockIdx.x % S;
  const int64_t n = A * B;
  const int64_t k0 = s * chunk, k1 = k0 + chunk < n ? k0 + chunk : n;
  double acc = 0.0;
  if (B >= kSumBlock || A == 1) {
    for (int64_t a = k0 / B; a * B < k1; ++a) {
      const T* row = x + (a * O + o) * B;
      const int64_t b0 = k0 > a * B ? k0 - a * B : 0;
      const int64_t b1 = k1 - a * B < B ? k1 - a * B : B;
#pragma unroll 4
      for (int64_t b = b0 + threadIdx.x; b < b1; b += kSumBlock) acc += Storage<T>::load(row, b);
    }
  } else {
    for (int64_t k = k0 + threadIdx.x; k < k1; k += kSumBlock) {
      const int64_t a = k / B, b = k - a * B;
      acc += Storage<T>::load(x, (a * O + o) * B + b);
    }
  }
  const double total = block_sum_double(acc);
  if (threadIdx.x == 0) {
    if (partials) partials[blockIdx.x] = total;
    else store_from_double(y, o, total * scale);
  }
}

template <typename T>
__global__ void fill_zero_kernel(int64_t n, T* __restrict__ y) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = T{};  // zero bits for bf16 too
}

}  // namespace

template <typename T>
void sum_outer_inner(int64_t A, int64_t O, int64_t B, const T* x, T* y, double scale, double* partials,
                     Stream stream) {
  if (O <= 0) return;
  if (A < 0 || B < 0)
    throw std::runtime_error("sum_outer_inner: negative size A=" + std::to_string(A) + " B=" + std::to_string(B));
  if (A * B == 0) {
    fill_zero_kernel<T><<<kern_grid_1d(O), kSumBlock, 0, stream>>>(O, y);
    KERN_LAUNCH_CHECK();
    return;
  }
  const int64_t S = sum_outer_inner_slices(A, O, B);
  if (O * S > 2147483647LL)
    throw std::runtime_error("sum_outer_inner: " + std::to_string(O) + " outputs x " + std::to_string(S) +
                             " slices do not fit one grid");
  if (S > 1 && !partials)
    throw std::runtime_error("sum_outer_inner: needs a workspace of " + std::to_string(O * S) + " doubles");
  const int64_t chunk = (A * B + S - 1) / S;
  sum_slices_kernel<T><<<static_cast<unsigned>(O * S), kSumBlock, 0, stream>>>(A, O, B, S, chunk, x, y,
                                                                               S > 1 ? partials : nullptr, scale);
  KERN_LAUNCH_CHECK();
  if (S > 1) {
    sum_partials_rows_kernel<T><<<static_cast<unsigned>(O), kSumBlock, 0, stream>>>(S, partials, y, scale);
    KERN_LAUNCH_CHECK();
  }
}

#define KERN_INSTANTIATE(T) \
  template void sum_outer_inner<T>(int64_t, int64_t, int64_t, const T*, T*, double, double*, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
