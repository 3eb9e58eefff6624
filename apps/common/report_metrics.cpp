#include "common/report_metrics.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <system_error>

#include <nlohmann/json.hpp>

namespace app::report {
namespace {

constexpr int kWarningsShown = 5;

// A finite number, else NaN (missing, null, a string, an infinite value).
double number(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return NAN;
  const double v = it->get<double>();
  return std::isfinite(v) ? v : NAN;
}

// The line's iteration when it is an integer in [0, 1e15] (checked on the double before any
// conversion); false otherwise.
bool iteration_of(const nlohmann::json& j, int64_t& out) {
  const auto it = j.find("iteration");
  if (it == j.end() || !it->is_number()) return false;
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < 0 || v > 1e15 || v != std::floor(v)) return false;
  out = static_cast<int64_t>(v);
  return true;
}

}  // namespace

bool read_class_summaries(const nlohmann::json& arr, std::vector<ClassSummary>& out, std::string& why) {
  if (!arr.is_array()) {
    why = "\"per_class\" is not an array";
    return false;
  }
  for (const auto& c : arr) {
    if (!c.is_object() || !c.contains("name") || !c["name"].is_string()) {
      why = "a \"per_class\" entry has no \"name\"";
      return false;
    }
    ClassSummary s;
    s.name = c["name"].get<std::string>();
    const double n = number(c, "num_gt");
    s.num_gt = std::isfinite(n) && n >= 0 && n <= 1e9 ? static_cast<int>(n) : 0;
    const double a = number(c, "ap_voc07"), b = number(c, "ap_coco");
    s.ap_voc07 = std::isfinite(a) && a <= 1 ? a : -1;
    s.ap_coco = std::isfinite(b) && b <= 1 ? b : -1;
    if (c.contains("pr") && c["pr"].is_array()) {
      for (const auto& p : c["pr"]) {
        if (!p.is_array() || p.size() != 2 || !p[0].is_number() || !p[1].is_number()) continue;
        const double r = p[0].get<double>(), q = p[1].get<double>();
        if (!(r >= 0 && r <= 1 && q >= 0 && q <= 1)) continue;  // also drops NaN
        s.recall.push_back(r);
        s.precision.push_back(q);
      }
    }
    out.push_back(std::move(s));
  }
  return true;
}

RunMetrics read_run_metrics(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw std::runtime_error(path + ": not found (no metrics.jsonl in the run folder)");
  if (!std::filesystem::is_regular_file(path, ec)) throw std::runtime_error(path + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot be read");
  RunMetrics m;
  std::map<int64_t, TrainPoint> train;
  std::map<int64_t, EvalPoint> evals;
  auto skip = [&](int64_t line, const std::string& why) {
    ++m.skipped;
    if (m.skipped <= kWarningsShown) m.warnings.push_back(path + " line " + std::to_string(line) + ": " + why + " (skipped)");
  };
  std::string text;
  while (std::getline(in, text)) {
    const int64_t line = ++m.lines;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const std::exception&) {
      skip(line, in.eof() ? "not a complete JSON object (a torn last line: the run was killed while writing?)"
                          : "not a JSON object");
      continue;
    }
    if (!j.is_object()) {
      skip(line, "not a JSON object");
      continue;
    }
    if (j.contains("event")) continue;  // profile, distributed, non-finite loss: not plotted
    int64_t it = 0;
    const bool has_iteration = iteration_of(j, it);
    if (!has_iteration) {
      if (j.contains("iteration")) skip(line, "\"iteration\" is not an integer in [0, 1e15]");
      continue;  // a line of another kind (none today): ignored
    }
    if (j.contains("loss")) {
      TrainPoint p;
      p.iteration = it;
      p.loss = number(j, "loss");
      p.loss_cls = number(j, "loss_cls");
      p.loss_box = number(j, "loss_box");
      p.lr = number(j, "lr");
      p.img_per_s = number(j, "img_per_s");
      p.elapsed_s = number(j, "elapsed_s");
      train[it] = p;
    }
    if (j.contains("map_voc07") || j.contains("map_coco")) {
      EvalPoint e;
      e.iteration = it;
      // -1: the metric had no class to average over; not a point
      e.map_voc07 = number(j, "map_voc07") >= 0 ? number(j, "map_voc07") : NAN;
      e.map_coco = number(j, "map_coco") >= 0 ? number(j, "map_coco") : NAN;
      evals[it] = e;
      if (j.contains("per_class")) {
        std::vector<ClassSummary> classes;
        std::string why;
        if (read_class_summaries(j["per_class"], classes, why)) {
          m.classes = std::move(classes);
          m.classes_iteration = it;
        } else {
          m.warnings.push_back(path + " line " + std::to_string(line) + ": " + why + " (per-class results skipped)");
        }
      }
    }
  }
  if (in.bad()) m.warnings.push_back(path + ": read error after line " + std::to_string(m.lines));
  if (m.skipped > kWarningsShown)
    m.warnings.push_back(path + ": " + std::to_string(m.skipped - kWarningsShown) + " more lines skipped");
  for (const auto& [it, p] : train) m.train.push_back(p);
  for (const auto& [it, e] : evals) m.evals.push_back(e);
  return m;
}

std::vector<double> ema_smooth(const std::vector<double>& values, double alpha) {
  std::vector<double> out(values.size(), NAN);
  double acc = 0, weight = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) continue;
    acc = alpha * acc + (1 - alpha) * values[i];
    weight = alpha * weight + (1 - alpha);  // 1 - alpha^n over the n finite values so far
    out[i] = acc / weight;
  }
  return out;
}

}  // namespace app::report
