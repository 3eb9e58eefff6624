// How one image is fitted into the square S x S network input, and the way back.
//
//   * stretch (keep_aspect = false, SSD): the image is resized to S x S; x is scaled by S / w,
//     y by S / h.
//   * keep_aspect (two-stage models): torchvision's GeneralizedRCNNTransform, by default with
//     min_size = max_size = S: scale = min(S / short side, S / long side) (= S / long side),
//     with AspectLimits min(min_size / short side, max_size / long side);
//     computed in double as torchvision does in Python; the resized image is
//     floor(w * scale) x floor(h * scale) (torch.nn.functional.interpolate with scale_factor
//     and recompute_scale_factor = True floors the float product, so the long side can come
//     out as S - 1: e.g. h = 49, S = 64 gives 63). It sits at the top-left of the S x S
//     canvas, the rest is padding. Boxes are scaled by the resized size over the original
//     size on each axis (torchvision's resize_boxes), which differs from `scale` by less than
//     1 / w (or 1 / h) when the floor cuts.
// Either way the image occupies [0, width) x [0, height) of the input (S x S when stretched),
// and scale_x = width / ref_width, scale_y = height / ref_height are input pixels per pixel
// of the reference image (the one that was fitted: the original in evaluation, the augmented
// image in training).
#pragma once

#include "data/metrics.h"

namespace data {

// torchvision's GeneralizedRCNNTransform limits for keep_aspect fits: scale = min(min_size /
// short side, max_size / long side). Sizes are in input pixels at input side `side`; at
// another side S they scale by S / side (multiscale training and testing). 0 means S, so
// the default {0, 0} is min_size = max_size = S. torchvision's 800 / 1333 is {800, 1333, 1344}
// (a canvas of 1344 = 1333 rounded up to a multiple of 32).
struct AspectLimits {
  double min_size = 0, max_size = 0;
  int side = 0;
};

struct InputFit {
  int width = 0, height = 0;          // valid (unpadded) region in input pixels
  int ref_width = 0, ref_height = 0;  // the image that was fitted
  double scale_x = 0, scale_y = 0;    // width / ref_width, height / ref_height
  bool keep_aspect = false;           // fitted with keep_aspect (the rest of S x S is padding)
};

// The fit of a ref_width x ref_height image into an S x S input (side S). Bad sizes
// (non-positive, over 1e6) throw eng::Error naming them.
// keep_aspect fits use `limits` (above); both must be <= S after scaling (the image then fits).
InputFit fit_input(int ref_width, int ref_height, int side, bool keep_aspect, const AspectLimits& limits = {});

// A box in input pixels -> the reference image's pixels: x * ref_width / width, y *
// ref_height / height (torchvision's resize_boxes back to the original size; for a
// stretched fit exactly x * w / S, y * h / S).
Box box_to_reference(const Box& box, const InputFit& fit);

// keep_aspect fits: the box clamped to the valid region [0, width] x [0, height] (what
// torchvision's clip_boxes_to_image does with the resized image's size); stretched fits:
// the box unchanged.
Box clip_to_valid(const Box& box, const InputFit& fit);

// A box found on a mirrored input (the valid region flipped along x: column x of the mirror
// is column fit.width - 1 - x of the image) -> the same box on the unmirrored input.
Box unmirror_box(const Box& box, const InputFit& fit);

}  // namespace data
