// Building and writing a run's report (common/report_html.h): from the run folder's
// metrics.jsonl, a checkpoint and, optionally, the held-out set. Used by ssd_report and,
// at the end of training and on SIGINT, by ssd_train (ReportAtExit).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/trainer.h"
#include "data/annotation.h"
#include "engine/dtype.h"
#include "models/detection_model.h"

namespace app::report {

struct ReportOptions {
  std::string run_dir;
  std::string out;       // "": <run_dir>/report.html
  std::string weights;   // "": <run_dir>/best.safetensors, else last.safetensors (when present)
  // The held-out set for the sample grid (and for per-class results when metrics.jsonl has
  // none): a VOC root or a COCO .json, as ssd_train's --val.
  std::string data, split = "test", classes, images;
  int samples = 8;
  double score_thresh = 0.3;
  std::string device = "cpu";
};

struct ReportOutcome {
  std::string path;                   // the file written
  std::vector<std::string> warnings;  // one line each (skipped lines, unreadable images, ...)
};

// Reads, builds, writes atomically. Throws std::runtime_error / eng::Error (one line) when
// the run folder has no metrics.jsonl or the output cannot be written; a checkpoint or data
// set that cannot be used only costs the parts that need it (a warning each).
ReportOutcome write_report(const ReportOptions& options);

// The same from a training run in progress: its model (in memory, on `device`) and
// held-out set (may be null), no checkpoint read.
ReportOutcome write_report(const std::string& run_dir, models::DetectionModel& model, const data::Dataset* val,
                           eng::Device device);

// `text` to `path` through "<path>.tmp.<pid>" and a rename; throws one line naming `path`.
void write_file_atomically(const std::string& path, const std::string& text);

// The held-out set of a run, recorded by ssd_train in RUN_DIR/report_inputs.json
// ({"data", "split", "classes", "images"}, absolute paths) so that `ssd_report RUN_DIR` draws
// samples without --data. false when the file is absent; throws one line when it is malformed.
bool read_report_inputs(const std::string& run_dir, ReportOptions& options);

// ssd_train's hook. On construction (rank 0, with a held-out set) it records the held-out
// set in RUN_DIR/report_inputs.json; when it goes out of scope (the run ended, was
// interrupted or stopped on a NaN) it writes RUN_DIR/report.html, unless an exception is on
// its way or `enabled` is false (ranks other than 0). Never throws: a failure is one line
// through `say`.
class ReportAtExit {
 public:
  ReportAtExit(const TrainConfig& config, std::shared_ptr<models::DetectionModel> model, const data::Dataset* val,
               eng::Device device, bool enabled, std::function<void(const std::string&)> say);
  ~ReportAtExit();
  ReportAtExit(const ReportAtExit&) = delete;
  ReportAtExit& operator=(const ReportAtExit&) = delete;

 private:
  std::string run_dir_;
  std::shared_ptr<models::DetectionModel> model_;
  const data::Dataset* val_;
  eng::Device device_;
  bool enabled_;
  std::function<void(const std::string&)> say_;
};

}  // namespace app::report
