// The in-memory form of an annotated detection dataset, whatever its disk format (Pascal
// VOC XML, COCO JSON, the synthetic generator's output). Readers (data/dataset.h) fill it;
// the loader, augmentation, training and evaluation consume it.
//
// Conventions:
//   * boxes are corners (x1, y1, x2, y2) in pixels of the original image, data::Box;
//   * `label` is a 0-based index into Dataset::class_names (no background class); the
//     models' class index is label + 1 (0 is background);
//   * `category_ids[label]` is the id written as "category_id" in detections.json and used
//     by the evaluator: 1..K for VOC-layout datasets, the JSON's own ids for COCO.
#pragma once
#include <string>
#include <vector>

#include "data/metrics.h"

namespace data {

struct Object {
  Box box;
  int label = 0;           // 0-based class index
  bool difficult = false;  // VOC <difficult>1</difficult>
  bool iscrowd = false;    // COCO iscrowd
  double area = -1;        // COCO `area` (evaluation size ranges); <= 0: the box area
};

struct Sample {
  std::string image_path;  // the file to decode
  std::string key;         // image key for evaluation: the file base name (data::image_key)
  int width = 0;           // from the annotation when it gives one; 0: unknown
  int height = 0;
  std::vector<Object> objects;
};

struct Dataset {
  std::vector<std::string> class_names;  // label -> name
  std::vector<int> category_ids;         // label -> category id (same length)
  std::vector<Sample> samples;
  // What the reader skipped, one line each ("<file>: <problem> (object skipped)"), and counts.
  std::vector<std::string> warnings;
  int skipped_images = 0;
  int skipped_objects = 0;
};

}  // namespace data
