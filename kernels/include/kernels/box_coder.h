// Box coding between corner boxes and centre-size offsets relative to anchors (torchvision
// det_utils.BoxCoder, SSD "variances" 0.1, 0.1, 0.2, 0.2 = weights 10, 10, 5, 5; RetinaNet
// weights 1, 1, 1, 1). With centres and sizes of the corner boxes
//   a = anchor: ax = (a.x1 + a.x2) / 2, aw = a.x2 - a.x1 (likewise ay, ah)
//   encode:  tx = wx (gx - ax) / aw   ty = wy (gy - ay) / ah   tw = ww ln(gw / aw)   th = wh ln(gh / ah)
//   decode:  dx = tx / wx, dy = ty / wy, dw = min(tw / ww, clamp), dh = min(th / wh, clamp)
//            cx = ax + dx aw, cy = ay + dy ah, w = aw e^dw, h = ah e^dh,
//            box = (cx - w/2, cy - h/2, cx + w/2, cy + h/2)
// clamp is ln(1000 / 16) in torchvision (keeps e^dw finite for wild predictions). The
// per-box expressions are kern::box::encode / decode (box_math.h).
//
// Layout: in / out are n boxes of 4 values (a [..., A, 4] tensor flattened, n = prod(...) A);
// box i uses anchor i mod A. Work: n boxes, ~20 flops + 2 log/exp each; traffic floor:
// read n x 16 (or 32) bytes, write the same, read the anchors once.
#pragma once
#include "kernels/common.h"

namespace kern {

struct BoxCoderDims {
  int64_t n = 0;  // boxes (all leading dims times A)
  int64_t A = 0;  // anchors
  double wx = 10, wy = 10, ww = 5, wh = 5;
  double clamp = 4.135166556742356;  // decode only
};

namespace cpu {
template <typename T>
void box_encode(const BoxCoderDims& d, const T* boxes, const T* anchors, T* deltas);
template <typename T>
void box_decode(const BoxCoderDims& d, const T* deltas, const T* anchors, T* boxes);
}  // namespace cpu

namespace cuda {
// One thread per box.
template <typename T>
void box_encode(const BoxCoderDims& d, const T* boxes, const T* anchors, T* deltas, Stream stream);
template <typename T>
void box_decode(const BoxCoderDims& d, const T* deltas, const T* anchors, T* boxes, Stream stream);
}  // namespace cuda

}  // namespace kern
