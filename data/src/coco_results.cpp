// COCO results files and their ids file. See data/coco_results.h.
#include "data/coco_results.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "data/coco_json.h"
#include "data/dataset.h"
#include "data/detections_json.h"
#include "engine/error.h"
#include "json_checks.h"

namespace data {

using nlohmann::json;

namespace {

// nlohmann writes doubles in the shortest form that parses back to the same value.
std::string dump(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string entry(size_t i) { return "entry " + std::to_string(i); }

void check_result(const CocoResult& r, const std::string& name, size_t i) {
  const Box& b = r.box;
  ENGINE_CHECK(r.image_id >= 0 && r.image_id <= kMaxCocoImageId, name, ": ", entry(i), ": image_id ", r.image_id,
               " is outside [0, 2^53]");
  ENGINE_CHECK(std::isfinite(r.score), name, ": ", entry(i), ": score is not finite");
  ENGINE_CHECK(std::isfinite(b.x1) && std::isfinite(b.y1) && std::isfinite(b.x2) && std::isfinite(b.y2), name, ": ",
               entry(i), ": box has a non-finite coordinate");
  ENGINE_CHECK(b.x2 >= b.x1 && b.y2 >= b.y1, name, ": ", entry(i), ": box corners out of order (", b.x1, ", ", b.y1,
               ", ", b.x2, ", ", b.y2, ")");
}

// The member `key` of entry `i`, or one line naming the file, the entry and the field.
const json& member(const std::string& path, const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  ENGINE_CHECK(it != obj.end(), path, ": ", where, ": no \"", key, "\"");
  return *it;
}

int64_t integer(const std::string& path, const json& v, const std::string& where, const char* field, int64_t min,
                int64_t max) {
  int64_t out = 0;
  ENGINE_CHECK(jsonck::int_in(v, min, max, out), path, ": ", where, ": ", field, " is ", jsonck::shown(v),
               ", not an integer in [", min, ", ", max, "]");
  return out;
}

Box xywh(const std::string& path, const json& v, const std::string& where) {
  ENGINE_CHECK(v.is_array() && v.size() == 4, path, ": ", where, ": bbox is ", jsonck::shown(v),
               ", not an array of 4 numbers [x, y, w, h]");
  static const char* const kParts[4] = {"bbox[0] (x)", "bbox[1] (y)", "bbox[2] (w)", "bbox[3] (h)"};
  double b[4];
  for (int k = 0; k < 4; ++k) {
    const double lo = k < 2 ? -detail::kMaxCoordinate : 0.0;  // width and height >= 0
    ENGINE_CHECK(jsonck::number_in(v[k], lo, detail::kMaxCoordinate, b[k]), path, ": ", where, ": ", kParts[k], " is ",
                 jsonck::shown(v[k]), ", not a number in [", lo, ", ", detail::kMaxCoordinate, "]");
  }
  return Box{b[0], b[1], b[0] + b[2], b[1] + b[3]};
}

}  // namespace

std::string coco_results_text(const std::vector<CocoResult>& results, const std::string& name) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < results.size(); ++i) {
    const CocoResult& r = results[i];
    check_result(r, name, i);
    const Box& b = r.box;
    os << (i ? ",\n" : "\n") << "{\"image_id\": " << r.image_id << ", \"category_id\": " << r.category_id
       << ", \"bbox\": [" << dump(b.x1) << ", " << dump(b.y1) << ", " << dump(b.x2 - b.x1) << ", "
       << dump(b.y2 - b.y1) << "], \"score\": " << dump(r.score) << "}";
  }
  os << (results.empty() ? "]\n" : "\n]\n");
  return os.str();
}

void write_coco_results(const std::string& path, const std::vector<CocoResult>& results) {
  write_text_atomically(path, coco_results_text(results, path));
}

std::string coco_ids_path(const std::string& results_path) {
  const std::string ext = ".json";
  const size_t slash = results_path.find_last_of('/');
  const size_t name_start = slash == std::string::npos ? 0 : slash + 1;
  // "x/.json" has no stem: append, so the ids file never replaces the results file's name.
  if (results_path.size() > name_start + ext.size() &&
      results_path.compare(results_path.size() - ext.size(), ext.size(), ext) == 0)
    return results_path.substr(0, results_path.size() - ext.size()) + ".ids.json";
  return results_path + ".ids.json";
}

void write_coco_image_ids(const std::string& path, const std::vector<CocoImageRef>& images) {
  std::ostringstream os;
  os << "{\"images\": [";
  for (size_t i = 0; i < images.size(); ++i) {
    const CocoImageRef& im = images[i];
    ENGINE_CHECK(im.id >= 0 && im.id <= kMaxCocoImageId, path, ": images[", i, "]: id ", im.id,
                 " is outside [0, 2^53]");
    os << (i ? ",\n" : "\n") << "  {\"id\": " << im.id << ", \"file_name\": " << dump(im.file_name);
    if (im.width > 0 && im.height > 0) os << ", \"width\": " << im.width << ", \"height\": " << im.height;
    os << "}";
  }
  os << (images.empty() ? "]}\n" : "\n]}\n");
  write_text_atomically(path, os.str());
}

