// CPU reference of the per-image IoU (kernels/box_iou_per_image.h).
#include "kernels/box_iou_per_image.h"

#include "kernels/box_math.h"

namespace kern::cpu {

template <typename T>
void box_iou_per_image(const BoxIouPerImageDims& d, const T* a, const int64_t* a_counts, const T* b,
                       const int64_t* b_counts, T* out) {
  for (int64_t i = 0; i < d.B; ++i) {
    const int64_t na = a_counts[i] < 0 ? 0 : (a_counts[i] > d.G ? d.G : a_counts[i]);
    const int64_t nb = b_counts[i] < 0 ? 0 : (b_counts[i] > d.N ? d.N : b_counts[i]);
    for (int64_t g = 0; g < d.G; ++g) {
      T* row = out + (i * d.G + g) * d.N;
      for (int64_t n = 0; n < d.N; ++n)
        row[n] = (g < na && n < nb) ? box::iou(a + (i * d.G + g) * 4, b + (i * d.N + n) * 4) : T(0);
    }
  }
}

template void box_iou_per_image<float>(const BoxIouPerImageDims&, const float*, const int64_t*, const float*,
                                       const int64_t*, float*);
template void box_iou_per_image<double>(const BoxIouPerImageDims&, const double*, const int64_t*, const double*,
                                        const int64_t*, double*);

}  // namespace kern::cpu
