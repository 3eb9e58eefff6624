// CPU reference of the target assignment (maths in kernels/include/kernels/assign_targets.h).
#include "kernels/assign_targets.h"

#include "kernels/matcher.h"

namespace kern::cpu {

template <typename T>
void assign_targets(const AssignTargetsDims& d, const int64_t* matched, const T* gt_boxes, const int64_t* gt_labels,
                    const uint8_t* gt_ignore, const T* anchors, int64_t* labels, T* boxes, T* positive,
                    int64_t* num_pos) {
  for (int64_t b = 0; b < d.B; ++b) {
    int64_t count = 0;
    for (int64_t a = 0; a < d.A; ++a) {
      const int64_t i = b * d.A + a, m = matched[i];
      const T* src = anchors + a * 4;
      const bool to_gt = m >= 0 && m < d.G;
      if (to_gt && gt_ignore != nullptr && gt_ignore[b * d.G + m] != 0) {
        labels[i] = d.ignore_label;  // matched to an ignored GT: neither positive nor negative
        positive[i] = T(0);
      } else if (to_gt) {
        labels[i] = gt_labels[b * d.G + m];
        positive[i] = T(1);
        src = gt_boxes + (b * d.G + m) * 4;
        ++count;
      } else {
        labels[i] = m == kMatchIgnore ? d.ignore_label : d.background_label;
        positive[i] = T(0);
      }
      for (int j = 0; j < 4; ++j) boxes[i * 4 + j] = src[j];
    }
    num_pos[b] = count;
  }
}

#define KERN_INSTANTIATE(T)                                                                              \
  template void assign_targets<T>(const AssignTargetsDims&, const int64_t*, const T*, const int64_t*,               \
                                  const uint8_t*, const T*, int64_t*, T*, T*, int64_t*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
