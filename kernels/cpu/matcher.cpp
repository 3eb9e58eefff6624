// CPU reference of the SSD and RetinaNet matchers (maths and tie rules in kernels/matcher.h).
// Each image is independent; inside an image the IoU rows are walked in GT order, so the
// strict comparison of `match::better` keeps the lowest GT index on ties.
#include "kernels/matcher.h"

#include <vector>

namespace kern::cpu {
namespace {

// One sweep over the real rows g < n of one image's iou [G, A], in GT order, then anchor order:
//   per anchor a: best_iou[a], best_gt[a]     (argmax over GTs; (-inf, kNoIndex) when n == 0)
//   per GT g:     gt_max[g], best_anchor[g]   (argmax over anchors; (-inf, kNoIndex) when A == 0)
// Both use match::better, so ties go to the lowest index.
template <typename T>
struct ImageBest {
  std::vector<T> best_iou, gt_max;
  std::vector<int64_t> best_gt, best_anchor;
};

template <typename T>
ImageBest<T> scan_image(const T* iou, int64_t n, int64_t A) {
  ImageBest<T> r;
  r.best_iou.assign(static_cast<size_t>(A), static_cast<T>(-INFINITY));
  r.best_gt.assign(static_cast<size_t>(A), match::kNoIndex);
  r.gt_max.assign(static_cast<size_t>(n), static_cast<T>(-INFINITY));
  r.best_anchor.assign(static_cast<size_t>(n), match::kNoIndex);
  for (int64_t g = 0; g < n; ++g) {
    const T* row = iou + g * A;
    T row_max = static_cast<T>(-INFINITY);
    int64_t row_arg = match::kNoIndex;
    for (int64_t a = 0; a < A; ++a) {
      const T v = match::sanitize(row[a]);
      if (match::better(v, g, r.best_iou[a], r.best_gt[a])) {
        r.best_iou[a] = v;
        r.best_gt[a] = g;
      }
      if (match::better(v, a, row_max, row_arg)) {
        row_max = v;
        row_arg = a;
      }
    }
    r.gt_max[g] = row_max;
    r.best_anchor[g] = row_arg;
  }
  return r;
}

}  // namespace

template <typename T>
void match_ssd(const MatchDims& d, const T* iou, const int64_t* gt_counts, double threshold, int64_t* matches) {
  const T thr = static_cast<T>(threshold);
#pragma omp parallel for if (d.B * d.G * d.A > (1 << 16))
  for (int64_t b = 0; b < d.B; ++b) {
    const int64_t n = match::real_rows(gt_counts[b], d.G);
    const T* img = iou + b * d.G * d.A;
    int64_t* out = matches + b * d.A;
    const ImageBest<T> best = scan_image(img, n, d.A);
    for (int64_t a = 0; a < d.A; ++a)
      out[a] = (n > 0 && best.best_iou[a] >= thr) ? best.best_gt[a] : kMatchBackground;
    // Forcing, in increasing GT order: a later (higher) GT overwrites an earlier one.
    for (int64_t g = 0; g < n && d.A > 0; ++g) out[best.best_anchor[g]] = g;
  }
}

template <typename T>
void match_retinanet(const MatchDims& d, const T* iou, const int64_t* gt_counts, double fg_threshold,
                     double bg_threshold, bool allow_low_quality, int64_t* matches) {
  const T fg = static_cast<T>(fg_threshold), bg = static_cast<T>(bg_threshold);
#pragma omp parallel for if (d.B * d.G * d.A > (1 << 16))
  for (int64_t b = 0; b < d.B; ++b) {
    const int64_t n = match::real_rows(gt_counts[b], d.G);
    const T* img = iou + b * d.G * d.A;
    int64_t* out = matches + b * d.A;
    const ImageBest<T> best = scan_image(img, n, d.A);

    // low_quality[a]: some real GT reaches its best (positive) IoU at anchor a.
    std::vector<char> low_quality(static_cast<size_t>(d.A), 0);
    if (allow_low_quality) {
      for (int64_t g = 0; g < n; ++g) {
        const T gt_max = best.gt_max[g];
        if (!(gt_max > T(0))) continue;
        const T* row = img + g * d.A;
        for (int64_t a = 0; a < d.A; ++a)
          if (match::sanitize(row[a]) == gt_max) low_quality[a] = 1;
      }
    }

    for (int64_t a = 0; a < d.A; ++a) {
      const T v = best.best_iou[a];
      if (n == 0) out[a] = kMatchBackground;
      else if (v >= fg || low_quality[a]) out[a] = best.best_gt[a];
      else if (v >= bg) out[a] = kMatchIgnore;
      else out[a] = kMatchBackground;
    }
  }
}

template <typename T>
void match_bipartite(const MatchDims& d, const T* iou, const int64_t* gt_counts, double threshold, int64_t* matches) {
  const T thr = static_cast<T>(threshold), eps = static_cast<T>(kBipartiteEps);
#pragma omp parallel for if (d.B * d.G * d.A > (1 << 16))
  for (int64_t b = 0; b < d.B; ++b) {
    const int64_t n = match::real_rows(gt_counts[b], d.G);
    const T* img = iou + b * d.G * d.A;
    int64_t* out = matches + b * d.A;
    for (int64_t a = 0; a < d.A; ++a) out[a] = kMatchBackground;
    if (n == 0 || d.A == 0) continue;
    const ImageBest<T> best = scan_image(img, n, d.A);

    // (1) Greedy one-to-one. cand_v/cand_a: each free GT's best free anchor; gt_free[g].
    std::vector<T> cand_v(best.gt_max);
    std::vector<int64_t> cand_a(best.best_anchor);
    std::vector<char> gt_free(static_cast<size_t>(n), 1);
    for (int64_t step = 0; step < n; ++step) {
      int64_t win = -1;
      for (int64_t g = 0; g < n; ++g) {
        if (!gt_free[g]) continue;
        // larger value, then lower anchor, then lower g (g ascending: strict comparison keeps the first)
        if (win < 0 || cand_v[g] > cand_v[win] || (cand_v[g] == cand_v[win] && cand_a[g] < cand_a[win])) win = g;
      }
      if (win < 0 || !(cand_v[win] > eps)) break;  // nothing left above the bipartite threshold
      const int64_t taken = cand_a[win];
      out[taken] = win;
      gt_free[win] = 0;
      for (int64_t g = 0; g < n; ++g) {  // the GTs that wanted the taken anchor look again
        if (!gt_free[g] || cand_a[g] != taken) continue;
        T v_best = static_cast<T>(-INFINITY);
        int64_t a_best = match::kNoIndex;
        const T* row = img + g * d.A;
        for (int64_t a = 0; a < d.A; ++a)
          if (out[a] == kMatchBackground && match::better(match::sanitize(row[a]), a, v_best, a_best)) {
            v_best = match::sanitize(row[a]);
            a_best = a;
          }
        cand_v[g] = v_best;
        cand_a[g] = a_best;
      }
    }
    // (2) ties with the best GT's column maximum, (3) the threshold.
    for (int64_t a = 0; a < d.A; ++a) {
      if (out[a] != kMatchBackground) continue;
      const int64_t g = best.best_gt[a];
      const T v = best.best_iou[a], col = best.gt_max[g];
      if ((col > eps && v >= col - eps) || v >= thr) out[a] = g;
    }
  }
}

#define KERN_INSTANTIATE(T)                                                                                   \
  template void match_ssd<T>(const MatchDims&, const T*, const int64_t*, double, int64_t*);                  \
  template void match_retinanet<T>(const MatchDims&, const T*, const int64_t*, double, double, bool, int64_t*); \
  template void match_bipartite<T>(const MatchDims&, const T*, const int64_t*, double, int64_t*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
