// Internal to engine/src/detection: the padded Detections both NMS and post-processing fill.
#pragma once
#include "engine/detection.h"

namespace eng::det {

// Padded outputs: boxes 0, scores 0, labels -1, counts 0; K slots per image.
inline Detections padded_detections(int64_t B, int64_t K, DType dtype, Device device) {
  Detections out;
  out.boxes = zeros({B, K, 4}, TensorOptions(dtype).device(device));
  out.scores = zeros({B, K}, TensorOptions(dtype).device(device));
  out.labels = full({B, K}, -1.0, TensorOptions(DType::i64).device(device));
  out.counts = zeros({B}, TensorOptions(DType::i64).device(device));
  return out;
}

}  // namespace eng::det
