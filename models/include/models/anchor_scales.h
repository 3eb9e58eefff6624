// Custom anchor sizes for the SSD-family models (GluonCV's `custom` preset).
//
// A model of L feature levels takes L + 1 increasing scales s_0 < ... < s_L, fractions of
// the input side; level k gets the two square sizes s_k and sqrt(s_k * s_{k+1}) (the SSD
// paper's and d2l's rule; SSD300's coco preset is scales 0.07, 0.15, ..., 1.05). The
// aspect ratios stay the architecture's. Counts: tiny_ssd 6, ssd300_vgg16 7, ssd512_vgg16 8,
// the GluonCV presets 7 (ssd512_resnet152_v2 8); other architectures take no custom sizes.
//
// ModelConfig: anchor_preset "custom" <=> anchor_scales not empty. The scales are written
// to checkpoint/weights metadata as kMetaAnchorScales ("0.05,0.1,..." in %.17g), so
// ssd_detect, ssd_eval and --resume rebuild the same anchors.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/detection_model.h"

namespace models {

constexpr const char* kMetaAnchorScales = "anchor_scales";
constexpr double kMaxAnchorScale = 4.0;  // a scale is in (0, 4] of the input side

// The preset names every architecture accepts (voc, coco, custom).
const std::vector<std::string>& anchor_preset_names();
// L + 1 for the architectures that take custom sizes, 0 for the others.
int64_t anchor_scale_count(const std::string& arch);
// Throws eng::Error (one line) on an unknown preset (listing the known ones), "custom"
// without scales or scales without "custom", a count that does not fit the architecture,
// or a scale that is not finite, not in (0, 4] or not above the one before.
void check_anchor_config(const ModelConfig& config);
// "a,b,c" <-> scales. Parsing is strict (decimal reals only, no empty items, finite, in
// range, increasing); `what` names the source in the error ("--anchor-sizes", a file).
std::vector<double> parse_anchor_scales(const std::string& text, const std::string& what);
std::string format_anchor_scales(const std::vector<double>& scales, int precision = 17);
// Level k's two sizes from the scales: {s_k, sqrt(s_k * s_{k+1})}.
std::vector<double> level_sizes(const std::vector<double>& scales, size_t k);

}  // namespace models
