// Anchor-to-ground-truth matching for SSD and RetinaNet (front-ends: eng::det::match_ssd,
// eng::det::match_retinanet in engine/src/detection/matcher.cpp).
//
// Layout: iou T [B, G, A] contiguous, iou[(b * G + g) * A + a] = IoU of GT g and anchor a in
// image b. G is padded: only rows g < n_b are real, n_b = gt_counts[b] clamped to [0, G]
// (the front-end refuses counts outside [0, G] whenever it can see them on the host; the
// kernels clamp so that a bad count never reads out of range). Padded rows are never read.
// Output: matches int64 [B, A]: a GT index in [0, n_b), kBackground (-1) or kIgnore (-2).
//
// ---- shared rules ------------------------------------------------------------------------
// NaN IoU counts as -inf (sanitize below): it never passes a threshold and never wins an
// argmax against a number. Thresholds are compared in T (static_cast<T>(threshold)), as
// PyTorch compares a float tensor with a Python scalar.
// argmax with ties to the lowest index: the winner of a set of (value, index) pairs is the
// largest value, and among equal values the lowest index (`better` below). This is a total
// order, so a parallel reduction in any order gives the same winner as the sequential loop.
//   best_gt(a)     = argmax over g < n_b of iou[g, a]   (the anchor's best GT; its IoU: best_iou(a))
//   best_anchor(g) = argmax over a < A of iou[g, a]     (the GT's best anchor; its IoU: gt_max(g))
//
// ---- match_ssd (torchvision SSDMatcher(threshold)) -----------------------------------------
//   matches[a] = best_gt(a) if best_iou(a) >= threshold else -1;
//   then for every real g: matches[best_anchor(g)] = g ("forcing"; it overrides the threshold).
// When several GTs force the same anchor the highest GT index wins (torchvision writes them
// in index order on the CPU). n_b == 0: every anchor is -1.
//
// ---- match_bipartite (GluonCV CompositeMatcher[BipartiteMatcher, MaximumMatcher(threshold)]) ----
// (1) greedy one-to-one: while some free GT g (not yet matched) and free anchor a have
//     iou[g, a] > kBipartiteEps, match the pair with the largest IoU; ties: lower anchor index,
//     then lower GT index (the order of a stable descending sort of the [A, G] scores).
//     Equivalent form used by both back-ends: each free GT keeps its best free anchor
//     (`better` over free anchors); the winner is the free GT whose (value, anchor, g) is best
//     under (larger value, lower anchor, lower g); after a match, the free GTs whose best anchor
//     was just taken rescan their row over the free anchors.
// (2) for every anchor still -1: g = best_gt(a); if gt_max(g) > kBipartiteEps and
//     best_iou(a) >= gt_max(g) - kBipartiteEps, matches[a] = g (GluonCV's tie rule);
// (3) else if best_iou(a) >= threshold, matches[a] = best_gt(a); else -1.
// CUDA: one block per image; the block reduces each row scan with the shared-memory tree
// (`better`), thread 0 picks the winner among the GTs, so the result equals the CPU's exactly.
// Scratch (caller-provided): T [2 * B * G] (best value and gt_max per GT), int64 [B * G].
constexpr double kBipartiteEps = 1e-12;

// ---- match_retinanet (torchvision Matcher(fg, bg, allow_low_quality_matches)) -------------
//   matches[a] = best_gt(a)  if best_iou(a) >= fg
//              = -2 (ignore) if bg <= best_iou(a) < fg
//              = -1          if best_iou(a) < bg
// Low quality (allow_low_quality): for every real g with gt_max(g) > 0, each anchor a with
// iou[g, a] == gt_max(g) (every tied anchor) gets best_gt(a), its OWN best GT (not g), whatever
// the thresholds say. A GT whose best IoU is 0 (or NaN) promotes nothing. n_b == 0: all -1.
// The front-end requires bg <= fg.
//
// ---- CUDA, and how it stays deterministic ------------------------------------------------
// match_ssd: (1) matches is filled with -1; (2) one block per (b, g) with g < n_b reduces its
// row to best_anchor(g) (shared-memory tree with `better`) and thread 0 does
// atomicMax(&matches[b, best_anchor(g)], g): a maximum does not depend on the order the
// blocks arrive in, so "highest GT wins" holds exactly; (3) one thread per (b, a): an anchor
// already forced (matches >= 0) keeps its GT, any other gets best_gt(a) or -1 by the
// threshold (this is the merge step).
// match_retinanet: (1) one block per (b, g) with g < n_b writes gt_max(g) into the scratch
// array gt_max [B * G] (T, provided by the caller; padded entries are left unwritten);
// (2) one thread per (b, a) walks the real rows once: best_gt(a) with `better`, and whether
// some g has gt_max(g) > 0 and iou[g, a] == gt_max(g); then applies the rules above.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common.h"

#ifdef __CUDACC__
#define KERN_MATCH_HD __host__ __device__ __forceinline__
#else
#define KERN_MATCH_HD inline
#endif

namespace kern {

struct MatchDims {
  int64_t B = 0;  // images
  int64_t G = 0;  // padded GT rows per image
  int64_t A = 0;  // anchors
};

constexpr int64_t kMatchBackground = -1;
constexpr int64_t kMatchIgnore = -2;

namespace match {

// NaN -> -inf; every other value unchanged.
template <typename T>
KERN_MATCH_HD T sanitize(T v) {
  return v != v ? static_cast<T>(-INFINITY) : v;
}

// True when (v, i) beats the current best (best_v, best_i): larger value, or equal value and
// lower index. Values must be sanitized. Start from (-inf, kNoIndex): any real pair beats it.
template <typename T>
KERN_MATCH_HD bool better(T v, int64_t i, T best_v, int64_t best_i) {
  return v > best_v || (v == best_v && i < best_i);
}
constexpr int64_t kNoIndex = INT64_MAX;

// n_b clamped into [0, G].
KERN_MATCH_HD int64_t real_rows(int64_t count, int64_t G) { return count < 0 ? 0 : (count > G ? G : count); }

}  // namespace match

namespace cpu {
template <typename T>
void match_ssd(const MatchDims& d, const T* iou, const int64_t* gt_counts, double threshold, int64_t* matches);
template <typename T>
void match_retinanet(const MatchDims& d, const T* iou, const int64_t* gt_counts, double fg_threshold,
                     double bg_threshold, bool allow_low_quality, int64_t* matches);
template <typename T>
void match_bipartite(const MatchDims& d, const T* iou, const int64_t* gt_counts, double threshold, int64_t* matches);
}  // namespace cpu

namespace cuda {
template <typename T>
void match_ssd(const MatchDims& d, const T* iou, const int64_t* gt_counts, double threshold, int64_t* matches,
               Stream stream);
// gt_max_scratch: device array of B * G elements of T, overwritten (contents on return unspecified).
template <typename T>
void match_retinanet(const MatchDims& d, const T* iou, const int64_t* gt_counts, double fg_threshold,
                     double bg_threshold, bool allow_low_quality, int64_t* matches, T* gt_max_scratch,
                     Stream stream);
// value_scratch: B * 2 * G elements of T; index_scratch: B * G int64 (contents on return unspecified).
template <typename T>
void match_bipartite(const MatchDims& d, const T* iou, const int64_t* gt_counts, double threshold, int64_t* matches,
                     T* value_scratch, int64_t* index_scratch, Stream stream);
}  // namespace cuda

}  // namespace kern
