// CUDA detection post-processing (maths, slot layout and tie rules in kernels/postprocess.h).
// Every step runs on the device, nothing is read back:
//
//   init          stage-1 segment (image, level, class) begin = end = its base in the key
//                 buffer; Sigmoid: the stage-2 segment offsets.
//   scores        Softmax: one warp per (image, anchor); Sigmoid: one thread per logit. A score
//                 p > threshold is appended to its segment (atomicAdd on the segment end) as
//                 key1 = desc_score_key(p) << abits | local anchor.
//   sort 1        cub::DeviceSegmentedRadixSort over the filled part of every segment: each
//                 (image, level, class) list in the order (p desc, anchor asc).
//   Softmax:      candidates: one thread per slot (class, rank) decodes rank r of its class.
//   Sigmoid:      stage-2 keys: rank r < class_topk of every (level, class) list becomes
//                 key2 = desc_score_key(p) << fbits | (local anchor * C + class) (the level's
//                 top-k pairs are all among these); unused places get all ones. Sort 2 per
//                 (image, level), then one thread per slot (level, rank) decodes.
//   NMS           kern::cuda::batched_nms on the [B, K] slots (padding label -1).
#include <cub/device/device_segmented_radix_sort.cuh>

#include "kernels/box_math.h"
#include "kernels/cuda_check.h"
#include "kernels/workspace_carver.h"
#include "kernels/nms.h"
#include "kernels/postprocess.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = kBlock / kWarp;
constexpr uint64_t kPadKey = ~0ull;

using kern::Carver;

// Everything the kernels need to know, by value (all counts < 2^31, checked by the front-end).
struct Geometry {
  int B = 0, A = 0, C = 0;
  bool softmax = true;
  int first_class = 0, Cs = 0;  // scored classes first_class .. C - 1, Cs of them
  int levels = 1;
  int level_start[kMaxLevels + 1] = {};
  int class_topk[kMaxLevels] = {};
  int slot_start[kMaxLevels + 1] = {};
  int K = 0;       // candidate slots per image
  int abits = 1;   // bits of a local anchor index (stage-1 keys)
  int P = 0;       // Sigmoid: stage-2 keys per image
  int off2[kMaxLevels + 1] = {};  // Sigmoid: first stage-2 key of each level within an image
  int fbits = 1;   // Sigmoid: bits of a flat (local anchor, class) index (stage-2 keys)
  float threshold = 0, wx = 1, wy = 1, ww = 1, wh = 1, clamp = 0;
  float clip_w = 0, clip_h = 0;  // > 0: clamp decoded boxes into the image
};

struct Plan {
  Geometry g;
  int n1 = 0, segs1 = 0;  // stage-1 keys (B A Cs capacity) and segments (B levels Cs)
  int n2 = 0, segs2 = 0;  // Sigmoid stage-2 keys (B P) and segments (B levels)
  NmsDims nms;
};

