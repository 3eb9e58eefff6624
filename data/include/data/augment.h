// SSD training augmentation (docs/augmentation.md): photometric distortion, zoom-out
// ("expand"), the min-IoU random crop and the horizontal flip, applied in that order to an
// image and its boxes.
//
// Determinism: every random draw of one call comes from a single eng::Generator seeded with
// `seed`, in a fixed order, so the same input and seed give the same output bit for bit.
// sample_seed() derives a per-sample seed from (run seed, epoch, sample index), which makes
// a sample's augmentation independent of loading order and thread scheduling.
//
// Boxes are corners (x1, y1, x2, y2) in pixels (data::Box). They are clipped to the image
// on the way in and out; a box narrower or shorter than 1 px after clipping is dropped.
// After any geometric change an object's `area` is set to -1 ("use the box area").
#pragma once
#include <cstdint>
#include <vector>

#include "data/annotation.h"
#include "data/image.h"
#include "engine/random.h"

namespace data {

struct AugmentOptions {
  bool photometric = true;                                // SSD photometric distortion
  double brightness_delta = 32;                           // add uniform(-d, d), p 0.5
  double contrast_lower = 0.5, contrast_upper = 1.5;      // multiply RGB, p 0.5
  double saturation_lower = 0.5, saturation_upper = 1.5;  // multiply S in HSV, p 0.5
  double hue_delta = 18;                                  // add uniform(-d, d) degrees to H, p 0.5
  bool expand = true;                                     // zoom-out
  double expand_prob = 0.5;
  double expand_max_ratio = 4;                            // canvas side = ratio * side, ratio uniform(1, max)
  std::vector<double> fill = {123.675, 116.28, 103.53};   // canvas colour (0..255 RGB), rounded
  bool crop = true;                                       // min-IoU random crop
  int crop_max_trials = 50;                               // trials per drawn mode
  double crop_min_scale = 0.3;                            // crop side in [min_scale, 1] of the image side
  double crop_min_aspect = 0.5, crop_max_aspect = 2.0;    // crop width / height
  // Crop acceptance: false (Caffe SSD, torchvision RandomIoUCrop) = some box kept by the crop
  // (centre strictly inside) reaches the mode's min IoU; true (GluonCV) = every box reaches it
  // and some centre lies inside.
  bool crop_every_box = false;
  bool flip = true;                                       // horizontal flip, p 0.5
};

struct AnnotatedImage {
  Image image;
  std::vector<Object> objects;
};

// photometric -> expand -> min-IoU crop -> flip. Output size is whatever the steps give
// (no resize). Throws eng::Error on an empty/inconsistent image or invalid options.
AnnotatedImage augment_ssd(const AnnotatedImage& in, uint64_t seed, const AugmentOptions& options = {});

// resize_bilinear to out_w x out_h; boxes scaled by out_w / width and out_h / height.
AnnotatedImage resize_annotated(const AnnotatedImage& in, int out_w, int out_h);

// The smallest width and height, in the pixels the network sees, of a training box.
constexpr double kMinTrainingBoxSide = 1.0;

// Scales boxes of an image of width x height (the augmented image) into a network input
// of input_w x input_h pixels and drops those narrower or lower than min_side there (or
// with a non-finite coordinate). The augmentation keeps boxes of >= 1 px of its own canvas,
// but the zoom-out (up to expand_max_ratio, 4) and the resize shrink them again: a 4 px
// object of a 500 px photo zoomed out 4x is 0.26 px at input 128, and SSD's matcher still
// forces an anchor onto it, with a width target ln(0.26 / 25.6) / 0.2 = -23 against
// tiny_ssd's smallest anchor (torchvision's SanitizeBoundingBoxes drops boxes under 1 px in
// the same spirit). Returns how many were dropped.
int64_t scale_and_drop_small_boxes(std::vector<Object>& objects, int width, int height, int input_w, int input_h,
                                   double min_side = kMinTrainingBoxSide);

// A well-mixed 64-bit hash of (run_seed, epoch, index) built from splitmix64 steps. For a
// fixed (run_seed, epoch) distinct indices always give distinct seeds.
uint64_t sample_seed(uint64_t run_seed, uint64_t epoch, uint64_t index);

// The individual steps, exposed for tests and for callers that build their own pipeline.
namespace detail {

// ---- Photometric helpers on a float HWC buffer (3 values per pixel, no clamping) ----
std::vector<float> to_float(const Image& image);
// Clamps to [0, 255] and rounds to the nearest integer (halves up).
Image from_float(const std::vector<float>& rgb, int width, int height);

void add_brightness(std::vector<float>& rgb, double delta);  // every channel += delta
void scale_contrast(std::vector<float>& rgb, double factor);  // every channel *= factor
// RGB -> HSV in place: H in degrees [0, 360), S in [0, 1], V in [0, 255]. The RGB values are
// clamped to [0, 255] first (HSV is defined for non-negative colours).
void rgb_to_hsv(std::vector<float>& px);
// HSV -> RGB in place (inverse of rgb_to_hsv; H taken modulo 360, S used as is).
void hsv_to_rgb(std::vector<float>& px);
void scale_saturation(std::vector<float>& hsv, double factor);  // S *= factor
void shift_hue(std::vector<float>& hsv, double degrees);        // H = (H + degrees) mod 360

// The random choices of one photometric distortion, drawn up front.
struct PhotometricParams {
  bool brightness = false;
  double brightness_delta = 0;
  bool contrast_first = true;  // contrast before the HSV part (else after it)
  bool contrast = false;
  double contrast_factor = 1;
  bool saturation = false;
  double saturation_factor = 1;
  bool hue = false;
  double hue_delta = 0;
};
PhotometricParams draw_photometric(eng::Generator& gen, const AugmentOptions& options);
Image apply_photometric(const Image& image, const PhotometricParams& params);

// ---- Geometric helpers (deterministic) ----
// Plain IoU (widths x2 - x1); 0 when either box has no area.
double box_iou(const Box& a, const Box& b);
// Places the image at (left, top) on a canvas_w x canvas_h canvas filled with `fill`
// (3 values, rounded and clamped to 0..255); boxes shifted.
AnnotatedImage expand_canvas(const AnnotatedImage& in, int canvas_w, int canvas_h, int left, int top,
                             const std::vector<double>& fill);
// Crops the pixel rectangle [x0, x1) x [y0, y1): keeps the objects whose box centre lies
// strictly inside it, clips them to it and shifts them to the crop's origin.
AnnotatedImage crop_annotated(const AnnotatedImage& in, int x0, int y0, int x1, int y1);
// One mode of the min-IoU crop (docs/augmentation.md): up to options.crop_max_trials random
// crops; the first in which a box whose centre lies strictly inside has IoU >= min_iou (with
// options.crop_every_box: every box reaches min_iou and some centre lies inside) replaces
// `sample` (returns true). Returns false, leaving `sample` alone, if none.
bool min_iou_crop_trials(AnnotatedImage& sample, eng::Generator& gen, const AugmentOptions& options,
                         double min_iou);
// Mirrors left-right: x1' = W - x2, x2' = W - x1.
AnnotatedImage hflip(const AnnotatedImage& in);
// Clips boxes to the image and drops those narrower or shorter than 1 px.
void clip_and_drop_degenerate(AnnotatedImage& sample);

// augment_ssd done step by step with the functions above (each step makes its whole image,
// the zoom-out canvas included): the simple version that augment_ssd, which makes only the
// output pixels, must equal byte for byte (tests/data/test_augment*.cpp).
AnnotatedImage augment_ssd_reference(const AnnotatedImage& in, uint64_t seed, const AugmentOptions& options = {});

}  // namespace detail
}  // namespace data
