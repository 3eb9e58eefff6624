// Reading an ssd_train metrics.jsonl in app tests: the training loss per iteration and the
// last VOC07 mAP of the evaluations.
#pragma once
#include <cstdint>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace test {

// iteration -> loss of the training lines (those with "loss" and "lr").
inline std::map<int64_t, double> losses_by_iteration(const std::string& path) {
  std::map<int64_t, double> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss") && j.contains("lr")) out[j["iteration"].get<int64_t>()] = j["loss"].get<double>();
  }
  return out;
}

// The last "map_voc07" in the file; -1 when there is none.
inline double final_voc07_map(const std::string& path) {
  std::ifstream in(path);
  double map = -1;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    if (j.contains("map_voc07")) map = j["map_voc07"].get<double>();
  }
  return map;
}

}  // namespace test
