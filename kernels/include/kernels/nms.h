// Class-wise ("batched") non-maximum suppression over per-image candidate lists
// (torchvision.ops.batched_nms semantics with a fixed tie rule, batched and padded).
//
// Layout (all contiguous): B images, K candidate slots per image.
//   boxes  [B, K, 4]  corners (x1, y1, x2, y2)
//   scores [B, K]
//   labels [B, K]     int64; a slot with label < 0 is padding and takes no part
// Per image, independently:
//   1. For every label L, walk the candidates of label L in the order
//        (score descending, slot index ascending)              <- the tie rule
//      and keep a candidate unless its IoU with an already kept candidate of label L is
//      > iou_threshold (strictly greater, as torchvision; IoU = kern::box::iou, which is 0
//      when the union is not positive). Boxes of different labels never suppress each other.
//   2. Merge the kept candidates of all labels in the order (score descending, slot index
//      ascending) and write the first count = min(kept, max_out) of them:
//        out_boxes [B, max_out, 4], out_scores [B, max_out], out_labels [B, max_out] (int64),
//        out_counts [B] (int64) = count.
//   3. Output slots j >= count are padding: box (0, 0, 0, 0), score 0, label -1.
// Scores must not be NaN (+-inf are fine). -0.0 and +0.0 are equal scores.
//
// Work: per image, per label with n candidates, a sort (n log n) and at most n * kept IoUs;
// memory traffic is one read of the inputs and one write of the outputs.
#pragma once
#include <cstring>

#include "kernels/box_math.h"
#include "kernels/common.h"

namespace kern {

struct NmsDims {
  int64_t B = 0;        // images
  int64_t K = 0;        // candidate slots per image
  int64_t max_out = 0;  // output slots per image (max_per_image), >= 1
  // CUDA hint: the largest number of candidates that one label can have in one image
  // (<= K; 0 means K). It bounds the width of the suppression mask rows; a caller that
  // knows a smaller bound (the post-processing: top-k per class) saves memory and work.
  // A wrong (too small) hint gives wrong results.
  int64_t max_run = 0;
};

// Sort keys of the CUDA path, shared here so the CPU tests can check them.
//
// desc_score_key(s): a 32-bit unsigned key whose ASCENDING order is the DESCENDING order of
// the float score s (the IEEE bit pattern made monotonic, then inverted). -0.0 is mapped to
// +0.0 first so that the two zeros are one key, as they compare equal. Not for NaN.
// score_from_desc_key is its inverse (returns +0.0 for either zero).
KERN_BOX_HD uint32_t desc_score_key(float s) {
  if (s == 0.0f) s = 0.0f;  // -0.0 -> +0.0
#ifdef __CUDA_ARCH__
  const uint32_t u = __float_as_uint(s);
#else
  uint32_t u;
  std::memcpy(&u, &s, sizeof u);
#endif
  const uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return ~ascending;
}

KERN_BOX_HD float score_from_desc_key(uint32_t key) {
  const uint32_t ascending = ~key;
  const uint32_t u = (ascending & 0x80000000u) ? (ascending & 0x7fffffffu) : ~ascending;
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float s;
  std::memcpy(&s, &u, sizeof s);
  return s;
#endif
}

// Number of bits needed to store the values 0 .. n - 1 (at least 1).
inline int index_bits(int64_t n) {
  int bits = 1;
  while (bits < 62 && (int64_t(1) << bits) < n) ++bits;
  return bits;
}

// CUDA mask geometry: the sorted candidates of an image are cut into 64-wide column blocks
// (words). Candidate i (in sorted order) can only be suppressed by / suppress candidates of
// its own label, which lie within max_run - 1 positions of it, so its mask row needs only
// the words i / 64 .. i / 64 + band - 1 with band = 1 + (62 + max_run) / 64, capped at the
// number of words of the image.
inline int64_t nms_words(int64_t K) { return (K + 63) / 64; }
inline int64_t nms_band_words(int64_t K, int64_t max_run) {
  if (max_run <= 0 || max_run > K) max_run = K;
  const int64_t band = 1 + (62 + max_run) / 64;
  const int64_t words = nms_words(K);
  return band < words ? band : words;
}

// The largest K the CUDA path accepts (its per-image "removed" bitset lives in shared memory).
constexpr int64_t kNmsMaxCandidatesCuda = 65536;

namespace cpu {
// T = float or double. Labels may be any int64 (< 0: padding).
template <typename T>
void batched_nms(const NmsDims& d, const T* boxes, const T* scores, const int64_t* labels, T iou_threshold,
                 T* out_boxes, T* out_scores, int64_t* out_labels, int64_t* out_counts);
}  // namespace cpu

// CUDA (f32 only), every step on the device, no host synchronisation:
//   1. keys: per slot (label << 32 | desc_score_key(score)), padding = all ones; value = slot.
//      A segmented radix sort per image (stable, so equal (label, score) stay in slot order)
//      gives the order (label asc, score desc, slot asc); the valid count n per image comes
//      from an atomic count. Sorted boxes and labels are gathered.
//   2. mask kernel: one 64-thread block per (row block, band word, image); thread t compares
//      sorted candidate i = 64 * row_block + t with the 64 candidates of the column block and
//      sets bit j when j comes after i, has the same label and IoU > threshold.
//   3. scan kernel: one warp per image walks the sorted candidates 64 at a time: the
//      diagonal mask words of the 64 rows are held in registers and the keep decisions
//      within the block are made with warp shuffles; then the kept rows' off-diagonal band
//      words are OR-ed into the image's "removed" bitset (shared memory).
//   4. final keys (desc_score_key(score) << 32 | slot) for the kept, all ones otherwise; a
//      second segmented radix sort per image, then the first max_out are gathered into the
//      padded outputs and count = min(kept, max_out).
// Limits: K <= kNmsMaxCandidatesCuda, labels < 2^31, B * K < 2^31.
// workspace: at least batched_nms_workspace_bytes(d) bytes of device memory.
namespace cuda {
size_t batched_nms_workspace_bytes(const NmsDims& d);
void batched_nms(const NmsDims& d, const float* boxes, const float* scores, const int64_t* labels,
                 float iou_threshold, float* out_boxes, float* out_scores, int64_t* out_labels, int64_t* out_counts,
                 void* workspace, Stream stream);
}  // namespace cuda

}  // namespace kern
