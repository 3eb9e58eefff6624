#include "common/checkpoint.h"

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "models/weights.h"

namespace app {

namespace {

std::string get(const std::map<std::string, std::string>& meta, const std::string& path, const char* key) {
  auto it = meta.find(key);
  ENGINE_CHECK(it != meta.end(), path, ": not a training checkpoint (metadata has no '", key, "')");
  return it->second;
}

int64_t get_int(const std::map<std::string, std::string>& meta, const std::string& path, const char* key) {
  const std::string v = get(meta, path, key);
  try {
    size_t used = 0;
    const long long x = std::stoll(v, &used);
    if (used == v.size()) return x;
  } catch (const std::exception&) {
  }
  ENGINE_FAIL(path, ": metadata '", key, "' is not an integer: '", v, "'");
}

}  // namespace

void save_checkpoint(const std::string& path, const models::DetectionModel& model, const eng::optim::Optimizer* optimizer,
                     const TrainState& state, const ClassList& classes) {
  const models::ModelConfig& c = model.config();
  std::map<std::string, std::string> meta;
  meta[models::kMetaArch] = c.arch;
  meta[models::kMetaNumClasses] = std::to_string(c.num_classes);
  meta[models::kMetaAnchorPreset] = c.anchor_preset;
  meta[models::kMetaInputSize] = std::to_string(c.input_size);
  meta[models::kMetaFormat] = "ssd_engine.detection_model";
  meta["classes"] = nlohmann::json(classes.names).dump();
  meta["category_ids"] = nlohmann::json(classes.category_ids).dump();
  meta["iteration"] = std::to_string(state.iteration);
  meta["next_batch"] = std::to_string(state.next_batch);
  meta["seed"] = std::to_string(state.seed);
  meta["best_metric"] = nlohmann::json(state.best_metric).dump();
  meta["best_iteration"] = std::to_string(state.best_iteration);
  meta["precision"] = state.precision;
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
  s.seed = static_cast<uint64_t>(std::stoull(get(f.metadata, path, "seed")));
  s.best_iteration = get_int(f.metadata, path, "best_iteration");
  // Checkpoints from before --precision existed ran in fp32.
  auto prec = f.metadata.find("precision");
  s.precision = prec == f.metadata.end() ? "fp32" : prec->second;
  try {
    s.best_metric = nlohmann::json::parse(get(f.metadata, path, "best_metric")).get<double>();
  } catch (const nlohmann::json::exception&) {
    ENGINE_FAIL(path, ": metadata 'best_metric' is not a number");
  }
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
  try {
    out.names = nlohmann::json::parse(names->second).get<std::vector<std::string>>();
    if (ids != f.metadata.end()) out.category_ids = nlohmann::json::parse(ids->second).get<std::vector<int>>();
  } catch (const nlohmann::json::exception&) {
    ENGINE_FAIL(path, ": metadata 'classes' / 'category_ids' are not JSON lists");
  }
  if (out.category_ids.empty())
    for (size_t i = 0; i < out.names.size(); ++i) out.category_ids.push_back(static_cast<int>(i) + 1);
  ENGINE_CHECK(out.category_ids.size() == out.names.size(), path, ": ", out.names.size(), " classes but ",
               out.category_ids.size(), " category ids");
  return out;
}

}  // namespace app
