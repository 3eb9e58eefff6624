#include "data/loader.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <random>
#include <system_error>

#include "data/input_fit.h"
#include "data/shard.h"
#include "engine/error.h"

namespace data {

namespace {

// Objects for the training targets: clipped to the image, at least 1 px each way. A
// difficult object is a plain target with keep_difficult (flag cleared); otherwise it and
// every crowd object stay flagged (ignored targets), or are left out with drop_ignored.
std::vector<Object> training_objects(const std::vector<Object>& objects, int width, int height, bool keep_difficult,
                                     bool drop_ignored) {
  std::vector<Object> out;
  for (const Object& o : objects) {
    Object c = o;
    if (keep_difficult) c.difficult = false;
    if (drop_ignored && (c.iscrowd || c.difficult)) continue;
    c.box.x1 = std::clamp(c.box.x1, 0.0, static_cast<double>(width));
    c.box.x2 = std::clamp(c.box.x2, 0.0, static_cast<double>(width));
    c.box.y1 = std::clamp(c.box.y1, 0.0, static_cast<double>(height));
    c.box.y2 = std::clamp(c.box.y2, 0.0, static_cast<double>(height));
    if (c.box.x2 - c.box.x1 < 1 || c.box.y2 - c.box.y1 < 1) continue;
    out.push_back(c);
  }
  return out;
}

// How small a JPEG may be decoded (libjpeg's DCT scaling) so that no batch pixel comes from
// an upsampled decode: every side stays >= the largest input size S the image is resized
// to. Evaluation resizes the whole image to S; training first crops, and a crop side is at
// least crop_min_scale of the image side (expansion only enlarges the canvas the crop is
// taken from), so the decode must be >= S / crop_min_scale. Off when the originals are
// handed out (keep_images: callers draw on them at full size) or scaled_decode is false.
DecodeOptions decode_options_for(const LoaderOptions& o) {
  if (!o.scaled_decode || (o.keep_images && !o.train)) return {};
  double need = *std::max_element(o.input_sizes.begin(), o.input_sizes.end());
  if (o.train && o.augment.crop) need = std::ceil(need / o.augment.crop_min_scale);
  if (!(need >= 1 && need <= 1e6)) return {};  // a bad crop_min_scale: augment_ssd reports it
  const int side = static_cast<int>(need);
  return {side, side};
}

// keep_aspect: image k of `t` ([n, 3, S, S], f32 or u8): the image resized to fit.width x
// fit.height at the top-left, the rest the padding. f32: normalised, padding 0 (the mean
// pixel normalises to 0). u8: resized and rounded as in the stretched u8 path, padding the
// rounded mean (per channel), which the device normalises to (round(mean) - mean) / std,
// at most 0.5 / std away from 0. `scratch` holds at least 3 * S * S floats.
void write_letterboxed(const Image& img, const InputFit& fit, int side, eng::Tensor& t, int64_t k,
                       const std::vector<double>& mean, const std::vector<double>& std, bool u8,
                       std::vector<float>& scratch) {
  const size_t plane = static_cast<size_t>(side) * side, per = 3 * plane;
  const size_t vplane = static_cast<size_t>(fit.width) * fit.height;
  if (u8)
    resize_normalize_into(img, fit.width, fit.height, {0, 0, 0}, {1, 1, 1}, scratch.data());
  else
    resize_normalize_into(img, fit.width, fit.height, mean, std, scratch.data());
  for (int c = 0; c < 3; ++c) {
    const float* src = scratch.data() + c * vplane;
    if (u8) {
      uint8_t* dst = t.data<uint8_t>() + static_cast<size_t>(k) * per + c * plane;
      const auto pad = static_cast<uint8_t>(std::lround(std::clamp(mean[static_cast<size_t>(c)], 0.0, 255.0)));
      std::fill(dst, dst + plane, pad);
      for (int y = 0; y < fit.height; ++y)
        for (int x = 0; x < fit.width; ++x)
          dst[static_cast<size_t>(y) * side + x] = static_cast<uint8_t>(
              std::lround(std::clamp(src[static_cast<size_t>(y) * fit.width + x], 0.0f, 255.0f)));
    } else {
      float* dst = t.data<float>() + static_cast<size_t>(k) * per + c * plane;
      std::fill(dst, dst + plane, 0.0f);
      for (int y = 0; y < fit.height; ++y)
        std::copy(src + static_cast<size_t>(y) * fit.width, src + static_cast<size_t>(y + 1) * fit.width,
                  dst + static_cast<size_t>(y) * side);
    }
  }
}

constexpr uint64_t kShuffleStream = 0x5348554646ull;  // "SHUFF": sample_seed's index slot for the shuffle
constexpr uint64_t kScaleStream = 0x5343414c45ull;    // "SCALE": per-batch multiscale draw

std::atomic<int> g_fail_thread_start{-1};  // fail_thread_start_for_tests

}  // namespace

void fail_thread_start_for_tests(int k) { g_fail_thread_start = k; }

struct Loader::Item {
  Image image;
  std::vector<Object> objects;
  int width = 0, height = 0;  // original size
};

Loader::Loader(const Dataset& dataset, LoaderOptions options) : dataset_(dataset), options_(std::move(options)) {
  const int64_t n = static_cast<int64_t>(dataset_.samples.size());
  ENGINE_CHECK(n > 0, "loader: the dataset has no images");
  ENGINE_CHECK(options_.batch_size >= 1, "loader: batch size must be at least 1 (got ", options_.batch_size, ")");
  ENGINE_CHECK(options_.workers >= 0, "loader: workers must be >= 0 (got ", options_.workers, ")");
  ENGINE_CHECK(options_.prefetch >= 1, "loader: prefetch must be >= 1 (got ", options_.prefetch, ")");
  ENGINE_CHECK(!options_.input_sizes.empty(), "loader: no input size");
  for (int s : options_.input_sizes) ENGINE_CHECK(s >= 8 && s <= 4096, "loader: input size ", s, " out of range 8..4096");
  ENGINE_CHECK(options_.mean.size() == 3 && options_.std.size() == 3, "loader: mean and std need 3 values");
  ENGINE_CHECK(options_.start_batch >= 0, "loader: negative start batch");
  ENGINE_CHECK(options_.shard_count >= 1, "loader: shard count must be at least 1 (got ", options_.shard_count, ")");
  ENGINE_CHECK(options_.shard_rank >= 0 && options_.shard_rank < options_.shard_count, "loader: shard rank ",
               options_.shard_rank, " out of range 0..", options_.shard_count - 1);
  ENGINE_CHECK(options_.train || options_.shard_count == 1, "loader: shard count ", options_.shard_count,
               " is for training only (evaluation shards the dataset with data::shard_samples)");
  ENGINE_CHECK(options_.batch_size % options_.shard_count == 0, "loader: global batch size ", options_.batch_size,
               " is not divisible by the shard count ", options_.shard_count);
  if (options_.train) {
    batches_per_epoch_ = std::max<int64_t>(1, n / options_.batch_size);
    end_ = INT64_MAX;
    next_to_build_ = next_to_consume_ = options_.start_batch;
  } else {
    batches_per_epoch_ = (n + options_.batch_size - 1) / options_.batch_size;
    end_ = batches_per_epoch_;
  }
  // A thread that cannot be started (out of threads or memory) must not leave the started
  // ones running: the destructor does not run for a throwing constructor, and destroying a
  // joinable std::thread calls std::terminate.
  int w = 0;
  try {
    threads_.reserve(static_cast<size_t>(options_.workers));
    for (; w < options_.workers; ++w) {
      if (w == g_fail_thread_start.load())
        throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
      threads_.emplace_back([this] { worker_loop(); });
    }
  } catch (const std::exception& e) {
    stop_workers();
    const auto* se = dynamic_cast<const std::system_error*>(&e);
    ENGINE_FAIL("loader: workers ", options_.workers, ": could not start worker thread ", w + 1, " (",
                se ? se->code().message() : std::string(e.what()), ")");
  }
}

Loader::~Loader() { stop_workers(); }

void Loader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

int Loader::input_size_of(int64_t number) const {
  const auto& sizes = options_.input_sizes;
  if (sizes.size() == 1 || !options_.train) return sizes[0];
  const uint64_t h = sample_seed(options_.seed, static_cast<uint64_t>(number), kScaleStream);
  return sizes[h % sizes.size()];
}

std::vector<int> Loader::batch_samples(int64_t number, int64_t& epoch) const {
  const int64_t n = static_cast<int64_t>(dataset_.samples.size());
  const int64_t b = options_.batch_size;
  std::vector<int> out;
  if (!options_.train) {
    epoch = 0;
    for (int64_t i = number * b; i < std::min(n, (number + 1) * b); ++i) out.push_back(static_cast<int>(i));
    return out;
  }
  epoch = number / batches_per_epoch_;
  const int64_t k = number % batches_per_epoch_;
  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(sample_seed(options_.seed, static_cast<uint64_t>(epoch), kShuffleStream));
  // Fisher-Yates with our own index draw (std::shuffle's use of the engine is unspecified).
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng() % static_cast<uint64_t>(i + 1)]);
  // This rank's positions of the global batch (all of them with one shard); a global batch
  // larger than the dataset (one batch per epoch) has only n positions.
  const ShardRange r = shard_range(b, options_.shard_rank, options_.shard_count);
  for (int64_t i = k * b + r.begin; i < std::min(n, k * b + r.end); ++i) out.push_back(order[static_cast<size_t>(i)]);
  return out;
}