Plan make_plan(const PostprocessDims& d) {
  const PostprocessLayout L = postprocess_layout(d);
  Plan p;
  Geometry& g = p.g;
  g.B = static_cast<int>(d.B), g.A = static_cast<int>(d.A), g.C = static_cast<int>(d.C);
  g.softmax = d.mode == ScoreMode::Softmax;
  g.first_class = static_cast<int>(L.first_class);
  g.Cs = static_cast<int>(L.scored_classes);
  g.levels = L.num_levels;
  int64_t max_n = 0;
  for (int l = 0; l <= g.levels; ++l) {
    g.level_start[l] = static_cast<int>(L.level_start[l]);
    g.slot_start[l] = static_cast<int>(L.slot_start[l]);
  }
  for (int l = 0; l < g.levels; ++l) {
    g.class_topk[l] = static_cast<int>(L.class_topk[l]);
    const int64_t n = L.level_start[l + 1] - L.level_start[l];
    max_n = n > max_n ? n : max_n;
    g.off2[l + 1] = g.off2[l] + (g.softmax ? 0 : g.C * g.class_topk[l]);
  }
  g.K = static_cast<int>(L.candidates);
  g.abits = index_bits(max_n);
  g.P = g.off2[g.levels];
  g.fbits = index_bits(max_n * d.C);
  g.threshold = static_cast<float>(d.score_threshold);
  g.wx = static_cast<float>(d.wx), g.wy = static_cast<float>(d.wy);
  g.ww = static_cast<float>(d.ww), g.wh = static_cast<float>(d.wh);
  g.clamp = static_cast<float>(d.clamp);
  g.clip_w = static_cast<float>(d.clip_w), g.clip_h = static_cast<float>(d.clip_h);
  p.n1 = g.B * g.A * g.Cs;
  p.segs1 = g.B * g.levels * g.Cs;
  p.n2 = g.softmax ? 0 : g.B * g.P;
  p.segs2 = g.softmax ? 0 : g.B * g.levels;
  p.nms.B = d.B, p.nms.K = L.candidates, p.nms.max_out = d.max_out, p.nms.max_run = L.max_run;
  return p;
}

// The sorts use CUB's double-buffer form (no third copy of the keys in the temporary
// storage); the sorted keys end up in either buffer of the pair, DoubleBuffer::Current().
struct Buffers {
  uint64_t* keys1;    // [n1] stage-1 keys, segment by segment (each filled from its start)
  uint64_t* alt1;     // [n1] the other buffer of the stage-1 sort
  int* begin1;        // [segs1]
  int* end1;          // [segs1] grows with the atomics: begin1 + passing scores
  uint64_t* keys2;    // [n2] Sigmoid stage-2 keys
  uint64_t* alt2;     // [n2]
  int* offsets2;      // [segs2 + 1]
  float* cand_boxes;  // [B K 4]
  float* cand_scores;    // [B K]
  int64_t* cand_labels;  // [B K]
  void* cub_temp;
  size_t cub_bytes;
  void* nms_workspace;
};

Buffers carve(const Plan& p, void* base, size_t* total_bytes) {
  const Geometry& g = p.g;
  const size_t BK = static_cast<size_t>(g.B) * g.K;
  Carver c(base);
  Buffers w;
  w.keys1 = c.take<uint64_t>(p.n1);
  w.alt1 = c.take<uint64_t>(p.n1);
  w.begin1 = c.take<int>(p.segs1);
  w.end1 = c.take<int>(p.segs1);
  w.keys2 = c.take<uint64_t>(p.n2);
  w.alt2 = c.take<uint64_t>(p.n2);
  w.offsets2 = c.take<int>(p.segs2 + 1);
  w.cand_boxes = c.take<float>(4 * BK);
  w.cand_scores = c.take<float>(BK);
  w.cand_labels = c.take<int64_t>(BK);
  size_t sort1_bytes = 0, sort2_bytes = 0;
  cub::DoubleBuffer<uint64_t> none(nullptr, nullptr);
  KERN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeys(nullptr, sort1_bytes, none, p.n1, p.segs1,
                                                          static_cast<int*>(nullptr), static_cast<int*>(nullptr), 0,
                                                          32 + g.abits));
  if (!g.softmax) {
    KERN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeys(nullptr, sort2_bytes, none, p.n2, p.segs2,
                                                            static_cast<int*>(nullptr), static_cast<int*>(nullptr), 0,
                                                            64));
  }
  w.cub_bytes = sort1_bytes > sort2_bytes ? sort1_bytes : sort2_bytes;
  w.cub_temp = c.take<char>(w.cub_bytes);
  w.nms_workspace = c.take<char>(batched_nms_workspace_bytes(p.nms));
  *total_bytes = c.bytes();
  return w;
}

// ---- kernels --------------------------------------------------------------------------------

