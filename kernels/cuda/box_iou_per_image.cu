// CUDA per-image IoU (kernels/box_iou_per_image.h): one thread per output element.
#include "kernels/box_iou_per_image.h"
#include "kernels/box_math.h"
#include "kernels/cuda_check.h"

namespace kern::cuda {
namespace {

template <typename T>
__global__ void box_iou_per_image_kernel(BoxIouPerImageDims d, const T* __restrict__ a,
                                         const int64_t* __restrict__ a_counts, const T* __restrict__ b,
                                         const int64_t* __restrict__ b_counts, T* __restrict__ out) {
  const long long total = static_cast<long long>(d.B) * d.G * d.N;
  for (long long k = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long n = k % d.N, ig = k / d.N;
    const long long g = ig % d.G, i = ig / d.G;
    const long long na = a_counts[i], nb = b_counts[i];  // outside [0, G] / [0, N]: clamped by the tests below
    out[k] = (g < na && n < nb) ? box::iou(a + ig * 4, b + (i * d.N + n) * 4) : T(0);
  }
}

}  // namespace

template <typename T>
void box_iou_per_image(const BoxIouPerImageDims& d, const T* a, const int64_t* a_counts, const T* b,
                       const int64_t* b_counts, T* out, Stream stream) {
  const long long total = static_cast<long long>(d.B) * d.G * d.N;
  if (total == 0) return;
  box_iou_per_image_kernel<T><<<kern_grid_1d(total), 256, 0, stream>>>(d, a, a_counts, b, b_counts, out);
  KERN_LAUNCH_CHECK();
}

template void box_iou_per_image<float>(const BoxIouPerImageDims&, const float*, const int64_t*, const float*,
                                       const int64_t*, float*, Stream);
template void box_iou_per_image<double>(const BoxIouPerImageDims&, const double*, const int64_t*, const double*,
                                        const int64_t*, double*, Stream);

}  // namespace kern::cuda
