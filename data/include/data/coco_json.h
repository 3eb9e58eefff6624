// Reading evaluation inputs: a COCO "instances" ground-truth JSON and the project's
// detections.json. Images are keyed by file base name (directories stripped), which is how
// data/metrics.h matches detections to ground truth.
//
// COCO GT: {"images": [{"id", "file_name", ...}], "annotations": [{"image_id", "category_id",
// "bbox": [x, y, w, h], "area", "iscrowd"}], "categories": [{"id", "name"}]}; bbox becomes
// corners (x, y, x + w, y + h); a missing `area` is w * h, a missing `iscrowd` is 0.
// detections.json: {"images": [{"file", "width", "height", "detections": [{"category_id",
// "label", "score", "bbox": [x, y, w, h]}]}]}.
// Unreadable files, malformed JSON and missing or mistyped fields throw eng::Error naming the
// file and the problem.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/metrics.h"

namespace data {

struct CocoCategory {
  int id = 0;
  std::string name;
};

struct CocoGroundTruth {
  std::vector<std::string> images;         // keys of all images, in file order
  std::vector<CocoCategory> categories;    // in file order
  std::vector<GroundTruth> annotations;
  std::vector<int> category_ids() const;   // sorted ascending (as pycocotools)
};

std::string image_key(const std::string& file_name);  // base name of a path

// The whole file parsed as JSON; eng::Error "<path>: cannot open file" or
// "<path>: malformed JSON: ...".
nlohmann::json read_json_file(const std::string& path);

CocoGroundTruth read_coco_gt(const std::string& path);
std::vector<Detection> read_detections(const std::string& path);

}  // namespace data
