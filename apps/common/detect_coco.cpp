// ssd_detect --coco-results. See common/detect_coco.h.
#include "common/detect_coco.h"

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <utility>

#include "data/coco_json.h"
#include "data/dataset.h"
#include "engine/error.h"

namespace app {

namespace fs = std::filesystem;

namespace {

std::string id_list(const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size() && i < 8; ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return ids.size() > 8 ? s + ", ..." : s;
}

}  // namespace

CocoResultsOut::CocoResultsOut(std::string results_path, std::string gt_path, const ClassList& classes)
    : path_(std::move(results_path)), gt_(std::move(gt_path)) {
  const fs::path parent = fs::path(path_).parent_path();
  std::error_code ec;
  ENGINE_CHECK(!fs::is_directory(path_, ec), "--coco-results ", path_, ": is a folder (give a file name)");
  ENGINE_CHECK(parent.empty() || fs::is_directory(parent, ec), "--coco-results ", path_, ": folder ",
               parent.string(), " does not exist");
  if (gt_.empty()) {
    category_of_label_ = classes.category_ids;
    return;
  }
  data::CocoOptions o;
  o.json = gt_;
  o.require_images = false;
  const data::Dataset gt = data::load_coco(o);  // categories sorted by id = labels 0..K-1
  category_of_label_ = data::coco_category_mapping(classes.category_ids, gt.category_ids, gt_);
  gt_categories_.insert(gt.category_ids.begin(), gt.category_ids.end());
  if (category_of_label_ != classes.category_ids)
    std::printf("--coco-gt %s: category ids by class order (%s), not the weights' own (%s)\n", gt_.c_str(),
                id_list(category_of_label_).c_str(), id_list(classes.category_ids).c_str());
  for (const data::CocoImageRef& im : data::read_coco_image_ids(gt_)) {
    const std::string key = data::image_key(im.file_name);
    const auto [it, fresh] = id_of_key_.emplace(key, im.id);
    ENGINE_CHECK(fresh, gt_, ": images with ids ", it->second, " and ", im.id, " have the same file name '", key,
                 "' (images are matched by file name)");
  }
}

void CocoResultsOut::add(size_t index, const std::string& file, int width, int height,
                         const std::vector<Found>& found) {
  int64_t id = static_cast<int64_t>(index) + 1;
  if (!gt_.empty()) {
    const auto it = id_of_key_.find(data::image_key(file));
    if (it == id_of_key_.end()) {
      unmatched_.push_back(file);
      return;
    }
    id = it->second;
  } else {
    images_.push_back({id, file, width, height});
  }
  ++images_with_ids_;
  for (const Found& f : found) {
    if (f.label < 0 || f.label >= static_cast<int>(category_of_label_.size())) continue;  // as to_record
    const int category = category_of_label_[static_cast<size_t>(f.label)];
    if (!gt_categories_.empty() && !gt_categories_.count(category)) {
      ++dropped_category_;
      continue;
    }
    results_.push_back({id, category, f.score, f.box});
  }
}

void CocoResultsOut::finish() {
  const std::string ids = data::coco_ids_path(path_);
  if (gt_.empty()) {
    data::write_coco_image_ids(ids, images_);
  } else {
    std::error_code ec;
    fs::remove(ids, ec);  // a stale one would re-map these ids (the evaluator prefers it)
  }
  data::write_coco_results(path_, results_);
  std::printf("wrote %s (%zu detections on %zu images, COCO results format)\n", path_.c_str(), results_.size(),
              images_with_ids_);
  if (gt_.empty()) std::printf("wrote %s (image id -> file name)\n", ids.c_str());
  if (!unmatched_.empty()) {
    std::string names;
    for (size_t i = 0; i < unmatched_.size() && i < 3; ++i) names += (i ? ", " : "") + unmatched_[i];
    if (unmatched_.size() > 3) names += ", ...";
    std::cerr << "ssd_detect: warning: --coco-gt " << gt_ << ": " << unmatched_.size() << " of "
              << unmatched_.size() + images_with_ids_ << " images have no entry of that file name and are left out of "
              << path_ << ": " << names << "\n";
  }
  if (dropped_category_ > 0)
    std::cerr << "ssd_detect: warning: --coco-gt " << gt_ << ": " << dropped_category_
              << " detections of categories the file does not have are left out of " << path_ << "\n";
}

}  // namespace app
