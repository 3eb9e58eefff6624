#include "common/anchor_report.h"

#include "engine/error.h"
#include "models/anchor_fit.h"
#include "models/anchor_scales.h"

namespace app {

std::vector<std::string> anchor_fit_lines(const data::Dataset& train, const models::DetectionModel& model,
                                          const std::string& data_flag) {
  const models::ModelConfig& c = model.config();
  const int s = static_cast<int>(c.input_size);
  const models::TrainingBoxes tb = models::fit_boxes(train, s, model.keep_aspect_ratio(), model.aspect_limits());
  const models::AnchorFit fit = models::measure_anchor_fit(tb.boxes, model.anchors(eng::Device::cpu()));
  std::vector<std::string> out;
  out.push_back("anchors: " + c.arch + " (" + c.anchor_preset + ") at input " + std::to_string(s) +
                " on the training set: " + models::describe_anchor_fit(fit));
  if (fit.boxes > 0 && fit.recall < models::kPoorAnchorFitRecall) {
    std::string hint = models::anchor_scale_count(c.arch) > 0
                           ? "run `ssd_data anchors --data " + data_flag + " --arch " + c.arch + " --input-size " +
                                 std::to_string(s) + "` and pass the sizes it proposes with --anchor-sizes (small objects also gain from a larger --input-size)"
                           : "this architecture takes no custom sizes; a larger --input-size makes small objects larger";
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.1f%%", 100.0 * fit.recall);
    out.push_back("warning: the anchors fit the training boxes poorly (" + std::string(pct) +
                  " under 90% can be matched at IoU 0.5): " + hint);
  }
  if (tb.unsized_images > 0)
    out.push_back("anchors: " + std::to_string(tb.unsized_images) +
                  " images have no size in their annotation and were not measured");
  return out;
}

void apply_anchor_flags(models::ModelConfig& config, const std::string& preset, const std::string& sizes,
                        const std::string& default_preset) {
  config.anchor_preset = preset.empty() ? default_preset : preset;
  config.anchor_scales.clear();
  if (!sizes.empty()) {
    ENGINE_CHECK(preset.empty() || preset == "custom", "--anchor-sizes: given with --anchor-preset ", preset,
                 " (sizes are the preset 'custom')");
    config.anchor_preset = "custom";
    config.anchor_scales = models::parse_anchor_scales(sizes, "--anchor-sizes");
  }
  try {
    models::check_anchor_config(config);
  } catch (const eng::Error& e) {
    ENGINE_FAIL(sizes.empty() ? "--anchor-preset: " : "--anchor-sizes: ", e.what());
  }
}

}  // namespace app
