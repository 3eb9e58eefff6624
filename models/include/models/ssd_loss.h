// torchvision SSD's loss (SSD.compute_loss), as a free function any SSD-family model can call:
// SSDMatcher(0.5) (highest IoU >= 0.5, and each GT's best anchor forced), BoxCoder weights
// (10, 10, 5, 5), smooth-L1 (beta 1) summed over positives, cross-entropy over positives and
// the 3:1 hardest negatives; both divided by N = max(1, positives in the batch).
// (SSD300/SSD512 and ssdlite320_mobilenet_v3_large use it.)
#pragma once
#include "models/detection_model.h"

namespace models {

// anchors [A, 4] on the heads' device (pixels, corners).
LossParts ssd_multibox_loss(const eng::Tensor& anchors, const HeadOutputs& heads, const Targets& targets);

}  // namespace models
