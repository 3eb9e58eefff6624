// ssd_report: the training report of a run folder, as one self-contained HTML file.
//   ssd_report RUN_DIR [--out FILE] [--weights CKPT] [--data PATH [--split NAME] [--classes FILE]
//              [--images DIR]] [--samples N] [--score-thresh X] [--device cpu|cuda]
// Reads RUN_DIR/metrics.jsonl (loss, learning rate, images/s, held-out mAP, the per-class AP
// and precision-recall curves of the last evaluation) and, with a checkpoint (--weights, or
// RUN_DIR/best.safetensors, else last.safetensors) and a held-out set (--data, as ssd_train's
// --val), draws a grid of sample images with ground truth and detections. Writes FILE
// (default RUN_DIR/report.html) atomically. ssd_train writes the same report at the end of a
// run and on SIGINT (common/report_run.h); see docs/training.md.
// Exit codes: 0 written (warnings, e.g. a torn last line of metrics.jsonl, on stderr, one line
// each), 1 bad arguments, no metrics.jsonl, or an output that cannot be written.
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "common/cli_rules.h"
#include "common/config_check.h"
#include "common/report_run.h"
#include "engine/cpu_threads.h"

int main(int argc, char** argv) {
  if (!eng::init_cpu_threads(argc, argv, "ssd_report")) return 1;
  CLI::App cli{"ssd_report: an HTML report (plots, per-class AP, sample detections) of an ssd_train run folder"};
  app::report::ReportOptions o;
  cli.add_option("run_dir", o.run_dir, "the run folder (ssd_train --out): metrics.jsonl and checkpoints")->required();
  cli.add_option("--out", o.out, "the HTML file to write (default RUN_DIR/report.html)");
  cli.add_option("--weights", o.weights, "checkpoint for the samples (default RUN_DIR/best.safetensors, else last)");
  cli.add_option("--data", o.data, "held-out set for the samples: a VOC root or a COCO instances .json (default: the one the run recorded in RUN_DIR/report_inputs.json)");
  cli.add_option("--split", o.split, "VOC split of --data")->capture_default_str();
  cli.add_option("--classes", o.classes, "VOC class names file of --data");
  cli.add_option("--images", o.images, "COCO images folder of --data");
  cli.add_option("--samples", o.samples, "sample images in the grid")->capture_default_str();
  cli.add_option("--score-thresh", o.score_thresh, "minimum score of the drawn detections")->capture_default_str();
  cli.add_option("--device", o.device, "cpu or cuda")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  app::apply_rules(cli, {app::int_rule("--samples", 0, 64), app::real_rule("--score-thresh", 0, 1)});
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return cli.exit(e);
    std::cerr << app::cli_error_line("ssd_report", e) << " (see --help)\n";
    return 1;
  }
  try {
    const app::report::ReportOutcome r = app::report::write_report(o);
    for (const std::string& w : r.warnings) std::cerr << "ssd_report: warning: " << app::one_line(w) << "\n";
    std::cout << "wrote " << r.path << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "ssd_report: " << app::one_line(e.what()) << "\n";
    return 1;
  }
}
