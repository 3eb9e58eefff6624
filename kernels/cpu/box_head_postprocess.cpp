// CPU reference of the box-head post-processing (maths, slot layout and tie rules in
// kernels/box_head_postprocess.h).
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/box_head_postprocess.h"

namespace kern::cpu {

template <typename T>
void box_head_postprocess(const BoxHeadDims& d, const T* logits, const T* deltas, const T* proposals,
                          const int64_t* image_start, const T* image_hw, T* out_boxes, T* out_scores, int64_t* out_labels,
                          int64_t* out_counts) {
  const NmsDims nd = box_head_nms_dims(d);
  const int64_t K = nd.K, per_roi = box_head_slots_per_roi(d.C, d.score_threshold);
  std::vector<T> cand_boxes(static_cast<size_t>(d.B * K * 4), T(0)), cand_scores(static_cast<size_t>(d.B * K), T(0));
  std::vector<int64_t> cand_labels(static_cast<size_t>(d.B * K), -1);
  std::vector<T> p(static_cast<size_t>(d.C));
  for (int64_t b = 0; b < d.B; ++b) {
    for (int64_t r = image_start[b]; r < image_start[b + 1]; ++r) {
      const T* x = logits + r * d.C;
      T m = x[0];
      for (int64_t c = 1; c < d.C; ++c) m = std::fmax(m, x[c]);
      T s = T(0);
      for (int64_t c = 0; c < d.C; ++c) s += std::exp(x[c] - m);
      int64_t j = 0;
      for (int64_t c = 1; c < d.C && j < per_roi; ++c) {
        const T pc = std::exp(x[c] - m) / s;
        T box[4];
        if (!box_head_candidate<T>(deltas + (r * d.C + c) * 4, proposals + r * 4, pc, d, image_hw[2 * b],
                                   image_hw[2 * b + 1], box)) continue;
        const size_t slot = static_cast<size_t>(b * K + (r - image_start[b]) * per_roi + j);
        std::memcpy(&cand_boxes[slot * 4], box, sizeof box);
        cand_scores[slot] = pc;
        cand_labels[slot] = c;
        ++j;
      }
    }
  }
  batched_nms<T>(nd, cand_boxes.data(), cand_scores.data(), cand_labels.data(), static_cast<T>(d.nms_threshold),
                 out_boxes, out_scores, out_labels, out_counts);
}

template void box_head_postprocess<float>(const BoxHeadDims&, const float*, const float*, const float*,
                                          const int64_t*, const float*, float*, float*, int64_t*, int64_t*);
template void box_head_postprocess<double>(const BoxHeadDims&, const double*, const double*, const double*,
                                           const int64_t*, const double*, double*, double*, int64_t*, int64_t*);

}  // namespace kern::cpu
