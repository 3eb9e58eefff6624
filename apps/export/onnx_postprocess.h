// Detection post-processing as ONNX nodes (ssd_export --postprocess nms): the same steps as
// eng::det::detect_postprocess (engine/detection.h), in ONNX operators:
//   scores   Softmax over classes, background dropped (SSD), or Sigmoid (RetinaNet);
//   top-k    per class over the anchors (Softmax) or per level over (anchor, class) (Sigmoid),
//            then scores <= score_threshold set to 0 (ONNX TopK breaks ties by the lower
//            index, as our kernels do);
//   decode   the candidates' deltas against their anchors (box coder weights, dw / dh
//            clamped at ln(1000 / 16)), clipped to the image when the architecture clips;
//   NMS      ONNX NonMaxSuppression per class: each class sees only its own candidates
//            (the others get score 0), IoU > nms_threshold suppresses;
//   cap      max_per_image per image by descending score (two stable TopK sorts, then the
//            rank within the image from a cumulative one-hot count).
// Outputs (K = all kept detections of the batch, ordered by image, then score descending):
//   detection_boxes [K, 4] f32 (x1, y1, x2, y2 in input pixels), detection_scores [K] f32,
//   detection_labels [K] i64 (class index, as ssd_detect's), detection_batch [K] i64.
#pragma once
#include <string>

#include "engine/detection.h"
#include "export/onnx_builder.h"

namespace onnx_export {

struct PostprocessOutputs {
  std::string boxes, scores, labels, batch;
};

// deltas [B, A, 4], logits [B, A, C] (ONNX names), anchors [A, 4] (an initializer name).
PostprocessOutputs emit_postprocess(GraphBuilder& b, const std::string& deltas, const std::string& logits,
                                    const std::string& anchors, int64_t num_anchors, int64_t num_classes,
                                    const eng::det::PostprocessOptions& o);

// The tail shared with the two-stage graph: candidates boxes [B, M, 4], scores [B, M] (already
// 0 where they do not pass), labels [B, M] or [1, M] (i64, in first_label .. first_label +
// num_labels - 1) -> class-wise NMS (IoU > nms_threshold suppresses; thr: the scalar score
// threshold's name) -> at most max_per_image per image. num_images: a scalar i64 name.
PostprocessOutputs emit_classwise_nms(GraphBuilder& b, const std::string& boxes, const std::string& scores,
                                      const std::string& labels, int64_t first_label, int64_t num_labels,
                                      const std::string& thr, double nms_threshold, int64_t max_per_image,
                                      const std::string& num_images);

}  // namespace onnx_export
