// The work behind ssd_detect: inputs -> batched, threaded inference -> detections.json,
// one annotated image per input, a summary line per image and throughput at the end.
//
// Model: the weights' metadata gives the architecture, class count, input size and class
// names (checkpoints written by ssd_train). A file without that metadata (a converted
// torchvision file) needs --arch; its classes come from --classes, else 90 unnamed COCO
// classes ("class_<id>", category id = model class index, as torchvision's labels).
// Inputs that cannot be read are reported on stderr, one line each, and skipped.
// With coco_results set, the same detections also go to a COCO results file
// (common/detect_coco.h); the GT and the output folder are checked before inference.
#pragma once
#include <string>
#include <vector>

#include "common/inference.h"

namespace app {

struct DetectConfig {
  std::string weights, arch, classes, out, device = "cpu";
  std::string precision;  // fp32 | tf32 | bf16; "": the device's default (common/precision.h)
  std::vector<std::string> inputs;
  int batch = 8, workers = 2;
  // Replay the network forward from CUDA graphs (common/inference.h, GraphedForward): needs
  // --device cuda and batch 1; refused on the CPU with a one-line error.
  bool cuda_graph = false;
  InferenceOptions inference;
  double draw_thresh = 0.3;  // drawn boxes only; detections.json keeps every detection
  // --coco-results FILE: also write the official COCO results format (common/detect_coco.h),
  // with image and category ids from --coco-gt (a COCO instances file) when given.
  std::string coco_results, coco_gt;
};

// Returns the exit status: 0 when every input was processed, 1 when any failed (or the
// weights / arguments are bad: then eng::Error is thrown instead).
int detect(const DetectConfig& config);

}  // namespace app
