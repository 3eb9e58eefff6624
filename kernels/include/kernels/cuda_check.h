// Error checks for the CUDA kernel files (include only from .cu files).
// KERN_LAUNCH_CHECK() after every <<<>>>: counts the launch (kernels/counters.h), reports
// launch errors at once, and with KERN_CUDA_SYNC_DEBUG (cmake -DENGINE_CUDA_SYNC_DEBUG=ON)
// also synchronises (a counted host sync) so that a fault is reported by the launch that
// caused it. KERN_HOST_SYNC(expr) runs a call that makes the host wait for the device
// (cudaStreamSynchronize, cudaEventSynchronize, ...) and counts it.
#pragma once
#include <cuda_runtime.h>

#include "kernels/counters.h"

#include <stdexcept>
#include <string>

namespace kern::cuda::detail {
inline void throw_cuda(cudaError_t err, const char* what, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA error in ") + what + " at " + file + ":" + std::to_string(line) +
                           ": " + cudaGetErrorString(err));
}
}  // namespace kern::cuda::detail

#define KERN_CUDA_CHECK(expr)                                                                \
  do {                                                                                       \
    cudaError_t kern_err_ = (expr);                                                          \
    if (kern_err_ != cudaSuccess) ::kern::cuda::detail::throw_cuda(kern_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define KERN_HOST_SYNC(expr)               \
  do {                                     \
    ::kern::counters::add_host_sync();     \
    KERN_CUDA_CHECK(expr);                 \
  } while (0)

#ifdef KERN_CUDA_SYNC_DEBUG
#define KERN_LAUNCH_CHECK()                  \
  do {                                       \
    ::kern::counters::add_launches();        \
    KERN_CUDA_CHECK(cudaGetLastError());     \
    KERN_HOST_SYNC(cudaDeviceSynchronize()); \
  } while (0)
#else
#define KERN_LAUNCH_CHECK()              \
  do {                                   \
    ::kern::counters::add_launches();    \
    KERN_CUDA_CHECK(cudaGetLastError()); \
  } while (0)
#endif

// Grid size for a 1-D elementwise launch over n items with `block` threads (grid-stride
// loops cover the rest).
inline unsigned kern_grid_1d(long long n, int block = 256) {
  long long g = (n + block - 1) / block;
  if (g < 1) g = 1;
  if (g > 65535LL * 8) g = 65535LL * 8;
  return static_cast<unsigned>(g);
}
