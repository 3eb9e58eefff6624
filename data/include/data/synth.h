// Synthetic detection data: coloured shapes on cluttered backgrounds, written as a Pascal
// VOC or COCO dataset (the `ssd_data synth` program; docs/synthetic-data.md).
//
// The class of an object is its SHAPE (circle, square, triangle, ...); its colour is random,
// so a detector has to learn silhouettes. A scene is a smooth random background with mild
// per-pixel noise and 10-30 small clutter marks, then `min_objects`..`max_objects` shapes of
// 15%-55% of the shorter image side. A later shape may overlap an earlier one, but its box
// covers at most kSynthMaxCover of the earlier box's area, and all later shapes together hide
// at most kSynthMaxCover of the earlier shape's own pixels.
//
// Boxes (SynthScene::objects) are the tight bounds of each shape's drawn pixels (a pixel is
// drawn when at least half of it is covered), as 0-based INCLUSIVE pixel indices: x1 is the
// first covered column, x2 the last (so the width in pixels is x2 - x1 + 1). This is what a
// VOC reader gives back after subtracting 1 from the file's 1-based coordinates.
//
// Determinism: a scene depends only on (options, seed); no std:: distributions are used
// (their output differs between standard libraries), only mt19937_64's raw output.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/annotation.h"
#include "data/image.h"

namespace data {

constexpr int kMaxSynthClasses = 10;
constexpr double kSynthMaxCover = 0.35;  // max hidden fraction of an earlier object (see above)
constexpr int kSynthMinSide = 32;        // image width/height limits
constexpr int kSynthMaxSide = 4096;

struct SynthOptions {
  int width = 320, height = 240;  // --size WxH
  int num_classes = 6;            // --classes K, 1..kMaxSynthClasses
  int min_objects = 1, max_objects = 4;
  // The longer nominal side of an object, as a fraction of the shorter image side, is drawn
  // from min_size..max_size (0 < min_size <= max_size <= 0.9; objects under 8 px are redrawn).
  double min_size = 0.15, max_size = 0.55;
  // 1: the object's colour is the contrasting colour described above; below 1 it is mixed
  // toward the mean background colour under its box (0.25: faint, low-contrast objects).
  // Range (0, 1].
  double contrast = 1.0;
};

// The first k of: circle, square, triangle, diamond, cross, star, ring, hexagon, crescent,
// heart. Throws eng::Error unless 1 <= k <= kMaxSynthClasses.
std::vector<std::string> synth_class_names(int k);

// Throws eng::Error naming the problem: size outside kSynthMinSide..kSynthMaxSide, class count
// outside 1..kMaxSynthClasses, object counts not 0 <= min <= max <= 50, sizes or contrast
// out of their ranges (or NaN).
void validate_synth_options(const SynthOptions& options);

// "WxH" (e.g. "320x240") into options.width / options.height; throws eng::Error otherwise.
void parse_synth_size(const std::string& text, SynthOptions& options);

struct SynthScene {
  Image image;
  std::vector<Object> objects;  // in drawing order (later ones lie on top); label = class index
};

// Renders one scene; the same (options, seed) always gives the same pixels and boxes.
SynthScene render_scene(const SynthOptions& options, uint64_t seed);

// The seed of image `index` (0-based) of stream `stream` of a dataset seeded `dataset_seed`:
// splitmix64 mixing, so nearby inputs give unrelated seeds. write_synth_dataset uses stream 0
// for the main split and stream 1 for the "test" split, so image i of either never depends on
// how many images the other split or a larger run has.
uint64_t synth_image_seed(uint64_t dataset_seed, uint64_t stream, uint64_t index);

enum class SynthFormat { Voc, Coco };

struct SynthSummary {
  std::vector<std::string> splits;          // split names written, in order
  std::vector<int> images_per_split;        // same length as splits
  std::vector<std::string> class_names;
  std::vector<int64_t> objects_per_class;   // over all splits
};

// Writes `n` images into split `split` and `n_val` more into split "test" (ids continue:
// 000001..n, then n+1..n+n_val), JPEG quality 95.
//   Voc:  DIR/JPEGImages/<id>.jpg, DIR/Annotations/<id>.xml, DIR/ImageSets/Main/<split>.txt,
//         DIR/classes.txt; XML coordinates are VOC's 1-based inclusive pixels (index + 1).
//   Coco: DIR/<id>.jpg and DIR/instances_<split>.json; bbox [x1, y1, x2 - x1 + 1, y2 - y1 + 1].
// Every file is written to "<path>.tmp" and renamed into place. Throws eng::Error on bad
// options, n < 1, n_val < 0, a split name that is not [A-Za-z0-9_-]+ (or is "test" while
// n_val > 0), or a directory or file that cannot be written (the message names the path).
SynthSummary write_synth_dataset(const std::string& out_dir, SynthFormat format, int n, int n_val,
                                 uint64_t seed, const SynthOptions& options,
                                 const std::string& split = "trainval");

}  // namespace data
