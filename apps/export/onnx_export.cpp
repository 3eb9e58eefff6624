// export_model / save_model (onnx_export.h).
#include "export/onnx_export.h"

#include <cstdio>
#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <onnx/checker.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/random.h"
#include "engine/trace.h"
#include "export/onnx_builder.h"
#include "export/onnx_ops.h"
#include "export/onnx_postprocess.h"
#include "export/onnx_two_stage.h"

namespace onnx_export {

namespace {

std::string json_list(const std::vector<double>& v) { return nlohmann::json(v).dump(); }

void meta(onnx::ModelProto& m, const std::string& key, const std::string& value) {
  onnx::StringStringEntryProto* e = m.add_metadata_props();
  e->set_key(key);
  e->set_value(value);
}

}  // namespace

eng::det::PostprocessOptions export_postprocess_options(const models::DetectionModel& model,
                                                        const ExportOptions& o) {
  eng::det::PostprocessOptions p = model.postprocess_options();
  if (o.score_thresh >= 0) p.score_threshold = o.score_thresh;
  if (o.nms_thresh >= 0) p.nms_threshold = o.nms_thresh;
  if (o.topk > 0) p.max_per_image = o.topk;
  return p;
}

onnx::ModelProto export_model(models::DetectionModel& model, const ExportOptions& o) {
  ENGINE_CHECK(o.opset >= kMinOpset && o.opset <= kMaxOpset, "--opset ", o.opset, ": must be in ", kMinOpset, "..",
               kMaxOpset);
  ENGINE_CHECK(o.batch >= 0 && o.batch <= 4096, "--batch ", o.batch, ": must be 1..4096 or dynamic");
  ENGINE_CHECK(o.postprocess == "none" || o.postprocess == "nms", "--postprocess '", o.postprocess,
               "': must be none or nms");
  const models::ModelConfig& mc = model.config();
  auto* two_stage = dynamic_cast<models::FasterRCNN*>(&model);
  ENGINE_CHECK(two_stage != nullptr || model.graph_capturable(), mc.arch,
               ": a two-stage model without an ONNX post-processing graph");
  for (const auto& [name, t] : model.named_parameters())
    ENGINE_CHECK(!t.is_cuda() && t.dtype() == eng::DType::f32, "ONNX export: parameter '", name,
                 "' must be f32 on the CPU");
  model.eval();
  const int64_t S = mc.input_size;
  const int64_t B = o.batch > 0 ? o.batch : 2;

  // Trace one forward. The input requires grad so that every value computed from it carries
  // a grad_fn: a value the recorder did not see being made is then recognisably an untraced op.
  eng::Generator gen(20261207);
  eng::Tensor images = eng::randn({B, 3, S, S}, gen);
  images.set_requires_grad(true);
  eng::trace::Recorder rec;
  models::HeadOutputs heads;
  {
    eng::trace::Scope scope(rec);
    heads = model.forward_heads(images);
  }
  const eng::Tensor anchors = model.cached_anchors(eng::Device::cpu());
  const int64_t A = heads.box_regression.size(1), C = heads.class_logits.size(2);

  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("ssd_engine ssd_export");
  m.set_model_version(1);
  onnx::OperatorSetIdProto* ops = m.add_opset_import();
  ops->set_domain("");
  ops->set_version(o.opset);
  onnx::GraphProto* g = m.mutable_graph();
  g->set_name(mc.arch);
  GraphBuilder b(g, o.opset);
  b.reserve("images");

  TraceInputs ti;
  ti.input_value = rec.value_of(images);
  ti.dynamic_batch = o.batch == 0;
  for (const auto& [name, t] : model.named_parameters()) ti.named[t.impl().get()] = name;
  for (const auto& [name, t] : model.named_buffers()) ti.named[t.impl().get()] = name;
  std::vector<int> outs = {rec.value_of(heads.box_regression), rec.value_of(heads.class_logits)};
  for (const eng::Tensor& f : heads.features) outs.push_back(rec.value_of(f));
  const std::vector<std::string> names = emit_trace(b, rec, ti, outs);

  const int64_t batch_dim = o.batch > 0 ? o.batch : -1;
  add_value_info(g->mutable_input(), "images", onnx::TensorProto_DataType_FLOAT, {batch_dim, 3, S, S}, {"batch"});
  const std::string anchors_c = b.tensor_initializer("anchors_const", anchors);
  const eng::det::PostprocessOptions pp = export_postprocess_options(model, o);
  auto output = [&](const std::string& from, const std::string& name, int32_t type, std::vector<int64_t> dims,
                    std::vector<std::string> dim_names) {
    b.reserve(name);
    b.node("Identity", {from}, {name});
    add_value_info(g->mutable_output(), name, type, dims, dim_names);
  };
  if (o.postprocess == "none") {
    output(names[0], "boxes", onnx::TensorProto_DataType_FLOAT, {batch_dim, A, 4}, {"batch"});
    output(names[1], "scores", onnx::TensorProto_DataType_FLOAT, {batch_dim, A, C}, {"batch"});
    output(anchors_c, "anchors", onnx::TensorProto_DataType_FLOAT, {A, 4}, {});
    for (size_t i = 0; i < heads.features.size(); ++i) {
      const eng::Shape& s = heads.features[i].sizes();
      output(names[2 + i], "features_" + std::to_string(i), onnx::TensorProto_DataType_FLOAT,
             {batch_dim, s[1], s[2], s[3]}, {"batch"});
    }
  } else {
    const PostprocessOutputs p =
        two_stage ? emit_two_stage(b, *two_stage, names[0], names[1], {names.begin() + 2, names.end()}, anchors_c, pp, ti)
                  : emit_postprocess(b, names[0], names[1], anchors_c, A, C, pp);
    output(p.boxes, "detection_boxes", onnx::TensorProto_DataType_FLOAT, {-1, 4}, {"detections"});
    output(p.scores, "detection_scores", onnx::TensorProto_DataType_FLOAT, {-1}, {"detections"});
    output(p.labels, "detection_labels", onnx::TensorProto_DataType_INT64, {-1}, {"detections"});
    output(p.batch, "detection_batch", onnx::TensorProto_DataType_INT64, {-1}, {"detections"});
  }

  std::vector<std::string> classes = o.class_names;
  const std::vector<double> mean = model.pixel_mean(), std_ = model.pixel_std();
  m.set_doc_string(mc.arch + " exported by ssd_export. Input 'images': float32 [N, 3, " + std::to_string(S) + ", " +
                   std::to_string(S) + "], RGB, resized to the input size" +
                   (model.keep_aspect_ratio() ? " keeping the aspect ratio (top-left, zero padding after normalisation)"
                                              : "") +
                   ", normalised as (pixel - mean) / std with pixel in 0..255, mean " + json_list(mean) + ", std " +
                   json_list(std_) +
                   (o.postprocess == "none"
                        ? ". Outputs: 'boxes' encoded box deltas, 'scores' class logits, 'anchors' in input pixels."
                        : ". Outputs: detection_boxes (x1, y1, x2, y2 input pixels), detection_scores, "
                          "detection_labels (class index; 0 is background for softmax models), detection_batch."));
  meta(m, "arch", mc.arch);
  meta(m, "input_size", std::to_string(S));
  meta(m, "num_classes", std::to_string(mc.num_classes));
  meta(m, "class_names", nlohmann::json(classes).dump());
  meta(m, "pixel_mean", json_list(mean));
  meta(m, "pixel_std", json_list(std_));
  meta(m, "anchor_preset", mc.anchor_preset);
  meta(m, "score_kind", pp.kind == eng::det::ScoreKind::Softmax ? "softmax" : "sigmoid");
  meta(m, "box_coder_weights", json_list({pp.weights.wx, pp.weights.wy, pp.weights.ww, pp.weights.wh}));
  meta(m, "score_threshold", nlohmann::json(pp.score_threshold).dump());
  meta(m, "nms_threshold", nlohmann::json(pp.nms_threshold).dump());
  meta(m, "topk_candidates", std::to_string(pp.topk_candidates));
  meta(m, "max_per_image", std::to_string(pp.max_per_image));
  meta(m, "postprocess", o.postprocess);
  meta(m, "keep_aspect_ratio", model.keep_aspect_ratio() ? "true" : "false");
  try {
    onnx::checker::check_model(m);
  } catch (const std::exception& e) {
    ENGINE_FAIL("ONNX export of ", mc.arch, ": the ONNX checker rejects the model: ", e.what());
  }
  return m;
}

void save_model(const onnx::ModelProto& m, const std::string& path) {
  const std::string tmp = path + ".tmp";
  std::string bytes;
  ENGINE_CHECK(m.SerializeToString(&bytes), path, ": the ONNX model could not be serialised (over 2 GB?)");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ENGINE_CHECK(fd >= 0, path, ": cannot open for writing (", std::strerror(errno), ")");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      std::remove(tmp.c_str());
      ENGINE_FAIL(path, ": write failed (", std::strerror(err), ")");
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const bool closed = ::close(fd) == 0;
  if (!synced || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    ENGINE_FAIL(path, ": could not be written (", std::strerror(err), ")");
  }
}

}  // namespace onnx_export
