// The engine's own answer for an exported model (ssd_export --reference): a generated input
// batch and the outputs this engine computes for it, under the ONNX output names, in a
// safetensors file. tests/oracles/onnx_check.py runs the .onnx file in ONNX Runtime on the
// same input and compares.
//   postprocess none: images, boxes, scores, anchors (+ features_<i> for two-stage models).
//   postprocess nms:  images, detection_boxes / _scores / _labels / _batch from the model's own
//                     post-processing (what ssd_detect runs), flattened in the ONNX layout:
//                     by image, then by descending score.
// The batch is the export's (or 3 for a dynamic batch: not the batch 2 that was traced).
#pragma once
#include <string>

#include "export/onnx_export.h"

namespace onnx_export {

// The generated input batch write_reference uses for `model` with these options.
eng::Tensor reference_images(const models::DetectionModel& model, const ExportOptions& options);

void write_reference(models::DetectionModel& model, const ExportOptions& options, const std::string& path);

}  // namespace onnx_export
