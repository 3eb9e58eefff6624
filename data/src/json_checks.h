// Range-checked access to numbers in parsed JSON (COCO instances, detections.json), shared
// by data/src/coco_json.cpp and data/src/coco_dataset.cpp. nlohmann's get<int>() on a
// bigger integer or a float narrows silently; these refuse instead, so no value read from
// a file is converted out of range.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace data::jsonck {

// An integer (not a float such as 1.0) in [min, max].
inline bool int_in(const nlohmann::json& v, int64_t min, int64_t max, int64_t& out) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX) || static_cast<int64_t>(u) < min || static_cast<int64_t>(u) > max)
      return false;
    out = static_cast<int64_t>(u);
    return true;
  }
  if (!v.is_number_integer()) return false;
  const int64_t i = v.get<int64_t>();
  if (i < min || i > max) return false;
  out = i;
  return true;
}

// Any number (integer or float; JSON numbers are finite) in [min, max].
inline bool number_in(const nlohmann::json& v, double min, double max, double& out) {
  if (!v.is_number()) return false;
  const double d = v.get<double>();
  if (!(d >= min && d <= max)) return false;
  out = d;
  return true;
}

// The value as written, cut short for messages (never throws on odd UTF-8).
inline std::string shown(const nlohmann::json& v) {
  std::string t = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return t.size() > 40 ? t.substr(0, 37) + "..." : t;
}

}  // namespace data::jsonck