__device__ __forceinline__ float warp_max(float v) {
  for (int off = kWarp / 2; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int off = kWarp / 2; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Level of anchor a (levels are consecutive anchor ranges; empty levels are skipped).
__device__ __forceinline__ int level_of(const Geometry& g, int a) {
  int l = 0;
  while (a >= g.level_start[l + 1]) ++l;
  return l;
}

__device__ __forceinline__ void append(const Geometry& g, int* end1, uint64_t* keys1, int segment, float p,
                                       int local_anchor) {
  const int pos = atomicAdd(&end1[segment], 1);
  keys1[pos] = (static_cast<uint64_t>(desc_score_key(p)) << g.abits) | static_cast<uint32_t>(local_anchor);
}

__global__ void init_kernel(Geometry g, int segs1, int segs2, int* __restrict__ begin1, int* __restrict__ end1,
                            int* __restrict__ offsets2) {
  const int stride = gridDim.x * blockDim.x;
  const int first = blockIdx.x * blockDim.x + threadIdx.x;
  for (int s = first; s < segs1; s += stride) {
    const int cs = s % g.Cs, bl = s / g.Cs;
    const int l = bl % g.levels, b = bl / g.levels;
    const int n = g.level_start[l + 1] - g.level_start[l];
    const int base = b * g.A * g.Cs + g.level_start[l] * g.Cs + cs * n;
    begin1[s] = base;
    end1[s] = base;
  }
  if (!g.softmax)
    for (int j = first; j <= segs2; j += stride) offsets2[j] = (j / g.levels) * g.P + g.off2[j % g.levels];
}

// Softmax: one warp per (image, anchor) row of C logits.
__global__ void softmax_scores_kernel(Geometry g, const float* __restrict__ logits, int* __restrict__ end1,
                                      uint64_t* __restrict__ keys1) {
  const int lane = threadIdx.x % kWarp;
  const int rows = g.B * g.A;
  const int n_warps = gridDim.x * kWarpsPerBlock;
  for (int r = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarp; r < rows; r += n_warps) {
    const float* x = logits + static_cast<size_t>(r) * g.C;
    float m = -INFINITY;
    for (int c = lane; c < g.C; c += kWarp) m = fmaxf(m, x[c]);
    m = warp_max(m);
    float s = 0.0f;
    for (int c = lane; c < g.C; c += kWarp) s += expf(x[c] - m);
    s = warp_sum(s);
    const int b = r / g.A, a = r % g.A;
    for (int c = 1 + lane; c < g.C; c += kWarp) {
      const float p = expf(x[c] - m) / s;
      if (p > g.threshold) append(g, end1, keys1, b * g.Cs + (c - 1), p, a);
    }
  }
}

// Sigmoid: one thread per logit (b, a, c).
__global__ void sigmoid_scores_kernel(Geometry g, const float* __restrict__ logits, int* __restrict__ end1,
                                      uint64_t* __restrict__ keys1) {
  const int n = g.B * g.A * g.C;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const float p = 1.0f / (1.0f + expf(-logits[i]));
    if (!(p > g.threshold)) continue;
    const int c = i % g.C, ba = i / g.C;
    const int a = ba % g.A, b = ba / g.A;
    const int l = level_of(g, a);
    append(g, end1, keys1, (b * g.levels + l) * g.Cs + c, p, a - g.level_start[l]);
  }
}

__device__ __forceinline__ void write_candidate(const Geometry& g, int i, const float* deltas, const float* anchors,
                                                int b, int a, float p, int label, float* cand_boxes,
                                                float* cand_scores, int64_t* cand_labels) {
  box::decode(deltas + (static_cast<size_t>(b) * g.A + a) * 4, anchors + static_cast<size_t>(a) * 4, g.wx, g.wy,
              g.ww, g.wh, g.clamp, cand_boxes + static_cast<size_t>(i) * 4);
  if (g.clip_w > 0.0f) box::clip(cand_boxes + static_cast<size_t>(i) * 4, g.clip_w, g.clip_h);
  cand_scores[i] = p;
  cand_labels[i] = label;
}

__device__ __forceinline__ void write_padding(int i, float* cand_boxes, float* cand_scores, int64_t* cand_labels) {
  for (int c = 0; c < 4; ++c) cand_boxes[static_cast<size_t>(i) * 4 + c] = 0.0f;
  cand_scores[i] = 0.0f;
  cand_labels[i] = -1;
}

// Softmax: slot (class cs, rank r) of image b takes rank r of segment (b, cs).
__global__ void softmax_candidates_kernel(Geometry g, const uint64_t* __restrict__ sorted1,
                                          const int* __restrict__ begin1, const int* __restrict__ end1,
                                          const float* __restrict__ deltas, const float* __restrict__ anchors,
                                          float* __restrict__ cand_boxes, float* __restrict__ cand_scores,
                                          int64_t* __restrict__ cand_labels) {
  const int k1 = g.class_topk[0];
  const uint64_t anchor_mask = (1ull << g.abits) - 1;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < g.B * g.K; i += gridDim.x * blockDim.x) {
    const int b = i / g.K, slot = i % g.K;
    const int cs = slot / k1, r = slot % k1;
    const int seg = b * g.Cs + cs;
    if (r < end1[seg] - begin1[seg]) {
      const uint64_t key = sorted1[begin1[seg] + r];
      const float p = score_from_desc_key(static_cast<uint32_t>(key >> g.abits));
      write_candidate(g, i, deltas, anchors, b, static_cast<int>(key & anchor_mask), p, cs + g.first_class,
                      cand_boxes, cand_scores, cand_labels);
    } else {
      write_padding(i, cand_boxes, cand_scores, cand_labels);
    }
  }
}

