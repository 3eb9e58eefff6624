// ssd_export: a trained detector -> an ONNX model (docs/export.md).
//
//   ssd_export --weights W [--arch A] [--classes FILE] --out model.onnx [--input-size N]
//              [--batch N|dynamic] [--postprocess none|nms] [--opset K]
//              [--score-thresh X] [--nms-thresh X] [--topk N]
//              [--reference FILE.safetensors]
//
// --reference writes, beside the model, a generated input batch and this engine's outputs for
// it (heads, or post-processed detections in the ONNX output layout): what the ONNX Runtime
// test (tests/oracles/onnx_check.py) compares against.
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "common/checkpoint.h"
#include "common/cli_rules.h"
#include "data/dataset.h"
#include "engine/cpu_threads.h"
#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "export/onnx_export.h"
#include "export/onnx_reference.h"
#include "models/weights.h"

namespace {

struct Args {
  std::string weights, arch, classes, out, batch = "dynamic", postprocess = "none", reference;
  int64_t input_size = 0, opset = onnx_export::kMaxOpset, topk = -1;
  double score_thresh = -1, nms_thresh = -1;
};

int run(const Args& a) {
  const eng::io::SafetensorsFile f = eng::io::load_safetensors(a.weights);  // names the file on any problem
  models::ModelConfig mc;
  std::vector<std::string> names;
  if (f.metadata.count(models::kMetaArch)) {
    mc = models::read_model_config(a.weights);
    ENGINE_CHECK(a.arch.empty() || a.arch == mc.arch, a.weights, ": weights of '", mc.arch, "', but --arch is '",
                 a.arch, "'");
    names = app::read_class_list(a.weights).names;
  } else {
    ENGINE_CHECK(!a.arch.empty(), a.weights, ": no architecture in the file's metadata; give --arch");
    mc.arch = a.arch;
    mc.num_classes = 91;
  }
  if (!a.classes.empty()) {
    names = data::read_class_names(a.classes);
    if (!f.metadata.count(models::kMetaArch)) mc.num_classes = static_cast<int64_t>(names.size()) + 1;
  }
  if (names.empty())
    for (int64_t k = 1; k < mc.num_classes; ++k) names.push_back("class_" + std::to_string(k));
  ENGINE_CHECK(static_cast<int64_t>(names.size()) + 1 == mc.num_classes, a.weights, ": ", names.size(),
               " class names for ", mc.num_classes - 1, " classes");
  auto model = models::create_model(mc);
  models::load_model_weights(*model, a.weights);
  if (a.input_size > 0) model->set_input_size(a.input_size);

  onnx_export::ExportOptions o;
  ENGINE_CHECK(a.batch == "dynamic" || (a.batch.find_first_not_of("0123456789") == std::string::npos &&
                                        !a.batch.empty() && a.batch.size() <= 4 && a.batch[0] != '0'),
               "--batch '", a.batch.size() > 20 ? a.batch.substr(0, 17) + "..." : a.batch,
               "': must be a number 1..4096 or 'dynamic'");
  o.batch = a.batch == "dynamic" ? 0 : std::stoll(a.batch);
  o.postprocess = a.postprocess;
  o.opset = a.opset;
  o.class_names = names;
  o.score_thresh = a.score_thresh;
  o.nms_thresh = a.nms_thresh;
  o.topk = a.topk;
  const onnx::ModelProto m = onnx_export::export_model(*model, o);
  onnx_export::save_model(m, a.out);
  std::cout << "ssd_export: " << mc.arch << " at " << model->config().input_size << " -> " << a.out << " ("
            << m.graph().node_size() << " nodes, " << m.graph().initializer_size() << " initializers, opset " << o.opset
            << ", batch " << (o.batch ? std::to_string(o.batch) : std::string("dynamic")) << ", postprocess "
            << o.postprocess << ")\n";
  if (!a.reference.empty()) {
    onnx_export::write_reference(*model, o, a.reference);
    std::cout << "ssd_export: reference input and outputs -> " << a.reference << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (!eng::init_cpu_threads(argc, argv, "ssd_export")) return 1;
  CLI::App cli{"ssd_export: write a detector as an ONNX model"};
  Args a;
  cli.add_option("--weights", a.weights, "weights or checkpoint (.safetensors)")->required();
  cli.add_option("--arch", a.arch, "architecture, for files without it in their metadata");
  cli.add_option("--classes", a.classes, "class names, one per line (metadata only)");
  cli.add_option("--out", a.out, "output .onnx file")->required();
  cli.add_option("--input-size", a.input_size, "input side S (default: the weights' size)");
  cli.add_option("--batch", a.batch, "batch size N, or 'dynamic' (default)");
  cli.add_option("--postprocess", a.postprocess, "none: raw heads and anchors; nms: decoded, NMS'd detections")
      ->check(CLI::IsMember({"none", "nms"}));
  cli.add_option("--opset", a.opset, "ONNX opset (13..17, default 17)");
  cli.add_option("--score-thresh", a.score_thresh, "nms: score threshold (default: the architecture's)");
  cli.add_option("--nms-thresh", a.nms_thresh, "nms: IoU threshold (default: the architecture's)");
  cli.add_option("--topk", a.topk, "nms: detections kept per image (default: the architecture's)");
  cli.add_option("--reference", a.reference, "also write a test input and this engine's outputs (.safetensors)");
  app::apply_rules(cli, {app::int_rule("--input-size", 1, 4096), app::int_rule("--opset", onnx_export::kMinOpset,
                                                                              onnx_export::kMaxOpset),
                         app::with_special(app::real_rule("--score-thresh", 0, 1), -1, "default"),
                         app::with_special(app::real_rule("--nms-thresh", 0, 1), -1, "default"),
                         app::with_special(app::int_rule("--topk", 1, 100000), -1, "default")});
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return cli.exit(e);
    std::cerr << "ssd_export: " << app::one_line(e.what()) << "\n";
    return 1;
  }
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::cerr << "ssd_export: " << app::one_line(e.what()) << "\n";
    return 1;
  }
}
