// The official COCO results format (what pycocotools' COCO.loadRes reads), written by
// `ssd_detect --coco-results FILE` and read by `ssd_eval --det FILE`:
//
//   [{"image_id": 42, "category_id": 18, "bbox": [x, y, w, h], "score": 0.87}, ...]
//
// bbox is [x1, y1, x2 - x1, y2 - y1] in original-image pixels (floats), as in
// detections.json. Image ids come from a COCO instances file (`--coco-gt`, matched by file
// base name) or, without one, are the 1-based positions of the inputs, and then the ids
// file written beside the results (coco_ids_path) maps them back to file names:
//
//   {"images": [{"id": 1, "file_name": "photos/dog.jpg", "width": 640, "height": 480}, ...]}
//
// (the shape of a COCO instances file's "images" array, so the same reader reads the ids
// of both).
//
// Reading is for untrusted input: the file goes through data::read_json_file (size cap
// ReadLimits::json_bytes, regular files only) and every value is checked before use; a
// problem is one eng::Error line "<path>: entry N: <field> is <value>, <what it must be>".
// Ranges: image ids are integers in [0, 2^53] (exact in a double, as Python and
// JavaScript readers hold them), category ids integers in the int range, bbox numbers in
// +-1e7 with w, h >= 0 (data::detail::kMaxCoordinate), a score any finite number (JSON numbers
// are finite: 1e400 is malformed JSON); other members of an entry (e.g. "area",
// "segmentation") are ignored. ids-file widths and heights, when present, are integers in
// [0, data::detail::kMaxImageSide].
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/metrics.h"

namespace data {

constexpr int64_t kMaxCocoImageId = int64_t{1} << 53;

struct CocoResult {
  int64_t image_id = 0;
  int category_id = 0;
  double score = 0;
  Box box;  // corners; written as [x1, y1, x2 - x1, y2 - y1]
};

struct CocoImageRef {
  int64_t id = 0;
  std::string file_name;    // as written (the evaluator matches by base name)
  int width = 0, height = 0;  // 0: unknown (not written)
};

// The results file's text: one entry per line, numbers in the shortest form that reads back
// to the identical double. Throws eng::Error naming `name_for_errors` and the entry when a
// value could not be read back (a non-finite score or coordinate, x2 < x1 or y2 < y1, an
// image id outside [0, 2^53]).
std::string coco_results_text(const std::vector<CocoResult>& results, const std::string& name_for_errors);
// Written atomically (data::write_text_atomically): nothing at `path` when a value is bad.
void write_coco_results(const std::string& path, const std::vector<CocoResult>& results);

// "<dir>/<stem>.ids.json" for "<dir>/<stem>.json", else "<path>.ids.json".
std::string coco_ids_path(const std::string& results_path);
void write_coco_image_ids(const std::string& path, const std::vector<CocoImageRef>& images);

// The first byte of the file that is not whitespace (or a UTF-8 byte order mark) is '[':
// a COCO results list rather than detections.json (an object). False for anything that is
// not a readable regular file (the reader then gives the error), without blocking on a FIFO.
bool is_coco_results_file(const std::string& path);

std::vector<CocoResult> parse_coco_results(const nlohmann::json& j, const std::string& path);
std::vector<CocoResult> read_coco_results(const std::string& path);

// The "images" array of an ids file or of a COCO instances file: {"id", "file_name"} with
// optional "width" / "height" (other members ignored). Duplicate ids are an error.
std::vector<CocoImageRef> read_coco_image_ids(const std::string& path);

// The COCO category id of each model class (index = the model's 0-based foreground label),
// for an evaluation against a COCO file whose categories, sorted by id, are `gt_ids` (the
// order data::load_coco gives labels 0..K-1, so a model trained on that file maps back
// exactly). `model_ids`: the weights' own category ids, by label.
//   * same count: the GT's ids in order (label k -> k-th smallest GT id);
//   * otherwise, when the weights' ids include every GT id (torchvision's 90 COCO labels
//     against the 80 categories of instances_val2017.json): the weights' ids; detections
//     of ids outside the GT are then for the caller to leave out;
//   * otherwise eng::Error naming `gt_path` and both counts.
std::vector<int> coco_category_mapping(const std::vector<int>& model_ids, const std::vector<int>& gt_ids,
                                       const std::string& gt_path);

// Results -> evaluator detections: `key_of_id` gives the image key (file base name) of
// each image id; results on ids it does not have go to `unknown_ids` (in file order, once
// each) and are left out.
std::vector<Detection> coco_results_to_detections(const std::vector<CocoResult>& results,
                                                  const std::vector<CocoImageRef>& images,
                                                  std::vector<int64_t>& unknown_ids);

}  // namespace data
