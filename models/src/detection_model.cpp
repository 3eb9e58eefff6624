// The shared part of DetectionModel: inference from head outputs with given settings.
#include "models/detection_model.h"

#include "engine/autograd.h"

namespace models {

eng::det::Detections DetectionModel::postprocess(const HeadOutputs& heads, const eng::det::PostprocessOptions& options) {
  eng::NoGradGuard ng;
  return eng::det::detect_postprocess(heads.class_logits.detach(), heads.box_regression.detach(),
                                      anchors(heads.class_logits.device()), options);
}

}  // namespace models
