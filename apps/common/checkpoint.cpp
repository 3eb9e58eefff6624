#include "common/checkpoint.h"

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/read_file.h"
#include "engine/io/safetensors.h"
#include "models/anchor_scales.h"
#include "models/weights.h"

namespace app {

namespace {

std::string get(const std::map<std::string, std::string>& meta, const std::string& path, const char* key) {
  auto it = meta.find(key);
  ENGINE_CHECK(it != meta.end(), path, ": not a training checkpoint (metadata has no '", key, "')");
  return it->second;
}

// A metadata value cut short for messages.
std::string shown(const std::string& v) { return v.size() > 40 ? v.substr(0, 37) + "..." : v; }

// An integer in [min, max], written in decimal and nothing else (no space, no '+', no
// fraction); anything else is one line naming the file, the key and the value.
int64_t get_int(const std::map<std::string, std::string>& meta, const std::string& path, const char* key,
                int64_t min = 0, int64_t max = std::numeric_limits<int64_t>::max()) {
  const std::string v = get(meta, path, key);
  int64_t x = 0;
  if (!eng::io::parse_int64(v, min, max, x))
    ENGINE_FAIL(path, ": metadata '", key, "' is '", shown(v), "', not an integer in [", min, ", ", max, "]");
  return x;
}

uint64_t get_uint(const std::map<std::string, std::string>& meta, const std::string& path, const char* key) {
  const std::string v = get(meta, path, key);
  uint64_t x = 0;
  if (!eng::io::parse_uint64(v, std::numeric_limits<uint64_t>::max(), x))
    ENGINE_FAIL(path, ": metadata '", key, "' is '", shown(v), "', not an integer in [0, 2^64 - 1]");
  return x;
}

// A JSON value from metadata; every nlohmann exception becomes one line naming the key.
nlohmann::json get_json(const std::map<std::string, std::string>& meta, const std::string& path, const char* key) {
  const std::string v = get(meta, path, key);
  try {
    return nlohmann::json::parse(v);
  } catch (const nlohmann::json::exception& e) {
    ENGINE_FAIL(path, ": metadata '", key, "' is '", shown(v), "', not valid JSON (", e.what(), ")");
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const models::DetectionModel& model, const eng::optim::Optimizer* optimizer,
                     const TrainState& state, const ClassList& classes) {
  const models::ModelConfig& c = model.config();
  std::map<std::string, std::string> meta = models::model_config_metadata(c);
  for (auto& kv : models::frozen_bn_metadata(model)) meta[kv.first] = kv.second;
  meta["classes"] = nlohmann::json(classes.names).dump();
  meta["category_ids"] = nlohmann::json(classes.category_ids).dump();
  meta["iteration"] = std::to_string(state.iteration);
  meta["next_batch"] = std::to_string(state.next_batch);
  meta["seed"] = std::to_string(state.seed);
  meta["best_metric"] = nlohmann::json(state.best_metric).dump();
  meta["best_iteration"] = std::to_string(state.best_iteration);
  meta["precision"] = state.precision;
  meta["global_batch"] = std::to_string(state.global_batch);
  auto tensors = model.state_dict();
  if (optimizer != nullptr) {
    meta["optimizer_steps"] = std::to_string(optimizer->step_count());
    for (auto& [name, t] : optimizer->state_tensors()) tensors.emplace_back(models::kOptimizerPrefix + name, t);
  }
  eng::io::save_safetensors(path, tensors, meta);
}

TrainState load_checkpoint(const std::string& path, models::DetectionModel& model, eng::optim::Optimizer& optimizer) {
  eng::io::SafetensorsFile f = eng::io::load_safetensors(path);
  const std::string arch = get(f.metadata, path, models::kMetaArch);
  ENGINE_CHECK(arch == model.config().arch, path, ": checkpoint of '", arch, "', not '", model.config().arch, "'");
  TrainState s;
  s.iteration = get_int(f.metadata, path, "iteration");
  s.next_batch = get_int(f.metadata, path, "next_batch");
  s.seed = get_uint(f.metadata, path, "seed");
  s.best_iteration = get_int(f.metadata, path, "best_iteration", -1);
  // Checkpoints from before issue 13 do not record the global batch (0: assume unchanged).
  if (f.metadata.count("global_batch") != 0) s.global_batch = get_int(f.metadata, path, "global_batch", 1);
  // Checkpoints from before --precision existed ran in fp32.
  auto prec = f.metadata.find("precision");
  s.precision = prec == f.metadata.end() ? "fp32" : prec->second;
  ENGINE_CHECK(s.precision == "fp32" || s.precision == "tf32" || s.precision == "bf16", path,
               ": metadata 'precision' is '", shown(s.precision), "', not fp32, tf32 or bf16");
  // JSON numbers are finite (nlohmann refuses 1e400); -1 means none.
  const nlohmann::json best = get_json(f.metadata, path, "best_metric");
  ENGINE_CHECK(best.is_number(), path, ": metadata 'best_metric' is '", shown(best.dump()), "', not a number");
  s.best_metric = best.get<double>();
  const int64_t steps = get_int(f.metadata, path, "optimizer_steps");
  models::load_model_weights(model, path);
  eng::optim::NamedTensors state;
  const std::string prefix = models::kOptimizerPrefix;
  for (auto& [name, t] : f.tensors)
    if (name.compare(0, prefix.size(), prefix) == 0) state.emplace_back(name.substr(prefix.size()), t);
  try {
    optimizer.load_state(state, steps);
  } catch (const eng::Error& e) {
    ENGINE_FAIL(path, ": optimizer state does not fit: ", e.what());
  }
  return s;
}

ClassList read_class_list(const std::string& path) {
  eng::io::SafetensorsFile f = eng::io::load_safetensors(path);
  ClassList out;
  auto names = f.metadata.find("classes");
  auto ids = f.metadata.find("category_ids");
  if (names == f.metadata.end()) return out;
  const nlohmann::json n = get_json(f.metadata, path, "classes");
  ENGINE_CHECK(n.is_array(), path, ": metadata 'classes' is '", shown(names->second), "', not a JSON list of names");
  for (size_t i = 0; i < n.size(); ++i) {
    ENGINE_CHECK(n[i].is_string(), path, ": metadata 'classes' entry ", i, " is ", shown(n[i].dump()),
                 ", not a string");
    out.names.push_back(n[i].get<std::string>());
  }
  if (ids != f.metadata.end()) {
    const nlohmann::json c = get_json(f.metadata, path, "category_ids");
    ENGINE_CHECK(c.is_array(), path, ": metadata 'category_ids' is '", shown(ids->second), "', not a JSON list");
    for (size_t i = 0; i < c.size(); ++i) {
      // An integer that fits in int (a float or a bigger integer would not convert safely).
      const bool ok = (c[i].is_number_unsigned() && c[i].get<uint64_t>() <= uint64_t(INT32_MAX)) ||
                      (c[i].is_number_integer() && !c[i].is_number_unsigned() && c[i].get<int64_t>() >= INT32_MIN &&
                       c[i].get<int64_t>() <= INT32_MAX);
      ENGINE_CHECK(ok, path, ": metadata 'category_ids' entry ", i, " is ", shown(c[i].dump()),
                   ", not an integer in [-2^31, 2^31 - 1]");
      out.category_ids.push_back(static_cast<int>(c[i].get<int64_t>()));
    }
  }
  if (out.category_ids.empty())
    for (size_t i = 0; i < out.names.size(); ++i) out.category_ids.push_back(static_cast<int>(i) + 1);
  ENGINE_CHECK(out.category_ids.size() == out.names.size(), path, ": ", out.names.size(), " classes but ",
               out.category_ids.size(), " category ids");
  return out;
}

}  // namespace app
