// Intersection over union of corner boxes (x1, y1, x2, y2), as torchvision.ops.box_iou:
//   inter = max(min(a.x2, b.x2) - max(a.x1, b.x1), 0) * max(min(a.y2, b.y2) - max(a.y1, b.y1), 0)
//   iou   = inter / (area(a) + area(b) - inter),  area = (x2 - x1)(y2 - y1), no +1
// and 0 where the union is not positive (two zero-area boxes give 0, never NaN). The
// per-pair expression is kern::box::iou (box_math.h), shared with NMS and matching.
//
// Pairwise:  a [N, 4], b [M, 4]  ->  out [N, M],  out[n, m] = iou(a[n], b[m]).
// Batched:   gt [B, G, 4] (G padded), counts [B] (int64), anchors [A, 4]
//            ->  out [B, G, A],  out[b, g, a] = g < counts[b] ? iou(gt[b, g], anchors[a]) : 0.
//            A count outside [0, G] is clamped into it (the front-end rejects such counts on
//            the CPU; on the GPU it cannot check without a host sync).
// Work: N M (or B G A) IoUs of ~15 flops; traffic floor: the output, 4 or 8 bytes each, plus
// the inputs once.
#pragma once
#include "kernels/common.h"

namespace kern {

struct BoxIouBatchedDims {
  int64_t B = 0, G = 0, A = 0;
};

namespace cpu {
template <typename T>
void box_iou(int64_t N, int64_t M, const T* a, const T* b, T* out);
template <typename T>
void box_iou_batched(const BoxIouBatchedDims& d, const T* gt, const int64_t* counts, const T* anchors, T* out);
}  // namespace cpu

namespace cuda {
// One thread per output pair.
template <typename T>
void box_iou(int64_t N, int64_t M, const T* a, const T* b, T* out, Stream stream);
// Grid (anchor blocks, B): a block stages its image's GT boxes in shared memory (in tiles),
// each thread owns one anchor and writes its G outputs (coalesced along A).
template <typename T>
void box_iou_batched(const BoxIouBatchedDims& d, const T* gt, const int64_t* counts, const T* anchors, T* out,
                     Stream stream);
}  // namespace cuda

}  // namespace kern
