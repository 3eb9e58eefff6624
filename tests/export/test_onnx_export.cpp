// ONNX export (apps/export/): every registered architecture exports and passes ONNX's checker;
// untraced ops and kinds without an exporter entry are refused naming the op and the layer;
// ONNX Runtime (a Python oracle) reproduces our heads and detections.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <set>
#include <string>

#include "app_runner.h"
#include "engine/autograd.h"
#include "engine/nn/layers.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/trace.h"
#include "export/onnx_export.h"
#include "export/onnx_ops.h"
#include "export/onnx_reference.h"
#include "export/oracle_python.h"
#include "models/detection_model.h"
#include "models/weights.h"
#include "temp_dir.h"

namespace {

// A small but real configuration of each architecture: few classes, a small input where the
// architecture allows one (the export is size-generic; the tests only need to be quick).
std::shared_ptr<models::DetectionModel> small_model(const std::string& arch) {
  models::ModelConfig c;
  c.arch = arch;
  c.num_classes = 4;
  c.anchor_preset = "voc";
  if (arch == "tiny_ssd") c.input_size = 128;
  if (arch == "retinanet_resnet50_fpn" || arch == "fasterrcnn_resnet50_fpn") c.input_size = 256;
  if (arch.rfind("ssd512_", 0) == 0 && arch != "ssd512_vgg16") c.input_size = 256;
  return models::create_model(c);
}

// Running statistics that fit the data: one train-mode forward of `images` with momentum 1
// sets every BatchNorm2d's running mean / variance to its batch statistics, so that eval-mode
// activations stay near unit scale at any depth. (With the models' fresh statistics, 0 and 1,
// some heads give logits of 1e-20, others saturate: neither tests the export.) Models with
// FrozenBatchNorm2d keep their initialisation.
void calibrate_batch_norm(models::DetectionModel& m, const eng::Tensor& images) {
  std::vector<std::pair<eng::nn::BatchNorm2d*, double>> bns;
  for (auto& [name, mod] : m.named_modules())
    if (auto* bn = dynamic_cast<eng::nn::BatchNorm2d*>(mod)) {
      bns.emplace_back(bn, bn->momentum);
      bn->momentum = 1.0;
    }
  if (!bns.empty()) {
    eng::NoGradGuard no_grad;
    m.train();
    m.forward_heads(images);
  }
  for (auto& [bn, momentum] : bns) bn->momentum = momentum;
  m.eval();
}

// A score threshold that lets about `per_image` detections per image through, placed in a
// gap between two distinct scores so that last-bit differences between runtimes cannot move a
// candidate across it.
double threshold_for(models::DetectionModel& m, const eng::Tensor& images, int64_t per_image) {
  eng::NoGradGuard no_grad;
  const models::HeadOutputs h = m.forward_heads(images);
  eng::det::PostprocessOptions o = m.postprocess_options();
  o.score_threshold = 1e-4;
  o.max_per_image = 1000;
  const eng::det::Detections d = m.postprocess(h, o);
  std::vector<float> v;
  const auto scores = d.scores.to_vector<float>();
  const auto labels = d.labels.to_vector<int64_t>();
  for (size_t i = 0; i < scores.size(); ++i)
    if (labels[i] >= 0) v.push_back(scores[i]);
  REQUIRE(v.size() >= 2);
  std::sort(v.begin(), v.end(), std::greater<float>());
  size_t i = std::min(v.size() - 2, static_cast<size_t>(per_image * images.size(0)));
  while (i + 2 < v.size() && v[i] - v[i + 1] < 1e-5f * v[i]) ++i;
  return 0.5 * (static_cast<double>(v[i]) + static_cast<double>(v[i + 1]));
}

bool heavy(const std::string& arch) {
  return arch == "ssd512_resnet101_v2" || arch == "ssd512_resnet152_v2" || arch == "ssd512_resnet50_v1" ||
         arch == "ssd512_vgg16";
}

std::set<std::string> output_names(const onnx::ModelProto& m) {
  std::set<std::string> s;
  for (const auto& o : m.graph().output()) s.insert(o.name());
  return s;
}

}  // namespace

