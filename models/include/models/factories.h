// The per-family constructors behind create_model (models/src/registry.cpp).
#pragma once
#include <memory>

#include "models/detection_model.h"

namespace models {

std::shared_ptr<DetectionModel> make_ssd_vgg16(const ModelConfig& config);   // ssd300_vgg16, ssd512_vgg16
std::shared_ptr<DetectionModel> make_retinanet(const ModelConfig& config);   // retinanet_resnet50_fpn
std::shared_ptr<DetectionModel> make_tiny_ssd(const ModelConfig& config);    // tiny_ssd
std::shared_ptr<DetectionModel> make_ssdlite(const ModelConfig& config);     // ssdlite320_mobilenet_v3_large
std::shared_ptr<DetectionModel> make_fasterrcnn(const ModelConfig& config);  // fasterrcnn_resnet50_fpn
std::shared_ptr<DetectionModel> make_gluon_ssd(const ModelConfig& config);   // the GluonCV presets (gluon_ssd.h)

}  // namespace models
