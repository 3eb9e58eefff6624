// Dataset readers: Pascal VOC (XML annotations) and COCO (instances JSON) into the common
// in-memory form of data/annotation.h. No image is decoded; only the files' existence is
// checked (and only when `require_images` is set). docs/datasets.md has the details.
//
// Errors and warnings:
//   * a whole-dataset problem (missing root, split file, class file or JSON; malformed JSON;
//     missing top-level arrays; bad categories) throws eng::Error naming the path;
//   * a per-item problem skips that item and leaves one line in Dataset::warnings:
//       "<file>: <problem> (image skipped)"
//       "<file>: object <i> '<name>': <problem> (object skipped)"          (VOC, i from 0)
//       "<file>: annotations[<i>] (id <id>): <problem> (object skipped)"   (COCO)
//     and bumps Dataset::skipped_images / skipped_objects.
// Images left without objects are kept (evaluation needs them; training filters them).
//
// Boxes (data::Box corners, pixels):
//   * VOC: the XML's 1-based inclusive pixel coordinates minus 1, all four (the ssd.pytorch /
//     GluonCV convention): <xmin>1</xmin>..<xmax>10</xmax> becomes x1 = 0, x2 = 9;
//   * COCO: bbox [x, y, w, h] becomes (x, y, x + w, y + h).
//   A box that leaves the image (when its size is known) by more than 1 pixel is skipped;
//   one within that tolerance is clipped to [0, W] x [0, H].
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/annotation.h"

namespace data {

// The 20 Pascal VOC classes in the standard order (aeroplane ... tvmonitor).
std::vector<std::string> voc_class_names();

// One class name per line; blank lines and surrounding whitespace are ignored. A missing or
// empty file, or a duplicate name, throws eng::Error naming the file.
std::vector<std::string> read_class_names(const std::string& path);

struct VocOptions {
  std::vector<std::string> roots;  // several roots joined in order (VOC2007 + VOC2012)
  std::string split = "trainval";  // ids from <root>/ImageSets/Main/<split>.txt
  std::string classes_file;        // empty: <first root>/classes.txt if it exists, else voc_class_names()
  bool require_images = true;      // false: do not check that JPEGImages/<file> exists
};

// The class file load_voc will read ("" when it uses voc_class_names()).
std::string voc_classes_file(const VocOptions& options);

// Category ids are 1..K in class order.
Dataset load_voc(const VocOptions& options);

struct CocoOptions {
  std::string json;             // instances file
  std::string images_dir;       // empty: the JSON's folder
  bool require_images = true;   // false: do not check that <images_dir>/<file_name> exists
};

// Categories sorted by id become labels 0..K-1 (category_ids = the JSON's ids).
Dataset load_coco(const CocoOptions& options);

// True when `path` names a COCO instances file (ends in ".json", any case); else VOC roots.
bool is_coco_path(const std::string& path);

// `path` ending in ".json": COCO (images in `images_dir`; `split` is not used and a
// `classes_file` is an error). Otherwise comma-separated VOC roots (`images_dir` must be empty).
Dataset load_dataset(const std::string& path, const std::string& split, const std::string& classes_file,
                     const std::string& images_dir = "", bool require_images = true);

// One line for logs: the format, the paths, the split and where the class names come from.
std::string dataset_source(const std::string& path, const std::string& split, const std::string& classes_file,
                           const std::string& images_dir = "");

// Multi-line: images, objects (difficult / crowd), objects per class ("  name: count"),
// skipped images and objects. Ends with a newline.
std::string dataset_summary(const Dataset& d);

// Every object, difficult and crowd included: image = sample.key, category = category_ids[label].
std::vector<GroundTruth> ground_truth(const Dataset& d);

// Shared by the readers (data/src/dataset.cpp).
namespace detail {
// Range checks on every number an annotation file gives (checked before any conversion):
constexpr int64_t kMaxImageSide = 1000000;  // an image width or height
constexpr double kMaxCoordinate = 1e7;      // |a box coordinate|, |x + w| (COCO), |area| <= its square

// "" when the box is usable, after clipping it into [0, width] x [0, height] (a bound of 0
// is unknown and not checked; negative coordinates are always checked against 0); else
// the problem: zero or negative area, or outside the image by more than 1 pixel.
std::string check_box(Box& box, int width, int height);
std::string trim(const std::string& s);
// A warning or error text that stays on one line: control characters (a newline inside a
// class name or a value read from a file) are written as \n, \r, \t or \xHH.
std::string printable(const std::string& s);
}  // namespace detail

}  // namespace data
