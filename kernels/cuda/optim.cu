// Fused CUDA optimizer updates (maths in kernels/include/kernels/optim.h).
//
// One launch updates every tensor of the list: the grid has one block per chunk of
// kOptimChunk elements (chunks never straddle two tensors). Thread 0 of a block finds its
// tensor by binary search over the descriptors' first_chunk, then the block's threads
// stride over the chunk's elements.
#include <climits>
#include <stdexcept>

#include "kernels/cuda_check.h"
#include "kernels/optim.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;

// Index of the last descriptor whose first_chunk <= chunk.
__device__ int64_t find_tensor(const OptimTensor* tensors, int64_t count, int64_t chunk) {
  int64_t lo = 0, hi = count - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (tensors[mid].first_chunk <= chunk) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Loads this block's descriptor into shared memory; returns the [begin, end) element range.
__device__ void block_tensor(const OptimTensor* tensors, int64_t count, OptimTensor& d, int64_t& begin,
                             int64_t& end) {
  __shared__ int64_t s_index;
  if (threadIdx.x == 0) s_index = find_tensor(tensors, count, blockIdx.x);
  __syncthreads();
  d = tensors[s_index];
  begin = (static_cast<int64_t>(blockIdx.x) - d.first_chunk) * kOptimChunk;
  end = begin + kOptimChunk < d.numel ? begin + kOptimChunk : d.numel;
}

template <typename T>
__global__ void sgd_kernel(SgdHyper h, const OptimScalars* scalars, const OptimTensor* tensors, int64_t count) {
  const int64_t step = scalars->step;  // read at run time (a replayed graph sees the new value)
  OptimTensor d;
  int64_t begin, end;
  block_tensor(tensors, count, d, begin, end);
  T* p = static_cast<T*>(d.param);
  const T* grad = static_cast<const T*>(d.grad);
  T* buf = static_cast<T*>(d.buf1);
  const T lr = static_cast<T>(scalars->lr);
  const T momentum = static_cast<T>(h.momentum);
  const T keep = static_cast<T>(1.0 - h.dampening);
  const T wd = static_cast<T>(d.weight_decay);
  const bool first = step - d.step_lag == 1;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    T g = grad[i];
    const T x = p[i];
    if (d.weight_decay != 0) g = g + wd * x;
    if (h.momentum != 0) {
      const T b = first ? g : momentum * buf[i] + keep * g;
      buf[i] = b;
      g = h.nesterov ? g + momentum * b : b;
    }
    p[i] = x - lr * g;
  }
}

template <typename T>
__global__ void adam_kernel(AdamHyper h, const OptimScalars* scalars, const OptimTensor* tensors, int64_t count) {
  const int64_t step = scalars->step;  // read at run time (a replayed graph sees the new values)
  const double lr = scalars->lr;
  OptimTensor d;
  int64_t begin, end;
  block_tensor(tensors, count, d, begin, end);
  T* p = static_cast<T*>(d.param);
  const T* grad = static_cast<const T*>(d.grad);
  T* m = static_cast<T*>(d.buf1);
  T* v = static_cast<T*>(d.buf2);
  // Per-tensor scalars in double, as on the CPU.
  const double t = static_cast<double>(step - d.step_lag);
  const double bc1 = 1.0 - pow(h.beta1, t);
  const double bc2 = 1.0 - pow(h.beta2, t);
  const T step_size = static_cast<T>(lr / bc1);
  const T sqrt_bc2 = static_cast<T>(sqrt(bc2));
  const T beta1 = static_cast<T>(h.beta1), beta2 = static_cast<T>(h.beta2);
  const T one_minus_beta1 = static_cast<T>(1.0 - h.beta1), one_minus_beta2 = static_cast<T>(1.0 - h.beta2);
  const T eps = static_cast<T>(h.eps);
  const T wd = static_cast<T>(d.weight_decay);
  const T decay_factor = static_cast<T>(1.0 - lr * d.weight_decay);
  const bool coupled_decay = !h.decoupled && d.weight_decay != 0;
  const bool decoupled_decay = h.decoupled && d.weight_decay != 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    T g = grad[i];
    T x = p[i];
    if (decoupled_decay) x = x * decay_factor;
    if (coupled_decay) g = g + wd * x;
    const T mi = beta1 * m[i] + one_minus_beta1 * g;
    const T vi = beta2 * v[i] + one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const T denom = sqrt(vi) / sqrt_bc2 + eps;
    p[i] = x - step_size * (mi / denom);
  }
}

void check_grid(int64_t num_chunks) {
  if (num_chunks > INT_MAX) throw std::runtime_error("optim: too many elements for one fused launch");
}

}  // namespace

template <typename T>
void sgd_step(const SgdHyper& h, const OptimScalars* scalars, const OptimTensor* tensors, int64_t count,
              int64_t num_chunks, Stream stream) {
  if (count == 0 || num_chunks == 0) return;
  check_grid(num_chunks);
  sgd_kernel<T><<<static_cast<unsigned>(num_chunks), kBlock, 0, stream>>>(h, scalars, tensors, count);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void adam_step(const AdamHyper& h, const OptimScalars* scalars, const OptimTensor* tensors, int64_t count,
               int64_t num_chunks, Stream stream) {
  if (count == 0 || num_chunks == 0) return;
  check_grid(num_chunks);
  adam_kernel<T><<<static_cast<unsigned>(num_chunks), kBlock, 0, stream>>>(h, scalars, tensors, count);
  KERN_LAUNCH_CHECK();
}

#define KERN_INSTANTIATE(T)                                                                             \
  template void sgd_step<T>(const SgdHyper&, const OptimScalars*, const OptimTensor*, int64_t, int64_t, Stream); \
  template void adam_step<T>(const AdamHyper&, const OptimScalars*, const OptimTensor*, int64_t, int64_t, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
