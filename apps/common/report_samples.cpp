#include "common/report_samples.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/inference.h"
#include "data/detail/image_decoders.h"
#include "data/draw.h"
#include "data/image.h"
#include "data/loader.h"

namespace app::report {
namespace {

constexpr int kSide = 288;        // the longer side of a drawn sample
constexpr size_t kMaxDrawn = 20;  // detections drawn per image

// Puts the model back in training mode on every way out.
struct EvalMode {
  models::DetectionModel& model;
  bool was_training;
  explicit EvalMode(models::DetectionModel& m) : model(m), was_training(m.is_training()) { model.eval(); }
  ~EvalMode() {
    if (was_training) model.train();
  }
};

data::Box scaled(const data::Box& b, double s) { return {b.x1 * s, b.y1 * s, b.x2 * s, b.y2 * s}; }

std::string caption(const std::string& name, double score) {
  char buf[16];
  std::snprintf(buf, sizeof buf, " %.2f", score);
  return name + buf;
}

}  // namespace

std::string base64(const std::vector<uint8_t>& bytes) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{bytes[i]} << 16) | (uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], k[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = uint32_t{bytes[i]} << 16;
    out += {k[v >> 18], k[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (uint32_t{bytes[i]} << 16) | (uint32_t{bytes[i + 1]} << 8);
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], '='};
  }
  return out;
}

std::vector<SampleImage> sample_images(models::DetectionModel& model, const data::Dataset& dataset, eng::Device device,
                                       int count, double score_thresh, std::vector<std::string>& warnings) {
  std::vector<SampleImage> out;
  if (count < 1 || dataset.samples.empty()) return out;
  data::Dataset pick = dataset;
  pick.samples.clear();
  const size_t n = dataset.samples.size(), want = std::min(n, static_cast<size_t>(count));
  for (size_t i = 0; i < want; ++i) pick.samples.push_back(dataset.samples[i * n / want]);

  EvalMode mode(model);
  const InferenceOptions io;
  data::LoaderOptions lo;
  lo.train = false;
  lo.batch_size = static_cast<int>(want);
  lo.workers = 1;
  lo.input_sizes = inference_sizes(model, io);
  lo.mean = model.pixel_mean();
  lo.std = model.pixel_std();
  lo.keep_aspect = model.keep_aspect_ratio();
  lo.aspect_limits = model.aspect_limits();
  lo.keep_images = true;
  lo.scaled_decode = false;
  lo.pinned = device.is_cuda();
  data::Loader loader(pick, lo);
  data::Batch batch;
  while (loader.next(batch)) {
    const auto found = detect_batch(model, batch, device, io);
    for (size_t i = 0; i < found.size() && i < batch.originals.size(); ++i) {
      const data::Sample& s = pick.samples[static_cast<size_t>(batch.samples[i])];
      const data::Image& original = batch.originals[i];
      if (original.width < 1 || original.height < 1) continue;
      const double k = static_cast<double>(kSide) / std::max(original.width, original.height);
      const int w = std::max(1, static_cast<int>(std::lround(original.width * k)));
      const int h = std::max(1, static_cast<int>(std::lround(original.height * k)));
      data::Image img = data::resize_bilinear(original, w, h);
      SampleImage si;
      si.name = s.key;
      for (const data::Object& o : s.objects) {
        // A white line edged in black (grey for difficult / crowd): visible on any background
        // and unlike every class colour.
        const bool ignored = o.difficult || o.iscrowd;
        const data::Box b = scaled(o.box, k);
        data::draw_rect(img, b, data::Rgb{0, 0, 0}, 3);
        data::draw_rect(img, {b.x1 + 1, b.y1 + 1, b.x2 - 1, b.y2 - 1},
                        ignored ? data::Rgb{150, 150, 150} : data::Rgb{255, 255, 255}, 1);
        ++si.num_gt;
      }
      std::vector<Found> dets;
      for (const Found& f : found[i])
        if (f.score >= score_thresh) dets.push_back(f);
      std::stable_sort(dets.begin(), dets.end(), [](const Found& a, const Found& b) { return a.score > b.score; });
      if (dets.size() > kMaxDrawn) dets.resize(kMaxDrawn);
      for (auto it = dets.rbegin(); it != dets.rend(); ++it) {  // the best drawn last, on top
        const std::string name = it->label >= 0 && it->label < static_cast<int>(pick.class_names.size())
                                     ? pick.class_names[static_cast<size_t>(it->label)]
                                     : "class " + std::to_string(it->label);
        data::draw_detection(img, scaled(it->box, k), caption(name, it->score), data::class_colour(it->label));
      }
      si.num_detections = static_cast<int>(dets.size());
      si.width = w;
      si.height = h;
      si.jpeg_base64 = base64(data::detail::encode_jpg(img, 85, s.key));
      out.push_back(std::move(si));
    }
  }
  for (const std::string& w : loader.take_warnings()) warnings.push_back(w);
  return out;
}

}  // namespace app::report
