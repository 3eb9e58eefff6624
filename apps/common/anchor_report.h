// The anchor-fit lines ssd_train prints at the start of training and `ssd_data anchors`
// prints (models/anchor_fit.h has the measure), and the anchor flags both programs share.
#pragma once
#include <string>
#include <vector>

#include "data/annotation.h"
#include "models/detection_model.h"

namespace app {

// One line "anchors: <arch> (<preset>) at input S on the training set: N boxes: ..." and,
// when under models::kPoorAnchorFitRecall, a second line "warning: ..." with the
// suggestion (`ssd_data anchors --data <data_flag> --arch <arch>`, or --anchor-sizes).
// A third line notes images skipped for lack of a size in the annotation.
std::vector<std::string> anchor_fit_lines(const data::Dataset& train, const models::DetectionModel& model,
                                          const std::string& data_flag);

// --anchor-preset / --anchor-sizes into a config: preset "" is `default_preset`; sizes
// given imply "custom" (an explicit other preset with sizes is an error). Throws eng::Error
// naming the flag; the result passes models::check_anchor_config.
void apply_anchor_flags(models::ModelConfig& config, const std::string& preset, const std::string& sizes,
                        const std::string& default_preset);

}  // namespace app
