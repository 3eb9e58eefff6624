// CUDA RPN proposal generation (maths, slot layout and tie rules in kernels/rpn_proposals.h).
// Every step runs on the device, nothing is read back:
//   keys     one thread per (image, anchor): desc_score_key(logit) << abits | local anchor.
//   sort     cub::DeviceSegmentedRadixSort, one segment per (image, level): the level's
//            anchors in the order (logit desc, anchor asc).
//   slots    one thread per candidate slot (image, level, rank < k_l): decode, clip, filter.
//   NMS      kern::cuda::batched_nms with the level as the class.
#include <cub/device/device_segmented_radix_sort.cuh>

#include "kernels/cuda_check.h"
#include "kernels/rpn_proposals.h"
#include "kernels/workspace_carver.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;

// By value into the kernels (all counts < 2^31, checked by the front-end).
struct Geometry {
  int B = 0, A = 0, levels = 1, K = 0, abits = 1;
  int level_start[kMaxLevels + 1] = {};
  int slot_start[kMaxLevels + 1] = {};
  float clamp = 0, min_size = 0, threshold = 0;
};

Geometry make_geometry(const RpnProposalDims& d) {
  const RpnProposalLayout L = rpn_proposal_layout(d);
  Geometry g;
  g.B = static_cast<int>(d.B), g.A = static_cast<int>(d.A), g.levels = d.num_levels;
  g.K = static_cast<int>(L.candidates);
  int64_t max_n = 1;
  for (int l = 0; l <= d.num_levels; ++l) {
    g.level_start[l] = static_cast<int>(L.level_start[l]);
    g.slot_start[l] = static_cast<int>(L.slot_start[l]);
    if (l < d.num_levels && d.level_sizes[l] > max_n) max_n = d.level_sizes[l];
  }
  g.abits = index_bits(max_n);
  g.clamp = static_cast<float>(d.clamp);
  g.min_size = static_cast<float>(d.min_size), g.threshold = static_cast<float>(d.score_threshold);
  return g;
}

struct Buffers {
  uint64_t* keys;    // [B A]
  uint64_t* alt;     // [B A] the other buffer of the sort
  int* offsets;      // [B levels + 1] segment starts; offsets[s + 1] is segment s's end
  float* cand_boxes;     // [B K 4]
  float* cand_scores;    // [B K]
  int64_t* cand_labels;  // [B K]
  void* cub_temp;
  size_t cub_bytes;
  void* nms_workspace;
};

Buffers carve(const RpnProposalDims& d, const Geometry& g, void* base, size_t* total) {
  const size_t n = static_cast<size_t>(g.B) * g.A, BK = static_cast<size_t>(g.B) * g.K;
  const int segs = g.B * g.levels;
  Carver c(base);
  Buffers w;
  w.keys = c.take<uint64_t>(n);
  w.alt = c.take<uint64_t>(n);
  w.offsets = c.take<int>(segs + 1);
  w.cand_boxes = c.take<float>(4 * BK);
  w.cand_scores = c.take<float>(BK);
  w.cand_labels = c.take<int64_t>(BK);
  cub::DoubleBuffer<uint64_t> none(nullptr, nullptr);
  w.cub_bytes = 0;
  KERN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeys(nullptr, w.cub_bytes, none, static_cast<int>(n), segs,
                                                          static_cast<int*>(nullptr), static_cast<int*>(nullptr), 0,
                                                          32 + g.abits));
  w.cub_temp = c.take<char>(w.cub_bytes);
  w.nms_workspace = c.take<char>(batched_nms_workspace_bytes(rpn_nms_dims(d)));
  *total = c.bytes();
  return w;
}

__device__ __forceinline__ int level_of(const Geometry& g, int a) {
  int l = 0;
  while (a >= g.level_start[l + 1]) ++l;  // empty levels are skipped
  return l;
}

// Keys of every (image, anchor) and the segment offsets (segment s = b * levels + l starts at
// b * A + level_start[l]; the last offset is B * A).
__global__ void keys_kernel(Geometry g, const float* __restrict__ logits, uint64_t* __restrict__ keys,
                            int* __restrict__ offsets) {
  const int n = g.B * g.A, segs = g.B * g.levels;
  const int stride = gridDim.x * blockDim.x;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int a = i % g.A;
    const int local = a - g.level_start[level_of(g, a)];
    keys[i] = (static_cast<uint64_t>(desc_score_key(logits[i])) << g.abits) | static_cast<uint32_t>(local);
  }
  for (int s = blockIdx.x * blockDim.x + threadIdx.x; s <= segs; s += stride)
    offsets[s] = s == segs ? n : (s / g.levels) * g.A + g.level_start[s % g.levels];
}

