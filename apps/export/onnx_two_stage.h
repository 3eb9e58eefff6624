// Faster R-CNN's inference after the RPN head as ONNX nodes (ssd_export --postprocess nms on
// fasterrcnn_resnet50_fpn), the steps of FasterRCNN::postprocess (models/fasterrcnn.h):
//   proposals  per level the top-n anchors by objectness logit, decode (weights 1, 1, 1, 1),
//              clip, drop w or h < 1e-3, NMS per level at 0.7 ranked by the logit (each level
//              as an NMS class that sees only its own candidates), then the first n per image
//              by descending sigmoid (ties: lower level, then higher logit rank), written into
//              a [B, n, 4] zero-padded proposal tensor as our kernels do;
//   pooling    torchvision's level mapper, and one RoiAlign per level (7 x 7, sampling 2,
//              aligned false: coordinate_transformation_mode output_half_pixel from opset 16)
//              over every RoI, the RoI's own level selected with Where;
//   box head   traced from the model (TwoMLPHead and the predictor) like the backbone;
//   detection  softmax, class-specific decode (10, 10, 5, 5) against each proposal, clip,
//              background dropped, p > score_threshold, w and h >= 1e-2, then the one-stage
//              tail: class-wise NMS and the per-image cap (onnx_postprocess.h).
// Padding proposals are zero boxes: they decode to empty boxes that the size rule removes.
#pragma once
#include <string>
#include <vector>

#include "export/onnx_ops.h"
#include "export/onnx_postprocess.h"
#include "models/fasterrcnn.h"

namespace onnx_export {

// rpn_deltas [B, A, 4], rpn_logits [B, A, 1], features P2..P5 (ONNX names), anchors [A, 4]
// (an initializer name). `named` / `dynamic_batch` as for emit_trace (the box head's parameters
// become initializers under their names).
PostprocessOutputs emit_two_stage(GraphBuilder& b, models::FasterRCNN& model, const std::string& rpn_deltas,
                                  const std::string& rpn_logits, const std::vector<std::string>& features,
                                  const std::string& anchors, const eng::det::PostprocessOptions& o,
                                  const TraceInputs& named);

}  // namespace onnx_export