TEST_CASE("every registered architecture exports to ONNX and passes the checker", "[onnx][slow]") {
  for (const std::string& arch : models::model_names()) {
    INFO(arch);
    auto model = small_model(arch);
    onnx_export::ExportOptions o;
    o.class_names = {"a", "b", "c"};
    const onnx::ModelProto m = onnx_export::export_model(*model, o);
    const std::set<std::string> outs = output_names(m);
    CHECK(outs.count("boxes") == 1);
    CHECK(outs.count("scores") == 1);
    CHECK(outs.count("anchors") == 1);
    // Every parameter that the forward reads is an initializer under its state_dict name.
    std::set<std::string> inits;
    for (const auto& t : m.graph().initializer()) inits.insert(t.name());
    int64_t found = 0;
    for (const auto& [name, t] : model->named_parameters()) found += inits.count(name);
    CHECK(found >= static_cast<int64_t>(model->named_parameters().size()) * 9 / 10);
    {
      o.postprocess = "nms";
      const onnx::ModelProto n = onnx_export::export_model(*model, o);
      CHECK(output_names(n) == std::set<std::string>{"detection_boxes", "detection_scores", "detection_labels",
                                                     "detection_batch"});
    }
  }
}

TEST_CASE("ONNX export metadata records the input normalisation and classes", "[onnx]") {
  auto model = small_model("tiny_ssd");
  onnx_export::ExportOptions o;
  o.class_names = {"cat", "dog", "bird"};
  o.batch = 4;
  const onnx::ModelProto m = onnx_export::export_model(*model, o);
  std::map<std::string, std::string> meta;
  for (const auto& e : m.metadata_props()) meta[e.key()] = e.value();
  CHECK(meta["arch"] == "tiny_ssd");
  CHECK(meta["input_size"] == "128");
  CHECK(meta["class_names"] == R"(["cat","dog","bird"])");
  CHECK(meta.count("pixel_mean") == 1);
  CHECK(meta.count("pixel_std") == 1);
  CHECK(meta["anchor_preset"] == "voc");
  CHECK(m.doc_string().find("normalised") != std::string::npos);
  // A fixed batch: the input's first dim is 4, not symbolic.
  const auto& dim0 = m.graph().input(0).type().tensor_type().shape().dim(0);
  CHECK(dim0.dim_value() == 4);
  CHECK(m.opset_import(0).version() == 17);
}

