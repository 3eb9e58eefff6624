// ssd_detect: run a detector on images. For now only --summary is implemented:
//   ssd_detect --arch tiny_ssd --num-classes 21 [--input-size S] [--anchors voc|coco] --summary
// prints each top-level block's output shape for a [1, 3, S, S] input, then
//   parameters: <count>
//   anchors: <count>
// Exit codes: 0 ok, 1 bad arguments or model error, 2 not implemented.
#include <cstdio>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "engine/error.h"
#include "engine/tensor.h"
#include "models/detection_model.h"

int main(int argc, char** argv) {
  CLI::App app{"ssd_detect: object detection with a trained model"};
  models::ModelConfig config;
  bool summary = false;
  app.add_option("--arch", config.arch, "architecture (tiny_ssd, ssd300_vgg16, ssd512_vgg16, retinanet_resnet50_fpn)")
      ->required();
  app.add_option("--num-classes", config.num_classes, "classes including background")->required();
  app.add_option("--input-size", config.input_size, "input side in pixels (0: the architecture's default)");
  app.add_option("--anchors", config.anchor_preset, "SSD anchor sizes preset")
      ->check(CLI::IsMember({"voc", "coco"}));
  app.add_flag("--summary", summary, "print block output shapes, parameter and anchor counts");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "ssd_detect: " << e.what() << "\n";
    return 1;
  }
  if (!summary) {
    std::cerr << "ssd_detect: detection on images is not implemented yet (use --summary)\n";
    return 2;
  }
  try {
    auto model = models::create_model(config);
    for (const auto& [name, shape] : model->block_shapes())
      std::cout << name << ": " << eng::shape_str(shape) << "\n";
    std::cout << "parameters: " << model->num_parameters() << "\n";
    std::cout << "anchors: " << model->anchors(eng::Device::cpu()).size(0) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "ssd_detect: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
