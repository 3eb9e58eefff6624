// emit_postprocess (onnx_postprocess.h).
#include "export/onnx_postprocess.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"
#include "export/onnx_nodes.h"

namespace onnx_export {

PostprocessOutputs emit_postprocess(GraphBuilder& b, const std::string& deltas, const std::string& logits,
                                    const std::string& anchors, int64_t A, int64_t C,
                                    const eng::det::PostprocessOptions& o) {
  P p{b};
  const bool softmax = o.kind == eng::det::ScoreKind::Softmax;
  std::string scores, anchor_idx, labels;  // [B, M] each
  int64_t first_label = 0, num_labels = C;
  if (softmax) {
    ENGINE_CHECK(C >= 2, "ONNX post-processing: softmax scores need a background and at least one class");
    const std::string prob = b.fresh("prob");
    set_attr(b.node("Softmax", {logits}, {prob}), "axis", int64_t{2});
    const std::string fg = p.slice(prob, 1, C, 2);  // [B, A, C - 1]
    const std::string fgt = b.fresh("fg_t");
    set_attr(b.node("Transpose", {fg}, {fgt}), "perm", std::vector<int64_t>{0, 2, 1});
    const int64_t k = std::min(o.topk_candidates, A);
    auto [v, i] = p.topk(fgt, b.const_i64({k}), 2, true);  // [B, C - 1, k]
    scores = p.reshape(v, {0, -1});
    anchor_idx = p.reshape(i, {0, -1});
    std::vector<int64_t> lab;
    for (int64_t c = 1; c < C; ++c) lab.insert(lab.end(), static_cast<size_t>(k), c);
    labels = b.const_i64(lab, {1, static_cast<int64_t>(lab.size())}, "cand_labels");  // broadcasts over B
    first_label = 1;
    num_labels = C - 1;
  } else {
    std::vector<int64_t> sizes = o.level_sizes.empty() ? std::vector<int64_t>{A} : o.level_sizes;
    std::vector<std::string> sv, iv, lv;
    int64_t a0 = 0;
    for (int64_t n : sizes) {
      const std::string lg = p.slice(logits, a0, a0 + n, 1);  // [B, n, C]
      const std::string pr = p.reshape(p.op("Sigmoid", {lg}, "sig"), {0, n * C});
      const int64_t k = std::min(o.topk_candidates, n * C);
      auto [v, i] = p.topk(pr, b.const_i64({k}), 1, true);
      const std::string cc = b.scalar_i64(C);
      sv.push_back(v);
      iv.push_back(p.op("Add", {p.op("Div", {i, cc}, "anchor"), b.scalar_i64(a0)}, "anchor"));
      lv.push_back(p.op("Mod", {i, cc}, "label"));
      a0 += n;
    }
    ENGINE_CHECK(a0 == A, "ONNX post-processing: level sizes sum to ", a0, ", not the ", A, " anchors");
    scores = p.concat(sv, 1);
    anchor_idx = p.concat(iv, 1);
    labels = p.concat(lv, 1);
  }
  // Threshold: strictly above, as the kernels.
  const std::string thr = p.f(static_cast<float>(o.score_threshold));
  scores = p.op("Where", {p.op("Greater", {scores, thr}, "pass"), scores, p.f(0.f)}, "cand_scores");

  // Decode the candidates: gather their deltas and anchors.
  const std::string d = b.fresh("cand_deltas");
  set_attr(b.node("GatherND", {deltas, p.unsqueeze(anchor_idx, 2)}, {d}), "batch_dims", int64_t{1});
  const std::string an = b.fresh("cand_anchors");
  set_attr(b.node("Gather", {anchors, anchor_idx}, {an}), "axis", int64_t{0});
  const std::string boxes = p.decode(d, an, o.weights, o.clip_width, o.clip_height);  // [B, M, 4]

  const std::string nb = p.squeeze(p.slice(p.op("Shape", {deltas}, "s"), 0, 1, 0), 0);
  return emit_classwise_nms(b, boxes, scores, labels, first_label, num_labels, thr, o.nms_threshold, o.max_per_image,
                            nb);
}

PostprocessOutputs emit_classwise_nms(GraphBuilder& b, const std::string& boxes, const std::string& scores,
                                      const std::string& labels, int64_t first_label, int64_t num_labels,
                                      const std::string& thr, double nms_threshold, int64_t max_per_image,
                                      const std::string& num_images) {
  P p{b};
  // Class-wise NMS: scores [B, L, M] with each class seeing only its own candidates.
  std::vector<int64_t> cls;
  for (int64_t c = 0; c < num_labels; ++c) cls.push_back(first_label + c);
  const std::string cls_c = b.const_i64(cls, {1, num_labels, 1}, "classes");
  const std::string mine = p.op("Equal", {p.unsqueeze(labels, 1), cls_c}, "mine");
  const std::string cls_scores = p.op("Where", {mine, p.unsqueeze(scores, 1), p.f(0.f)}, "cls_scores");
  const std::string sel = b.fresh("selected");
  b.node("NonMaxSuppression",
         {boxes, cls_scores, b.scalar_i64(max_per_image), b.scalar_f32(static_cast<float>(nms_threshold)), thr},
         {sel});
  const std::string bsel = p.slice(sel, 0, 1, 1), jsel = p.slice(sel, 2, 3, 1);  // [K, 1]
  const std::string bj = p.concat({bsel, jsel}, 1);
  const std::string det_boxes = p.op("GatherND", {boxes, bj}, "det_boxes");
  const std::string det_scores = p.op("GatherND", {scores, bj}, "det_scores");
  const std::string det_labels = p.op("Add", {p.squeeze(p.slice(sel, 1, 2, 1), 1), b.scalar_i64(first_label)}, "det_labels");
  const std::string det_batch = p.squeeze(bsel, 1);

  const std::string final_idx = p.top_per_image(det_scores, det_batch, num_images, max_per_image);
  PostprocessOutputs out;
  out.boxes = p.op("Gather", {det_boxes, final_idx}, "boxes");
  out.scores = p.op("Gather", {det_scores, final_idx}, "scores");
  out.labels = p.op("Gather", {det_labels, final_idx}, "labels");
  out.batch = p.op("Gather", {det_batch, final_idx}, "batch");
  return out;
}

}  // namespace onnx_export
