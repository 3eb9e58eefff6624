#include "common/detect_run.h"
#include "common/precision.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>

#include "common/checkpoint.h"
#include "common/config_check.h"
#include "common/detect_coco.h"
#include "data/coco_json.h"
#include "data/dataset.h"
#include "data/detections_json.h"
#include "data/draw.h"
#include "data/input_list.h"
#include "data/loader.h"
#include "engine/allocator.h"
#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "models/weights.h"

namespace app {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct LoadedModel {
  std::shared_ptr<models::DetectionModel> model;
  ClassList classes;
};

LoadedModel load_model(const DetectConfig& c) {
  ENGINE_CHECK(!c.weights.empty(), "--weights is required");
  const eng::io::SafetensorsFile f = eng::io::load_safetensors(c.weights);  // names the file on any problem
  models::ModelConfig mc;
  LoadedModel out;
  if (f.metadata.count(models::kMetaArch)) {
    mc = models::read_model_config(c.weights);
    ENGINE_CHECK(c.arch.empty() || c.arch == mc.arch, c.weights, ": weights of '", mc.arch, "', but --arch is '",
                 c.arch, "'");
    out.classes = read_class_list(c.weights);
  } else {
    ENGINE_CHECK(!c.arch.empty(), c.weights, ": no architecture in the file's metadata; give --arch");
    mc.arch = c.arch;
    mc.num_classes = 91;
  }
  if (!c.classes.empty()) {
    const std::vector<std::string> names = data::read_class_names(c.classes);
    if (f.metadata.count(models::kMetaArch)) {
      ENGINE_CHECK(static_cast<int64_t>(names.size()) + 1 == mc.num_classes, c.classes, ": ", names.size(),
                   " classes, but ", c.weights, " was trained for ", mc.num_classes - 1);
    } else {
      mc.num_classes = static_cast<int64_t>(names.size()) + 1;
    }
    out.classes.names = names;
    out.classes.category_ids.clear();
  }
  if (out.classes.names.empty())
    for (int64_t k = 1; k < mc.num_classes; ++k) out.classes.names.push_back("class_" + std::to_string(k));
  if (out.classes.category_ids.empty())
    for (size_t k = 0; k < out.classes.names.size(); ++k) out.classes.category_ids.push_back(static_cast<int>(k) + 1);
  ENGINE_CHECK(static_cast<int64_t>(out.classes.names.size()) + 1 == mc.num_classes, c.weights, ": ",
               out.classes.names.size(), " class names for ", mc.num_classes - 1, " classes");
  out.model = models::create_model(mc);
  models::load_model_weights(*out.model, c.weights);
  return out;
}

std::string percentiles_ms(std::vector<double> v) {
  if (v.empty()) return "n/a";
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[static_cast<size_t>(q * (v.size() - 1) + 0.5)] * 1000; };
  char buf[128];
  std::snprintf(buf, sizeof buf, "p50 %.1f ms, p90 %.1f ms, p99 %.1f ms", at(0.5), at(0.9), at(0.99));
  return buf;
}

std::string caption(const std::string& name, double score) {
  char buf[32];
  std::snprintf(buf, sizeof buf, " %.2f", score);
  return name + buf;
}

std::string lower_extension(const std::string& path) {
  std::string e = fs::path(path).extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return e;
}

}  // namespace

