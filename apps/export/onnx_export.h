// A detector as an ONNX model (ssd_export; docs/export.md).
//
// The model is traced (engine/trace.h): one forward of a random [B, 3, S, S] batch in eval
// mode records the ops, and the table in onnx_ops.cpp turns each into ONNX nodes, with the
// parameters and buffers as initializers under their state_dict names. Nothing about an
// architecture is written twice: a new layer type that uses an op without an exporter entry
// fails to export, naming the op and the layer (tests/test_onnx_export.cpp exports every
// registered architecture).
//
// Input:  "images" f32 [N, 3, S, S], normalised: (pixel / 1 - mean) / std per RGB channel, with
//         mean and std in 0..255 units (metadata "pixel_mean", "pixel_std"), the image resized
//         to S x S (or letterboxed for models that keep the aspect ratio).
// Outputs, postprocess "none": "boxes" [N, A, 4] encoded deltas, "scores" [N, A, C] logits
//         (before softmax / sigmoid), "anchors" [A, 4] corners in input pixels (a constant).
//         Two-stage models add their feature maps "features_<i>" (what the RoI stage pools).
//         postprocess "nms": see onnx_postprocess.h (detection_boxes / _scores / _labels / _batch);
//         two-stage models: onnx_two_stage.h (RPN proposals, RoIAlign, box head, same outputs).
// Metadata (metadata_props): arch, input_size, num_classes, class_names (JSON list), pixel_mean,
// pixel_std, anchor_preset, score_kind, box_coder_weights, score_threshold, nms_threshold,
// topk_candidates, max_per_image, postprocess, producer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <onnx/onnx_pb.h>

#include "models/detection_model.h"

namespace onnx_export {

struct ExportOptions {
  int64_t batch = 0;                 // 0: dynamic ("batch")
  std::string postprocess = "none";  // none | nms
  int64_t opset = 17;                // 13..17
  std::vector<std::string> class_names;  // num_classes - 1 names (metadata only)
  // Optional overrides of the architecture's post-processing (< 0: keep).
  double score_thresh = -1, nms_thresh = -1;
  int64_t topk = -1;
};

// The opsets the exporter writes.
constexpr int64_t kMinOpset = 13, kMaxOpset = 17;

// Builds the ONNX model of `model` at its current input size (it is put in eval mode; its
// parameters must be f32 on the CPU). Throws eng::Error (one line) on anything that cannot be
// expressed. The result passes onnx::checker::check_model (called here).
onnx::ModelProto export_model(models::DetectionModel& model, const ExportOptions& options);

// The post-processing settings an export with these options uses.
eng::det::PostprocessOptions export_postprocess_options(const models::DetectionModel& model, const ExportOptions& options);

// Serialises to `path` atomically ("<path>.tmp", flushed, renamed); one-line error naming the
// path when it cannot be written.
void save_model(const onnx::ModelProto& m, const std::string& path);

}  // namespace onnx_export
