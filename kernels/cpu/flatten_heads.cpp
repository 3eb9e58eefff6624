#include "kernels/flatten_heads.h"

#include "kernels/bf16.h"

// Plain loops over (level, image, anchor, value, location), written from the index map in
// kernels/flatten_heads.h; elements are copied unchanged (bf16 included).

namespace kern::cpu {

namespace {
// Calls f(src_index_in_level, dst_index_in_flat) for every element of every level.
template <typename F>
void for_each_pair(const FlattenHeadsDims& d, int l, F&& f) {
  const int64_t A = d.anchors[l], HW = d.hw[l], K = d.k;
#pragma omp parallel for collapse(2) if (d.batch * A * K * HW > (1 << 16))
  for (int64_t b = 0; b < d.batch; ++b)
    for (int64_t a = 0; a < A; ++a)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t p = 0; p < HW; ++p) {
          const int64_t src = ((b * A + a) * K + k) * HW + p;
          const int64_t dst = (b * d.total + d.offset[l] + p * A + a) * K + k;
          f(src, dst);
        }
}
}  // namespace

template <typename T>
void flatten_heads_forward(const FlattenHeadsDims& d, const T* const* levels, T* flat) {
  for (int l = 0; l < d.levels; ++l) {
    const T* x = levels[l];
    for_each_pair(d, l, [&](int64_t s, int64_t t) { flat[t] = x[s]; });
  }
}

template <typename T>
void flatten_heads_backward(const FlattenHeadsDims& d, const T* flat, T* const* levels) {
  for (int l = 0; l < d.levels; ++l) {
    T* gx = levels[l];
    for_each_pair(d, l, [&](int64_t s, int64_t t) { gx[s] = flat[t]; });
  }
}

#define KERN_INSTANTIATE(T)                                                                   \
  template void flatten_heads_forward<T>(const FlattenHeadsDims&, const T* const*, T*);      \
  template void flatten_heads_backward<T>(const FlattenHeadsDims&, const T*, T* const*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
