// emit_two_stage (onnx_two_stage.h).
#include "export/onnx_two_stage.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/random.h"
#include "engine/roi_align.h"
#include "engine/trace.h"
#include "export/onnx_nodes.h"

namespace onnx_export {

namespace {

constexpr float kMasked = -1e30f;  // an NMS score below every logit: "not a candidate here"

// The RPN's proposals, padded: [B, n, 4] (zeros after each image's count).
std::string emit_proposals(P& p, const std::string& deltas, const std::string& logits, const std::string& anchors,
                           const std::vector<int64_t>& level_sizes, int64_t top_n, double image_size,
                           const std::string& nb, int64_t* padded) {
  GraphBuilder& b = p.b;
  const std::string obj = p.reshape(logits, {0, -1});  // [B, A]
  std::vector<std::string> lv, iv;
  std::vector<int64_t> level_of;
  int64_t a0 = 0, most = 0;
  for (size_t l = 0; l < level_sizes.size(); ++l) {
    const int64_t n = level_sizes[l], k = std::min(top_n, n);
    if (k > 0) {
      auto [v, i] = p.topk(p.slice(obj, a0, a0 + n, 1), b.const_i64({k}), 1, true);  // ties: lower index
      lv.push_back(v);
      iv.push_back(p.op("Add", {i, b.scalar_i64(a0)}, "anchor"));
      level_of.insert(level_of.end(), static_cast<size_t>(k), static_cast<int64_t>(l));
    }
    most += k;
    a0 += n;
  }
  const int64_t L = static_cast<int64_t>(level_sizes.size()), M = most;
  const std::string cand_logit = p.concat(lv, 1), cand_anchor = p.concat(iv, 1);  // [B, M]
  const std::string d = b.fresh("rpn_cand_deltas");
  set_attr(b.node("GatherND", {deltas, p.unsqueeze(cand_anchor, 2)}, {d}), "batch_dims", int64_t{1});
  const std::string an = b.fresh("rpn_cand_anchors");
  set_attr(b.node("Gather", {anchors, cand_anchor}, {an}), "axis", int64_t{0});
  const std::string boxes = p.decode(d, an, {1, 1, 1, 1}, image_size, image_size);  // [B, M, 4]
  // Size rule: w and h >= 1e-3.
  const std::string wh = p.op("Sub", {p.slice(boxes, 2, 4, 2), p.slice(boxes, 0, 2, 2)}, "wh");
  const std::string big = p.op("GreaterOrEqual", {wh, p.f(1e-3f)}, "big");  // [B, M, 2]
  const std::string valid = p.op("And", {p.squeeze(p.slice(big, 0, 1, 2), 2), p.squeeze(p.slice(big, 1, 2, 2), 2)}, "valid");
  // NMS per level, ranked by the logit: scores [B, L, M], a level's row holds its own candidates.
  std::vector<int64_t> lvl_cls;
  for (int64_t l = 0; l < L; ++l) lvl_cls.push_back(l);
  const std::string mine = p.op("And", {p.op("Equal", {b.const_i64(level_of, {1, 1, M}), b.const_i64(lvl_cls, {1, L, 1})}, "lvl"),
                                        p.unsqueeze(valid, 1)}, "mine");
  const std::string nms_scores = p.op("Where", {mine, p.unsqueeze(cand_logit, 1), p.f(kMasked)}, "rpn_nms_scores");
  const std::string sel = b.fresh("rpn_selected");
  b.node("NonMaxSuppression", {boxes, nms_scores, b.scalar_i64(M), b.scalar_f32(0.7f), p.f(kMasked / 2)}, {sel});
  // Candidate order (level, rank) first, then stably by sigmoid descending within each image.
  const std::string jsel = p.squeeze(p.slice(sel, 2, 3, 1), 1), bsel = p.squeeze(p.slice(sel, 0, 1, 1), 1);
  const std::string kcount = p.slice(p.op("Shape", {jsel}, "k"), 0, 1, 0);
  const std::string by_j = p.topk(p.cast(jsel, onnx::TensorProto_DataType_FLOAT), kcount, 0, false).second;
  const std::string js = p.op("Gather", {jsel, by_j}, "js"), bs = p.op("Gather", {bsel, by_j}, "bs");
  const std::string bj = p.concat({p.unsqueeze(bs, 1), p.unsqueeze(js, 1)}, 1);
  const std::string prob = p.op("Sigmoid", {p.op("GatherND", {cand_logit, bj}, "sel_logit")}, "sel_prob");
  const int64_t n = std::min(top_n, most);
  *padded = n;
  auto [keep, rank] = p.top_per_image_ranked(prob, bs, nb, n);
  // Scatter the kept boxes into [B, n, 4] zeros at (image, rank - 1).
  const std::string kept_boxes = p.op("GatherND", {boxes, p.op("Gather", {bj, keep}, "kept_bj")}, "kept_boxes");
  const std::string where = p.concat({p.unsqueeze(p.op("Gather", {bs, keep}, "kb"), 1),
                                      p.unsqueeze(p.op("Sub", {rank, b.scalar_i64(1)}, "slot"), 1)}, 1);
  const std::string shape = p.concat({p.unsqueeze(nb, 0), b.const_i64({n, 4})}, 0);
  const std::string zeros = b.fresh("prop_zeros");
  {
    onnx::NodeProto* c = b.node("ConstantOfShape", {shape}, {zeros});
    onnx::AttributeProto* a = c->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto_AttributeType_TENSOR);
    onnx::TensorProto* t = a->mutable_t();
    t->set_data_type(onnx::TensorProto_DataType_FLOAT);
    t->add_dims(1);
    t->add_float_data(0.f);
  }
  return p.op("ScatterND", {zeros, where, kept_boxes}, "proposals");
}

}  // namespace

