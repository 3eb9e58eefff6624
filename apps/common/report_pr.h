// Per-class precision-recall curves of an evaluation, for the training report: logged with
// each evaluation line of ssd_train ("per_class") and drawn by ssd_report.
//
// The curve is the PASCAL VOC one at IoU 0.5, with the matching of data::evaluate's VOC part
// (data/metrics.h: detections of a class in score order, each takes its highest-IoU ground
// truth with the devkit's +1 IoU; difficult and crowd ground truth make a match "don't care";
// a second match of a ground truth is a false positive). So data::voc07_ap(recall, precision)
// of the raw curve is the class's ap_voc07.
// What is logged is the curve's precision envelope (the highest precision at recall >= r)
// read at r = 0, 0.01, 0.02, ... up to the highest recall the class reaches: at most 101
// points a class, the curve people plot, and what VOC and COCO AP average over.
#pragma once
#include <vector>

#include <nlohmann/json.hpp>

#include "common/inference.h"
#include "data/annotation.h"
#include "data/metrics.h"

namespace app::report {

struct PrCurve {
  std::vector<double> recall, precision;  // one point per counted detection, in score order
  int num_gt = 0;                          // non-difficult, non-crowd ground truth
};

// One raw curve per category of `category_ids` (in that order).
std::vector<PrCurve> voc_pr_curves(const std::vector<data::GroundTruth>& gt, const std::vector<data::Detection>& dets,
                                   const std::vector<int>& category_ids);

// The envelope read at recall k / steps, k = 0 .. up to the highest recall (see above).
PrCurve pr_envelope(const PrCurve& raw, int steps = 100);

// The "per_class" value of an evaluation line: [{"name", "num_gt", "ap_voc07", "ap_coco",
// "pr": [[recall, precision], ...]}] in label order, from an evaluation of `dataset`.
nlohmann::json per_class_summary(const EvalRun& run, const data::Dataset& dataset);

}  // namespace app::report
