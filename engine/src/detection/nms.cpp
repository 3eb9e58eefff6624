// batched_nms front-end: checks, contiguous inputs, one dispatch by device (maths and tie
// rule in kernels/nms.h). Not differentiable.
#include <cmath>

#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/detection.h"
#include "padded_detections.h"
#include "kernels/nms.h"

namespace eng::det {
using namespace eng::detail;


Detections batched_nms(const Tensor& boxes_in, const Tensor& scores_in, const Tensor& labels_in, double iou_threshold,
                       int64_t max_per_image) {
  const char* op = "batched_nms";
  check_dim(op, boxes_in, 3, "boxes");
  check_dim(op, scores_in, 2, "scores");
  check_dim(op, labels_in, 2, "labels");
  ENGINE_CHECK(boxes_in.size(2) == 4, op, ": boxes must be [B, K, 4], got shape ", shape_str(boxes_in.sizes()));
  const int64_t B = boxes_in.size(0), K = boxes_in.size(1);
  ENGINE_CHECK(scores_in.size(0) == B && scores_in.size(1) == K, op, ": scores must be [B, K] = [", B, ", ", K,
               "] like boxes, got shape ", shape_str(scores_in.sizes()));
  ENGINE_CHECK(labels_in.size(0) == B && labels_in.size(1) == K, op, ": labels must be [B, K] = [", B, ", ", K,
               "] like boxes, got shape ", shape_str(labels_in.sizes()));
  check_floating(op, boxes_in);
  check_same_device_dtype(op, {boxes_in, scores_in});
  ENGINE_CHECK(labels_in.dtype() == DType::i64, op, ": labels must be i64, got ", dtype_name(labels_in.dtype()));
  ENGINE_CHECK(labels_in.device() == boxes_in.device(), op, ": labels are on ", labels_in.device().str(),
               " but boxes are on ", boxes_in.device().str());
  ENGINE_CHECK(max_per_image >= 1, op, ": max_per_image must be >= 1, got ", max_per_image);
  ENGINE_CHECK(!std::isnan(iou_threshold), op, ": iou_threshold is NaN");

  const Device dev = boxes_in.device();
  if (dev.is_cuda()) {
    ENGINE_CHECK(boxes_in.dtype() == DType::f32, op, ": CUDA tensors must be f32, got ", dtype_name(boxes_in.dtype()));
    ENGINE_CHECK(K <= kern::kNmsMaxCandidatesCuda, op, ": at most ", kern::kNmsMaxCandidatesCuda,
                 " candidates per image on CUDA, got ", K);
    ENGINE_CHECK(B * K < (int64_t(1) << 31) && B * max_per_image < (int64_t(1) << 31), op, ": B * K = ", B * K,
                 " and B * max_per_image = ", B * max_per_image, " must be < 2^31 on CUDA");
  }

  Detections out = padded_detections(B, max_per_image, boxes_in.dtype(), dev);
  if (B == 0 || K == 0) return out;  // nothing to suppress: all padding

  Tensor boxes = boxes_in.detach().contiguous(), scores = scores_in.detach().contiguous();
  Tensor labels = labels_in.detach().contiguous();
  kern::NmsDims d;
  d.B = B, d.K = K, d.max_out = max_per_image, d.max_run = K;
  dispatch_float(boxes, op, [&](auto tag) {
    using T = decltype(tag);
    if (dev.is_cuda()) {
      ENGINE_IF_CUDA({
        Tensor ws = empty({static_cast<int64_t>(kern::cuda::batched_nms_workspace_bytes(d))},
                          TensorOptions(DType::u8).device(dev));
        kern::cuda::batched_nms(d, boxes.data<float>(), scores.data<float>(), labels.data<int64_t>(),
                                static_cast<float>(iou_threshold), out.boxes.data<float>(), out.scores.data<float>(),
                                out.labels.data<int64_t>(), out.counts.data<int64_t>(), ws.raw_data(),
                                cuda::stream());
      });
    } else {
      kern::cpu::batched_nms<T>(d, boxes.data<T>(), scores.data<T>(), labels.data<int64_t>(),
                                static_cast<T>(iou_threshold), out.boxes.data<T>(), out.scores.data<T>(),
                                out.labels.data<int64_t>(), out.counts.data<int64_t>());
    }
  });
  return out;
}

}  // namespace eng::det