// One thread per slot (image b, slot j): level l and rank r of the slot, then the anchor of
// rank r in the sorted level.
__global__ void slots_kernel(Geometry g, const uint64_t* __restrict__ sorted, const float* __restrict__ logits,
                             const float* __restrict__ deltas, const float* __restrict__ anchors,
                             const float* __restrict__ image_hw, float* __restrict__ cand_boxes, float* __restrict__ cand_scores,
                             int64_t* __restrict__ cand_labels) {
  const uint64_t local_mask = (1ull << g.abits) - 1;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < g.B * g.K; i += gridDim.x * blockDim.x) {
    const int b = i / g.K, slot = i % g.K;
    int l = 0;
    while (slot >= g.slot_start[l + 1]) ++l;
    const int r = slot - g.slot_start[l];
    const uint64_t key = sorted[static_cast<size_t>(b) * g.A + g.level_start[l] + r];
    const int a = g.level_start[l] + static_cast<int>(key & local_mask);
    const size_t ba = static_cast<size_t>(b) * g.A + a;
    float box[4], score;
    const bool keep = rpn_candidate<float>(deltas + ba * 4, anchors + static_cast<size_t>(a) * 4, logits[ba],
                                           g.clamp, image_hw[2 * b + 1], image_hw[2 * b], g.min_size, g.threshold, box, &score);
    for (int c = 0; c < 4; ++c) cand_boxes[static_cast<size_t>(i) * 4 + c] = keep ? box[c] : 0.0f;
    cand_scores[i] = keep ? logits[ba] : 0.0f;  // the NMS ranks by the logit (kernels/rpn_proposals.h)
    cand_labels[i] = keep ? l : -1;
  }
}

// The kept entries' ranking logits become their scores p (padding stays 0).
__global__ void scores_kernel(int B, int post, const int64_t* __restrict__ counts, float* __restrict__ scores) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < B * post; i += gridDim.x * blockDim.x)
    if (i % post < counts[i / post]) scores[i] = rpn_score(scores[i]);
}

}  // namespace

size_t rpn_proposals_workspace_bytes(const RpnProposalDims& d) {
  size_t total = 0;
  carve(d, make_geometry(d), nullptr, &total);
  return total;
}

// Preconditions (checked by the front-end): B >= 1, candidates in 1 .. kNmsMaxCandidatesCuda,
// B * A < 2^31, post_nms_top_n >= 1.
void rpn_proposals(const RpnProposalDims& d, const float* logits, const float* deltas, const float* anchors,
                   const float* image_hw, float* out_boxes, float* out_scores, int64_t* out_levels, int64_t* out_counts, void* workspace,
                   Stream stream) {
  const Geometry g = make_geometry(d);
  size_t total = 0;
  const Buffers w = carve(d, g, workspace, &total);
  const int n = g.B * g.A, segs = g.B * g.levels;
  keys_kernel<<<kern_grid_1d(n > segs + 1 ? n : segs + 1), kBlock, 0, stream>>>(g, logits, w.keys, w.offsets);
  KERN_LAUNCH_CHECK();
  size_t cub_bytes = w.cub_bytes;
  cub::DoubleBuffer<uint64_t> keys(w.keys, w.alt);
  KERN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeys(w.cub_temp, cub_bytes, keys, n, segs, w.offsets,
                                                          w.offsets + 1, 0, 32 + g.abits, stream));
  slots_kernel<<<kern_grid_1d(static_cast<long long>(g.B) * g.K), kBlock, 0, stream>>>(
      g, keys.Current(), logits, deltas, anchors, image_hw, w.cand_boxes, w.cand_scores, w.cand_labels);
  KERN_LAUNCH_CHECK();
  batched_nms(rpn_nms_dims(d), w.cand_boxes, w.cand_scores, w.cand_labels, static_cast<float>(d.nms_threshold),
              out_boxes, out_scores, out_levels, out_counts, w.nms_workspace, stream);
  const int post = static_cast<int>(d.post_nms_top_n);
  scores_kernel<<<kern_grid_1d(static_cast<long long>(g.B) * post), kBlock, 0, stream>>>(g.B, post, out_counts,
                                                                                        out_scores);
  KERN_LAUNCH_CHECK();
}

}  // namespace kern::cuda
