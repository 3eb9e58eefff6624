// CUDA class-wise NMS (maths and tie rule in kernels/nms.h). Every step runs on the device:
//
//   build_keys    key = label << 32 | desc_score_key(score) per slot (padding: all ones),
//                 value = slot; counts the real candidates n of each image (atomics).
//   sort 1        cub::DeviceSegmentedRadixSort, one segment per image. Radix sort is stable,
//                 so the order is (label asc, score desc, slot asc), padding last.
//   gather        sorted boxes and labels (positions < n only).
//   mask          bit j of mask[i][w] says: sorted candidate 64 (i/64 + w) + j comes after i,
//                 has i's label and IoU > threshold. Only the `band` words a label run can
//                 reach are stored (nms_band_words in kernels/nms.h).
//   scan          one warp per image walks the sorted candidates 64 at a time (see below).
//   final keys    desc_score_key(score) << 32 | slot for the kept, all ones otherwise.
//   sort 2        per image again: the kept in the order (score desc, slot asc).
//   output        the first min(kept, max_out) of each image, then padding.
#include <cub/device/device_segmented_radix_sort.cuh>

#include "kernels/box_math.h"
#include "kernels/cuda_check.h"
#include "kernels/workspace_carver.h"
#include "kernels/nms.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;
constexpr uint64_t kPadKey = ~0ull;

using kern::Carver;

struct NmsBuffers {
  uint64_t* keys_in;   // [B K] sort 1 input, later sort 2 input
  uint64_t* keys_out;  // [B K] sort 1 output, later sort 2 output
  int* slot_in;        // [B K] slot of each key (sort 1 values)
  int* slot_out;       // [B K] slot of each sorted candidate
  int* seg_offsets;    // [B + 1] image i = [i K, (i + 1) K)
  int* valid;          // [B] real candidates per image
  int* kept;           // [B] kept candidates per image
  float* sboxes;       // [B K 4] boxes in sorted order
  int* slabels;        // [B K] labels in sorted order
  uint64_t* mask;      // [B K band]
  uint8_t* keep;       // [B K] keep flag per sorted position
  void* cub_temp;
  size_t cub_bytes;
};

NmsBuffers carve(const NmsDims& d, void* base, size_t* total_bytes) {
  const size_t N = static_cast<size_t>(d.B * d.K);
  const size_t band = static_cast<size_t>(nms_band_words(d.K, d.max_run));
  Carver c(base);
  NmsBuffers w;
  w.keys_in = c.take<uint64_t>(N);
  w.keys_out = c.take<uint64_t>(N);
  w.slot_in = c.take<int>(N);
  w.slot_out = c.take<int>(N);
  w.seg_offsets = c.take<int>(d.B + 1);
  w.valid = c.take<int>(d.B);
  w.kept = c.take<int>(d.B);
  w.sboxes = c.take<float>(4 * N);
  w.slabels = c.take<int>(N);
  w.mask = c.take<uint64_t>(N * band);
  w.keep = c.take<uint8_t>(N);
  // Temporary storage of the larger of the two sorts (sizes only depend on the counts).
  size_t pairs_bytes = 0, keys_bytes = 0;
  KERN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
      nullptr, pairs_bytes, static_cast<const uint64_t*>(nullptr), static_cast<uint64_t*>(nullptr),
      static_cast<const int*>(nullptr), static_cast<int*>(nullptr), static_cast<int>(N), static_cast<int>(d.B),
      static_cast<int*>(nullptr), static_cast<int*>(nullptr), 0, 64));
  KERN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeys(
      nullptr, keys_bytes, static_cast<const uint64_t*>(nullptr), static_cast<uint64_t*>(nullptr),
      static_cast<int>(N), static_cast<int>(d.B), static_cast<int*>(nullptr), static_cast<int*>(nullptr), 0, 64));
  w.cub_bytes = pairs_bytes > keys_bytes ? pairs_bytes : keys_bytes;
  w.cub_temp = c.take<char>(w.cub_bytes);
  *total_bytes = c.bytes();
  return w;
}

// ---- kernels --------------------------------------------------------------------------------

__global__ void build_keys_kernel(int B, int K, const float* __restrict__ scores, const int64_t* __restrict__ labels,
                                  uint64_t* __restrict__ keys, int* __restrict__ slots, int* __restrict__ valid,
                                  int* __restrict__ seg_offsets) {
  const int stride = gridDim.x * blockDim.x;
  const int first = blockIdx.x * blockDim.x + threadIdx.x;
  for (int j = first; j <= B; j += stride) seg_offsets[j] = j * K;
  for (int i = first; i < B * K; i += stride) {
    const int64_t label = labels[i];
    uint64_t key = kPadKey;
    if (label >= 0) {
      key = (static_cast<uint64_t>(label) << 32) | desc_score_key(scores[i]);
      atomicAdd(&valid[i / K], 1);
    }
    keys[i] = key;
    slots[i] = i % K;
  }
}

