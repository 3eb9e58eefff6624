// create_model / model_names: the architecture names and their default input sizes.
#include <sstream>

#include "engine/error.h"
#include "models/anchor_scales.h"
#include "models/detection_model.h"
#include "models/factories.h"

namespace models {

namespace {

struct Entry {
  const char* name;
  int64_t default_input_size;
  std::shared_ptr<DetectionModel> (*make)(const ModelConfig&);
};

const Entry kEntries[] = {
    {"tiny_ssd", 256, &make_tiny_ssd},
    {"ssd300_vgg16", 300, &make_ssd_vgg16},
    {"ssd512_vgg16", 512, &make_ssd_vgg16},
    {"retinanet_resnet50_fpn", 512, &make_retinanet},
    {"ssdlite320_mobilenet_v3_large", 320, &make_ssdlite},
    {"ssd512_resnet18_v1", 512, &make_gluon_ssd},
    {"ssd512_resnet50_v1", 512, &make_gluon_ssd},
    {"ssd512_resnet101_v2", 512, &make_gluon_ssd},
    {"ssd512_resnet152_v2", 512, &make_gluon_ssd},
    {"ssd512_mobilenet1_0", 512, &make_gluon_ssd},
    {"ssd300_mobilenet0_25", 300, &make_gluon_ssd},
    {"fasterrcnn_resnet50_fpn", 800, &make_fasterrcnn},
};

}  // namespace

std::vector<std::string> model_names() {
  std::vector<std::string> out;
  for (const auto& e : kEntries) out.emplace_back(e.name);
  return out;
}

std::shared_ptr<DetectionModel> create_model(const ModelConfig& config) {
  // Only SSD uses the preset, but an unknown one is refused for every architecture (it would
  // otherwise be written into checkpoints and silently ignored).
  check_anchor_config(config);
  ENGINE_CHECK(config.matcher.empty() || config.matcher == "ssd" || config.matcher == "bipartite", "matcher '",
               config.matcher.size() > 40 ? config.matcher.substr(0, 37) + "..." : config.matcher,
               "' is not one of ssd, bipartite");
  ENGINE_CHECK(config.matcher.empty() || config.arch != "retinanet_resnet50_fpn",
               "matcher '", config.matcher, "': retinanet_resnet50_fpn has its own matcher (IoU 0.5 / 0.4); the "
               "matcher choice is for SSD-family models");
  ENGINE_CHECK(config.matcher.empty() || config.arch != "fasterrcnn_resnet50_fpn",
               "matcher '", config.matcher, "': fasterrcnn_resnet50_fpn has its own matchers (RPN 0.7 / 0.3, RoI "
               "0.5); the matcher choice is for SSD-family models");
  ENGINE_CHECK(!config.full_tail || config.arch == "ssdlite320_mobilenet_v3_large",
               "full_tail: only ssdlite320_mobilenet_v3_large has a MobileNetV3 tail to choose, not '", config.arch, "'");
  const bool resnet_fpn = config.arch == "retinanet_resnet50_fpn" || config.arch == "fasterrcnn_resnet50_fpn";
  ENGINE_CHECK(config.trainable_backbone_layers == -1 || (resnet_fpn && config.trainable_backbone_layers >= 0 &&
                                                          config.trainable_backbone_layers <= 5),
               "trainable backbone layers (--trainable-backbone-layers) ", config.trainable_backbone_layers,
               resnet_fpn ? ": must be in 0..5" : std::string(": only the ResNet-FPN models (retinanet_resnet50_fpn, "
                                                              "fasterrcnn_resnet50_fpn) have them, not '") + config.arch + "'");
  ENGINE_CHECK(config.backbone_norm.empty() || ((config.backbone_norm == "frozen" || config.backbone_norm == "batch") &&
                                                 resnet_fpn),
               "backbone norm (--backbone-norm) '", config.backbone_norm.size() > 40 ? config.backbone_norm.substr(0, 37) + "..." : config.backbone_norm,
               resnet_fpn ? "' is not one of frozen, batch" : std::string("': only the ResNet-FPN models (retinanet_resnet50_fpn, "
                                                                            "fasterrcnn_resnet50_fpn) have that choice, not '") + config.arch + "'");
  ENGINE_CHECK((config.rpn_top_n_train == 0 && config.rpn_top_n_test == 0) || config.arch == "fasterrcnn_resnet50_fpn",
               "RPN proposals per image (--rpn-top-n-train / --rpn-top-n-test): only two-stage models (fasterrcnn_resnet50_fpn) have an RPN, not '", config.arch,
               "'");
  ENGINE_CHECK((config.min_size == 0 && config.max_size == 0) || config.arch == "fasterrcnn_resnet50_fpn",
               "min / max size (--min-size / --max-size): only models that keep the aspect ratio "
               "(fasterrcnn_resnet50_fpn) have them, not '", config.arch, "'");
  for (const auto& e : kEntries) {
    if (config.arch != e.name) continue;
    ModelConfig c = config;
    if (c.input_size == 0) c.input_size = e.default_input_size;
    return e.make(c);
  }
  std::ostringstream os;
  os << "unknown model architecture '" << config.arch << "' (known: ";
  bool first = true;
  for (const auto& e : kEntries) {
    os << (first ? "" : ", ") << e.name;
    first = false;
  }
  os << ")";
  throw eng::Error(os.str());
}

}  // namespace models