void Loader::report_bad(int index, const std::string& message) {
  std::lock_guard<std::mutex> lock(mu_);
  if (bad_.insert(index).second) warnings_.push_back(message + " (image skipped)");
}

bool Loader::load_item(int index, int64_t epoch, Item& item) {
  const Sample& s = dataset_.samples[static_cast<size_t>(index)];
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (bad_.count(index)) return false;
  }
  ScaledImage decoded;
  try {
    decoded = load_image_scaled(s.image_path, decode_options_for(options_), options_.limits);
  } catch (const eng::Error& e) {
    report_bad(index, e.what());
    return false;
  }
  item.image = std::move(decoded.image);
  item.width = decoded.original_width;
  item.height = decoded.original_height;
  if (options_.train) {
    // Boxes are in the file's pixels: clipped there, then mapped onto the (maybe reduced) decode.
    std::vector<Object> objects = training_objects(s.objects, item.width, item.height, options_.keep_difficult,
                                                         options_.drop_ignored);
    if (decoded.scale_denom != 1) {
      const double fx = static_cast<double>(item.image.width) / item.width;
      const double fy = static_cast<double>(item.image.height) / item.height;
      for (Object& o : objects) {
        o.box = {o.box.x1 * fx, o.box.y1 * fy, o.box.x2 * fx, o.box.y2 * fy};
        o.area = -1;
      }
    }
    AnnotatedImage a{std::move(item.image), std::move(objects)};
    AnnotatedImage aug = augment_ssd(a, sample_seed(options_.seed, static_cast<uint64_t>(epoch),
                                                    static_cast<uint64_t>(index)),
                                     options_.augment);
    item.image = std::move(aug.image);
    item.objects = std::move(aug.objects);
  }
  return true;
}

