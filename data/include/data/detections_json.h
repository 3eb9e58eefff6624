// Writing the detector's output file, detections.json (read back by
// data::read_detections in data/coco_json.h; format in docs/detect-output.md):
//
//   {"images": [{"file": "photos/dog.jpg", "width": 640, "height": 480,
//                "detections": [{"category_id": 12, "label": "dog", "score": 0.87,
//                                "bbox": [x, y, w, h]}]}]}
//
// `file` is the path as given on the command line (the evaluator matches by base name);
// bbox is [x1, y1, x2 - x1, y2 - y1] in original-image pixels. Numbers are written in the
// shortest form that reads back to the identical double, so scores and boxes survive the
// round trip exactly (only x + w may differ from x2 in the last bit).
#pragma once
#include <string>
#include <vector>

#include "data/metrics.h"

namespace data {

struct DetectionRecord {
  int category_id = 0;
  std::string label;
  double score = 0;
  Box box;  // corners in original-image pixels
};

struct ImageDetections {
  std::string file;
  int width = 0, height = 0;
  std::vector<DetectionRecord> detections;
};

// The file's text (one image header per line and one detection per line).
// Throws eng::Error when a score or a coordinate is not finite or a box has x2 < x1 or
// y2 < y1 (data::read_detections would refuse such a file); `name_for_errors` starts the
// message.
std::string detections_json_text(const std::vector<ImageDetections>& images, const std::string& name_for_errors);

// Writes atomically: "<path>.tmp", then renamed to `path`; the .tmp is removed on failure.
// Errors are eng::Error "<path>: <problem>"; nothing is written when a value is invalid.
void write_detections_json(const std::string& path, const std::vector<ImageDetections>& images);

// The writer behind it, for the other output files (COCO results, their ids file): `text`
// to "<path>.tmp", then renamed to `path`; eng::Error "<path>: <problem>" on failure, with
// the .tmp removed, so `path` is either the old file or the whole new one.
void write_text_atomically(const std::string& path, const std::string& text);

}  // namespace data