bool is_coco_results_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  // Skip a UTF-8 BOM and JSON whitespace; look at no more than 64 KiB.
  int c = 0;
  bool first = true;
  for (int n = 0; n < (64 << 10) && (c = std::fgetc(f)) != EOF; ++n) {
    if (first && c == 0xEF) {
      const int c2 = std::fgetc(f), c3 = std::fgetc(f);
      first = false;
      if (c2 == 0xBB && c3 == 0xBF) continue;
      break;
    }
    first = false;
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
  }
  std::fclose(f);
  return c == '[';
}

std::vector<CocoResult> parse_coco_results(const json& j, const std::string& path) {
  ENGINE_CHECK(j.is_array(), path, ": not a COCO results file (the top level is not a JSON list)");
  std::vector<CocoResult> out;
  out.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string where = entry(i);
    const json& e = j[i];
    ENGINE_CHECK(e.is_object(), path, ": ", where, " is ", jsonck::shown(e), ", not an object");
    CocoResult r;
    r.image_id = integer(path, member(path, e, "image_id", where), where, "image_id", 0, kMaxCocoImageId);
    r.category_id = static_cast<int>(
        integer(path, member(path, e, "category_id", where), where, "category_id", INT32_MIN, INT32_MAX));
    r.box = xywh(path, member(path, e, "bbox", where), where);
    const json& s = member(path, e, "score", where);
    ENGINE_CHECK(jsonck::number_in(s, std::numeric_limits<double>::lowest(), std::numeric_limits<double>::max(),
                                   r.score),
                 path, ": ", where, ": score is ", jsonck::shown(s), ", not a finite number");
    out.push_back(r);
  }
  return out;
}

std::vector<CocoResult> read_coco_results(const std::string& path) {
  return parse_coco_results(read_json_file(path), path);
}

std::vector<CocoImageRef> read_coco_image_ids(const std::string& path) {
  const json j = read_json_file(path);
  ENGINE_CHECK(j.is_object(), path, ": the top level is not a JSON object with \"images\"");
  const auto images = j.find("images");
  ENGINE_CHECK(images != j.end() && images->is_array(), path, ": no \"images\" list");
  std::vector<CocoImageRef> out;
  std::set<int64_t> seen;
  for (size_t i = 0; i < images->size(); ++i) {
    const std::string where = "images[" + std::to_string(i) + "]";
    const json& e = (*images)[i];
    ENGINE_CHECK(e.is_object(), path, ": ", where, " is ", jsonck::shown(e), ", not an object");
    CocoImageRef r;
    r.id = integer(path, member(path, e, "id", where), where, "id", 0, kMaxCocoImageId);
    const json& fn = member(path, e, "file_name", where);
    ENGINE_CHECK(fn.is_string() && !fn.get<std::string>().empty(), path, ": ", where, ": file_name is ",
                 jsonck::shown(fn), ", not a non-empty string");
    r.file_name = fn.get<std::string>();
    for (const auto& [key, size] : {std::pair<const char*, int*>{"width", &r.width}, {"height", &r.height}}) {
      const auto it = e.find(key);
      if (it != e.end() && !it->is_null()) *size = static_cast<int>(integer(path, *it, where, key, 0, detail::kMaxImageSide));
    }
    ENGINE_CHECK(seen.insert(r.id).second, path, ": ", where, ": id ", r.id, " appears twice");
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<int> coco_category_mapping(const std::vector<int>& model_ids, const std::vector<int>& gt_ids,
                                       const std::string& gt_path) {
  if (model_ids.size() == gt_ids.size()) return gt_ids;
  const std::set<int> have(model_ids.begin(), model_ids.end());
  const bool covers = std::all_of(gt_ids.begin(), gt_ids.end(), [&](int id) { return have.count(id) > 0; });
  ENGINE_CHECK(covers, gt_path, ": ", gt_ids.size(), " categories, but the model has ", model_ids.size(),
               " classes (and its category ids do not include the file's)");
  return model_ids;
}

std::vector<Detection> coco_results_to_detections(const std::vector<CocoResult>& results,
                                                  const std::vector<CocoImageRef>& images,
                                                  std::vector<int64_t>& unknown_ids) {
  std::map<int64_t, std::string> key_of;
  for (const CocoImageRef& im : images) key_of.emplace(im.id, image_key(im.file_name));
  std::set<int64_t> unknown;
  std::vector<Detection> out;
  out.reserve(results.size());
  for (const CocoResult& r : results) {
    const auto it = key_of.find(r.image_id);
    if (it == key_of.end()) {
      if (unknown.insert(r.image_id).second) unknown_ids.push_back(r.image_id);
      continue;
    }
    out.push_back({it->second, r.box, r.category_id, r.score});
  }
  return out;
}

}  // namespace data
