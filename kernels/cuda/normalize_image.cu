// CUDA normalize_image (kernels/normalize_image.h). Memory-bound: each thread reads four
// uint8 pixels of one plane at once (one 32-bit load when the plane is 4-aligned; byte k of
// the little-endian word is pixel 4g + k) and
// writes four outputs; the channel is fixed per plane, so mean / scale come from registers.
// The simple one-pixel-per-thread kernel stays beside it for odd plane sizes and as the
// reference the bench row checks the vector kernel against.
#include "kernels/cuda_check.h"
#include "kernels/cuda_storage.cuh"
#include "kernels/normalize_image.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;

template <typename T>
__global__ void normalize_image_kernel(NormalizeImageDims d, const uint8_t* __restrict__ x, T* __restrict__ y) {
  const int64_t n = d.batch * d.channels * d.plane;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int c = static_cast<int>((i / d.plane) % d.channels);
    Storage<T>::store(y, i, (static_cast<float>(x[i]) - d.mean[c]) * d.scale[c]);
  }
}

// plane % 4 == 0: groups of four pixels never straddle two planes (two channels).
template <typename T>
__global__ void normalize_image_vec4_kernel(NormalizeImageDims d, const uint32_t* __restrict__ x4,
                                            T* __restrict__ y) {
  const int64_t groups = d.batch * d.channels * d.plane / 4;
  for (int64_t g = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; g < groups; g += (int64_t)gridDim.x * blockDim.x) {
    const int c = static_cast<int>((g * 4 / d.plane) % d.channels);
    const float mean = d.mean[c], scale = d.scale[c];
    const uint32_t v = x4[g];
    for (int k = 0; k < 4; ++k)
      Storage<T>::store(y, g * 4 + k, (static_cast<float>((v >> (8 * k)) & 0xFFu) - mean) * scale);
  }
}

}  // namespace

template <typename T>
void normalize_image(const NormalizeImageDims& d, const uint8_t* x, T* y, Stream stream) {
  const int64_t n = d.batch * d.channels * d.plane;
  if (n == 0) return;
  if (d.plane % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 4 == 0) {
    normalize_image_vec4_kernel<T><<<kern_grid_1d(n / 4, kBlock), kBlock, 0, stream>>>(
        d, reinterpret_cast<const uint32_t*>(x), y);
  } else {
    normalize_image_kernel<T><<<kern_grid_1d(n, kBlock), kBlock, 0, stream>>>(d, x, y);
  }
  KERN_LAUNCH_CHECK();
}

template void normalize_image<float>(const NormalizeImageDims&, const uint8_t*, float*, Stream);
template void normalize_image<bf16>(const NormalizeImageDims&, const uint8_t*, bf16*, Stream);

}  // namespace kern::cuda
