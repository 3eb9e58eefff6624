// CPU reference for class-wise NMS (maths and tie rule in kernels/nms.h).
#include "kernels/nms.h"

#include <algorithm>
#include <vector>

#include "kernels/box_math.h"

namespace kern::cpu {
namespace {

// One image: boxes [K, 4], scores [K], labels [K] -> out_* [max_out], returns the count.
template <typename T>
int64_t nms_one_image(int64_t K, int64_t max_out, const T* boxes, const T* scores, const int64_t* labels,
                      T iou_threshold, T* out_boxes, T* out_scores, int64_t* out_labels) {
  // The real candidates in the order (label asc, score desc, slot asc): each label's
  // candidates are then one run, best first.
  std::vector<int64_t> order;
  for (int64_t k = 0; k < K; ++k)
    if (labels[k] >= 0) order.push_back(k);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (labels[a] != labels[b]) return labels[a] < labels[b];
    if (scores[a] != scores[b]) return scores[a] > scores[b];
    return a < b;
  });

  // Greedy suppression within each label: a candidate survives unless it overlaps an
  // already kept candidate of its label by IoU > threshold.
  std::vector<int64_t> kept;
  size_t run_start = 0;  // first kept entry of the current label in `kept`
  for (size_t p = 0; p < order.size(); ++p) {
    const int64_t k = order[p];
    if (p > 0 && labels[k] != labels[order[p - 1]]) run_start = kept.size();
    bool suppressed = false;
    for (size_t q = run_start; q < kept.size() && !suppressed; ++q)
      suppressed = box::iou(boxes + 4 * k, boxes + 4 * kept[q]) > iou_threshold;
    if (!suppressed) kept.push_back(k);
  }

  // Merge the labels: (score desc, slot asc), then keep the first max_out.
  std::sort(kept.begin(), kept.end(), [&](int64_t a, int64_t b) {
    if (scores[a] != scores[b]) return scores[a] > scores[b];
    return a < b;
  });
  const int64_t count = std::min<int64_t>(static_cast<int64_t>(kept.size()), max_out);
  for (int64_t j = 0; j < max_out; ++j) {
    if (j < count) {
      const int64_t k = kept[j];
      for (int c = 0; c < 4; ++c) out_boxes[4 * j + c] = boxes[4 * k + c];
      out_scores[j] = scores[k];
      out_labels[j] = labels[k];
    } else {
      for (int c = 0; c < 4; ++c) out_boxes[4 * j + c] = T(0);
      out_scores[j] = T(0);
      out_labels[j] = -1;
    }
  }
  return count;
}

}  // namespace

template <typename T>
void batched_nms(const NmsDims& d, const T* boxes, const T* scores, const int64_t* labels, T iou_threshold,
                 T* out_boxes, T* out_scores, int64_t* out_labels, int64_t* out_counts) {
#pragma omp parallel for schedule(dynamic) if (d.B > 1 && d.K > 256)
  for (int64_t b = 0; b < d.B; ++b) {
    out_counts[b] = nms_one_image(d.K, d.max_out, boxes + b * d.K * 4, scores + b * d.K, labels + b * d.K,
                                  iou_threshold, out_boxes + b * d.max_out * 4, out_scores + b * d.max_out,
                                  out_labels + b * d.max_out);
  }
}

#define KERN_INSTANTIATE(T)                                                                             \
  template void batched_nms<T>(const NmsDims&, const T*, const T*, const int64_t*, T, T*, T*, int64_t*, \
                               int64_t*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
