// The batch loader: decodes, augments and normalises images on worker threads and hands out
// ready batches in a fixed order.
//
// Two modes:
//   * training (train = true): an endless stream of batches numbered 0, 1, 2, ...; batch
//     number g belongs to epoch g / batches_per_epoch() and takes the next batch_size
//     samples of that epoch's shuffled order (the shuffle is seeded by (seed, epoch); the
//     last incomplete batch of an epoch is dropped). Every sample is augmented with
//     augment_ssd under sample_seed(seed, epoch, sample index), then resized to the
//     batch's input size (one of input_sizes, drawn per batch from (seed, g): multiscale
//     training). `start_batch` starts the stream at any g, which is how a resumed run
//     continues exactly. Boxes in Batch::objects are in input pixels. Difficult (unless
//     keep_difficult) and crowd objects travel there flagged (difficult / iscrowd set):
//     the trainer makes them ignored targets (neither positive nor negative). With
//     keep_difficult a difficult object is a plain target (its flag cleared); with
//     drop_ignored = true the flagged objects are left out instead (before issue 14).
//   * evaluation (train = false): one pass over the samples in dataset order, resize only;
//     next() returns false at the end. Each image is resized to every one of input_sizes
//     (multi-scale testing): Batch::images_at[i] holds the batch at input_sizes[i], and
//     Batch::images is images_at[0]. Boxes are not given (the evaluator reads the dataset);
//     Batch::widths/heights hold the original sizes.
// A batch is a pure function of (dataset, options, number): the same with any number of
// workers, on any run.
//
// Distributed training (shard_count > 1, training only): batch_size is the GLOBAL batch
// (per-rank batch x world size) and must be divisible by shard_count. Everything above (the
// numbering, epochs, shuffle, dropped tail, augmentation seeds, multiscale draw) is computed
// for the global batch; rank shard_rank then builds only positions [rank*B/W, (rank+1)*B/W)
// of global batch g (data::shard_range in data/shard.h). So the W shards of batch g,
// concatenated in rank order, are bit for bit the batch g of one process with the same
// batch_size (same samples, order, pixels, boxes), whatever the rank count; Batch::number
// stays the global number and Batch::samples etc. hold the shard's items only. A resumed
// run with another global batch size starts at data::resume_batch(...).
//
// Bad images (missing, corrupt, truncated, not an image, over the limits) are reported once
// each through take_warnings() as "<path>: <problem> (image skipped)" and left out of their
// batch (a batch can be smaller than batch_size); with one shard a training batch left empty
// is skipped, and once every image of the dataset has failed, training next() throws
// eng::Error. With shard_count > 1 no batch number is ever skipped: a shard whose images all
// failed is returned as a batch of size 0 (images [0, 3, S, S]), because skipping it on one
// rank only would put the ranks on different batch numbers. The trainer takes part in the
// step's collectives with it (zero gradient, zero positives) and skips the optimizer step
// when the all-reduced item count of the global batch is 0, which is what one process does.
// The every-image-failed error is kept: a rank throws once it has met every image as bad.
//
// Threads: `workers` threads each build whole batches (when one cannot be started, the ones
// already started are stopped and joined and the constructor throws eng::Error); at most `prefetch + workers` batches
// are being built or waiting, ahead of the one being consumed. workers = 0 builds each batch in next() on the
// calling thread. With pinned = true, batch images live in pinned host memory, so
// images.to(Device::cuda()) is an asynchronous copy.
//
// With uint8_images = true, images are resized but not normalised: Batch::images (and
// images_at) are u8 [n, 3, S, S], the bilinear result rounded to the nearest integer, 4x
// fewer bytes to copy; the device normalises them (eng::normalize_images, or
// apps/common/batch_upload.h). The rounding to 8 bits after the resize is the one
// difference from the float path (at most 0.5 / std per value), as in torchvision's
// uint8 pipelines. The CPU path keeps the default (float, normalised on the host).
//
// Fitting into the input (data/input_fit.h): by default every image is stretched to S x S.
// With keep_aspect = true (models whose keep_aspect_ratio() is true) the final resize keeps
// the aspect ratio, as torchvision's GeneralizedRCNNTransform with min_size = max_size = S:
// the (augmented, in training) image is resized to floor(w * S / long) x floor(h * S / long)
// and placed at the top-left of the S x S input; the rest is padding: 0 in the normalised
// f32 images (the mean pixel), the mean rounded to an integer per channel in u8 images.
// Training boxes are scaled by the same per-axis factors. Batch::fits (and fits_at, one per
// input size) say, in both modes, where each image lies in the input and the factors from
// the reference image (training: the augmented image; evaluation: the original, whose size
// is widths/heights) to input pixels: detections map back with data::box_to_reference.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "data/annotation.h"
#include "data/augment.h"
#include "data/image.h"
#include "data/input_fit.h"
#include "engine/tensor.h"

