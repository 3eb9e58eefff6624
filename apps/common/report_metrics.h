// Reading a run's metrics.jsonl (common/run_log.h) for the training report: the training
// lines ("iteration" and "loss"), the evaluation lines ("map_voc07" and "map_coco") and the
// per-class summary of the last evaluation that logged one ("per_class", common/report_pr.h).
//
// Tolerant by design: a killed run can leave a torn last line, and a file may hold
// garbage. Every line that is not a JSON object, or whose "iteration" is not an integer in
// [0, 1e15], is skipped with one warning naming its line number; a field that is missing,
// null (a NaN written by nlohmann::json) or not a finite number is left out of that plot
// (NaN in the point). Event lines ({"event": ...}) are not plotted.
// A resumed run appends to the file and may log iterations again (those after its
// checkpoint): the later line of an iteration wins, and points are sorted by iteration.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace app::report {

struct TrainPoint {
  int64_t iteration = 0;
  double loss = NAN, loss_cls = NAN, loss_box = NAN, lr = NAN, img_per_s = NAN, elapsed_s = NAN;
};

struct EvalPoint {
  int64_t iteration = 0;
  double map_voc07 = NAN, map_coco = NAN;
};

struct ClassSummary {
  std::string name;
  int num_gt = 0;
  double ap_voc07 = -1, ap_coco = -1;         // -1: the class has no ground truth
  std::vector<double> recall, precision;      // the PR curve (report_pr.h), same length
};

struct RunMetrics {
  std::vector<TrainPoint> train;
  std::vector<EvalPoint> evals;
  std::vector<ClassSummary> classes;          // from the last evaluation line with "per_class"
  int64_t classes_iteration = -1;             // that line's iteration (-1: none)
  std::vector<std::string> warnings;          // one line each (the first few skipped lines, then a count)
  int64_t lines = 0, skipped = 0;
};

// Reads `path`. Throws std::runtime_error "<path>: ..." (one line) when the file does not
// exist or cannot be read; everything else becomes warnings.
RunMetrics read_run_metrics(const std::string& path);

// Reads a "per_class" array (report_pr.h); false and the reason when it is malformed.
bool read_class_summaries(const nlohmann::json& per_class, std::vector<ClassSummary>& out, std::string& why);

// Exponential moving average with weight `alpha` on the past, debiased like TensorBoard's
// smoothing (divided by 1 - alpha^n so the first values are not pulled toward 0); NaN
// inputs are passed over (their output is NaN and they do not move the average).
std::vector<double> ema_smooth(const std::vector<double>& values, double alpha);

}  // namespace app::report
