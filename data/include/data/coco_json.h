// Reading evaluation inputs: a COCO "instances" ground-truth JSON and the project's
// detections.json. Images are keyed by file base name (directories stripped), which is how
// data/metrics.h matches detections to ground truth.
//
// COCO GT: {"images": [{"id", "file_name", ...}], "annotations": [{"image_id", "category_id",
// "bbox": [x, y, w, h], "area", "iscrowd"}], "categories": [{"id", "name"}]}; bbox becomes
// corners (x, y, x + w, y + h); a missing `area` is w * h, a missing `iscrowd` is 0.
// detections.json: {"images": [{"file", "width", "height", "detections": [{"category_id",
// "label", "score", "bbox": [x, y, w, h]}]}]}.
// Unreadable files, malformed JSON and missing, mistyped or out-of-range fields throw
// eng::Error naming the file, the field and the value. Ranges: ids and category ids are
// integers (category ids fit in int; a float such as 1.0 is not an id), bbox numbers lie in
// +-1e7 with w, h >= 0, area in +-1e14, iscrowd is 0, 1, true or false, a score is any
// number (JSON numbers are finite: 1e400 is malformed JSON).
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

// The whole file parsed as JSON. The file must be a regular file of at most
// ReadLimits::json_bytes (engine/io/limits.h; a link to /dev/zero or a FIFO is refused
// unread); eng::Error "<path>: JSON file not found", "<path>: JSON file is a FIFO ...",
// "<path>: JSON file is N bytes, larger than the limit ..." or "<path>: malformed JSON: ..."
// (every nlohmann exception, e.g. a number out of double range).
nlohmann::json read_json_file(const std::string& path);

CocoGroundTruth read_coco_gt(const std::string& path);
std::vector<Detection> read_detections(const std::string& path);

}  // namespace data
