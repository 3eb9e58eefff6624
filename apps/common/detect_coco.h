// ssd_detect's COCO results output (--coco-results FILE [--coco-gt GT]); the format and the
// ids file are in data/coco_results.h, the user's view in docs/detect-output.md.
//
// With a GT (a COCO instances file): an input's image id is the id of the GT image whose
// file_name has the input's base name; inputs without one are left out and reported in ONE
// warning line at the end; category ids follow data::coco_category_mapping (model class k ->
// the k-th smallest GT category id, as data::load_coco labels them). A stale ids file beside
// FILE (from an earlier run without a GT) is removed, so the evaluator never pairs the two.
// Without a GT: image id = the input's 1-based position in the expanded input list (a failed
// input keeps its number, unused), category id = the weights' category id of the class (as
// detections.json: the 1-based class index unless the weights carry other ids, e.g. a model
// trained on a COCO file), and FILE's ids file (data::coco_ids_path) maps ids to file names.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/checkpoint.h"
#include "common/inference.h"
#include "data/coco_results.h"

namespace app {

class CocoResultsOut {
 public:
  // Reads and checks the GT (when given) and the output folder before any inference runs:
  // eng::Error naming the flag's file on any problem.
  CocoResultsOut(std::string results_path, std::string gt_path, const ClassList& classes);

  // One processed input: `index` is its 0-based position in the input list.
  void add(size_t index, const std::string& file, int width, int height, const std::vector<Found>& found);

  // Writes the ids file (no GT) and then the results, each atomically, prints "wrote ..."
  // lines to stdout and the warning lines (unmatched images, categories outside the GT) to
  // stderr.
  void finish();

  const std::vector<data::CocoResult>& results() const { return results_; }

 private:
  std::string path_, gt_;
  std::vector<int> category_of_label_;
  std::set<int> gt_categories_;  // empty without a GT
  std::map<std::string, int64_t> id_of_key_;
  std::vector<data::CocoResult> results_;
  std::vector<data::CocoImageRef> images_;
  std::vector<std::string> unmatched_;
  size_t images_with_ids_ = 0;
  size_t dropped_category_ = 0;
};

}  // namespace app
