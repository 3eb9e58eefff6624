// Front-end of eng::det::assign_targets (maths in kernels/include/kernels/assign_targets.h).
// Not differentiable.
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/detection.h"
#include "kernels/assign_targets.h"

namespace eng::det {
using namespace detail;

namespace {

// Host-side checks of CPU inputs: every match is a special value or a GT index in [0, G),
// and every GT that some anchor matched, and that is not ignored, has a label in [0, num_classes).
void check_host_values(const char* op, const Tensor& matched, const Tensor& gt_labels, const uint8_t* ignore,
                       int64_t num_classes) {
  const int64_t B = matched.size(0), A = matched.size(1), G = gt_labels.size(1);
  const int64_t* m = matched.data<int64_t>();
  const int64_t* lab = gt_labels.data<int64_t>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t a = 0; a < A; ++a) {
      const int64_t g = m[b * A + a];
      if (g == kBackground || g == kIgnore) continue;
      ENGINE_CHECK(g >= 0 && g < G, op, ": matched[", b, ", ", a, "] = ", g, " is neither a GT index in [0, ", G,
                   ") nor kBackground (-1) / kIgnore (-2)");
      if (ignore != nullptr && ignore[b * G + g] != 0) continue;  // an ignored GT's label is not used
      const int64_t l = lab[b * G + g];
      ENGINE_CHECK(l >= 0 && l < num_classes, op, ": gt_labels[", b, ", ", g, "] = ", l, " (matched by anchor ", a,
                   ") is outside [0, ", num_classes, ")");
    }
}

}  // namespace

AssignedTargets assign_targets(const Tensor& matched_in, const Tensor& gt_boxes_in, const Tensor& gt_labels_in,
                               const Tensor& anchors_in, int64_t num_classes, int64_t background_label,
                               int64_t ignore_label, const Tensor& gt_ignore_in) {
  const char* op = "assign_targets";
  ENGINE_CHECK(matched_in.defined() && gt_boxes_in.defined() && gt_labels_in.defined() && anchors_in.defined(), op,
               ": undefined input");
  check_dim(op, matched_in, 2, "matched");
  check_dim(op, gt_boxes_in, 3, "gt_boxes");
  check_dim(op, gt_labels_in, 2, "gt_labels");
  check_dim(op, anchors_in, 2, "anchors");
  ENGINE_CHECK(matched_in.dtype() == DType::i64, op, ": matched must be i64, got ", dtype_name(matched_in.dtype()));
  ENGINE_CHECK(gt_labels_in.dtype() == DType::i64, op, ": gt_labels must be i64, got ",
               dtype_name(gt_labels_in.dtype()));
  check_floating(op, gt_boxes_in);
  check_same_device_dtype(op, {gt_boxes_in, anchors_in});
  ENGINE_CHECK(matched_in.device() == gt_boxes_in.device() && gt_labels_in.device() == gt_boxes_in.device(), op,
               ": inputs on different devices (matched ", matched_in.device().str(), ", gt_boxes ",
               gt_boxes_in.device().str(), ", gt_labels ", gt_labels_in.device().str(), ")");
  const int64_t B = matched_in.size(0), A = matched_in.size(1), G = gt_boxes_in.size(1);
  ENGINE_CHECK(gt_boxes_in.size(0) == B && gt_boxes_in.size(2) == 4, op, ": gt_boxes must be [", B, ", G, 4], got ",
               shape_str(gt_boxes_in.sizes()));
  ENGINE_CHECK(gt_labels_in.size(0) == B && gt_labels_in.size(1) == G, op, ": gt_labels must be [", B, ", ", G,
               "] like gt_boxes ", shape_str(gt_boxes_in.sizes()), ", got ", shape_str(gt_labels_in.sizes()));
  ENGINE_CHECK(anchors_in.size(0) == A && anchors_in.size(1) == 4, op, ": anchors must be [", A,
               ", 4] (matched ", shape_str(matched_in.sizes()), "), got ", shape_str(anchors_in.sizes()));
  ENGINE_CHECK(num_classes > 0, op, ": num_classes must be > 0, got ", num_classes);

  Tensor matched = matched_in.detach().contiguous(), gt_boxes = gt_boxes_in.detach().contiguous();
  Tensor gt_labels = gt_labels_in.detach().contiguous(), anchors = anchors_in.detach().contiguous();
  Tensor gt_ignore;
  if (gt_ignore_in.defined()) {
    ENGINE_CHECK(gt_ignore_in.dtype() == DType::u8, op, ": gt_ignore must be u8, got ",
                 dtype_name(gt_ignore_in.dtype()));
    ENGINE_CHECK(gt_ignore_in.dim() == 2 && gt_ignore_in.size(0) == B && gt_ignore_in.size(1) == G, op,
                 ": gt_ignore must be [", B, ", ", G, "] like gt_labels, got ", shape_str(gt_ignore_in.sizes()));
    ENGINE_CHECK(gt_ignore_in.device() == gt_boxes_in.device(), op, ": gt_ignore on ", gt_ignore_in.device().str(),
                 ", gt_boxes on ", gt_boxes_in.device().str());
    gt_ignore = gt_ignore_in.detach().contiguous();
  }
  const uint8_t* ign = gt_ignore.defined() && G > 0 ? gt_ignore.data<uint8_t>() : nullptr;
  if (!matched.is_cuda()) check_host_values(op, matched, gt_labels, ign, num_classes);

  kern::AssignTargetsDims d;
  d.B = B;
  d.G = G;
  d.A = A;
  d.background_label = background_label;
  d.ignore_label = ignore_label;
  const Device dev = gt_boxes.device();
  AssignedTargets out;
  out.labels = empty({B, A}, TensorOptions(DType::i64).device(dev));
  out.boxes = new_empty({B, A, 4}, gt_boxes);
  out.positive = new_empty({B, A}, gt_boxes);
  out.num_positive = empty({B}, TensorOptions(DType::i64).device(dev));
  dispatch_float(gt_boxes, op, [&](auto tag) {
    using T = decltype(tag);
    if (gt_boxes.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::assign_targets<T>(d, matched.data<int64_t>(), gt_boxes.data<T>(),
                                                   gt_labels.data<int64_t>(), ign, anchors.data<T>(),
                                                   out.labels.data<int64_t>(), out.boxes.data<T>(),
                                                   out.positive.data<T>(), out.num_positive.data<int64_t>(),
                                                   cuda::stream()));
    } else {
      kern::cpu::assign_targets<T>(d, matched.data<int64_t>(), gt_boxes.data<T>(), gt_labels.data<int64_t>(), ign,
                                   anchors.data<T>(), out.labels.data<int64_t>(), out.boxes.data<T>(),
                                   out.positive.data<T>(), out.num_positive.data<int64_t>());
    }
  });
  return out;
}

}  // namespace eng::det
