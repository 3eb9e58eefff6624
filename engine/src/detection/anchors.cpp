// multibox_prior / num_priors: the level descriptions become a small table (one row per
// level, one row per box shape, kernels/include/kernels/anchors.h), which the kernel expands
// into one corner box per (location, box shape).
#include <cmath>
#include <string>

#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/detection.h"
#include "kernels/anchors.h"

namespace eng::det {
namespace {

const char* kOp = "multibox_prior";

int64_t boxes_per_location(const PriorLevel& level, PriorOrder order) {
  const auto ns = static_cast<int64_t>(level.sizes.size()), nr = static_cast<int64_t>(level.ratios.size());
  return order == PriorOrder::MultiBox ? ns + nr - 1 : ns * nr;
}

void check_level(const PriorLevel& level, size_t index) {
  ENGINE_CHECK(level.fmap_h > 0 && level.fmap_w > 0, kOp, ": level ", index, " has feature map ", level.fmap_h,
               "x", level.fmap_w, "; both sides must be positive");
  ENGINE_CHECK(!level.sizes.empty(), kOp, ": level ", index, " has no sizes");
  ENGINE_CHECK(!level.ratios.empty(), kOp, ": level ", index, " has no ratios");
  for (double s : level.sizes) ENGINE_CHECK(s > 0, kOp, ": level ", index, " has size ", s, "; sizes must be > 0");
  for (double r : level.ratios)
    ENGINE_CHECK(r > 0, kOp, ": level ", index, " has ratio ", r, "; ratios must be > 0");
}

// The step actually used: the given one, or image / fmap when it is <= 0. The cross-product
// (torchvision AnchorGenerator) order uses torchvision's integer stride image // fmap.
double resolve_step(double step, int64_t image, int64_t fmap, PriorOrder order) {
  if (step > 0) return step;
  if (order == PriorOrder::CrossProduct) return static_cast<double>(image / fmap);
  return static_cast<double>(image) / static_cast<double>(fmap);
}

// Appends the level's box shapes (x1, y1, x2, y2 relative to the cell centre, pixels).
void append_boxes(const PriorLevel& level, const PriorOptions& opt, double image_h, double image_w,
                  std::vector<double>& rows) {
  // A size in pixels, or a fraction of each image side (torchvision DefaultBoxGenerator's
  // scales): width fractions of W, height fractions of H.
  const double sx = opt.sizes_normalized ? image_w : 1.0, sy = opt.sizes_normalized ? image_h : 1.0;
  auto push = [&](double x1, double y1, double x2, double y2) {
    rows.insert(rows.end(), {x1, y1, x2, y2});
  };
  if (opt.order == PriorOrder::MultiBox) {
    // Every size with ratios[0], then sizes[0] with the other ratios; ratio = width / height.
    auto add = [&](double s, double r) {
      const double w = s * std::sqrt(r) * sx, h = s / std::sqrt(r) * sy;
      push(-0.5 * w, -0.5 * h, 0.5 * w, 0.5 * h);
    };
    for (double s : level.sizes) add(s, level.ratios[0]);
    for (size_t k = 1; k < level.ratios.size(); ++k) add(level.sizes[0], level.ratios[k]);
  } else {
    // Ratio-major cross product; ratio = height / width; the half extents are rounded to
    // integers half-to-even (torch.round), as torchvision's AnchorGenerator.
    for (double r : level.ratios) {
      const double h_ratio = std::sqrt(r), w_ratio = 1.0 / h_ratio;
      for (double s : level.sizes) {
        const double w = w_ratio * s * sx, h = h_ratio * s * sy;
        push(std::nearbyint(-0.5 * w), std::nearbyint(-0.5 * h), std::nearbyint(0.5 * w), std::nearbyint(0.5 * h));
      }
    }
  }
}

kern::PriorClip to_kern(PriorClip c) {
  switch (c) {
    case PriorClip::None: return kern::PriorClip::None;
    case PriorClip::Corners: return kern::PriorClip::Corners;
    case PriorClip::CenterSize: return kern::PriorClip::CenterSize;
  }
  return kern::PriorClip::None;
}

}  // namespace

int64_t num_priors(const std::vector<PriorLevel>& levels, PriorOrder order) {
  int64_t total = 0;
  for (size_t l = 0; l < levels.size(); ++l) {
    check_level(levels[l], l);
    total += levels[l].fmap_h * levels[l].fmap_w * boxes_per_location(levels[l], order);
  }
  return total;
}

Tensor multibox_prior(const std::vector<PriorLevel>& levels, int64_t image_h, int64_t image_w,
                      const PriorOptions& options, Device device) {
  ENGINE_CHECK(!levels.empty(), kOp, ": empty level list");
  ENGINE_CHECK(image_h > 0 && image_w > 0, kOp, ": image size ", image_h, "x", image_w, " must be positive");
  const int64_t total = num_priors(levels, options.order);  // also checks every level

  // Level rows first, box rows after them (the layout in kernels/anchors.h).
  const auto L = static_cast<int64_t>(levels.size());
  std::vector<double> table(static_cast<size_t>(L * kern::kPriorLevelCols));
  std::vector<double> boxes;
  int64_t first_anchor = 0, first_box = 0;
  for (int64_t l = 0; l < L; ++l) {
    const PriorLevel& lv = levels[static_cast<size_t>(l)];
    const int64_t per_loc = boxes_per_location(lv, options.order);
    double* row = table.data() + l * kern::kPriorLevelCols;
    row[0] = static_cast<double>(first_anchor);
    row[1] = static_cast<double>(lv.fmap_h);
    row[2] = static_cast<double>(lv.fmap_w);
    row[3] = resolve_step(lv.step_h, image_h, lv.fmap_h, options.order);
    row[4] = resolve_step(lv.step_w, image_w, lv.fmap_w, options.order);
    row[5] = lv.offset;
    row[6] = static_cast<double>(per_loc);
    row[7] = static_cast<double>(first_box);
    append_boxes(lv, options, static_cast<double>(image_h), static_cast<double>(image_w), boxes);
    first_anchor += lv.fmap_h * lv.fmap_w * per_loc;
    first_box += per_loc;
  }
  table.insert(table.end(), boxes.begin(), boxes.end());

  kern::PriorDims d;
  d.num_levels = static_cast<int>(L);
  d.num_anchors = total;
  d.image_h = static_cast<double>(image_h);
  d.image_w = static_cast<double>(image_w);
  d.clip = to_kern(options.clip);
  d.normalized = options.normalized;

  Tensor out = empty({total, 4}, TensorOptions(DType::f32).device(device));
  if (device.is_cuda()) {
    Tensor dev_table = from_vector(table, {static_cast<int64_t>(table.size())}).to(device);
    ENGINE_IF_CUDA(kern::cuda::multibox_prior<float>(d, dev_table.data<double>(), out.data<float>(), cuda::stream()));
  } else {
    kern::cpu::multibox_prior<float>(d, table.data(), out.data<float>());
  }
  return out;
}

}  // namespace eng::det
