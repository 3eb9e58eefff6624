// COCO instances reader: {"images", "annotations", "categories"} into a data::Dataset.
// See data/dataset.h and docs/datasets.md.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "data/coco_json.h"
#include "data/dataset.h"
#include "engine/error.h"
#include "json_checks.h"

namespace data {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const json& top_level_array(const std::string& path, const json& j, const char* key) {
  ENGINE_CHECK(j.is_object(), path, ": the top level is not a JSON object");
  const auto it = j.find(key);
  ENGINE_CHECK(it != j.end() && it->is_array(), path, ": missing top-level array \"", key, "\"");
  return *it;
}

// An integer member in [min, max] (int64 by default), or false when absent, not an integer
// or out of range (an unsigned value past int64 is refused, not wrapped).
bool integer_member(const json& obj, const char* key, long long& value, int64_t min = INT64_MIN,
                    int64_t max = INT64_MAX) {
  const auto it = obj.find(key);
  int64_t v = 0;
  if (it == obj.end() || !jsonck::int_in(*it, min, max, v)) return false;
  value = v;
  return true;
}

// The member as written, for messages ("absent" when missing).
std::string member_text(const json& obj, const char* key) {
  const auto it = obj.find(key);
  return it == obj.end() ? "absent" : jsonck::shown(*it);
}

struct Category {
  long long id = 0;
  std::string name;
};

std::vector<Category> read_categories(const std::string& path, const json& cats) {
  std::vector<Category> out;
  for (size_t i = 0; i < cats.size(); ++i) {
    const std::string where = "categories[" + std::to_string(i) + "]";
    ENGINE_CHECK(cats[i].is_object(), path, ": ", where, " is not an object");
    Category c;
    // Category ids become ints (category_ids, detections.json): they must fit.
    ENGINE_CHECK(integer_member(cats[i], "id", c.id, INT32_MIN, INT32_MAX), path, ": ", where,
                 " has no integer \"id\" in [-2^31, 2^31 - 1] (", member_text(cats[i], "id"), ")");
    const auto name = cats[i].find("name");
    ENGINE_CHECK(name != cats[i].end() && name->is_string(), path, ": ", where, " has no string \"name\"");
    c.name = name->get<std::string>();
    out.push_back(c);
  }
  ENGINE_CHECK(!out.empty(), path, ": \"categories\" is empty");
  std::sort(out.begin(), out.end(), [](const Category& a, const Category& b) { return a.id < b.id; });
  for (size_t i = 1; i < out.size(); ++i)
    ENGINE_CHECK(out[i].id != out[i - 1].id, path, ": duplicate category id ", out[i].id);
  return out;
}

// Each of x, y, w, h within +-kMaxCoordinate, so x + w and y + h are finite.
bool parse_bbox(const json& a, Box& box) {
  const auto it = a.find("bbox");
  if (it == a.end() || !it->is_array() || it->size() != 4) return false;
  double v[4];
  for (int k = 0; k < 4; ++k)
    if (!jsonck::number_in((*it)[k], -detail::kMaxCoordinate, detail::kMaxCoordinate, v[k])) return false;
  box = Box{v[0], v[1], v[0] + v[2], v[1] + v[3]};
  return true;
}

class CocoReader {
 public:
  CocoReader(const CocoOptions& options, const std::vector<Category>& categories, Dataset& out)
      : path_(options.json), require_images_(options.require_images), out_(out) {
    images_dir_ = options.images_dir.empty() ? fs::path(options.json).parent_path() : fs::path(options.images_dir);
    for (size_t i = 0; i < categories.size(); ++i) label_of_[categories[i].id] = static_cast<int>(i);
  }

  void read_images(const json& images) {
    for (size_t i = 0; i < images.size(); ++i) read_image(i, images[i]);
  }

  void read_annotations(const json& anns) {
    for (size_t i = 0; i < anns.size(); ++i) read_annotation(i, anns[i]);
  }

 private:
  void skip_image(size_t index, const std::string& problem) {
    out_.warnings.push_back(
        detail::printable(path_ + ": images[" + std::to_string(index) + "]: " + problem + " (image skipped)"));
    ++out_.skipped_images;
  }

  void skip_object(size_t index, const json& a, const std::string& problem) {
    std::string where = "annotations[" + std::to_string(index) + "]";
    long long id = 0;
    if (a.is_object() && integer_member(a, "id", id)) where += " (id " + std::to_string(id) + ")";
    out_.warnings.push_back(detail::printable(path_ + ": " + where + ": " + problem + " (object skipped)"));
    ++out_.skipped_objects;
  }

