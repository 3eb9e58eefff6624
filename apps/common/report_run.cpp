#include "common/report_run.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "common/checkpoint.h"
#include "common/config_check.h"
#include "common/inference.h"
#include "common/report_html.h"
#include "common/report_pr.h"
#include "data/dataset.h"
#include "engine/allocator.h"
#include "engine/error.h"
#include "models/weights.h"

namespace fs = std::filesystem;

namespace app::report {
namespace {

std::string metrics_path(const std::string& run_dir) { return (fs::path(run_dir) / "metrics.jsonl").string(); }

std::string default_out(const std::string& run_dir) { return (fs::path(run_dir) / "report.html").string(); }

// The folder as the user named it (no absolute path made up: pages get shared).
std::string title_of(std::string run_dir) {
  while (run_dir.size() > 1 && run_dir.back() == '/') run_dir.pop_back();
  return run_dir;
}

std::string default_weights(const std::string& run_dir) {
  for (const char* name : {"best.safetensors", "last.safetensors"}) {
    const fs::path p = fs::path(run_dir) / name;
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  return "";
}

// Warnings of the metrics reader first, in the outcome and on the page.
ReportPage start_page(const std::string& run_dir, ReportOutcome& outcome) {
  ReportPage page;
  page.title = title_of(run_dir);
  page.metrics = read_run_metrics(metrics_path(run_dir));  // throws when there is none
  for (const std::string& w : page.metrics.warnings) outcome.warnings.push_back(w);
  return page;
}

void add_samples(ReportPage& page, ReportOutcome& outcome, models::DetectionModel& model, const data::Dataset& val,
                 eng::Device device, int count, double score_thresh) {
  std::vector<std::string> w;
  page.samples = sample_images(model, val, device, count, score_thresh, w);
  for (const std::string& s : w) outcome.warnings.push_back(s);
  page.samples_note = "white, edged in black: ground truth (grey: difficult / crowd); coloured with a tag: detections with score >= " +
                      std::to_string(score_thresh).substr(0, 4) + " (at most 20 an image)";
}

void finish(ReportPage& page, ReportOutcome& outcome, const std::string& out) {
  page.warnings = outcome.warnings;
  write_file_atomically(out, report_html(page));
  outcome.path = out;
}

}  // namespace

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error(path + ": cannot write (" + std::strerror(errno) + ")");
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    f.close();
    if (!f) {
      std::remove(tmp.c_str());
      throw std::runtime_error(path + ": cannot write (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw std::runtime_error(path + ": cannot write (" + why + ")");
  }
}

ReportOutcome write_report(const ReportOptions& o) {
  ReportOutcome outcome;
  ReportPage page = start_page(o.run_dir, outcome);
  const std::string out = o.out.empty() ? default_out(o.run_dir) : o.out;
  const std::string weights = o.weights.empty() ? default_weights(o.run_dir) : o.weights;
  ENGINE_CHECK(o.device == "cpu" || o.device == "cuda", "--device must be cpu or cuda, got '", o.device, "'");
  ENGINE_CHECK(o.device == "cpu" || eng::cuda::available(), "--device cuda: no CUDA device is available");
  const eng::Device device = o.device == "cuda" ? eng::Device::cuda() : eng::Device::cpu();

  std::shared_ptr<models::DetectionModel> model;
  ClassList classes;
  if (weights.empty()) {
    page.samples_note = "no checkpoint (best.safetensors / last.safetensors) in the run folder: no samples";
  } else {
    try {
      const models::ModelConfig mc = models::read_model_config(weights);
      classes = read_class_list(weights);
      model = models::create_model(mc);
      models::load_model_weights(*model, weights);
      model->to(device);
      page.facts.push_back("model: " + mc.arch + ", input " + std::to_string(mc.input_size) + ", " +
                           std::to_string(mc.num_classes - 1) + " classes");
      page.facts.push_back("checkpoint: " + weights);
    } catch (const std::exception& e) {
      outcome.warnings.push_back("checkpoint not used: " + one_line(e.what()));
      model.reset();
    }
  }
  ReportOptions inputs = o;  // --data, else the held-out set the run recorded
  if (o.data.empty()) {
    try {
      if (read_report_inputs(o.run_dir, inputs)) page.facts.push_back("held-out set recorded by the run (report_inputs.json)");
    } catch (const std::exception& e) {
      outcome.warnings.push_back(one_line(e.what()));
    }
  }
  if (model && inputs.data.empty()) page.samples_note = "no held-out set given (ssd_report --data ...): no samples";
  if (model && !inputs.data.empty()) {
    try {
      const data::Dataset val =
          data::load_dataset(inputs.data, inputs.split, data::is_coco_path(inputs.data) ? "" : inputs.classes, inputs.images);
      ENGINE_CHECK(classes.names.empty() || classes.names == val.class_names, inputs.data,
                   ": its classes differ from the checkpoint's");
      ENGINE_CHECK(!val.samples.empty(), inputs.data, ": no images");
      page.facts.push_back("held-out set: " + data::dataset_source(inputs.data, inputs.split, inputs.classes, inputs.images));
      if (page.metrics.classes.empty()) {  // none logged: evaluate the checkpoint now
        const EvalRun r = evaluate_model(*model, val, device, InferenceOptions{}, 8, 1);
        std::vector<ClassSummary> cls;
        std::string why;
        if (read_class_summaries(per_class_summary(r, val), cls, why)) {
          page.metrics.classes = std::move(cls);
          page.metrics.classes_iteration = page.metrics.train.empty() ? 0 : page.metrics.train.back().iteration;
          page.facts.push_back("per-class results: evaluated now, checkpoint on the held-out set");
        }
      }
      add_samples(page, outcome, *model, val, device, o.samples, o.score_thresh);
    } catch (const std::exception& e) {
      outcome.warnings.push_back("held-out set not used: " + one_line(e.what()));
    }
  }
  finish(page, outcome, out);
  return outcome;
}

ReportOutcome write_report(const std::string& run_dir, models::DetectionModel& model, const data::Dataset* val,
                           eng::Device device) {
  ReportOutcome outcome;
  ReportPage page = start_page(run_dir, outcome);
  page.facts.push_back("model: " + model.config().arch + ", input " + std::to_string(model.config().input_size) +
                       " (the weights at the end of the run)");
  if (val) {
    try {
      add_samples(page, outcome, model, *val, device, 8, 0.3);
    } catch (const std::exception& e) {
      outcome.warnings.push_back("samples not drawn: " + one_line(e.what()));
    }
  } else {
    page.samples_note = "the run had no held-out set (ssd_train --val): no samples";
  }
  finish(page, outcome, default_out(run_dir));
  return outcome;
}

bool read_report_inputs(const std::string& run_dir, ReportOptions& o) {
  const std::string path = (fs::path(run_dir) / "report_inputs.json").string();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception&) {
    throw std::runtime_error(path + ": not a JSON object");
  }
  for (const char* key : {"data", "split", "classes", "images"})
    if (!j.is_object() || !j.contains(key) || !j[key].is_string())
      throw std::runtime_error(path + ": \"" + key + "\" is missing or not a string");
  o.data = j["data"].get<std::string>();
  o.split = j["split"].get<std::string>();
  o.classes = j["classes"].get<std::string>();
  o.images = j["images"].get<std::string>();
  return !o.data.empty();
}

namespace {

// Absolute paths: ssd_report may run from another folder. A comma-separated list of VOC
// roots is made absolute item by item.
std::string absolute_paths(const std::string& list) {
  std::string out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, comma - start);
    std::error_code ec;
    const fs::path abs = item.empty() ? fs::path() : fs::absolute(item, ec);
    out += (start ? "," : "") + (ec || item.empty() ? item : abs.lexically_normal().string());
    start = comma + 1;
  }
  return out;
}

}  // namespace

