// write_reference (onnx_reference.h).
#include "export/onnx_reference.h"

#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "engine/random.h"

namespace onnx_export {

eng::Tensor reference_images(const models::DetectionModel& model, const ExportOptions& o) {
  const int64_t S = model.config().input_size, B = o.batch > 0 ? o.batch : 3;
  eng::Generator gen(7);
  return eng::randn({B, 3, S, S}, gen);
}

void write_reference(models::DetectionModel& model, const ExportOptions& o, const std::string& path) {
  model.eval();
  eng::NoGradGuard no_grad;
  const eng::Tensor images = reference_images(model, o);
  const int64_t B = images.size(0);
  const models::HeadOutputs heads = model.forward_heads(images);
  std::vector<std::pair<std::string, eng::Tensor>> out = {{"images", images}};
  if (o.postprocess == "none") {
    out.emplace_back("boxes", heads.box_regression.contiguous());
    out.emplace_back("scores", heads.class_logits.contiguous());
    out.emplace_back("anchors", model.cached_anchors(eng::Device::cpu()));
    for (size_t i = 0; i < heads.features.size(); ++i)
      out.emplace_back("features_" + std::to_string(i), heads.features[i].contiguous());
  } else {
    const eng::det::Detections d = model.postprocess(heads, export_postprocess_options(model, o));
    const auto counts = d.counts.to_vector<int64_t>();
    const auto boxes = d.boxes.to_vector<float>();
    const auto scores = d.scores.to_vector<float>();
    const auto labels = d.labels.to_vector<int64_t>();
    const int64_t K = d.scores.size(1);
    std::vector<float> fb, fs;
    std::vector<int64_t> fl, fi;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < counts[static_cast<size_t>(b)]; ++k) {
        const size_t s = static_cast<size_t>(b * K + k);
        for (int j = 0; j < 4; ++j) fb.push_back(boxes[4 * s + static_cast<size_t>(j)]);
        fs.push_back(scores[s]);
        fl.push_back(labels[s]);
        fi.push_back(b);
      }
    const int64_t n = static_cast<int64_t>(fs.size());
    out.emplace_back("detection_boxes", eng::from_vector(fb, {n, 4}));
    out.emplace_back("detection_scores", eng::from_vector(fs, {n}));
    out.emplace_back("detection_labels", eng::from_vector(fl, {n}));
    out.emplace_back("detection_batch", eng::from_vector(fi, {n}));
  }
  eng::io::save_safetensors(path, out, {{"arch", model.config().arch}, {"postprocess", o.postprocess}});
}

}  // namespace onnx_export
