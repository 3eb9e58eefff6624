// CUDA box-head post-processing (maths, slot layout and tie rules in
// kernels/box_head_postprocess.h):
//   init     every candidate slot becomes padding (label -1).
//   rows     one warp per RoI: softmax by shuffles; 32 classes at a time each lane decodes and
//            tests its class, and the passing lanes take consecutive places j in class order
//            (ballot + popcount of the lanes below).
//   NMS      kern::cuda::batched_nms with the class as the label.
#include "kernels/box_head_postprocess.h"
#include "kernels/cuda_check.h"
#include "kernels/workspace_carver.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = kBlock / kWarp;

struct Buffers {
  float* cand_boxes;     // [B K 4]
  float* cand_scores;    // [B K]
  int64_t* cand_labels;  // [B K]
  void* nms_workspace;
};

Buffers carve(const BoxHeadDims& d, void* base, size_t* total) {
  const NmsDims nd = box_head_nms_dims(d);
  const size_t BK = static_cast<size_t>(nd.B) * nd.K;
  Carver c(base);
  Buffers w;
  w.cand_boxes = c.take<float>(4 * BK);
  w.cand_scores = c.take<float>(BK);
  w.cand_labels = c.take<int64_t>(BK);
  w.nms_workspace = c.take<char>(batched_nms_workspace_bytes(nd));
  *total = c.bytes();
  return w;
}

__global__ void init_kernel(int n, float* __restrict__ boxes, float* __restrict__ scores,
                            int64_t* __restrict__ labels) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    for (int c = 0; c < 4; ++c) boxes[static_cast<size_t>(i) * 4 + c] = 0.0f;
    scores[i] = 0.0f;
    labels[i] = -1;
  }
}

// image of RoI r: the b with image_start[b] <= r < image_start[b + 1] (binary search).
__device__ __forceinline__ int image_of(const int64_t* image_start, int B, int r) {
  int lo = 0, hi = B - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (image_start[mid] <= r) lo = mid; else hi = mid - 1;
  }
  return lo;
}

__global__ void rows_kernel(BoxHeadDims d, int K, int per_roi, const float* __restrict__ logits,
                            const float* __restrict__ deltas, const float* __restrict__ proposals,
                            const int64_t* __restrict__ image_start, const float* __restrict__ image_hw,
                            float* __restrict__ cand_boxes,
                            float* __restrict__ cand_scores, int64_t* __restrict__ cand_labels) {
  const int lane = threadIdx.x % kWarp;
  const int R = static_cast<int>(d.R), C = static_cast<int>(d.C), B = static_cast<int>(d.B);
  const int n_warps = gridDim.x * kWarpsPerBlock;
  for (int r = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarp; r < R; r += n_warps) {
    const float* x = logits + static_cast<size_t>(r) * C;
    float m = -INFINITY;
    for (int c = lane; c < C; c += kWarp) m = fmaxf(m, x[c]);
    for (int off = kWarp / 2; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    float s = 0.0f;
    for (int c = lane; c < C; c += kWarp) s += expf(x[c] - m);
    for (int off = kWarp / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    const int b = image_of(image_start, B, r);
    const size_t base = static_cast<size_t>(b) * K + static_cast<size_t>(r - image_start[b]) * per_roi;
    int taken = 0;
    for (int c0 = 1; c0 < C; c0 += kWarp) {
      const int c = c0 + lane;
      float box[4] = {0, 0, 0, 0}, p = 0.0f;
      bool pass = false;
      if (c < C) {
        p = expf(x[c] - m) / s;
        pass = box_head_candidate<float>(deltas + (static_cast<size_t>(r) * C + c) * 4,
                                         proposals + static_cast<size_t>(r) * 4, p, d, image_hw[2 * b],
                                         image_hw[2 * b + 1], box);
      }
      const unsigned ballot = __ballot_sync(0xffffffffu, pass);
      const int j = taken + __popc(ballot & ((1u << lane) - 1u));
      if (pass && j < per_roi) {
        const size_t slot = base + j;
        for (int k = 0; k < 4; ++k) cand_boxes[slot * 4 + k] = box[k];
        cand_scores[slot] = p;
        cand_labels[slot] = c;
      }
      taken += __popc(ballot);
    }
  }
}

unsigned warp_grid(int rows) {
  long long g = (static_cast<long long>(rows) + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (g < 1) g = 1;
  if (g > 65535LL * 8) g = 65535LL * 8;
  return static_cast<unsigned>(g);
}

}  // namespace

size_t box_head_postprocess_workspace_bytes(const BoxHeadDims& d) {
  size_t total = 0;
  carve(d, nullptr, &total);
  return total;
}

// Preconditions (checked by the front-end): B >= 1, max_rois >= 1, R * C < 2^31,
// K <= kNmsMaxCandidatesCuda, image_start on the device.
void box_head_postprocess(const BoxHeadDims& d, const float* logits, const float* deltas, const float* proposals,
                          const int64_t* image_start, const float* image_hw, float* out_boxes, float* out_scores, int64_t* out_labels,
                          int64_t* out_counts, void* workspace, Stream stream) {
  const NmsDims nd = box_head_nms_dims(d);
  size_t total = 0;
  const Buffers w = carve(d, workspace, &total);
  const int BK = static_cast<int>(nd.B * nd.K);
  init_kernel<<<kern_grid_1d(BK), kBlock, 0, stream>>>(BK, w.cand_boxes, w.cand_scores, w.cand_labels);
  KERN_LAUNCH_CHECK();
  if (d.R > 0) {
    rows_kernel<<<warp_grid(static_cast<int>(d.R)), kBlock, 0, stream>>>(
        d, static_cast<int>(nd.K), static_cast<int>(box_head_slots_per_roi(d.C, d.score_threshold)), logits, deltas,
        proposals, image_start, image_hw, w.cand_boxes, w.cand_scores, w.cand_labels);
    KERN_LAUNCH_CHECK();
  }
  batched_nms(nd, w.cand_boxes, w.cand_scores, w.cand_labels, static_cast<float>(d.nms_threshold), out_boxes,
              out_scores, out_labels, out_counts, w.nms_workspace, stream);
}

}  // namespace kern::cuda