__global__ void gather_sorted_kernel(int B, int K, const uint64_t* __restrict__ sorted_keys,
                                     const int* __restrict__ sorted_slots, const float* __restrict__ boxes,
                                     const int* __restrict__ valid, float* __restrict__ sboxes,
                                     int* __restrict__ slabels) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < B * K; i += gridDim.x * blockDim.x) {
    const int b = i / K, pos = i % K;
    if (pos >= valid[b]) continue;
    const float* src = boxes + (static_cast<size_t>(b) * K + sorted_slots[i]) * 4;
    for (int c = 0; c < 4; ++c) sboxes[static_cast<size_t>(i) * 4 + c] = src[c];
    slabels[i] = static_cast<int>(sorted_keys[i] >> 32);
  }
}

// Block (image b, row block rb, band word y): 64 threads, thread t owns sorted row
// i = 64 rb + t and writes mask[i][y], the bits of column block cb = rb + y.
__global__ void mask_kernel(int K, int words, int band, const float* __restrict__ sboxes,
                            const int* __restrict__ slabels, const int* __restrict__ valid, float threshold,
                            uint64_t* __restrict__ mask) {
  const int b = blockIdx.x / words, rb = blockIdx.x % words;
  const int cb = rb + blockIdx.y;
  const int n = valid[b];
  const int row0 = rb * 64, col0 = cb * 64;
  if (cb >= words || row0 >= n) return;  // the same for the whole block
  const int rows = min(64, n - row0);
  const int cols = max(0, min(64, n - col0));

  __shared__ float col_box[64][4];
  __shared__ int col_label[64];
  const int t = threadIdx.x;
  const size_t image = static_cast<size_t>(b) * K;
  if (t < cols) {
    for (int c = 0; c < 4; ++c) col_box[t][c] = sboxes[(image + col0 + t) * 4 + c];
    col_label[t] = slabels[image + col0 + t];
  }
  __syncthreads();
  if (t >= rows) return;

  const int i = row0 + t;
  float row_box[4];
  for (int c = 0; c < 4; ++c) row_box[c] = sboxes[(image + i) * 4 + c];
  const int label = slabels[image + i];
  uint64_t bits = 0;
  for (int j = (cb == rb ? t + 1 : 0); j < cols; ++j)  // only candidates after i
    if (col_label[j] == label && box::iou(row_box, col_box[j]) > threshold) bits |= 1ull << j;
  mask[(image + i) * band + blockIdx.y] = bits;
}

// One warp per image. `removed` (shared, one bit per sorted position) collects what the kept
// candidates of earlier row blocks suppress. For each block of 64 rows:
//   1. lanes load the diagonal word of rows lane and lane + 32 (suppression within the block);
//   2. the 64 keep decisions are taken in order, every lane alike: row t is kept unless its
//      bit is set in `cur`; a kept row ORs its diagonal word (fetched by shuffle) into `cur`;
//   3. the lanes OR the kept rows' later band words into `removed` (one word per lane).
__global__ void scan_kernel(int K, int words, int band, const uint64_t* __restrict__ mask,
                            const int* __restrict__ valid, uint8_t* __restrict__ keep, int* __restrict__ kept_count) {
  extern __shared__ uint64_t removed[];
  const int b = blockIdx.x, lane = threadIdx.x;
  const int n = valid[b];
  for (int w = lane; w < words; w += 32) removed[w] = 0;
  __syncwarp();
  const size_t image = static_cast<size_t>(b) * K;
  const uint64_t* m = mask + image * band;
  int total = 0;
  for (int rb = 0; rb * 64 < n; ++rb) {
    const int row0 = rb * 64, rows = min(64, n - row0);
    const uint64_t diag_lo = lane < rows ? m[static_cast<size_t>(row0 + lane) * band] : 0;
    const uint64_t diag_hi = lane + 32 < rows ? m[static_cast<size_t>(row0 + lane + 32) * band] : 0;
    uint64_t cur = removed[rb];
    uint64_t kept = 0;
    for (int t = 0; t < rows; ++t) {
      const uint64_t diag = __shfl_sync(0xffffffffu, t < 32 ? diag_lo : diag_hi, t & 31);
      if (!((cur >> t) & 1ull)) {
        kept |= 1ull << t;
        cur |= diag;
      }
    }
    for (int w = 1 + lane; w < band && rb + w < words; w += 32) {
      uint64_t acc = 0;
      for (uint64_t rest = kept; rest != 0; rest &= rest - 1) {
        const int t = __ffsll(static_cast<long long>(rest)) - 1;
        acc |= m[static_cast<size_t>(row0 + t) * band + w];
      }
      removed[rb + w] |= acc;
    }
    if (lane < rows) keep[image + row0 + lane] = static_cast<uint8_t>((kept >> lane) & 1ull);
    if (lane + 32 < rows) keep[image + row0 + lane + 32] = static_cast<uint8_t>((kept >> (lane + 32)) & 1ull);
    total += __popcll(kept);
    __syncwarp();  // removed[] of the next block is read by every lane
  }
  if (lane == 0) kept_count[b] = total;
}