Batch Loader::build(int64_t number) {
  Batch batch;
  batch.number = number;
  batch.input_size = input_size_of(number);
  const int s = batch.input_size;
  std::vector<int> indices = batch_samples(number, batch.epoch);
  std::vector<Item> items(indices.size());
  std::vector<int> good;
  for (size_t i = 0; i < indices.size(); ++i) {
    if (load_item(indices[i], batch.epoch, items[i])) good.push_back(static_cast<int>(i));
  }
  const int64_t n = static_cast<int64_t>(good.size());
  // Training: one size per batch; evaluation: every test size.
  const std::vector<int> sizes = options_.train ? std::vector<int>{s} : options_.input_sizes;
  const eng::DType dt = options_.uint8_images ? eng::DType::u8 : eng::DType::f32;
  for (int size : sizes) {
    eng::Tensor t = options_.pinned ? eng::empty_pinned({n, 3, size, size}, dt)
                                    : eng::empty({n, 3, size, size}, eng::TensorOptions(dt));
    const size_t per = static_cast<size_t>(3) * size * size;
    std::vector<float> scratch(options_.uint8_images || options_.keep_aspect ? per : 0);
    std::vector<InputFit> fits;
    for (int64_t k = 0; k < n; ++k) {
      const Item& it = items[static_cast<size_t>(good[static_cast<size_t>(k)])];
      const Image& img = it.image;
      // Training fits the augmented image; evaluation the original (the decode may be reduced).
      fits.push_back(options_.train ? fit_input(img.width, img.height, size, options_.keep_aspect, options_.aspect_limits)
                                    : fit_input(it.width, it.height, size, options_.keep_aspect, options_.aspect_limits));
      if (options_.keep_aspect) {
        write_letterboxed(img, fits.back(), size, t, k, options_.mean, options_.std, options_.uint8_images, scratch);
        continue;
      }
      if (!options_.uint8_images) {
        resize_normalize_into(img, size, size, options_.mean, options_.std,
                              t.data<float>() + static_cast<size_t>(k) * per);
        continue;
      }
      // Resize only (mean 0, std 1), then round to 8 bits: the device normalises.
      resize_normalize_into(img, size, size, {0, 0, 0}, {1, 1, 1}, scratch.data());
      uint8_t* dst = t.data<uint8_t>() + static_cast<size_t>(k) * per;
      for (size_t i = 0; i < per; ++i) dst[i] = static_cast<uint8_t>(std::lround(std::clamp(scratch[i], 0.0f, 255.0f)));
    }
    batch.images_at.push_back(t);
    batch.fits_at.push_back(std::move(fits));
  }
  batch.images = batch.images_at[0];
  batch.fits = batch.fits_at[0];
  for (int64_t k = 0; k < n; ++k) {
    Item& it = items[static_cast<size_t>(good[static_cast<size_t>(k)])];
    // Boxes into input pixels: x by fit.width / width, y by fit.height / height of the
    // (augmented) image (S / width, S / height when stretched); training drops those under
    // kMinTrainingBoxSide there (data/augment.h).
    if (options_.train) {
      const InputFit& f = batch.fits[static_cast<size_t>(k)];
      scale_and_drop_small_boxes(it.objects, it.image.width, it.image.height, f.width, f.height);
    } else {
      const double fx = static_cast<double>(s) / it.image.width, fy = static_cast<double>(s) / it.image.height;
      for (Object& o : it.objects) {
        o.box = {o.box.x1 * fx, o.box.y1 * fy, o.box.x2 * fx, o.box.y2 * fy};
        o.area = -1;
      }
    }
    batch.samples.push_back(indices[static_cast<size_t>(good[static_cast<size_t>(k)])]);
    batch.objects.push_back(std::move(it.objects));
    batch.widths.push_back(it.width);
    batch.heights.push_back(it.height);
    if (options_.keep_images && !options_.train) batch.originals.push_back(std::move(it.image));
  }
  return batch;
}

