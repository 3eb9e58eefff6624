// COCO ground-truth and detections.json readers. See data/coco_json.h.
#include "data/coco_json.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <new>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "engine/error.h"
#include "engine/io/limits.h"
#include "engine/io/read_file.h"
#include "json_checks.h"

namespace data {

using nlohmann::json;

json read_json_file(const std::string& path) {
  const std::string text =
      eng::io::read_file_capped(path, eng::io::read_limits().json_bytes, "JSON file", "ENGINE_MAX_JSON_BYTES");
  try {
    return json::parse(text);
  } catch (const json::exception& e) {  // parse_error, out_of_range (1e400), ...: all of them
    ENGINE_FAIL(path, ": malformed JSON: ", e.what());
  } catch (const std::bad_alloc&) {
    ENGINE_FAIL(path, ": out of memory parsing ", text.size(), " bytes of JSON");
  }
}

std::string image_key(const std::string& file_name) {
  const size_t slash = file_name.find_last_of("/\\");
  return slash == std::string::npos ? file_name : file_name.substr(slash + 1);
}

std::vector<int> CocoGroundTruth::category_ids() const {
  std::vector<int> ids;
  for (const CocoCategory& c : categories) ids.push_back(c.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

namespace {

const json& field(const std::string& path, const json& obj, const char* key, const std::string& where) {
  ENGINE_CHECK(obj.is_object(), path, ": ", where, " is not an object");
  auto it = obj.find(key);
  ENGINE_CHECK(it != obj.end(), path, ": ", where, " has no \"", key, "\"");
  return *it;
}

using detail::kMaxCoordinate;

// A number in [min, max]; else one line naming the field and the value.
double number(const std::string& path, const json& v, const std::string& what, double min, double max) {
  double d = 0;
  ENGINE_CHECK(jsonck::number_in(v, min, max, d), path, ": ", what, " is ", jsonck::shown(v), ", not a number in [",
               min, ", ", max, "]");
  return d;
}

// An integer in [min, max] (int range by default).
int64_t integer(const std::string& path, const json& v, const std::string& what, int64_t min = INT32_MIN,
                int64_t max = INT32_MAX) {
  int64_t i = 0;
  ENGINE_CHECK(jsonck::int_in(v, min, max, i), path, ": ", what, " is ", jsonck::shown(v), ", not an integer in [",
               min, ", ", max, "]");
  return i;
}

const json& array(const std::string& path, const json& v, const std::string& what) {
  ENGINE_CHECK(v.is_array(), path, ": ", what, " is not an array");
  return v;
}

Box xywh(const std::string& path, const json& v, const std::string& what) {
  ENGINE_CHECK(v.is_array() && v.size() == 4, path, ": ", what, " is not an array of 4 numbers [x, y, w, h]");
  double b[4];
  for (int i = 0; i < 4; ++i)
    b[i] = number(path, v[i], what + "[" + std::to_string(i) + "]", -kMaxCoordinate, kMaxCoordinate);
  ENGINE_CHECK(b[2] >= 0 && b[3] >= 0, path, ": ", what, " has a negative width or height");
  return Box{b[0], b[1], b[0] + b[2], b[1] + b[3]};
}

}  // namespace

CocoGroundTruth read_coco_gt(const std::string& path) {
  const json j = read_json_file(path);
  CocoGroundTruth out;
  std::map<long long, std::string> key_of_id;
  const json& images = array(path, field(path, j, "images", "the top level"), "\"images\"");
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string where = "images[" + std::to_string(i) + "]";
    const long long id =
        integer(path, field(path, images[i], "id", where), where + ".id", INT64_MIN, INT64_MAX);
    const json& fn = field(path, images[i], "file_name", where);
    ENGINE_CHECK(fn.is_string(), path, ": ", where, ".file_name is not a string");
    const std::string key = image_key(fn.get<std::string>());
    ENGINE_CHECK(key_of_id.emplace(id, key).second, path, ": ", where, ": duplicate image id ", id);
    out.images.push_back(key);
  }
  const json& cats = array(path, field(path, j, "categories", "the top level"), "\"categories\"");
  for (size_t i = 0; i < cats.size(); ++i) {
    const std::string where = "categories[" + std::to_string(i) + "]";
    CocoCategory c;
    c.id = static_cast<int>(integer(path, field(path, cats[i], "id", where), where + ".id"));
    auto it = cats[i].find("name");
    if (it != cats[i].end() && it->is_string()) c.name = it->get<std::string>();
    out.categories.push_back(c);
  }
  const json& anns = array(path, field(path, j, "annotations", "the top level"), "\"annotations\"");
  for (size_t i = 0; i < anns.size(); ++i) {
    const std::string where = "annotations[" + std::to_string(i) + "]";
    const json& a = anns[i];
    GroundTruth g;
    const long long img =
        integer(path, field(path, a, "image_id", where), where + ".image_id", INT64_MIN, INT64_MAX);
    auto k = key_of_id.find(img);
    ENGINE_CHECK(k != key_of_id.end(), path, ": ", where, ".image_id ", img, " is not in \"images\"");
    g.image = k->second;
    g.category = static_cast<int>(integer(path, field(path, a, "category_id", where), where + ".category_id"));
    g.box = xywh(path, field(path, a, "bbox", where), where + ".bbox");
    auto ar = a.find("area");
    const double max_area = kMaxCoordinate * kMaxCoordinate;
    g.area = ar != a.end() ? number(path, *ar, where + ".area", -max_area, max_area)
                           : (g.box.x2 - g.box.x1) * (g.box.y2 - g.box.y1);
    auto cr = a.find("iscrowd");
    if (cr != a.end()) {
      int64_t crowd = 0;
      ENGINE_CHECK(cr->is_boolean() || jsonck::int_in(*cr, 0, 1, crowd), path, ": ", where, ".iscrowd is ",
                   jsonck::shown(*cr), ", not 0/1");
      g.iscrowd = cr->is_boolean() ? cr->get<bool>() : crowd != 0;
    }
    out.annotations.push_back(g);
  }
  return out;
}

std::vector<Detection> read_detections(const std::string& path) {
  const json j = read_json_file(path);
  std::vector<Detection> out;
  const json& images = array(path, field(path, j, "images", "the top level"), "\"images\"");
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string where = "images[" + std::to_string(i) + "]";
    const json& fn = field(path, images[i], "file", where);
    ENGINE_CHECK(fn.is_string(), path, ": ", where, ".file is not a string");
    const std::string key = image_key(fn.get<std::string>());
    const json& dets = array(path, field(path, images[i], "detections", where), where + ".detections");
    for (size_t n = 0; n < dets.size(); ++n) {
      const std::string w = where + ".detections[" + std::to_string(n) + "]";
      Detection d;
      d.image = key;
      d.category = static_cast<int>(integer(path, field(path, dets[n], "category_id", w), w + ".category_id"));
      d.score = number(path, field(path, dets[n], "score", w), w + ".score", std::numeric_limits<double>::lowest(),
                       std::numeric_limits<double>::max());
      d.box = xywh(path, field(path, dets[n], "bbox", w), w + ".bbox");
      out.push_back(d);
    }
  }
  return out;
}

}  // namespace data
