// detect_postprocess front-end and the SSD / RetinaNet option presets (maths, candidate
// layout and tie rules in kernels/postprocess.h). Not differentiable.
#include <cmath>

#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/detection.h"
#include "padded_detections.h"
#include "kernels/nms.h"
#include "kernels/postprocess.h"

namespace eng::det {
using namespace eng::detail;

PostprocessOptions PostprocessOptions::ssd() {
  PostprocessOptions o;
  o.kind = ScoreKind::Softmax;
  o.score_threshold = 0.01;
  o.topk_candidates = 400;
  o.nms_threshold = 0.45;
  o.max_per_image = 200;
  o.weights = BoxCoderWeights{10, 10, 5, 5};
  return o;
}

PostprocessOptions PostprocessOptions::retinanet() {
  PostprocessOptions o;
  o.kind = ScoreKind::Sigmoid;
  o.score_threshold = 0.05;
  o.topk_candidates = 1000;
  o.nms_threshold = 0.5;
  o.max_per_image = 300;
  o.weights = BoxCoderWeights{1, 1, 1, 1};
  return o;
}

namespace {

// Checks the options and turns them into the kernel's dims.
kern::PostprocessDims make_dims(int64_t B, int64_t A, int64_t C, const PostprocessOptions& o) {
  const char* op = "detect_postprocess";
  kern::PostprocessDims d;
  d.B = B, d.A = A, d.C = C;
  d.mode = o.kind == ScoreKind::Softmax ? kern::ScoreMode::Softmax : kern::ScoreMode::Sigmoid;
  if (o.kind == ScoreKind::Softmax) {
    ENGINE_CHECK(C >= 2, op, ": Softmax scoring needs C >= 2 classes (class 0 is the background), got ", C);
  } else {
    ENGINE_CHECK(C >= 1, op, ": Sigmoid scoring needs C >= 1 classes, got ", C);
    if (o.level_sizes.empty()) {
      d.num_levels = 1;
      d.level_sizes[0] = A;
    } else {
      ENGINE_CHECK(static_cast<int>(o.level_sizes.size()) <= kern::kMaxLevels, op, ": at most ", kern::kMaxLevels,
                   " levels, got ", o.level_sizes.size());
      int64_t total = 0;
      for (size_t l = 0; l < o.level_sizes.size(); ++l) {
        ENGINE_CHECK(o.level_sizes[l] >= 0, op, ": level_sizes[", l, "] is negative (", o.level_sizes[l], ")");
        d.level_sizes[l] = o.level_sizes[l];
        total += o.level_sizes[l];
      }
      ENGINE_CHECK(total == A, op, ": level_sizes sum to ", total, " but there are ", A, " anchors");
      d.num_levels = static_cast<int>(o.level_sizes.size());
    }
  }
  ENGINE_CHECK(o.topk_candidates >= 1, op, ": topk_candidates must be >= 1, got ", o.topk_candidates);
  ENGINE_CHECK(o.max_per_image >= 1, op, ": max_per_image must be >= 1, got ", o.max_per_image);
  ENGINE_CHECK(!std::isnan(o.score_threshold), op, ": score_threshold is NaN");
  ENGINE_CHECK(!std::isnan(o.nms_threshold), op, ": nms_threshold is NaN");
  const BoxCoderWeights& w = o.weights;
  ENGINE_CHECK(w.wx > 0 && w.wy > 0 && w.ww > 0 && w.wh > 0 && std::isfinite(w.wx) && std::isfinite(w.wy) &&
                   std::isfinite(w.ww) && std::isfinite(w.wh),
               op, ": box coder weights must be positive and finite, got (", w.wx, ", ", w.wy, ", ", w.ww, ", ", w.wh,
               ")");
  d.topk = o.topk_candidates;
  d.max_out = o.max_per_image;
  d.score_threshold = o.score_threshold;
  d.nms_threshold = o.nms_threshold;
  d.wx = w.wx, d.wy = w.wy, d.ww = w.ww, d.wh = w.wh;
  ENGINE_CHECK(o.clip_width >= 0 && o.clip_height >= 0 && (o.clip_width > 0) == (o.clip_height > 0), op,
               ": clip size must be both positive or both 0, got ", o.clip_width, " x ", o.clip_height);
  d.clip_w = o.clip_width, d.clip_h = o.clip_height;
  return d;
}

}  // namespace

Detections detect_postprocess(const Tensor& logits_in, const Tensor& deltas_in, const Tensor& anchors_in,
                              const PostprocessOptions& options) {
  const char* op = "detect_postprocess";
  check_dim(op, logits_in, 3, "class_logits");
  check_dim(op, deltas_in, 3, "box_deltas");
  check_dim(op, anchors_in, 2, "anchors");
  const int64_t B = logits_in.size(0), A = logits_in.size(1), C = logits_in.size(2);
  ENGINE_CHECK(deltas_in.size(0) == B && deltas_in.size(1) == A && deltas_in.size(2) == 4, op,
               ": box_deltas must be [B, A, 4] = [", B, ", ", A, ", 4] for class_logits of shape ",
               shape_str(logits_in.sizes()), ", got ", shape_str(deltas_in.sizes()));
  ENGINE_CHECK(anchors_in.size(0) == A && anchors_in.size(1) == 4, op, ": anchors must be [A, 4] = [", A,
               ", 4], got ", shape_str(anchors_in.sizes()));
  check_floating(op, logits_in);
  check_same_device_dtype(op, {logits_in, deltas_in, anchors_in});
  const kern::PostprocessDims d = make_dims(B, A, C, options);
  const kern::PostprocessLayout layout = kern::postprocess_layout(d);

  const Device dev = logits_in.device();
  if (dev.is_cuda()) {
    ENGINE_CHECK(logits_in.dtype() == DType::f32, op, ": CUDA tensors must be f32, got ",
                 dtype_name(logits_in.dtype()));
    ENGINE_CHECK(B * A * C < (int64_t(1) << 31) && B * d.max_out < (int64_t(1) << 31), op, ": B * A * C = ", B * A * C,
                 " and B * max_per_image = ", B * d.max_out, " must be < 2^31 on CUDA");
    ENGINE_CHECK(layout.candidates <= kern::kNmsMaxCandidatesCuda, op, ": ", layout.candidates,
                 " NMS candidates per image (top-k x classes or levels) exceed the CUDA limit of ",
                 kern::kNmsMaxCandidatesCuda);
  }

  Detections out = padded_detections(B, d.max_out, logits_in.dtype(), dev);
  if (B == 0 || layout.candidates == 0) return out;  // no anchor: all padding

  Tensor logits = logits_in.detach().contiguous(), deltas = deltas_in.detach().contiguous();
  Tensor anchors = anchors_in.detach().contiguous();
  dispatch_float(logits, op, [&](auto tag) {
    using T = decltype(tag);
    if (dev.is_cuda()) {
      ENGINE_IF_CUDA({
        Tensor ws = empty({static_cast<int64_t>(kern::cuda::detect_postprocess_workspace_bytes(d))},
                          TensorOptions(DType::u8).device(dev));
        kern::cuda::detect_postprocess(d, logits.data<float>(), deltas.data<float>(), anchors.data<float>(),
                                       out.boxes.data<float>(), out.scores.data<float>(), out.labels.data<int64_t>(),
                                       out.counts.data<int64_t>(), ws.raw_data(), cuda::stream());
      });
    } else {
      kern::cpu::detect_postprocess<T>(d, logits.data<T>(), deltas.data<T>(), anchors.data<T>(), out.boxes.data<T>(),
                                       out.scores.data<T>(), out.labels.data<int64_t>(), out.counts.data<int64_t>());
    }
  });
  return out;
}

}  // namespace eng::det