PostprocessOutputs emit_two_stage(GraphBuilder& b, models::FasterRCNN& model, const std::string& rpn_deltas,
                                  const std::string& rpn_logits, const std::vector<std::string>& features,
                                  const std::string& anchors, const eng::det::PostprocessOptions& o,
                                  const TraceInputs& named) {
  P p{b};
  const int64_t S = model.config().input_size;
  const double s = static_cast<double>(S);
  const std::string nb = p.squeeze(p.slice(p.op("Shape", {rpn_deltas}, "s"), 0, 1, 0), 0);
  int64_t n = 0;
  const std::string props = emit_proposals(p, rpn_deltas, rpn_logits, anchors, model.level_sizes(),
                                           o.topk_candidates, s, nb, &n);  // [B, n, 4]
  // Every slot is a RoI (image-major), as FasterRCNN::detect does.
  const std::string rois = p.reshape(props, {-1, 4});
  const std::string img = p.op("Range", {b.scalar_i64(0), nb, b.scalar_i64(1)}, "img");
  const std::string roi_img = p.reshape(p.op("Expand", {p.unsqueeze(img, 1), b.const_i64({1, n})}, "img_e"), {-1});

  // Level of each RoI: floor(4 + log2(sqrt(area) / 224) + 1e-6) clamped to [2, 5], minus 2.
  const std::string wh = p.op("Sub", {p.slice(rois, 2, 4, 1), p.slice(rois, 0, 2, 1)}, "roi_wh");
  const std::string area = p.op("Mul", {p.slice(wh, 0, 1, 1), p.slice(wh, 1, 2, 1)}, "area");  // [R, 1]
  const std::string lg2 = p.op("Div", {p.op("Log", {p.op("Div", {p.op("Sqrt", {area}, "side"), p.f(224.f)}, "t")}, "t"),
                                       p.f(static_cast<float>(std::log(2.0)))}, "log2");
  const int64_t k_min = 2, k_max = k_min + static_cast<int64_t>(features.size()) - 1;
  const std::string lvl = p.op("Clip", {p.op("Floor", {p.op("Add", {lg2, p.f(4.f + 1e-6f)}, "t")}, "t"),
                                        p.f(static_cast<float>(k_min)), p.f(static_cast<float>(k_max))}, "lvl");
  // (A NaN level, from a degenerate box, falls through every Equal below and pools from P2,
  // as roi_levels gives level 0.)
  std::vector<eng::Tensor> fshapes;
  std::string pooled;
  for (size_t l = 0; l < features.size(); ++l) {
    const double scale = std::ldexp(1.0, -static_cast<int>(k_min + static_cast<int64_t>(l)));
    const std::string y = b.fresh("roi_align");
    onnx::NodeProto* r = b.node("RoiAlign", {features[l], rois, roi_img}, {y});
    set_attr(r, "mode", std::string("avg"));
    set_attr(r, "output_height", int64_t{7});
    set_attr(r, "output_width", int64_t{7});
    set_attr(r, "sampling_ratio", int64_t{2});
    set_attr(r, "spatial_scale", static_cast<float>(scale));
    if (b.opset() >= 16) set_attr(r, "coordinate_transformation_mode", std::string("output_half_pixel"));
    if (l == 0) {
      pooled = y;
    } else {
      const std::string here = p.reshape(p.op("Equal", {lvl, p.f(static_cast<float>(k_min + static_cast<int64_t>(l)))}, "here"),
                                         {-1, 1, 1, 1});
      pooled = p.op("Where", {here, y, pooled}, "pooled");
    }
  }

  // The box head, traced like the backbone: pooled [R, 256, 7, 7] -> logits [R, C], deltas [R, 4C].
  eng::trace::Recorder rec;
  eng::Generator gen(5);
  eng::Tensor probe = eng::randn({3, 256, 7, 7}, gen);
  probe.set_requires_grad(true);
  std::pair<eng::Tensor, eng::Tensor> head;
  {
    eng::trace::Scope scope(rec);
    head = model.box_head_outputs(probe);
  }
  TraceInputs ti = named;
  ti.input_value = rec.value_of(probe);
  ti.input_name = pooled;
  ti.dynamic_batch = true;  // R varies
  const std::vector<std::string> out = emit_trace(b, rec, ti, {rec.value_of(head.first), rec.value_of(head.second)});
  const int64_t C = head.first.size(1);

  // Detections: [B, n, C - 1] scores, [B, n, C - 1, 4] boxes -> flattened candidates j = slot (C - 1) + c - 1.
  const std::string prob = p.op("Softmax", {out[0]}, "cls_prob");  // axis -1 (opset 13)
  const std::string fg = p.reshape(p.slice(prob, 1, C, 1), {-1, n, C - 1});
  const std::string dl = p.slice(p.reshape(out[1], {-1, n, C, 4}), 1, C, 2);  // [B, n, C - 1, 4]
  const std::string pr = p.unsqueeze(props, 2);                              // [B, n, 1, 4]
  const std::string boxes = p.decode(dl, pr, o.weights, s, s);
  const std::string flat_boxes = p.reshape(boxes, {0, -1, 4});
  const std::string wh2 = p.op("Sub", {p.slice(flat_boxes, 2, 4, 2), p.slice(flat_boxes, 0, 2, 2)}, "wh");
  const std::string big = p.op("GreaterOrEqual", {wh2, p.f(1e-2f)}, "big");
  const std::string flat_scores = p.reshape(fg, {0, -1});
  const std::string thr = p.f(static_cast<float>(o.score_threshold));
  const std::string pass =
      p.op("And", {p.op("Greater", {flat_scores, thr}, "pass"),
                   p.op("And", {p.squeeze(p.slice(big, 0, 1, 2), 2), p.squeeze(p.slice(big, 1, 2, 2), 2)}, "size")},
           "keep");
  const std::string scores = p.op("Where", {pass, flat_scores, p.f(0.f)}, "cand_scores");
  std::vector<int64_t> labels;
  for (int64_t slot = 0; slot < n; ++slot)
    for (int64_t c = 1; c < C; ++c) labels.push_back(c);
  const std::string lab = b.const_i64(labels, {1, static_cast<int64_t>(labels.size())}, "cand_labels");
  return emit_classwise_nms(b, flat_boxes, scores, lab, 1, C - 1, thr, o.nms_threshold, o.max_per_image, nb);
}

}  // namespace onnx_export