// Sigmoid: stage-2 key q of image b is rank r of the (level l, class c) list, where
// q - off2[l] = c * class_topk[l] + r.
__global__ void sigmoid_merge_keys_kernel(Geometry g, const uint64_t* __restrict__ sorted1,
                                          const int* __restrict__ begin1, const int* __restrict__ end1,
                                          uint64_t* __restrict__ keys2) {
  const uint64_t anchor_mask = (1ull << g.abits) - 1;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < g.B * g.P; i += gridDim.x * blockDim.x) {
    const int b = i / g.P;
    int q = i % g.P;
    int l = 0;
    while (q >= g.off2[l + 1]) ++l;  // levels without keys are skipped
    q -= g.off2[l];
    const int c = q / g.class_topk[l], r = q % g.class_topk[l];
    const int seg = (b * g.levels + l) * g.Cs + c;
    uint64_t key = kPadKey;
    if (r < end1[seg] - begin1[seg]) {
      const uint64_t key1 = sorted1[begin1[seg] + r];
      const uint64_t flat = (key1 & anchor_mask) * g.C + c;
      key = ((key1 >> g.abits) << g.fbits) | flat;
    }
    keys2[i] = key;
  }
}

// Sigmoid: slot (level l, rank r) of image b takes rank r of the sorted stage-2 keys of (b, l).
__global__ void sigmoid_candidates_kernel(Geometry g, const uint64_t* __restrict__ sorted2,
                                          const float* __restrict__ deltas, const float* __restrict__ anchors,
                                          float* __restrict__ cand_boxes, float* __restrict__ cand_scores,
                                          int64_t* __restrict__ cand_labels) {
  const uint64_t flat_mask = (1ull << g.fbits) - 1;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < g.B * g.K; i += gridDim.x * blockDim.x) {
    const int b = i / g.K, slot = i % g.K;
    int l = 0;
    while (slot >= g.slot_start[l + 1]) ++l;
    const int r = slot - g.slot_start[l];
    const uint64_t key = sorted2[static_cast<size_t>(b) * g.P + g.off2[l] + r];
    if (key != kPadKey) {
      const int flat = static_cast<int>(key & flat_mask);
      const float p = score_from_desc_key(static_cast<uint32_t>(key >> g.fbits));
      write_candidate(g, i, deltas, anchors, b, g.level_start[l] + flat / g.C, p, flat % g.C, cand_boxes,
                      cand_scores, cand_labels);
    } else {
      write_padding(i, cand_boxes, cand_scores, cand_labels);
    }
  }
}