void Loader::worker_loop() {
  // Batches being built or waiting: one per worker plus the prefetch allowance.
  const int64_t capacity = options_.prefetch + options_.workers;
  for (;;) {
    int64_t number;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stop_ || failure_ || (next_to_build_ < end_ && next_to_build_ - next_to_consume_ < capacity);
      });
      if (stop_ || failure_) return;
      number = next_to_build_++;
    }
    try {
      Batch b = build(number);
      std::lock_guard<std::mutex> lock(mu_);
      ready_.emplace(number, std::move(b));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!failure_) failure_ = std::current_exception();
    }
    cv_.notify_all();
  }
}

bool Loader::next(Batch& out) {
  for (;;) {
    int64_t number;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (next_to_consume_ >= end_) return false;
      number = next_to_consume_;
      if (!threads_.empty()) {
        cv_.wait(lock, [&] { return failure_ || ready_.count(number) > 0; });
        if (failure_) std::rethrow_exception(failure_);
        out = std::move(ready_[number]);
        ready_.erase(number);
      }
    }
    if (threads_.empty()) out = build(number);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++next_to_consume_;
    }
    cv_.notify_all();
    if (out.size() > 0 || !options_.train) return true;
    // A training batch whose images all failed: go on to the next one, unless every image of
    // the dataset has failed (no batch can ever be non-empty: the stream would spin forever).
    {
      std::lock_guard<std::mutex> lock(mu_);
      ENGINE_CHECK(bad_.size() < dataset_.samples.size(), "loader: every image of the dataset failed to load (",
                   bad_.size(), " images; see the warnings)");
    }
    // Sharded: the empty shard is handed out (every rank must see every batch number).
    if (options_.shard_count > 1) return true;
  }
}

std::vector<std::string> Loader::take_warnings() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> w;
  w.swap(warnings_);
  return w;
}

int64_t Loader::bad_images() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(bad_.size());
}

}  // namespace data
