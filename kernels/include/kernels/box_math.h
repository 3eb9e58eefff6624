// Per-box maths shared by the box kernels (IoU, matching, coding, NMS, post-processing) on
// the CPU and the GPU, so that every kernel computes exactly the same expression.
// Boxes are corner format (x1, y1, x2, y2); area = (x2 - x1)(y2 - y1), no +1 (torchvision).
#pragma once
#include <cmath>

#ifdef __CUDACC__
#define KERN_BOX_HD __host__ __device__ __forceinline__
#else
#define KERN_BOX_HD inline
#endif

namespace kern::box {

// Unqualified exp / log / fmin / fmax below: on the host these pick std::'s float overloads
// (not the double C functions); in the device pass CUDA's own float overloads are found.
#ifndef __CUDA_ARCH__
using std::exp;
using std::fmax;
using std::fmin;
using std::log;
#endif

template <typename T>
KERN_BOX_HD T area(const T* b) {
  return (b[2] - b[0]) * (b[3] - b[1]);
}

// IoU of two corner boxes; 0 when the union is not positive.
template <typename T>
KERN_BOX_HD T iou(const T* a, const T* b) {
  const T iw = fmin(a[2], b[2]) - fmax(a[0], b[0]);
  const T ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
  const T inter = (iw > T(0) && ih > T(0)) ? iw * ih : T(0);
  const T uni = area(a) + area(b) - inter;
  return uni > T(0) ? inter / uni : T(0);
}

// Centre-size coding with weights (wx, wy, ww, wh) (torchvision BoxCoder):
//   encode: t = (wx (gx - ax) / aw, wy (gy - ay) / ah, ww ln(gw / aw), wh ln(gh / ah))
template <typename T>
KERN_BOX_HD void encode(const T* g, const T* a, T wx, T wy, T ww, T wh, T* t) {
  const T aw = a[2] - a[0], ah = a[3] - a[1];
  const T ax = a[0] + T(0.5) * aw, ay = a[1] + T(0.5) * ah;
  const T gw = g[2] - g[0], gh = g[3] - g[1];
  const T gx = g[0] + T(0.5) * gw, gy = g[1] + T(0.5) * gh;
  t[0] = wx * (gx - ax) / aw;
  t[1] = wy * (gy - ay) / ah;
  t[2] = ww * log(gw / aw);
  t[3] = wh * log(gh / ah);
}

//   decode: dx = tx / wx, ..., dw = min(tw / ww, clamp), dh = min(th / wh, clamp);
//   centre = a_centre + d * a_size, size = exp(d) * a_size, back to corners.
template <typename T>
KERN_BOX_HD void decode(const T* t, const T* a, T wx, T wy, T ww, T wh, T clamp, T* b) {
  const T aw = a[2] - a[0], ah = a[3] - a[1];
  const T ax = a[0] + T(0.5) * aw, ay = a[1] + T(0.5) * ah;
  const T dx = t[0] / wx, dy = t[1] / wy;
  const T dw = fmin(t[2] / ww, clamp), dh = fmin(t[3] / wh, clamp);
  const T cx = dx * aw + ax, cy = dy * ah + ay;
  const T w = exp(dw) * aw, h = exp(dh) * ah;
  b[0] = cx - T(0.5) * w;
  b[1] = cy - T(0.5) * h;
  b[2] = cx + T(0.5) * w;
  b[3] = cy + T(0.5) * h;
}

// Clamps x into [0, w] and y into [0, h] (torchvision clip_boxes_to_image).
template <typename T>
KERN_BOX_HD void clip(T* b, T w, T h) {
  b[0] = fmin(fmax(b[0], T(0)), w);
  b[1] = fmin(fmax(b[1], T(0)), h);
  b[2] = fmin(fmax(b[2], T(0)), w);
  b[3] = fmin(fmax(b[3], T(0)), h);
}

}  // namespace kern::box
