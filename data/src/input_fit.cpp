#include "data/input_fit.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace data {

InputFit fit_input(int ref_width, int ref_height, int side, bool keep_aspect, const AspectLimits& limits) {
  ENGINE_CHECK(ref_width > 0 && ref_height > 0 && ref_width <= 1000000 && ref_height <= 1000000,
               "fit_input: image size ", ref_width, "x", ref_height, " out of range 1..1000000");
  ENGINE_CHECK(side > 0 && side <= 1000000, "fit_input: input side ", side, " out of range 1..1000000");
  InputFit f;
  f.ref_width = ref_width;
  f.ref_height = ref_height;
  f.keep_aspect = keep_aspect;
  if (!keep_aspect) {
    f.width = f.height = side;
  } else {
    // As torchvision: scale = min(min_size / min_side, max_size / max_side) in double, then
    // floor(float(size) * scale) per axis (interpolate with recompute_scale_factor).
    const double s = static_cast<double>(side);
    auto limit = [&](double v) {
      if (v <= 0) return s;
      return limits.side > 0 && limits.side != side ? v * s / limits.side : v;  // exact at its own side
    };
    const double lo = limit(limits.min_size), hi = limit(limits.max_size);
    ENGINE_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo > 0 && hi > 0 && lo <= s && hi <= s, "fit_input: size limits ",
                 lo, " / ", hi, " must be in (0, ", side, "] (the input side)");
    const double scale = std::min(lo / std::min(ref_width, ref_height), hi / std::max(ref_width, ref_height));
    // At least 1 px (a 1 x 100000 image at S = 8); never more than S.
    f.width = std::clamp(static_cast<int>(std::floor(static_cast<double>(ref_width) * scale)), 1, side);
    f.height = std::clamp(static_cast<int>(std::floor(static_cast<double>(ref_height) * scale)), 1, side);
  }
  f.scale_x = static_cast<double>(f.width) / ref_width;
  f.scale_y = static_cast<double>(f.height) / ref_height;
  return f;
}

Box box_to_reference(const Box& b, const InputFit& f) {
  const double fx = static_cast<double>(f.ref_width) / f.width, fy = static_cast<double>(f.ref_height) / f.height;
  return {b.x1 * fx, b.y1 * fy, b.x2 * fx, b.y2 * fy};
}

Box clip_to_valid(const Box& b, const InputFit& f) {
  if (!f.keep_aspect) return b;
  const double w = f.width, h = f.height;
  return {std::clamp(b.x1, 0.0, w), std::clamp(b.y1, 0.0, h), std::clamp(b.x2, 0.0, w), std::clamp(b.y2, 0.0, h)};
}

Box unmirror_box(const Box& b, const InputFit& f) {
  const double w = f.width;
  return {w - b.x2, b.y1, w - b.x1, b.y2};
}

}  // namespace data
