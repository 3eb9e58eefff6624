// The training report page: one self-contained HTML file (inline SVG charts from
// common/report_svg.h, sample images as base64 JPEG data URLs; no script, no network).
//
// Plots (each says what it draws):
//   loss, loss_cls, loss_box against iterations, log y axis: the logged values as faint dots
//     and an exponential moving average (weight 0.9, debiased: report_metrics.h) as lines;
//   the learning rate against iterations;
//   held-out mAP (VOC07 11-point, COCO AP@[.5:.95]) against iterations;
//   images/s against the elapsed time (iterations when no "elapsed_s" was logged), dots plus
//     the same moving average;
//   per-class AP bars (VOC07, COCO) and precision-recall curves (VOC, IoU 0.5) of the last
//     evaluation that logged them (at most 20 classes in the PR plot: those with most GT);
//   the sample grid (common/report_samples.h).
#pragma once
#include <string>
#include <vector>

#include "common/report_metrics.h"
#include "common/report_samples.h"

namespace app::report {

constexpr double kSmoothing = 0.9;  // EMA weight of the smoothed lines

struct ReportPage {
  std::string title;                  // e.g. the run folder
  RunMetrics metrics;
  std::vector<SampleImage> samples;
  std::string samples_note;           // shown instead of / above the grid (why there are none)
  std::vector<std::string> facts;     // "key: value" lines for the summary (model, checkpoint, ...)
  std::vector<std::string> warnings;  // shown in a box at the top
};

std::string report_html(const ReportPage& page);

// The charts alone (also used by tests): each an <svg> element.
std::string loss_chart(const RunMetrics& m);
std::string lr_chart(const RunMetrics& m);
std::string map_chart(const RunMetrics& m);
std::string speed_chart(const RunMetrics& m);
std::string class_ap_chart(const RunMetrics& m);
std::string pr_chart(const RunMetrics& m);

}  // namespace app::report
