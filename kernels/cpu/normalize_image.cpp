// CPU reference of normalize_image (kernels/normalize_image.h): one plane at a time.
#include "kernels/normalize_image.h"

#include "kernels/bf16.h"

namespace kern::cpu {

template <typename T>
void normalize_image(const NormalizeImageDims& d, const uint8_t* x, T* y) {
  const int64_t planes = d.batch * d.channels;
#pragma omp parallel for if (planes * d.plane > (1 << 16))
  for (int64_t p = 0; p < planes; ++p) {
    const int c = static_cast<int>(p % d.channels);
    const float mean = d.mean[c], scale = d.scale[c];
    const uint8_t* xp = x + p * d.plane;
    T* yp = y + p * d.plane;
    for (int64_t i = 0; i < d.plane; ++i) yp[i] = from_compute<T>((static_cast<float>(xp[i]) - mean) * scale);
  }
}

template void normalize_image<float>(const NormalizeImageDims&, const uint8_t*, float*);
template void normalize_image<bf16>(const NormalizeImageDims&, const uint8_t*, bf16*);

}  // namespace kern::cpu
