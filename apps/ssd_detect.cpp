// ssd_detect: run a trained detector on image files, folders and lists.
//   ssd_detect --weights FILE [--arch NAME] [--classes FILE] --input PATH... --out DIR
//              [--device cpu|cuda] [--precision fp32|tf32|bf16] [--batch N] [--score-thresh X] [--nms-thresh X] [--topk N]
//              [--scales S1,S2,...] [--flip] [--workers N] [--draw-thresh X]
//              [--cuda-graph]  (cuda, batch 1: the forward replayed from a CUDA graph per input size)
//              [--coco-results FILE [--coco-gt instances.json]]  (the official COCO results format)
// writes DIR/detections.json and one annotated image per input (app::detect,
// apps/common/detect_run.h). Also:
//   ssd_detect --arch NAME --num-classes N [--input-size S] [--anchors voc|coco] --summary
// prints each top-level block's output shape for a [1, 3, S, S] input, the parameter and
// anchor counts.
// Exit codes: 0 ok, 1 bad arguments, bad weights, or any input that failed.
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include <CLI/CLI.hpp>

#include "common/cli_rules.h"
#include "common/config_check.h"
#include "common/detect_run.h"
#include "engine/cpu_threads.h"
#include "engine/error.h"
#include "engine/tensor.h"
#include "models/detection_model.h"

namespace {

int summary(const models::ModelConfig& config) {
  auto model = models::create_model(config);
  for (const auto& [name, shape] : model->block_shapes()) std::cout << name << ": " << eng::shape_str(shape) << "\n";
  std::cout << "parameters: " << model->num_parameters() << "\n";
  std::cout << "anchors: " << model->anchors(eng::Device::cpu()).size(0) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // OpenMP threads and their waiting, OpenBLAS single-threaded (engine/cpu_threads.h).
  if (!eng::init_cpu_threads(argc, argv, "ssd_detect")) return 1;
  CLI::App cli{"ssd_detect: object detection on images with a trained model"};
  app::DetectConfig c;
  models::ModelConfig summary_config;
  bool want_summary = false;
  std::string scales;
  cli.add_option("--weights", c.weights, "weights or checkpoint (.safetensors)");
  cli.add_option("--arch", c.arch, "architecture (needed when the weights have no metadata)");
  cli.add_option("--classes", c.classes, "class names, one per line");
  cli.add_option("--input", c.inputs, "image files, folders, @list.txt files");
  cli.add_option("--out", c.out, "output folder: detections.json and annotated images");
  cli.add_option("--device", c.device, "cpu or cuda")->capture_default_str();
  cli.add_option("--precision", c.precision, "fp32, tf32 or bf16 (default: bf16 on cuda, fp32 on cpu)");
  cli.add_option("--batch", c.batch, "images per batch")->capture_default_str();
  cli.add_option("--workers", c.workers, "decoding threads (0: in the main thread)")->capture_default_str();
  cli.add_option("--score-thresh", c.inference.score_thresh, "minimum score (default: the architecture's)");
  cli.add_option("--nms-thresh", c.inference.nms_thresh, "NMS IoU threshold (default: the architecture's)");
  cli.add_option("--topk", c.inference.topk, "detections kept per image (default: the architecture's)");
  cli.add_option("--scales", scales, "test input sides, e.g. 256,320 (multi-scale testing)");
  cli.add_flag("--flip", c.inference.flip, "add a mirrored pass per scale");
  cli.add_option("--draw-thresh", c.draw_thresh, "minimum score of the drawn boxes")->capture_default_str();
  cli.add_flag("--cuda-graph", c.cuda_graph,
               "replay the network forward from a CUDA graph per input size (cuda only; batch 1, the default with it)");
  cli.add_option("--coco-results", c.coco_results,
                 "also write FILE in the COCO results format (image ids from --coco-gt, else input order with "
                 "FILE's .ids.json beside it)");
  cli.add_option("--coco-gt", c.coco_gt, "COCO instances file giving --coco-results' image and category ids");
  cli.add_option("--num-classes", summary_config.num_classes, "--summary: classes including background");
  cli.add_option("--input-size", summary_config.input_size, "--summary: input side (0: the architecture's)");
  cli.add_option("--anchors", summary_config.anchor_preset, "--summary: SSD anchor sizes preset")
      ->check(CLI::IsMember({"voc", "coco"}));
  cli.add_flag("--summary", want_summary, "print block output shapes, parameter and anchor counts, and exit");
  int threads = 0;
  cli.add_option("--threads", threads,
                 "OpenMP threads (0: the CPUs this process may use, from its affinity and cgroup quota; "
                 "also ENGINE_CPU_THREADS; ENGINE_CPU_SPIN=passive|short|active sets how they wait)")
      ->capture_default_str();
  // Every number checked on its text before conversion, the fixed sets by name
  // (common/config_check.h).
  auto rules = app::detect_rules();
  rules.push_back(app::int_rule("--threads", 0, 1024));
  app::apply_rules(cli, rules);
  cli.get_option("--arch")->check(CLI::IsMember(models::model_names()));
  cli.get_option("--device")->check(CLI::IsMember({"cpu", "cuda"}));
  cli.get_option("--precision")->check(CLI::IsMember({"fp32", "tf32", "bf16"}));
  try {
    cli.parse(argc, argv);
    eng::set_cpu_threads(threads);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return cli.exit(e);
    std::cerr << app::cli_error_line("ssd_detect", e) << "\n";
    return 1;
  }
  try {
    if (want_summary) {
      ENGINE_CHECK(!c.arch.empty(), "--summary needs --arch");
      ENGINE_CHECK(cli.count("--num-classes") > 0, "--summary needs --num-classes");
      summary_config.arch = c.arch;
      app::check_value(app::input_size_rule("--input-size", c.arch, true), summary_config.input_size);
      return summary(summary_config);
    }
    ENGINE_CHECK(!c.inputs.empty(), "--input is required (image files, folders or @list.txt)");
    if (!scales.empty())
      for (int64_t s : app::parse_int_list(app::input_size_rule("--scales", c.arch, false), scales))
        c.inference.scales.push_back(static_cast<int>(s));
    if (c.cuda_graph && cli.count("--batch") == 0) c.batch = 1;  // graphs run at batch 1
    app::check(c);
    return app::detect(c);
  } catch (const std::exception& e) {
    std::cerr << "ssd_detect: " << app::one_line(e.what()) << "\n";
    return 1;
  }
}
