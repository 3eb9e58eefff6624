// CPU reference for the detection post-processing (maths, layout and tie rules in
// kernels/postprocess.h): scores, threshold, top-k, decode of the survivors into the
// candidate slots, then the class-wise NMS of kernels/nms.h.
#include "kernels/postprocess.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/box_math.h"
#include "kernels/nms.h"

namespace kern::cpu {
namespace {

// A passing score and what it came from: the anchor for Softmax (one class at a time), the
// flat index (local anchor) * C + class for Sigmoid.
template <typename T>
struct Scored {
  T score;
  int64_t index;
};

// Orders by (score desc, index asc) and keeps the first `k`.
template <typename T>
void top_k(std::vector<Scored<T>>& v, int64_t k) {
  const auto better = [](const Scored<T>& a, const Scored<T>& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.index < b.index;
  };
  const size_t n = std::min<size_t>(v.size(), static_cast<size_t>(k));
  std::partial_sort(v.begin(), v.begin() + n, v.end(), better);
  v.resize(n);
}

// Fills the candidate slots of one image: cand_boxes [K, 4], cand_scores [K], cand_labels [K]
// (already padded: label -1).
template <typename T>
void candidates_one_image(const PostprocessDims& d, const PostprocessLayout& L, const T* logits, const T* deltas,
                          const T* anchors, T* cand_boxes, T* cand_scores, int64_t* cand_labels) {
  const T thr = static_cast<T>(d.score_threshold);
  const T wx = T(d.wx), wy = T(d.wy), ww = T(d.ww), wh = T(d.wh), clamp = T(d.clamp);
  auto put = [&](int64_t slot, T score, int64_t anchor, int64_t label) {
    cand_scores[slot] = score;
    cand_labels[slot] = label;
    box::decode(deltas + 4 * anchor, anchors + 4 * anchor, wx, wy, ww, wh, clamp, cand_boxes + 4 * slot);
    if (d.clip_w > 0) box::clip(cand_boxes + 4 * slot, T(d.clip_w), T(d.clip_h));
  };

  if (d.mode == ScoreMode::Softmax) {
    // Per-anchor softmax over the classes (max subtracted first), then per class.
    std::vector<T> prob(static_cast<size_t>(d.A * d.C));
    for (int64_t a = 0; a < d.A; ++a) {
      const T* x = logits + a * d.C;
      T m = x[0];
      for (int64_t c = 1; c < d.C; ++c) m = std::max(m, x[c]);
      T s = T(0);
      for (int64_t c = 0; c < d.C; ++c) s += std::exp(x[c] - m);
      for (int64_t c = 0; c < d.C; ++c) prob[a * d.C + c] = std::exp(x[c] - m) / s;
    }
    std::vector<Scored<T>> pass;
    for (int64_t c = 1; c < d.C; ++c) {
      pass.clear();
      for (int64_t a = 0; a < d.A; ++a)
        if (prob[a * d.C + c] > thr) pass.push_back({prob[a * d.C + c], a});
      top_k(pass, L.class_topk[0]);
      for (size_t r = 0; r < pass.size(); ++r)
        put((c - 1) * L.class_topk[0] + static_cast<int64_t>(r), pass[r].score, pass[r].index, c);
    }
  } else {
    std::vector<Scored<T>> pass;
    for (int l = 0; l < L.num_levels; ++l) {
      const int64_t a0 = L.level_start[l], n = L.level_start[l + 1] - a0;
      pass.clear();
      for (int64_t i = 0; i < n * d.C; ++i) {  // i = local anchor * C + class
        const T p = T(1) / (T(1) + std::exp(-logits[a0 * d.C + i]));
        if (p > thr) pass.push_back({p, i});
      }
      top_k(pass, L.level_topk[l]);
      for (size_t r = 0; r < pass.size(); ++r)
        put(L.slot_start[l] + static_cast<int64_t>(r), pass[r].score, a0 + pass[r].index / d.C,
            pass[r].index % d.C);
    }
  }
}

}  // namespace

template <typename T>
void detect_postprocess(const PostprocessDims& d, const T* logits, const T* deltas, const T* anchors, T* out_boxes,
                        T* out_scores, int64_t* out_labels, int64_t* out_counts) {
  const PostprocessLayout L = postprocess_layout(d);
  const int64_t K = L.candidates;
  std::vector<T> cand_boxes(static_cast<size_t>(d.B * K * 4), T(0)), cand_scores(static_cast<size_t>(d.B * K), T(0));
  std::vector<int64_t> cand_labels(static_cast<size_t>(d.B * K), -1);
#pragma omp parallel for schedule(dynamic) if (d.B > 1)
  for (int64_t b = 0; b < d.B; ++b)
    candidates_one_image(d, L, logits + b * d.A * d.C, deltas + b * d.A * 4, anchors, cand_boxes.data() + b * K * 4,
                         cand_scores.data() + b * K, cand_labels.data() + b * K);

  NmsDims nd;
  nd.B = d.B, nd.K = K, nd.max_out = d.max_out, nd.max_run = L.max_run;
  batched_nms<T>(nd, cand_boxes.data(), cand_scores.data(), cand_labels.data(), static_cast<T>(d.nms_threshold),
                 out_boxes, out_scores, out_labels, out_counts);
}

#define KERN_INSTANTIATE(T)                                                                                   \
  template void detect_postprocess<T>(const PostprocessDims&, const T*, const T*, const T*, T*, T*, int64_t*, \
                                      int64_t*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
