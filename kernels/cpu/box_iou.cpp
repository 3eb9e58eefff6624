#include "kernels/box_iou.h"

#include <algorithm>

#include "kernels/box_math.h"

namespace kern::cpu {

template <typename T>
void box_iou(int64_t N, int64_t M, const T* a, const T* b, T* out) {
#pragma omp parallel for if (N * M > (1 << 16))
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) out[n * M + m] = box::iou(a + n * 4, b + m * 4);
}

template <typename T>
void box_iou_batched(const BoxIouBatchedDims& d, const T* gt, const int64_t* counts, const T* anchors, T* out) {
#pragma omp parallel for collapse(2) if (d.B * d.G * d.A > (1 << 16))
  for (int64_t b = 0; b < d.B; ++b) {
    for (int64_t g = 0; g < d.G; ++g) {
      const int64_t count = std::min(std::max(counts[b], int64_t(0)), d.G);
      const T* box = gt + (b * d.G + g) * 4;
      T* row = out + (b * d.G + g) * d.A;
      if (g >= count) {
        std::fill(row, row + d.A, T(0));  // padding row
        continue;
      }
      for (int64_t a = 0; a < d.A; ++a) row[a] = box::iou(box, anchors + a * 4);
    }
  }
}

#define KERN_INSTANTIATE(T)                                                  \
  template void box_iou<T>(int64_t, int64_t, const T*, const T*, T*);        \
  template void box_iou_batched<T>(const BoxIouBatchedDims&, const T*, const int64_t*, const T*, T*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