int detect(const DetectConfig& c) {
  check(c);  // every value in range (common/config_check.h) before anything is read
  ENGINE_CHECK(!c.out.empty(), "--out is required");
  ENGINE_CHECK(c.batch >= 1, "--batch must be at least 1");
  const eng::Device device = c.device == "cuda" ? eng::Device::cuda() : eng::Device::cpu();
  ENGINE_CHECK(c.device == "cpu" || c.device == "cuda", "--device must be cpu or cuda, got '", c.device, "'");
  ENGINE_CHECK(device.is_cpu() || eng::cuda::available(), "--device cuda: no CUDA device is available");
  ENGINE_CHECK(!c.cuda_graph || device.is_cuda(),
               "--cuda-graph needs --device cuda (a CUDA graph replays device work; the CPU has none to capture)");
  ENGINE_CHECK(!c.cuda_graph || c.batch == 1, "--cuda-graph runs at --batch 1 (got --batch ", c.batch, ")");
  ENGINE_CHECK(c.coco_gt.empty() || !c.coco_results.empty(), "--coco-gt ", c.coco_gt,
               ": needs --coco-results FILE (the ids it gives are for that file)");
  const PrecisionScope precision(resolve_precision(c.precision, device), device);

  int failures = 0;
  std::vector<std::string> errors;
  const std::vector<std::string> files = data::expand_inputs(c.inputs, errors);
  for (const std::string& e : errors) std::cerr << "ssd_detect: " << e << "\n";
  failures += static_cast<int>(errors.size());

  LoadedModel lm = load_model(c);
  models::DetectionModel& model = *lm.model;
  model.eval();
  model.to(device);
  std::error_code ec;
  fs::create_directories(c.out, ec);
  ENGINE_CHECK(!ec && fs::is_directory(c.out), c.out, ": cannot create the output folder");
  std::unique_ptr<CocoResultsOut> coco;
  if (!c.coco_results.empty()) coco = std::make_unique<CocoResultsOut>(c.coco_results, c.coco_gt, lm.classes);

  std::vector<data::ImageDetections> records;
  if (!files.empty()) {
    data::Dataset inputs;
    inputs.class_names = lm.classes.names;
    inputs.category_ids = lm.classes.category_ids;
    for (const std::string& f : files) inputs.samples.push_back({f, data::image_key(f), 0, 0, {}});
    data::LoaderOptions lo;
    lo.train = false;
    lo.batch_size = c.batch;
    lo.workers = c.workers;
    lo.input_sizes = inference_sizes(model, c.inference);
    lo.mean = model.pixel_mean();
    lo.std = model.pixel_std();
    lo.keep_aspect = model.keep_aspect_ratio();
    lo.aspect_limits = model.aspect_limits();
    lo.pinned = device.is_cuda();
    lo.keep_images = true;
    data::Loader loader(inputs, lo);
    std::set<std::string> stems;
    std::vector<double> latencies;
    size_t done = 0;
    const auto start = Clock::now();
    data::Batch batch;
    std::unique_ptr<GraphedForward> graphed;
    if (c.cuda_graph) graphed = std::make_unique<GraphedForward>();
    while (loader.next(batch)) {
      for (const std::string& w : loader.take_warnings()) std::cerr << "ssd_detect: " << w << "\n";
      if (batch.size() == 0) continue;
      const auto t0 = Clock::now();
      const auto found = detect_batch(model, batch, device, c.inference, graphed.get());
      latencies.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      for (size_t i = 0; i < found.size(); ++i) {
        const std::string& file = files[static_cast<size_t>(batch.samples[i])];
        records.push_back(to_record(found[i], file, batch.widths[i], batch.heights[i], lm.classes.names,
                                    lm.classes.category_ids));
        if (coco)
          coco->add(static_cast<size_t>(batch.samples[i]), file, batch.widths[i], batch.heights[i], found[i]);
        data::Image& img = batch.originals[i];
        int drawn = 0;
        for (auto it = found[i].rbegin(); it != found[i].rend(); ++it) {  // best drawn last, on top
          if (it->score < c.draw_thresh) continue;
          data::draw_detection(img, it->box, caption(lm.classes.names[static_cast<size_t>(it->label)], it->score),
                               data::class_colour(it->label));
          ++drawn;
        }
        const std::string ext = lower_extension(file);
        const bool jpeg = ext == ".jpg" || ext == ".jpeg";
        const std::string out_path = (fs::path(c.out) / (data::output_stem(file, stems) + (jpeg ? ".jpg" : ".png"))).string();
        if (jpeg) {
          data::save_jpg(out_path, img);
        } else {
          data::save_png(out_path, img);
        }
        std::string top;
        if (!found[i].empty())
          top = ", best " + caption(lm.classes.names[static_cast<size_t>(found[i][0].label)], found[i][0].score);
        std::printf("%s: %dx%d, %zu detections, %d drawn%s -> %s\n", file.c_str(), batch.widths[i], batch.heights[i],
                    found[i].size(), drawn, top.c_str(), out_path.c_str());
        ++done;
      }
    }
    for (const std::string& w : loader.take_warnings()) std::cerr << "ssd_detect: " << w << "\n";
    if (graphed) std::printf("cuda graphs: %zu captured (one per input size), replayed per image\n", graphed->graphs());
    failures += static_cast<int>(loader.bad_images());
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("%zu images in %.2f s: %.1f images/s; batch latency %s (batch %d)\n", done, secs,
                secs > 0 ? done / secs : 0.0, percentiles_ms(latencies).c_str(), c.batch);
  }
  const std::string json_path = (fs::path(c.out) / "detections.json").string();
  data::write_detections_json(json_path, records);
  std::printf("wrote %s (%zu images)%s\n", json_path.c_str(), records.size(),
              failures ? (", " + std::to_string(failures) + " inputs failed").c_str() : "");
  if (coco) coco->finish();
  return failures ? 1 : 0;
}

}  // namespace app
