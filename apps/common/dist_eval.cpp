#include "common/dist_eval.h"

#include <chrono>
#include <cstring>
#include <map>

#include "data/dataset.h"
#include "data/shard.h"
#include "engine/error.h"

namespace app {

namespace {

template <typename T>
void put(std::vector<uint8_t>& b, T v) {
  const size_t at = b.size();
  b.resize(at + sizeof(T));
  std::memcpy(b.data() + at, &v, sizeof(T));
}

struct Reader {
  const std::vector<uint8_t>& b;
  size_t at = 0;
  template <typename T>
  T get() {
    ENGINE_CHECK(b.size() - at >= sizeof(T), "distributed evaluation: a rank's detections are truncated (",
                 b.size(), " bytes)");
    T v;
    std::memcpy(&v, b.data() + at, sizeof(T));
    at += sizeof(T);
    return v;
  }
};

}  // namespace

std::vector<uint8_t> encode_shard(const std::vector<ShardImage>& images) {
  std::vector<uint8_t> b;
  put<uint64_t>(b, images.size());
  for (const ShardImage& im : images) {
    put<int32_t>(b, im.index);
    put<int32_t>(b, im.width);
    put<int32_t>(b, im.height);
    put<uint64_t>(b, im.found.size());
    for (const Found& f : im.found) {
      put<int32_t>(b, f.label);
      put<double>(b, f.score);
      put<double>(b, f.box.x1);
      put<double>(b, f.box.y1);
      put<double>(b, f.box.x2);
      put<double>(b, f.box.y2);
    }
  }
  return b;
}

std::vector<ShardImage> decode_shard(const std::vector<uint8_t>& bytes) {
  Reader r{bytes};
  const auto n = r.get<uint64_t>();
  constexpr size_t kImageBytes = 3 * sizeof(int32_t) + sizeof(uint64_t);
  ENGINE_CHECK(n <= bytes.size() / kImageBytes, "distributed evaluation: a rank's detections claim ", n, " images");
  std::vector<ShardImage> out(static_cast<size_t>(n));
  for (ShardImage& im : out) {
    im.index = r.get<int32_t>();
    im.width = r.get<int32_t>();
    im.height = r.get<int32_t>();
    const auto k = r.get<uint64_t>();
    ENGINE_CHECK(k <= (bytes.size() - r.at) / (sizeof(int32_t) + 5 * sizeof(double)),
                 "distributed evaluation: a rank's detections are truncated (", k, " detections claimed)");
    im.found.resize(static_cast<size_t>(k));
    for (Found& f : im.found) {
      f.label = r.get<int32_t>();
      f.score = r.get<double>();
      f.box.x1 = r.get<double>();
      f.box.y1 = r.get<double>();
      f.box.x2 = r.get<double>();
      f.box.y2 = r.get<double>();
    }
  }
  ENGINE_CHECK(r.at == bytes.size(), "distributed evaluation: ", bytes.size() - r.at,
               " bytes left over after a rank's detections");
  return out;
}

EvalRun evaluate_model_sharded(models::DetectionModel& model, const data::Dataset& dataset, eng::Device device,
                               const InferenceOptions& options, int batch_size, int workers,
                               eng::dist::Communicator& comm) {
  const auto start = std::chrono::steady_clock::now();
  // This rank's images: every world-th one from its rank (strided, so that a dataset sorted
  // by size spreads the large images over the ranks).
  const data::Dataset shard = data::shard_samples(dataset, comm.rank(), comm.size());
  const std::vector<int> index =
      data::shard_indices(static_cast<int64_t>(dataset.samples.size()), comm.rank(), comm.size());
  std::vector<ShardImage> mine;
  std::string warnings;
  const bool was_training = model.is_training();
  model.eval();
  if (!shard.samples.empty()) {
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
    data::Loader loader(shard, lo);
    data::Batch batch;
    while (loader.next(batch)) {
      auto found = detect_batch(model, batch, device, options);
      for (size_t i = 0; i < found.size(); ++i)
        mine.push_back({index[static_cast<size_t>(batch.samples[i])], batch.widths[i], batch.heights[i],
                        std::move(found[i])});
    }
    for (const std::string& w : loader.take_warnings()) warnings += w + "\n";
  }
  if (was_training) model.train();

  // Every rank's detections, back in dataset order (each image is on exactly one rank).
  std::map<int, ShardImage> by_index;
  for (const auto& bytes : comm.all_gather_bytes(encode_shard(mine)))
    for (ShardImage& im : decode_shard(bytes)) {
      ENGINE_CHECK(im.index >= 0 && static_cast<size_t>(im.index) < dataset.samples.size(),
                   "distributed evaluation: image index ", im.index, " out of range");
      by_index[im.index] = std::move(im);
    }
  EvalRun run;
  std::vector<data::Detection> dets;
  for (const auto& [i, im] : by_index) {
    const data::Sample& s = dataset.samples[static_cast<size_t>(i)];
    run.images.push_back(to_record(im.found, s.image_path, im.width, im.height, dataset.class_names,
                                   dataset.category_ids));
    for (const Found& f : im.found)
      dets.push_back({s.key, f.box, dataset.category_ids[static_cast<size_t>(f.label)], f.score});
  }
  // This rank's unreadable images (each rank reports its own: rank 0 prints only its own).
  size_t from = 0;
  while (from < warnings.size()) {
    const size_t nl = warnings.find('\n', from);
    run.warnings.push_back(warnings.substr(from, nl - from));
    from = nl + 1;
  }
  run.result = data::evaluate(data::ground_truth(dataset), dets, dataset.category_ids);
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

}  // namespace app
