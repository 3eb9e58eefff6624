// ENGINE_DUMP_BATCHES: the first steps' inputs, head outputs and weights (see batch_dump.h).
#include "common/batch_dump.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <utility>
#include <vector>

#include "engine/error.h"
#include "engine/io/safetensors.h"

namespace app {

namespace {

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// The largest |x| of a float tensor (on the host: the dump synchronises anyway).
double max_abs(const eng::Tensor& t) {
  const eng::Tensor h = t.to(eng::Device::cpu()).to(eng::DType::f32).contiguous();
  const float* p = h.data<float>();
  double m = 0;
  for (int64_t i = 0; i < h.numel(); ++i) m = std::fmax(m, std::fabs(static_cast<double>(p[i])));
  return m;
}

}  // namespace

std::string dump_path(const std::string& dir, const std::string& prefix, int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "_%05lld.safetensors", static_cast<long long>(step));
  return (std::filesystem::path(dir) / (prefix + buf)).string();
}

BatchDump::BatchDump(std::string dir, int64_t steps, int64_t weights_every)
    : dir_(std::move(dir)), steps_(steps), every_(weights_every) {
  ENGINE_CHECK(!dir_.empty(), "ENGINE_DUMP_BATCHES: empty folder name");
  ENGINE_CHECK(steps_ >= 0 && steps_ <= 100000, "ENGINE_DUMP_STEPS: ", steps_, " is not an integer in 0..100000");
  ENGINE_CHECK(every_ >= 0 && every_ <= 100000, "ENGINE_DUMP_WEIGHTS_EVERY: ", every_,
               " is not an integer in 0..100000");
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  ENGINE_CHECK(!ec && std::filesystem::is_directory(dir_), "ENGINE_DUMP_BATCHES: cannot create the folder '", dir_,
               "'", ec ? ": " + ec.message() : std::string());
}

namespace {
// A decimal integer in 0..100000 from the environment variable `name`, else `fallback`.
int64_t env_count(const char* name, int64_t fallback) {
  const char* s = std::getenv(name);
  if (s == nullptr || *s == 0) return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  ENGINE_CHECK(*end == 0 && s[0] >= '0' && s[0] <= '9' && v >= 0 && v <= 100000, name, ": '", s,
               "' is not an integer in 0..100000");
  return v;
}
}  // namespace

std::unique_ptr<BatchDump> BatchDump::from_env() {
  const char* d = std::getenv("ENGINE_DUMP_BATCHES");
  if (d == nullptr || *d == 0) return nullptr;
  return std::make_unique<BatchDump>(d, env_count("ENGINE_DUMP_STEPS", 20), env_count("ENGINE_DUMP_WEIGHTS_EVERY", 0));
}

void BatchDump::write_weights(int64_t step, const models::DetectionModel& model, const TrainState& state,
                              const ClassList& classes) const {
  save_checkpoint(dump_path(dir_, "weights", step), model, nullptr, state, classes);
}

void BatchDump::write_step(int64_t step, double lr, const eng::Tensor& images, const models::Targets& targets,
                           const models::HeadOutputs& heads, const models::LossParts& parts,
                           const eng::Tensor& grad_norm, const eng::Tensor& anchors) const {
  std::vector<std::pair<std::string, eng::Tensor>> t = {
      {"images", images.to(eng::DType::f32)},
      {"boxes", targets.boxes},
      {"labels", targets.labels},
      {"counts", targets.counts},
      {"class_logits", heads.class_logits.detach().to(eng::DType::f32)},
      {"box_regression", heads.box_regression.detach().to(eng::DType::f32)},
      {"anchors", anchors.to(eng::DType::f32)}};
  if (targets.ignore.defined()) t.emplace_back("ignore", targets.ignore);
  const std::map<std::string, std::string> meta = {
      {"step", std::to_string(step)},
      {"lr", num(lr)},
      {"loss", num(parts.total.item())},
      {"loss_cls", num(parts.classification.item())},
      {"loss_box", num(parts.box_regression.item())},
      {"grad_norm", num(grad_norm.item())},
      {"max_abs_logit", num(max_abs(heads.class_logits.detach()))}};
  eng::io::save_safetensors(dump_path(dir_, "step", step), t, meta);
}

}  // namespace app
