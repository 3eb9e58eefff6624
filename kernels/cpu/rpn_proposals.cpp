// CPU reference of the RPN proposal generation (maths, slot layout and tie rules in
// kernels/rpn_proposals.h): per image and level a top-k by logit, decode / clip / filter of
// the kept anchors into the candidate slots, then the class-wise NMS with the level as class.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/rpn_proposals.h"

namespace kern::cpu {

namespace {
// Ranking of logits: the CUDA path sorts desc_score_key(float(logit)) ascending, i.e. by the
// float bit pattern: a positive NaN above +inf, a negative NaN below -inf. Here the logit is
// compared as it is (doubles keep their precision) with the NaNs placed the same way
// (NaN payloads are not told apart).
template <typename T>
int nan_class(T x) {
  return std::isnan(x) ? (std::signbit(x) ? 0 : 2) : 1;
}
template <typename T>
bool ranks_before(T a, T b) {
  const int ca = nan_class(a), cb = nan_class(b);
  if (ca != cb) return ca > cb;
  return ca == 1 && a > b;
}
}  // namespace

template <typename T>
void rpn_proposals(const RpnProposalDims& d, const T* logits, const T* deltas, const T* anchors, const T* image_hw,
                   T* out_boxes, T* out_scores, int64_t* out_levels, int64_t* out_counts) {
  const RpnProposalLayout L = rpn_proposal_layout(d);
  const int64_t K = L.candidates;
  std::vector<T> cand_boxes(static_cast<size_t>(d.B * K * 4), T(0)), cand_scores(static_cast<size_t>(d.B * K), T(0));
  std::vector<int64_t> cand_labels(static_cast<size_t>(d.B * K), -1);
  const T clamp = static_cast<T>(d.clamp);
  const T min_size = static_cast<T>(d.min_size), thr = static_cast<T>(d.score_threshold);
  std::vector<int64_t> order;
  for (int64_t b = 0; b < d.B; ++b) {
    const T* lg = logits + b * d.A;
    const T h = image_hw[2 * b], w = image_hw[2 * b + 1];
    for (int l = 0; l < d.num_levels; ++l) {
      const int64_t first = L.level_start[l], n = d.level_sizes[l], k = L.level_topk[l];
      if (k == 0) continue;
      order.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) order[i] = first + i;
      // (logit desc, anchor asc): a stable order on the ranking key.
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t x, int64_t y) {
        if (ranks_before(lg[x], lg[y])) return true;
        if (ranks_before(lg[y], lg[x])) return false;
        return x < y;
      });
      for (int64_t r = 0; r < k; ++r) {
        const int64_t a = order[r];
        const size_t slot = static_cast<size_t>(b * K + L.slot_start[l] + r);
        T box[4], score;
        if (rpn_candidate<T>(deltas + (b * d.A + a) * 4, anchors + a * 4, lg[a], clamp, w, h, min_size, thr, box,
                             &score)) {
          std::memcpy(&cand_boxes[slot * 4], box, sizeof box);
          cand_scores[slot] = lg[a];  // NMS ranks by the logit (see kernels/rpn_proposals.h)
          cand_labels[slot] = l;
        }
      }
    }
  }
  batched_nms<T>(rpn_nms_dims(d), cand_boxes.data(), cand_scores.data(), cand_labels.data(),
                 static_cast<T>(d.nms_threshold), out_boxes, out_scores, out_levels, out_counts);
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t i = 0; i < out_counts[b]; ++i) {
      T& s = out_scores[b * d.post_nms_top_n + i];
      s = rpn_score(s);
    }
}

template void rpn_proposals<float>(const RpnProposalDims&, const float*, const float*, const float*, const float*,
                                   float*, float*, int64_t*, int64_t*);
template void rpn_proposals<double>(const RpnProposalDims&, const double*, const double*, const double*,
                                    const double*, double*, double*, int64_t*, int64_t*);

}  // namespace kern::cpu
