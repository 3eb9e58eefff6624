// Running a detector on loader batches: one or several passes (test scales, mirrored
// input), boxes mapped back to the original images, passes merged. ssd_train's evaluation
// and ssd_detect both use this, so their numbers agree.
//
// Per pass (input size s, mirrored or not): the model's own postprocessing (score
// threshold, top-k, class-wise NMS; thresholds overridable), boxes from input pixels to the
// original image with the batch's data::InputFit of that size (x * width / valid width,
// y * height / valid height: x * width / s, y * height / s when stretched, torchvision's
// resize_boxes when the loader kept the aspect ratio); a mirrored pass flips only each
// image's valid region, and its boxes are first mapped back with x -> valid width - x.
// Letterboxed inputs: boxes are clipped to the valid region first (torchvision clips its
// detections to the resized image's size; here after the model's NMS, since the models
// see only the S x S canvas), so nothing lands outside the original image; a detection
// left under 0.01 input pixels wide or high by the clip (it lay in the padding) is dropped,
// as torchvision's remove_small_boxes(1e-2) after its clip.
// With more than one pass, each image's detections of all passes are pooled and put
// through class-wise NMS again at the same threshold, keeping the top `topk`
// (the one-stage multi-scale testing recipe).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/annotation.h"
#include "data/detections_json.h"
#include "data/loader.h"
#include "data/metrics.h"
#include "models/detection_model.h"

namespace app {

struct InferenceOptions {
  double score_thresh = -1;  // < 0: the architecture's default
  double nms_thresh = -1;
  int64_t topk = -1;         // detections kept per image
  std::vector<int> scales;   // input sides; empty: the model's current input size
  bool flip = false;         // add a mirrored pass per scale
};

// One detection in original-image pixels; `label` is the 0-based dataset class
// (model class index - 1).
struct Found {
  int label = 0;
  double score = 0;
  data::Box box;
};

// One pass's box in input pixels -> the original image (see above).
data::Box input_box_to_original(const data::Box& box, const data::InputFit& fit, bool mirrored);

// Whether a letterboxed pass's box is (almost) all padding and dropped (see above); never
// for a stretched fit.
bool input_box_in_padding(const data::Box& box, const data::InputFit& fit, bool mirrored);

// The input sides a run uses: options.scales, or the model's size.
std::vector<int> inference_sizes(const models::DetectionModel& model, const InferenceOptions& options);

// The network forward (models::forward_heads_f32, under whatever precision scope is active)
// replayed from CUDA graphs (ssd_detect --cuda-graph; engine/cuda_graph.h). One graph per
// input shape: at the first batch of a shape the images are copied into a static device
// input, the forward runs once eagerly (the warm-up: it fills the allocator's cache and
// picks the cuDNN algorithms), then it is captured into the static heads; every later
// batch of that shape is copied into the same input and the graph replayed. Post-processing
// stays eager. The heads returned are the graph's static outputs: valid until the next
// run() of the same shape. The model must stay on the device, in eval mode, with the same
// weights and precision for the object's lifetime.
class GraphedForward {
 public:
  GraphedForward();
  ~GraphedForward();
  GraphedForward(const GraphedForward&) = delete;
  GraphedForward& operator=(const GraphedForward&) = delete;
  models::HeadOutputs run(models::DetectionModel& model, const eng::Tensor& host_images);
  size_t graphs() const { return entries_.size(); }

 private:
  struct Entry;
  std::map<eng::Shape, std::unique_ptr<Entry>> entries_;
};

// Detections for every image of `batch` (built by a Loader in evaluation mode with
// input_sizes = inference_sizes(...)). The model runs on `device` in its current mode; its
// input size is restored afterwards. With `graphed` (CUDA only) the forward replays graphs.
std::vector<std::vector<Found>> detect_batch(models::DetectionModel& model, const data::Batch& batch,
                                             eng::Device device, const InferenceOptions& options,
                                             GraphedForward* graphed = nullptr);

// Found -> detections.json records (category ids and names from the dataset's classes).
data::ImageDetections to_record(const std::vector<Found>& found, const std::string& file, int width, int height,
                                const std::vector<std::string>& class_names, const std::vector<int>& category_ids);

struct EvalRun {
  data::EvalResult result;
  std::vector<data::ImageDetections> images;  // per evaluated image, dataset order
  std::vector<std::string> warnings;          // images that could not be read
  double seconds = 0;
};

// Runs the model (switched to eval mode, then back) over every image of `dataset` and
// evaluates against its annotations (difficult and crowd handled by the metrics).
EvalRun evaluate_model(models::DetectionModel& model, const data::Dataset& dataset, eng::Device device,
                       const InferenceOptions& options, int batch_size, int workers);

}  // namespace app