namespace data {

struct LoaderOptions {
  int batch_size = 8;
  int workers = 2;
  int prefetch = 2;
  bool train = true;
  uint64_t seed = 0;
  int64_t start_batch = 0;                 // training: the first batch number
  std::vector<int> input_sizes = {256};    // square input sides; several: multiscale
  std::vector<double> mean = {0, 0, 0};    // normalisation, 0..255 units (model's pixel_mean)
  std::vector<double> std = {1, 1, 1};
  AugmentOptions augment;                  // training only
  bool keep_difficult = false;             // training: keep difficult objects as targets
  bool drop_ignored = false;               // training: drop difficult / crowd objects, not flag them
  bool pinned = false;
  bool uint8_images = false;               // u8 images, not normalised (see above)
  bool keep_images = false;                // evaluation: also hand out the decoded originals
  bool keep_aspect = false;                // letterbox into S x S (see above); false: stretch
  AspectLimits aspect_limits;              // keep_aspect: torchvision's min / max size (data/input_fit.h)
  // JPEGs decoded at 1/2, 1/4 or 1/8 when still at least as large as the batch needs
  // (evaluation: the largest input size; training: that over augment.crop_min_scale). Not
  // with keep_images. Boxes stay correct: they are mapped onto the reduced decode.
  bool scaled_decode = true;
  ImageLimits limits;
  // Distributed training: this process builds shard `shard_rank` of `shard_count` of every
  // global batch of batch_size samples (see above). Evaluation is sharded with
  // data::shard_samples instead (shard_count > 1 with train = false is an error).
  int shard_rank = 0;
  int shard_count = 1;
};

struct Batch {
  int64_t number = 0;  // training: global batch number (also when sharded); evaluation: batch index
  int64_t epoch = 0;
  int input_size = 0;
  eng::Tensor images;                        // f32 [n, 3, S, S] (u8 with uint8_images)
  std::vector<eng::Tensor> images_at;        // evaluation: one per input size (training: {images})
  std::vector<int> samples;                  // dataset index of each item
  std::vector<std::vector<Object>> objects;  // training: targets in input pixels
  std::vector<int> widths, heights;          // original image sizes
  std::vector<InputFit> fits;                // per item: its place in `images` (= fits_at[0])
  std::vector<std::vector<InputFit>> fits_at;  // evaluation: one per input size, like images_at
  std::vector<Image> originals;              // with keep_images: the decoded images
  int64_t size() const { return static_cast<int64_t>(samples.size()); }
};

class Loader {
 public:
  // `dataset` must outlive the loader.
  Loader(const Dataset& dataset, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch in order; false only at the end of an evaluation pass.
  bool next(Batch& out);
  // Training: global batches per epoch (dataset size / batch_size, at least 1).
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  // Bad-image messages reported since the last call.
  std::vector<std::string> take_warnings();
  int64_t bad_images() const;

  // The input size of training batch `number` (multiscale draw); exposed for tests.
  int input_size_of(int64_t number) const;

 private:
  struct Item;
  Batch build(int64_t number);
  std::vector<int> batch_samples(int64_t number, int64_t& epoch) const;
  bool load_item(int index, int64_t epoch, Item& item);
  void worker_loop();
  void stop_workers();  // stops and joins every started worker (destructor, failed start)
  void report_bad(int index, const std::string& message);

  const Dataset& dataset_;
  LoaderOptions options_;
  int64_t batches_per_epoch_ = 0;
  int64_t end_ = 0;  // evaluation: number of batches; training: no end

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, Batch> ready_;
  int64_t next_to_build_ = 0;
  int64_t next_to_consume_ = 0;
  bool stop_ = false;
  std::exception_ptr failure_;
  std::set<int> bad_;
  std::vector<std::string> warnings_;
  std::vector<std::thread> threads_;
};

// Tests only: from now on, the start of worker thread number `k` (0-based) of each new
// Loader fails as when the system is out of threads (std::system_error EAGAIN); -1: off.
// A failed start stops and joins the workers already started, then throws eng::Error
// "loader: workers N: could not start worker thread K (<reason>)".
void fail_thread_start_for_tests(int k);

}  // namespace data