  // Absent (or null): 0, unknown. Else an integer in [0, kMaxImageSide] (0: unknown);
  // anything else is the problem, for a warning.
  static std::string image_size(const json& img, const char* key, int& size) {
    size = 0;
    const auto it = img.find(key);
    if (it == img.end() || it->is_null()) return "";
    long long v = 0;
    if (!integer_member(img, key, v, 0, detail::kMaxImageSide))
      return std::string("\"") + key + "\" is " + jsonck::shown(*it) + ", not an integer in [0, " +
             std::to_string(detail::kMaxImageSide) + "]";
    size = static_cast<int>(v);
    return "";
  }

  void read_image(size_t index, const json& img) {
    long long id = 0;
    if (!img.is_object()) return skip_image(index, "not an object");
    if (!integer_member(img, "id", id)) return skip_image(index, "no integer \"id\" (" + member_text(img, "id") + ")");
    const auto fn = img.find("file_name");
    if (fn == img.end() || !fn->is_string() || fn->get<std::string>().empty())
      return skip_image(index, "no \"file_name\"");
    if (sample_of_.count(id) || skipped_ids_.count(id)) return skip_image(index, "duplicate id " + std::to_string(id));
    Sample s;
    s.image_path = (images_dir_ / fn->get<std::string>()).string();
    if (require_images_ && !fs::exists(s.image_path)) {
      skipped_ids_.insert(id);  // its annotations go with it, without further warnings
      return skip_image(index, "image file " + s.image_path + " not found");
    }
    s.key = image_key(fn->get<std::string>());
    for (const auto& [key, size] : {std::pair<const char*, int*>{"width", &s.width}, {"height", &s.height}}) {
      const std::string problem = image_size(img, key, *size);
      if (!problem.empty()) {
        skipped_ids_.insert(id);
        return skip_image(index, problem);
      }
    }
    sample_of_[id] = out_.samples.size();
    out_.samples.push_back(std::move(s));
  }

  // "" and the object, or the problem.
  std::string parse_object(const json& a, Object& o, size_t& sample) const {
    long long image_id = 0, category_id = 0;
    if (!integer_member(a, "image_id", image_id))
      return "no integer \"image_id\" (" + member_text(a, "image_id") + ")";
    const auto s = sample_of_.find(image_id);
    if (s == sample_of_.end()) return "unknown image_id " + std::to_string(image_id);
    sample = s->second;
    if (!integer_member(a, "category_id", category_id))
      return "no integer \"category_id\" (" + member_text(a, "category_id") + ")";
    const auto label = label_of_.find(category_id);
    if (label == label_of_.end()) return "unknown category_id " + std::to_string(category_id);
    o.label = label->second;
    if (!parse_bbox(a, o.box))
      return "bad \"bbox\" " + member_text(a, "bbox") + " (not 4 numbers [x, y, w, h] within +-1e7)";
    const auto area = a.find("area");
    if (area != a.end()) {
      const double max_area = detail::kMaxCoordinate * detail::kMaxCoordinate;
      if (!jsonck::number_in(*area, -max_area, max_area, o.area))
        return "\"area\" is " + jsonck::shown(*area) + ", not a number within +-1e14";
    }
    const auto crowd = a.find("iscrowd");
    if (crowd != a.end()) {
      long long c = 0;
      if (!crowd->is_boolean() && !integer_member(a, "iscrowd", c, 0, 1))
        return "\"iscrowd\" is " + jsonck::shown(*crowd) + ", not 0/1";
      o.iscrowd = crowd->is_boolean() ? crowd->get<bool>() : c != 0;
    }
    const Sample& img = out_.samples[sample];
    return detail::check_box(o.box, img.width, img.height);
  }

  void read_annotation(size_t index, const json& a) {
    if (!a.is_object()) return skip_object(index, a, "not an object");
    long long image_id = 0;
    if (integer_member(a, "image_id", image_id) && skipped_ids_.count(image_id)) return;
    Object o;
    size_t sample = 0;
    const std::string problem = parse_object(a, o, sample);
    if (!problem.empty()) return skip_object(index, a, problem);
    out_.samples[sample].objects.push_back(o);
  }

  std::string path_;
  fs::path images_dir_;
  bool require_images_;
  Dataset& out_;
  std::unordered_map<long long, int> label_of_;
  std::unordered_map<long long, size_t> sample_of_;
  std::unordered_set<long long> skipped_ids_;
};

}  // namespace

Dataset load_coco(const CocoOptions& options) {
  const json j = read_json_file(options.json);
  const json& images = top_level_array(options.json, j, "images");
  const json& anns = top_level_array(options.json, j, "annotations");
  const std::vector<Category> categories =
      read_categories(options.json, top_level_array(options.json, j, "categories"));
  Dataset out;
  for (const Category& c : categories) {
    out.class_names.push_back(c.name);
    out.category_ids.push_back(static_cast<int>(c.id));
  }
  CocoReader reader(options, categories, out);
  reader.read_images(images);
  reader.read_annotations(anns);
  return out;
}

}  // namespace data