__global__ void final_keys_kernel(int B, int K, const float* __restrict__ scores, const int* __restrict__ sorted_slots,
                                  const uint8_t* __restrict__ keep, const int* __restrict__ valid,
                                  uint64_t* __restrict__ keys) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < B * K; i += gridDim.x * blockDim.x) {
    const int b = i / K, pos = i % K;
    uint64_t key = kPadKey;
    if (pos < valid[b] && keep[i]) {
      const int slot = sorted_slots[i];
      key = (static_cast<uint64_t>(desc_score_key(scores[static_cast<size_t>(b) * K + slot])) << 32) |
            static_cast<uint32_t>(slot);
    }
    keys[i] = key;
  }
}

__global__ void output_kernel(int B, int K, int max_out, const uint64_t* __restrict__ final_keys,
                              const float* __restrict__ boxes, const float* __restrict__ scores,
                              const int64_t* __restrict__ labels, const int* __restrict__ kept_count,
                              float* __restrict__ out_boxes, float* __restrict__ out_scores,
                              int64_t* __restrict__ out_labels, int64_t* __restrict__ out_counts) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < B * max_out; i += gridDim.x * blockDim.x) {
    const int b = i / max_out, j = i % max_out;
    const int count = min(kept_count[b], max_out);
    if (j == 0) out_counts[b] = count;
    if (j < count) {
      const int slot = static_cast<int>(final_keys[static_cast<size_t>(b) * K + j] & 0xffffffffull);
      const size_t src = static_cast<size_t>(b) * K + slot;
      for (int c = 0; c < 4; ++c) out_boxes[static_cast<size_t>(i) * 4 + c] = boxes[src * 4 + c];
      out_scores[i] = scores[src];
      out_labels[i] = labels[src];
    } else {
      for (int c = 0; c < 4; ++c) out_boxes[static_cast<size_t>(i) * 4 + c] = 0.0f;
      out_scores[i] = 0.0f;
      out_labels[i] = -1;
    }
  }
}

}  // namespace

size_t batched_nms_workspace_bytes(const NmsDims& d) {
  size_t total = 0;
  carve(d, nullptr, &total);
  return total;
}

// Preconditions (checked by the front-end): B >= 1, 1 <= K <= kNmsMaxCandidatesCuda,
// B * K < 2^31, max_out >= 1.
void batched_nms(const NmsDims& d, const float* boxes, const float* scores, const int64_t* labels,
                 float iou_threshold, float* out_boxes, float* out_scores, int64_t* out_labels, int64_t* out_counts,
                 void* workspace, Stream stream) {
  size_t total = 0;
  const NmsBuffers w = carve(d, workspace, &total);
  const int B = static_cast<int>(d.B), K = static_cast<int>(d.K), max_out = static_cast<int>(d.max_out);
  const int N = B * K;
  const int words = static_cast<int>(nms_words(d.K));
  const int band = static_cast<int>(nms_band_words(d.K, d.max_run));
  size_t cub_bytes = w.cub_bytes;

  KERN_CUDA_CHECK(cudaMemsetAsync(w.valid, 0, sizeof(int) * B, stream));
  build_keys_kernel<<<kern_grid_1d(N), kBlock, 0, stream>>>(B, K, scores, labels, w.keys_in, w.slot_in, w.valid,
                                                          w.seg_offsets);
  KERN_LAUNCH_CHECK();
  KERN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(w.cub_temp, cub_bytes, w.keys_in, w.keys_out, w.slot_in,
                                                           w.slot_out, N, B, w.seg_offsets, w.seg_offsets + 1, 0, 64,
                                                           stream));
  gather_sorted_kernel<<<kern_grid_1d(N), kBlock, 0, stream>>>(B, K, w.keys_out, w.slot_out, boxes, w.valid,
                                                             w.sboxes, w.slabels);
  KERN_LAUNCH_CHECK();
  mask_kernel<<<dim3(static_cast<unsigned>(B * words), static_cast<unsigned>(band)), 64, 0, stream>>>(
      K, words, band, w.sboxes, w.slabels, w.valid, iou_threshold, w.mask);
  KERN_LAUNCH_CHECK();
  scan_kernel<<<B, 32, sizeof(uint64_t) * words, stream>>>(K, words, band, w.mask, w.valid, w.keep, w.kept);
  KERN_LAUNCH_CHECK();
  final_keys_kernel<<<kern_grid_1d(N), kBlock, 0, stream>>>(B, K, scores, w.slot_out, w.keep, w.valid, w.keys_in);
  KERN_LAUNCH_CHECK();
  cub_bytes = w.cub_bytes;
  KERN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeys(w.cub_temp, cub_bytes, w.keys_in, w.keys_out, N, B,
                                                          w.seg_offsets, w.seg_offsets + 1, 0, 64, stream));
  output_kernel<<<kern_grid_1d(static_cast<long long>(B) * max_out), kBlock, 0, stream>>>(
      B, K, max_out, w.keys_out, boxes, scores, labels, w.kept, out_boxes, out_scores, out_labels, out_counts);
  KERN_LAUNCH_CHECK();
}

}  // namespace kern::cuda
