// COCO ground-truth and detections.json readers. See data/coco_json.h.
#include "data/coco_json.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/error.h"

namespace data {

using nlohmann::json;

json read_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  ENGINE_CHECK(f.good(), path, ": cannot open file");
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    ENGINE_FAIL(path, ": malformed JSON: ", e.what());
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

double number(const std::string& path, const json& v, const std::string& what) {
  ENGINE_CHECK(v.is_number(), path, ": ", what, " is not a number");
  return v.get<double>();
}

int integer(const std::string& path, const json& v, const std::string& what) {
  ENGINE_CHECK(v.is_number_integer(), path, ": ", what, " is not an integer");
  return v.get<int>();
}

const json& array(const std::string& path, const json& v, const std::string& what) {
  ENGINE_CHECK(v.is_array(), path, ": ", what, " is not an array");
  return v;
}

Box xywh(const std::string& path, const json& v, const std::string& what) {
  ENGINE_CHECK(v.is_array() && v.size() == 4, path, ": ", what, " is not an array of 4 numbers [x, y, w, h]");
  double b[4];
  for (int i = 0; i < 4; ++i) b[i] = number(path, v[i], what);
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
    const long long id = integer(path, field(path, images[i], "id", where), where + ".id");
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
    c.id = integer(path, field(path, cats[i], "id", where), where + ".id");
    auto it = cats[i].find("name");
    if (it != cats[i].end() && it->is_string()) c.name = it->get<std::string>();
    out.categories.push_back(c);
  }
  const json& anns = array(path, field(path, j, "annotations", "the top level"), "\"annotations\"");
  for (size_t i = 0; i < anns.size(); ++i) {
    const std::string where = "annotations[" + std::to_string(i) + "]";
    const json& a = anns[i];
    GroundTruth g;
    const long long img = integer(path, field(path, a, "image_id", where), where + ".image_id");
    auto k = key_of_id.find(img);
    ENGINE_CHECK(k != key_of_id.end(), path, ": ", where, ".image_id ", img, " is not in \"images\"");
    g.image = k->second;
    g.category = integer(path, field(path, a, "category_id", where), where + ".category_id");
    g.box = xywh(path, field(path, a, "bbox", where), where + ".bbox");
    auto ar = a.find("area");
    g.area = ar != a.end() ? number(path, *ar, where + ".area") : (g.box.x2 - g.box.x1) * (g.box.y2 - g.box.y1);
    auto cr = a.find("iscrowd");
    if (cr != a.end()) {
      ENGINE_CHECK(cr->is_number_integer() || cr->is_boolean(), path, ": ", where, ".iscrowd is not 0/1");
      g.iscrowd = cr->is_boolean() ? cr->get<bool>() : cr->get<int>() != 0;
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
      d.category = integer(path, field(path, dets[n], "category_id", w), w + ".category_id");
      d.score = number(path, field(path, dets[n], "score", w), w + ".score");
      d.box = xywh(path, field(path, dets[n], "bbox", w), w + ".bbox");
      out.push_back(d);
    }
  }
  return out;
}

}  // namespace data