TEST_CASE("an op the tracer did not see is refused naming it and the layer", "[onnx]") {
  eng::Generator gen(1);
  eng::Tensor x = eng::randn({1, 2, 4, 4}, gen);
  x.set_requires_grad(true);
  eng::Tensor w = eng::randn({3, 2, 1, 1}, gen);
  w.set_requires_grad(true);
  eng::trace::Recorder rec;
  eng::Tensor y;
  {
    eng::trace::Scope s(rec);
    eng::Tensor h = eng::conv2d(x, w, eng::Tensor(), eng::Conv2dParams::square(1, 0));
    // max over a dim is not traced: its result reaches relu as an unknown value.
    y = eng::relu(eng::max(h, 1, true).first);
  }
  onnx::GraphProto g;
  onnx_export::GraphBuilder b(&g, 17);
  onnx_export::TraceInputs ti;
  ti.input_value = rec.value_of(x);
  ti.named[w.impl().get()] = "head.conv.weight";
  try {
    onnx_export::emit_trace(b, rec, ti, {rec.value_of(y)});
    FAIL("no error");
  } catch (const eng::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("not traced") != std::string::npos);
    CHECK(msg.find("Max") != std::string::npos);
    CHECK(msg.find("head.conv.weight") != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
}

TEST_CASE("a traced kind without an exporter entry is refused naming it", "[onnx]") {
  eng::Generator gen(1);
  eng::Tensor x = eng::randn({2, 3}, gen);
  eng::Tensor y = eng::randn({2, 3}, gen);
  eng::trace::Recorder rec;
  rec.record("mystery_op", {x}, {y}, {});
  onnx::GraphProto g;
  onnx_export::GraphBuilder b(&g, 17);
  onnx_export::TraceInputs ti;
  ti.input_value = rec.value_of(x);
  CHECK_THROWS_WITH(onnx_export::emit_trace(b, rec, ti, {rec.value_of(y)}),
                    Catch::Contains("'mystery_op'") && Catch::Contains("no exporter entry"));
  // And every kind engine/trace.h documents has one.
  const auto kinds = onnx_export::exportable_kinds();
  for (const char* k : {"conv2d", "conv2d_relu", "relu", "batch_norm2d", "frozen_bn_affine", "max_pool2d",
                        "upsample_nearest2d", "concat", "flatten_concat_heads", "l2norm", "linear", "reshape",
                        "permute", "slice", "hardswish", "hardsigmoid", "relu6", "global_avg_pool2d", "softmax"})
    CHECK(std::find(kinds.begin(), kinds.end(), k) != kinds.end());
}

TEST_CASE("ssd_export: bad values and paths give one line", "[onnx][app]") {
  test::TempDir dir("onnx_app");
  auto model = small_model("tiny_ssd");
  const std::string w = dir / "w.safetensors";
  models::save_model_weights(*model, w);
  auto r = test::run_app("ssd_export", "--weights '" + w + "' --out '" + dir / "m.onnx" + "' --opset 9");
  CHECK(r.status == 1);
  CHECK(r.err.find("--opset") != std::string::npos);
  r = test::run_app("ssd_export", "--weights '" + w + "' --out '" + dir / "m.onnx" + "' --batch 0");
  CHECK(r.status == 1);
  CHECK(r.err.find("--batch") != std::string::npos);
  r = test::run_app("ssd_export", "--weights '" + w + "' --out '" + dir / "no_such_dir/m.onnx" + "'");
  CHECK(r.status == 1);
  CHECK(r.err.find("no_such_dir/m.onnx") != std::string::npos);
  CHECK(test::split_lines(r.err).size() == 1);
  r = test::run_app("ssd_export", "--weights '" + dir / "missing.safetensors" + "' --out '" + dir / "m.onnx" + "'");
  CHECK(r.status == 1);
  CHECK(r.err.find("missing.safetensors") != std::string::npos);
  r = test::run_app("ssd_export", "--weights '" + w + "' --out '" + dir / "m.onnx" + "' --postprocess nms --batch 2");
  CHECK(r.status == 0);
  CHECK(std::ifstream(dir / "m.onnx").good());
  CHECK(!std::ifstream(dir / "m.onnx.tmp").good());
}

// The oracle: ONNX Runtime on the exported file against our forward / post-processing.
TEST_CASE("ONNX Runtime reproduces the exported models", "[onnx][oracle][slow]") {
  test::TempDir dir("onnx_oracle");
  for (const std::string& arch : models::model_names()) {
    if (heavy(arch)) continue;  // same layer types as the exported lighter ones, several times the time
    auto model = small_model(arch);
    {
      onnx_export::ExportOptions probe;
      calibrate_batch_norm(*model, onnx_export::reference_images(*model, probe));
    }
    for (const std::string pp : {"none", "nms"}) {
      onnx_export::ExportOptions o;
      o.postprocess = pp;
      o.class_names = {"a", "b", "c"};
      if (pp == "nms") o.score_thresh = threshold_for(*model, onnx_export::reference_images(*model, o), 60);
      const std::string base = dir / (arch + "_" + pp);
      onnx_export::save_model(onnx_export::export_model(*model, o), base + ".onnx");
      onnx_export::write_reference(*model, o, base + ".ref.safetensors");
    }
    if (arch == "tiny_ssd") {  // no detection at all: empty outputs, not an error
      onnx_export::ExportOptions o;
      o.postprocess = "nms";
      o.batch = 2;
      o.score_thresh = 0.999999;
      onnx_export::save_model(onnx_export::export_model(*model, o), dir / "tiny_ssd_nms_none_pass.onnx");
      onnx_export::write_reference(*model, o, dir / "tiny_ssd_nms_none_pass.ref.safetensors");
    }
  }
  // ENGINE_ONNX_KEEP=DIR keeps a copy of the models and references (for debugging a mismatch).
  if (const char* keep = std::getenv("ENGINE_ONNX_KEEP"))
    std::filesystem::copy(dir.path, keep, std::filesystem::copy_options::overwrite_existing |
                                              std::filesystem::copy_options::recursive);
  const std::string script = std::string(ENGINE_TEST_DATA_DIR) + "/oracles/onnx_check.py";
  const std::string cmd = "'" + test::oracle_python() + "' '" + script + "' '" + dir.path.string() + "' 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = ::pclose(p);
  const int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::printf("%s", out.c_str());
  if (code == 77 || code == 127) {
    std::printf("SKIPPED: no Python oracle (onnxruntime; run scripts/install_oracles.sh)\n");
    return;
  }
  INFO(out);
  CHECK(code == 0);
  CHECK(out.find("MISMATCH") == std::string::npos);
}
