// torchvision SSD's loss (SSD.compute_loss), as a free function any SSD-family model can call:
// SSDMatcher(0.5) (highest IoU >= 0.5, and each GT's best anchor forced), BoxCoder weights
// (10, 10, 5, 5), smooth-L1 (beta 1) summed over positives, cross-entropy over positives and
// the 3:1 hardest negatives; both divided by N = max(1, positives in the batch).
// (SSD300/SSD512 and ssdlite320_mobilenet_v3_large use it.)
#pragma once
#include "models/detection_model.h"

namespace models {

// How the targets are matched: torchvision's SSDMatcher (det::match_ssd, the default) or
// GluonCV's bipartite-then-threshold CompositeMatcher (det::match_bipartite); both at IoU 0.5.
struct SSDLossOptions {
  eng::det::MatchRule matcher = eng::det::MatchRule::ssd;
  double iou_threshold = 0.5;
};

// anchors [A, 4] on the heads' device (pixels, corners). GTs flagged in targets.ignore take
// part in the matching; the anchors they claim are neither positive nor negative.
LossParts ssd_multibox_loss(const eng::Tensor& anchors, const HeadOutputs& heads, const Targets& targets);
LossParts ssd_multibox_loss(const eng::Tensor& anchors, const HeadOutputs& heads, const Targets& targets,
                            const SSDLossOptions& options);

// config.matcher -> the rule: "" gives `architecture_default`, "ssd" / "bipartite" theirs;
// anything else is a one-line error naming the value.
eng::det::MatchRule resolve_matcher(const ModelConfig& config, eng::det::MatchRule architecture_default);

}  // namespace models
