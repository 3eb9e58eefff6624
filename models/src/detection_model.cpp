// The shared part of DetectionModel: inference from head outputs with given settings.
#include "models/detection_model.h"

#include "engine/autograd.h"

namespace models {

eng::Tensor DetectionModel::cached_anchors(eng::Device device) const {
  const int64_t size = config_.input_size;
  for (AnchorCacheEntry& e : anchor_cache_)
    if (e.device == device) {
      if (e.input_size != size) {  // set_input_size changed them: recompute for this device
        e.anchors = anchors(device);
        e.input_size = size;
      }
      return e.anchors;
    }
  anchor_cache_.push_back({device, size, anchors(device)});
  return anchor_cache_.back().anchors;
}

eng::det::Detections DetectionModel::postprocess(const HeadOutputs& heads, const eng::det::PostprocessOptions& options) {
  eng::NoGradGuard ng;
  return eng::det::detect_postprocess(heads.class_logits.detach(), heads.box_regression.detach(),
                                      cached_anchors(heads.class_logits.device()), options);
}

HeadOutputs forward_heads_f32(DetectionModel& model, const eng::Tensor& images) {
  HeadOutputs h = model.forward_heads(images);
  if (h.box_regression.dtype() != eng::DType::f32) h.box_regression = h.box_regression.to(eng::DType::f32);
  if (h.class_logits.dtype() != eng::DType::f32) h.class_logits = h.class_logits.to(eng::DType::f32);
  for (eng::Tensor& f : h.features)
    if (f.dtype() != eng::DType::f32) f = f.to(eng::DType::f32);
  return h;
}

}  // namespace models
