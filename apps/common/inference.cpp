#include "common/inference.h"

#include <algorithm>
#include <chrono>

#include "data/coco_json.h"
#include "data/dataset.h"
#include "engine/autograd.h"
#include "engine/cuda_graph.h"
#include "engine/error.h"

namespace app {

namespace {

// A mirrored copy of a CPU batch [B, 3, H, W]: each image's valid region (columns
// [0, fits[b].width), the whole row when stretched) flipped along W; padding columns stay.
eng::Tensor mirror(const eng::Tensor& images, const std::vector<data::InputFit>& fits) {
  const eng::Tensor x = images.contiguous();
  eng::Tensor out = eng::empty(x.sizes(), eng::TensorOptions(eng::DType::f32));
  const int64_t w = x.size(3), rows_per_image = x.size(1) * x.size(2);
  ENGINE_CHECK(static_cast<int64_t>(fits.size()) == x.size(0), "detect_batch: ", fits.size(), " fits for ", x.size(0),
               " images");
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  for (int64_t b = 0; b < x.size(0); ++b) {
    const int64_t v = std::min<int64_t>(w, fits[static_cast<size_t>(b)].width);
    for (int64_t r = b * rows_per_image; r < (b + 1) * rows_per_image; ++r) {
      for (int64_t j = 0; j < v; ++j) dst[r * w + j] = src[r * w + (v - 1 - j)];
      for (int64_t j = v; j < w; ++j) dst[r * w + j] = src[r * w + j];
    }
  }
  return out;
}

// Class-wise NMS over one image's pooled detections (CPU), keeping `topk`.
std::vector<Found> merge(const std::vector<Found>& pooled, double nms_thresh, int64_t topk) {
  if (pooled.empty()) return {};
  const int64_t k = static_cast<int64_t>(pooled.size());
  eng::Tensor boxes = eng::empty({1, k, 4}, eng::TensorOptions(eng::DType::f32));
  eng::Tensor scores = eng::empty({1, k}, eng::TensorOptions(eng::DType::f32));
  eng::Tensor labels = eng::empty({1, k}, eng::TensorOptions(eng::DType::i64));
  float* b = boxes.data<float>();
  float* s = scores.data<float>();
  int64_t* l = labels.data<int64_t>();
  for (int64_t i = 0; i < k; ++i) {
    const Found& f = pooled[static_cast<size_t>(i)];
    b[4 * i] = static_cast<float>(f.box.x1);
    b[4 * i + 1] = static_cast<float>(f.box.y1);
    b[4 * i + 2] = static_cast<float>(f.box.x2);
    b[4 * i + 3] = static_cast<float>(f.box.y2);
    s[i] = static_cast<float>(f.score);
    l[i] = f.label;
  }
  eng::det::Detections d = eng::det::batched_nms(boxes, scores, labels, nms_thresh, topk);
  const int64_t n = d.counts.to_vector<int64_t>()[0];
  const auto ob = d.boxes.to_vector<float>();
  const auto os = d.scores.to_vector<float>();
  const auto ol = d.labels.to_vector<int64_t>();
  std::vector<Found> out;
  for (int64_t i = 0; i < n; ++i)
    out.push_back({static_cast<int>(ol[i]), os[i], {ob[4 * i], ob[4 * i + 1], ob[4 * i + 2], ob[4 * i + 3]}});
  return out;
}

}  // namespace

data::Box input_box_to_original(const data::Box& box, const data::InputFit& fit, bool mirrored) {
  return data::box_to_reference(data::clip_to_valid(mirrored ? data::unmirror_box(box, fit) : box, fit), fit);
}

bool input_box_in_padding(const data::Box& box, const data::InputFit& fit, bool mirrored) {
  if (!fit.keep_aspect) return false;
  const data::Box c = data::clip_to_valid(mirrored ? data::unmirror_box(box, fit) : box, fit);
  return !(c.x2 - c.x1 >= 1e-2 && c.y2 - c.y1 >= 1e-2);
}

std::vector<int> inference_sizes(const models::DetectionModel& model, const InferenceOptions& options) {
  if (!options.scales.empty()) return options.scales;
  return {static_cast<int>(model.config().input_size)};
}

struct GraphedForward::Entry {
  eng::Tensor input;           // static: every batch of this shape is copied here
  models::HeadOutputs heads;   // static: written by every replay
  eng::cuda::Graph graph;      // destroyed first: its pool outlives no replay
};

GraphedForward::GraphedForward() = default;
GraphedForward::~GraphedForward() = default;

models::HeadOutputs GraphedForward::run(models::DetectionModel& model, const eng::Tensor& host_images) {
  ENGINE_CHECK(host_images.device().is_cpu(), "GraphedForward: the images must be a CPU batch, got ",
               host_images.device().str());
  auto it = entries_.find(host_images.sizes());
  if (it == entries_.end()) {
    auto e = std::make_unique<Entry>();
    e->input = eng::empty(host_images.sizes(), eng::TensorOptions(host_images.dtype()).device(eng::Device::cuda()));
    e->input.copy_(host_images);
    { const models::HeadOutputs warm_up = models::forward_heads_f32(model, e->input); }
    Entry* raw = e.get();
    e->graph.capture([&model, raw] { raw->heads = models::forward_heads_f32(model, raw->input); });
    it = entries_.emplace(host_images.sizes(), std::move(e)).first;
  } else {
    it->second->input.copy_(host_images);
  }
  it->second->graph.replay();
  return it->second->heads;
}

std::vector<std::vector<Found>> detect_batch(models::DetectionModel& model, const data::Batch& batch,
                                             eng::Device device, const InferenceOptions& options,
                                             GraphedForward* graphed) {
  ENGINE_CHECK(!graphed || device.is_cuda(), "detect_batch: CUDA graphs need a CUDA device");
  eng::NoGradGuard no_grad;
  const std::vector<int> sizes = inference_sizes(model, options);
  ENGINE_CHECK(batch.images_at.size() == sizes.size(), "detect_batch: the batch has ", batch.images_at.size(),
               " input sizes, the options ", sizes.size());
  ENGINE_CHECK(batch.fits_at.size() == sizes.size(), "detect_batch: the batch has ", batch.fits_at.size(),
               " input fits for ", sizes.size(), " input sizes (build it with data::Loader)");
  for (const auto& f : batch.fits_at)
    ENGINE_CHECK(static_cast<int64_t>(f.size()) == batch.size(), "detect_batch: ", f.size(), " input fits for ",
                 batch.size(), " images");
  const size_t n = static_cast<size_t>(batch.size());
  std::vector<std::vector<Found>> pooled(n);
  if (n == 0) return pooled;
  const int64_t original_size = model.config().input_size;
  int passes = 0;
  for (size_t si = 0; si < sizes.size(); ++si) {
    const int s = sizes[si];
    if (model.config().input_size != s) model.set_input_size(s);
    eng::det::PostprocessOptions po = model.postprocess_options();
    if (options.score_thresh >= 0) po.score_threshold = options.score_thresh;
    if (options.nms_thresh >= 0) po.nms_threshold = options.nms_thresh;
    if (options.topk > 0) po.max_per_image = options.topk;
    for (int mirrored = 0; mirrored <= (options.flip ? 1 : 0); ++mirrored) {
      ++passes;
      const eng::Tensor host = mirrored ? mirror(batch.images_at[si], batch.fits_at[si]) : batch.images_at[si];
      eng::det::Detections d =
          model.postprocess(graphed ? graphed->run(model, host)
                                    : models::forward_heads_f32(model, device.is_cpu() ? host : host.to(device)),
                            po);
      const auto counts = d.counts.to_vector<int64_t>();
      const auto boxes = d.boxes.to_vector<float>();
      const auto scores = d.scores.to_vector<float>();
      const auto labels = d.labels.to_vector<int64_t>();
      const int64_t kmax = d.scores.size(1);
      for (size_t i = 0; i < n; ++i) {
        const data::InputFit& fit = batch.fits_at[si][i];
        for (int64_t j = 0; j < counts[i]; ++j) {
          const size_t q = i * static_cast<size_t>(kmax) + static_cast<size_t>(j);
          if (labels[q] < 1) continue;  // background (never a dataset class)
          const data::Box b{boxes[4 * q], boxes[4 * q + 1], boxes[4 * q + 2], boxes[4 * q + 3]};
          if (input_box_in_padding(b, fit, mirrored)) continue;
          pooled[i].push_back({static_cast<int>(labels[q] - 1), scores[q], input_box_to_original(b, fit, mirrored)});
        }
      }
    }
  }
  if (model.config().input_size != original_size) model.set_input_size(original_size);
  if (passes == 1) return pooled;
  const eng::det::PostprocessOptions po = model.postprocess_options();
  const double nms = options.nms_thresh >= 0 ? options.nms_thresh : po.nms_threshold;
  const int64_t topk = options.topk > 0 ? options.topk : po.max_per_image;
  for (auto& p : pooled) p = merge(p, nms, topk);
  return pooled;
}

data::ImageDetections to_record(const std::vector<Found>& found, const std::string& file, int width, int height,
                                const std::vector<std::string>& class_names, const std::vector<int>& category_ids) {
  data::ImageDetections out;
  out.file = file;
  out.width = width;
  out.height = height;
  for (const Found& f : found) {
    if (f.label < 0 || f.label >= static_cast<int>(class_names.size())) continue;  // a class the data does not have
    data::DetectionRecord r;
    r.category_id = category_ids[static_cast<size_t>(f.label)];
    r.label = class_names[static_cast<size_t>(f.label)];
    r.score = f.score;
    r.box = f.box;
    out.detections.push_back(r);
  }
  return out;
}

EvalRun evaluate_model(models::DetectionModel& model, const data::Dataset& dataset, eng::Device device,
                       const InferenceOptions& options, int batch_size, int workers) {
  const auto start = std::chrono::steady_clock::now();
  const bool was_training = model.is_training();
  model.eval();
  data::LoaderOptions lo;
  lo.train = false;
  lo.batch_size = batch_size;
  lo.workers = workers;
  lo.input_sizes = inference_sizes(model, options);
  lo.mean = model.pixel_mean();
  lo.std = model.pixel_std();
  lo.keep_aspect = model.keep_aspect_ratio();
  lo.aspect_limits = model.aspect_limits();
  lo.pinned = device.is_cuda();
  EvalRun run;
  std::vector<data::Detection> dets;
  {
    data::Loader loader(dataset, lo);
    data::Batch batch;
    while (loader.next(batch)) {
      const auto found = detect_batch(model, batch, device, options);
      for (size_t i = 0; i < found.size(); ++i) {
        const data::Sample& s = dataset.samples[static_cast<size_t>(batch.samples[i])];
        run.images.push_back(to_record(found[i], s.image_path, batch.widths[i], batch.heights[i], dataset.class_names,
                                       dataset.category_ids));
        for (const Found& f : found[i])
          dets.push_back({s.key, f.box, dataset.category_ids[static_cast<size_t>(f.label)], f.score});
      }
    }
    run.warnings = loader.take_warnings();
  }
  if (was_training) model.train();
  run.result = data::evaluate(data::ground_truth(dataset), dets, dataset.category_ids);
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

}  // namespace app
