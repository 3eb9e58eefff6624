#include "kernels/box_coder.h"

#include "kernels/box_math.h"

namespace kern::cpu {

template <typename T>
void box_encode(const BoxCoderDims& d, const T* boxes, const T* anchors, T* deltas) {
  const T wx = static_cast<T>(d.wx), wy = static_cast<T>(d.wy), ww = static_cast<T>(d.ww),
          wh = static_cast<T>(d.wh);
#pragma omp parallel for if (d.n > (1 << 15))
  for (int64_t i = 0; i < d.n; ++i) box::encode(boxes + i * 4, anchors + (i % d.A) * 4, wx, wy, ww, wh, deltas + i * 4);
}

template <typename T>
void box_decode(const BoxCoderDims& d, const T* deltas, const T* anchors, T* boxes) {
  const T wx = static_cast<T>(d.wx), wy = static_cast<T>(d.wy), ww = static_cast<T>(d.ww),
          wh = static_cast<T>(d.wh), clamp = static_cast<T>(d.clamp);
#pragma omp parallel for if (d.n > (1 << 15))
  for (int64_t i = 0; i < d.n; ++i)
    box::decode(deltas + i * 4, anchors + (i % d.A) * 4, wx, wy, ww, wh, clamp, boxes + i * 4);
}

#define KERN_INSTANTIATE(T)                                                                 \
  template void box_encode<T>(const BoxCoderDims&, const T*, const T*, T*);                 \
  template void box_decode<T>(const BoxCoderDims&, const T*, const T*, T*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
