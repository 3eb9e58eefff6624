#include "kernels/anchors.h"

namespace kern::cpu {

template <typename T>
void multibox_prior(const PriorDims& d, const double* table, T* out) {
  const double* boxes = table + static_cast<int64_t>(d.num_levels) * kPriorLevelCols;
  for (int l = 0; l < d.num_levels; ++l) {
    const double* level = table + static_cast<int64_t>(l) * kPriorLevelCols;
    const int64_t first_anchor = static_cast<int64_t>(level[0]);
    const int64_t fmap_h = static_cast<int64_t>(level[1]), fmap_w = static_cast<int64_t>(level[2]);
    const double step_h = level[3], step_w = level[4], offset = level[5];
    const int64_t per_loc = static_cast<int64_t>(level[6]);
    const double* level_boxes = boxes + static_cast<int64_t>(level[7]) * 4;
    for (int64_t i = 0; i < fmap_h; ++i) {
      const double cy = (static_cast<double>(i) + offset) * step_h;
      for (int64_t j = 0; j < fmap_w; ++j) {
        const double cx = (static_cast<double>(j) + offset) * step_w;
        T* o = out + (first_anchor + (i * fmap_w + j) * per_loc) * 4;
        for (int64_t k = 0; k < per_loc; ++k) prior::place(d, cx, cy, level_boxes + k * 4, o + k * 4);
      }
    }
  }
}

template void multibox_prior<float>(const PriorDims&, const double*, float*);
template void multibox_prior<double>(const PriorDims&, const double*, double*);

}  // namespace kern::cpu
