// Prior (anchor / default box) generation for SSD, TinySSD and RetinaNet.
//
// The front-end (engine/src/detection/anchors.cpp) turns the user's level descriptions into
// a small table of doubles; the kernel then writes one corner box per (location, anchor):
//
//   table rows 0 .. num_levels-1, kPriorLevelCols doubles each (one row per level):
//     [0] first_anchor  index of the level's first output row
//     [1] fmap_h        [2] fmap_w      feature-map size (locations)
//     [3] step_h        [4] step_w      pixels between cell centres (already resolved, > 0)
//     [5] offset        cell (i, j) has its centre at ((j + offset) step_w, (i + offset) step_h)
//     [6] per_loc       boxes per location
//     [7] first_box     index of the level's first box row below
//   then the box rows, 4 doubles each, starting at double index num_levels * kPriorLevelCols:
//     (x1, y1, x2, y2) of one box relative to its cell centre, in pixels. Row first_box + k
//     is the k-th box of every location of that level.
//
// Output row  first_anchor + (i * fmap_w + j) * per_loc + k  (level by level, row i, column
// j, then box k) is
//   corners = (cx + x1, cy + y1, cx + x2, cy + y2),  cx = (j + offset) step_w, cy = (i + offset) step_h
// followed by the clip and the unit change:
//   Clip::None
//   Clip::Corners     x1, x2 clamped to [0, W], y1, y2 to [0, H] (GluonCV / MultiBoxPrior clip=True)
//   Clip::CenterSize  w/W and h/H clamped to [0, 1], centre kept, then back to corners
//                     (torchvision DefaultBoxGenerator(clip=True): it clamps only the (w, h)
//                     pairs; a centre outside the image, e.g. cx = 304 on SSD300's 10x10
//                     map, stays where it is)
//   normalized        divide x by W and y by H (W, H = image width, height in pixels)
// All the arithmetic is in double; the result is rounded to T once at the end, so the CPU
// and the CUDA kernel agree to float rounding.
#pragma once
#include "kernels/box_math.h"  // KERN_BOX_HD
#include "kernels/common.h"

namespace kern {

enum class PriorClip : uint8_t { None, Corners, CenterSize };

constexpr int kPriorLevelCols = 8;

struct PriorDims {
  int num_levels = 0;
  int64_t num_anchors = 0;  // output rows (sum over levels of fmap_h * fmap_w * per_loc)
  double image_h = 0, image_w = 0;
  PriorClip clip = PriorClip::None;
  bool normalized = false;
};

namespace prior {

// Writes the box `rel` (relative corners, pixels) placed at centre (cx, cy), clipped and
// converted as PriorDims says, into out[0..3]. Shared by the CPU and CUDA kernels.
template <typename T>
KERN_BOX_HD void place(const PriorDims& d, double cx, double cy, const double* rel, T* out) {
  double x1 = cx + rel[0], y1 = cy + rel[1], x2 = cx + rel[2], y2 = cy + rel[3];
  const double W = d.image_w, H = d.image_h;
  if (d.clip == PriorClip::Corners) {
    x1 = fmin(fmax(x1, 0.0), W);
    x2 = fmin(fmax(x2, 0.0), W);
    y1 = fmin(fmax(y1, 0.0), H);
    y2 = fmin(fmax(y2, 0.0), H);
  } else if (d.clip == PriorClip::CenterSize) {
    const double bcx = 0.5 * (x1 + x2), bcy = 0.5 * (y1 + y2);
    const double nw = fmin(fmax((x2 - x1) / W, 0.0), 1.0);
    const double nh = fmin(fmax((y2 - y1) / H, 0.0), 1.0);
    x1 = bcx - 0.5 * nw * W;
    x2 = bcx + 0.5 * nw * W;
    y1 = bcy - 0.5 * nh * H;
    y2 = bcy + 0.5 * nh * H;
  }
  if (d.normalized) {
    x1 /= W;
    x2 /= W;
    y1 /= H;
    y2 /= H;
  }
  out[0] = static_cast<T>(x1);
  out[1] = static_cast<T>(y1);
  out[2] = static_cast<T>(x2);
  out[3] = static_cast<T>(y2);
}

}  // namespace prior

namespace cpu {
// out: [num_anchors, 4]. table: as described above (host memory).
template <typename T>
void multibox_prior(const PriorDims& d, const double* table, T* out);
}  // namespace cpu

namespace cuda {
// Same; table and out in device memory. One thread per output box.
template <typename T>
void multibox_prior(const PriorDims& d, const double* table, T* out, Stream stream);
}  // namespace cuda

}  // namespace kern
