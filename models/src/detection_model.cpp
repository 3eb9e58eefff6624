// The shared part of DetectionModel: inference from head outputs with given settings.
#include "models/detection_model.h"

#include "engine/autograd.h"

namespace models {

eng::det::Detections DetectionModel::postprocess(const HeadOutputs& heads, const eng::det::PostprocessOptions& options) {
  eng::NoGradGuard ng;
  return eng::det::detect_postprocess(heads.class_logits.detach(), heads.box_regression.detach(),
                                      anchors(heads.class_logits.device()), options);
}

HeadOutputs forward_heads_f32(DetectionModel& model, const eng::Tensor& images) {
  HeadOutputs h = model.forward_heads(images);
  if (h.box_regression.dtype() != eng::DType::f32) h.box_regression = h.box_regression.to(eng::DType::f32);
  if (h.class_logits.dtype() != eng::DType::f32) h.class_logits = h.class_logits.to(eng::DType::f32);
  return h;
}

}  // namespace models