ReportAtExit::ReportAtExit(const TrainConfig& config, std::shared_ptr<models::DetectionModel> model,
                           const data::Dataset* val, eng::Device device, bool enabled,
                           std::function<void(const std::string&)> say)
    : run_dir_(config.out),
      model_(std::move(model)),
      val_(val),
      device_(device),
      enabled_(enabled),
      say_(std::move(say)) {
  if (!enabled_ || !val_ || config.val.empty()) return;
  try {
    const nlohmann::json j = {{"data", absolute_paths(config.val)},
                              {"split", config.val_split},
                              {"classes", absolute_paths(config.classes)},
                              {"images", absolute_paths(config.val_images)}};
    write_file_atomically((fs::path(run_dir_) / "report_inputs.json").string(), j.dump(2) + "\n");
  } catch (const std::exception& e) {
    say_("report: warning: " + one_line(e.what()));
  }
}

ReportAtExit::~ReportAtExit() {
  if (!enabled_ || !model_ || std::uncaught_exceptions() > 0) return;
  try {
    const ReportOutcome r = write_report(run_dir_, *model_, val_, device_);
    for (const std::string& w : r.warnings) say_("report: warning: " + w);
    say_("report: " + r.path);
  } catch (const std::exception& e) {
    try {
      say_("report: not written: " + one_line(e.what()));
    } catch (...) {
    }
  } catch (...) {
  }
}

}  // namespace app::report
