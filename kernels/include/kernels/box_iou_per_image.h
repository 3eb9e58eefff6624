// IoU of two padded per-image box sets (Faster R-CNN: GT against each image's own proposals).
//   a [B, G, 4] with a_counts int64 [B], b [B, N, 4] with b_counts int64 [B]
//   -> out [B, G, N],  out[i, g, n] = (g < a_counts[i] && n < b_counts[i]) ? iou(a[i, g], b[i, n]) : 0
// with iou = kern::box::iou (box_math.h, torchvision's box_iou; 0 where the union is not
// positive). A count outside [0, G] (or [0, N]) is clamped into it (the front-end rejects such
// counts on the CPU; on the GPU it cannot check them without a host sync).
// Work: B G N IoUs; traffic floor: the output plus the inputs once.
#pragma once
#include "kernels/common.h"

namespace kern {

struct BoxIouPerImageDims {
  int64_t B = 0, G = 0, N = 0;
};

namespace cpu {
template <typename T>
void box_iou_per_image(const BoxIouPerImageDims& d, const T* a, const int64_t* a_counts, const T* b,
                       const int64_t* b_counts, T* out);
}  // namespace cpu

namespace cuda {
// One thread per output element (coalesced along N). T = float or double.
template <typename T>
void box_iou_per_image(const BoxIouPerImageDims& d, const T* a, const int64_t* a_counts, const T* b,
                       const int64_t* b_counts, T* out, Stream stream);
}  // namespace cuda

}  // namespace kern