unsigned warp_grid(int rows) {
  long long g = (static_cast<long long>(rows) + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (g < 1) g = 1;
  if (g > 65535LL * 8) g = 65535LL * 8;  // the grid-stride loop covers the rest
  return static_cast<unsigned>(g);
}

}  // namespace

size_t detect_postprocess_workspace_bytes(const PostprocessDims& d) {
  size_t total = 0;
  carve(make_plan(d), nullptr, &total);
  return total;
}

// Preconditions (checked by the front-end): B >= 1, K = postprocess_layout(d).candidates
// in 1 .. kNmsMaxCandidatesCuda, B * A * C < 2^31, max_out >= 1.
void detect_postprocess(const PostprocessDims& d, const float* logits, const float* deltas, const float* anchors,
                        float* out_boxes, float* out_scores, int64_t* out_labels, int64_t* out_counts,
                        void* workspace, Stream stream) {
  const Plan p = make_plan(d);
  const Geometry& g = p.g;
  size_t total = 0;
  const Buffers w = carve(p, workspace, &total);
  const int BK = g.B * g.K;

  init_kernel<<<kern_grid_1d(p.segs1 > p.segs2 + 1 ? p.segs1 : p.segs2 + 1), kBlock, 0, stream>>>(
      g, p.segs1, p.segs2, w.begin1, w.end1, w.offsets2);
  KERN_LAUNCH_CHECK();
  if (g.softmax) {
    softmax_scores_kernel<<<warp_grid(g.B * g.A), kBlock, 0, stream>>>(g, logits, w.end1, w.keys1);
  } else {
    sigmoid_scores_kernel<<<kern_grid_1d(static_cast<long long>(g.B) * g.A * g.C), kBlock, 0, stream>>>(
        g, logits, w.end1, w.keys1);
  }
  KERN_LAUNCH_CHECK();
  size_t cub_bytes = w.cub_bytes;
  cub::DoubleBuffer<uint64_t> keys1(w.keys1, w.alt1);
  KERN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeys(w.cub_temp, cub_bytes, keys1, p.n1, p.segs1, w.begin1,
                                                          w.end1, 0, 32 + g.abits, stream));
  const uint64_t* sorted1 = keys1.Current();
  if (g.softmax) {
    softmax_candidates_kernel<<<kern_grid_1d(BK), kBlock, 0, stream>>>(g, sorted1, w.begin1, w.end1, deltas,
                                                                      anchors, w.cand_boxes, w.cand_scores,
                                                                      w.cand_labels);
    KERN_LAUNCH_CHECK();
  } else {
    sigmoid_merge_keys_kernel<<<kern_grid_1d(p.n2), kBlock, 0, stream>>>(g, sorted1, w.begin1, w.end1, w.keys2);
    KERN_LAUNCH_CHECK();
    cub_bytes = w.cub_bytes;
    cub::DoubleBuffer<uint64_t> keys2(w.keys2, w.alt2);
    KERN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeys(w.cub_temp, cub_bytes, keys2, p.n2, p.segs2, w.offsets2,
                                                            w.offsets2 + 1, 0, 64, stream));
    sigmoid_candidates_kernel<<<kern_grid_1d(BK), kBlock, 0, stream>>>(g, keys2.Current(), deltas, anchors,
                                                                      w.cand_boxes, w.cand_scores, w.cand_labels);
    KERN_LAUNCH_CHECK();
  }
  batched_nms(p.nms, w.cand_boxes, w.cand_scores, w.cand_labels, static_cast<float>(d.nms_threshold), out_boxes,
              out_scores, out_labels, out_counts, w.nms_workspace, stream);
}

}  // namespace kern::cuda
