// emit_postprocess (onnx_postprocess.h).
#include "export/onnx_postprocess.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace onnx_export {

namespace {

struct P {
  GraphBuilder& b;
  std::string op(const std::string& t, const std::vector<std::string>& in, const std::string& hint) {
    return b.op(t, in, hint);
  }
  std::string slice(const std::string& x, int64_t start, int64_t end, int64_t axis) {
    return op("Slice", {x, b.const_i64({start}), b.const_i64({end}), b.const_i64({axis})}, "slice");
  }
  std::string reshape(const std::string& x, const std::vector<int64_t>& shape) {
    return op("Reshape", {x, b.const_i64(shape)}, "reshape");
  }
  std::string unsqueeze(const std::string& x, int64_t axis) { return op("Unsqueeze", {x, b.const_i64({axis})}, "unsq"); }
  std::string squeeze(const std::string& x, int64_t axis) { return op("Squeeze", {x, b.const_i64({axis})}, "sq"); }
  std::string concat(const std::vector<std::string>& xs, int64_t axis) {
    const std::string y = b.fresh("cat");
    set_attr(b.node("Concat", xs, {y}), "axis", axis);
    return y;
  }
  // values, indices of TopK along `axis` (k a 1-element int64 tensor name).
  std::pair<std::string, std::string> topk(const std::string& x, const std::string& k, int64_t axis, bool largest) {
    const std::string v = b.fresh("topv"), i = b.fresh("topi");
    onnx::NodeProto* n = b.node("TopK", {x, k}, {v, i});
    set_attr(n, "axis", axis);
    set_attr(n, "largest", int64_t{largest});
    set_attr(n, "sorted", int64_t{1});
    return {v, i};
  }
  std::string f(float v) { return b.scalar_f32(v); }
  std::string cast(const std::string& x, int32_t to) {
    const std::string y = b.fresh("cast");
    set_attr(b.node("Cast", {x}, {y}), "to", int64_t{to});
    return y;
  }
};

}  // namespace

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
  auto col = [&](const std::string& x, int64_t c) { return p.slice(x, c, c + 1, 2); };  // [B, M, 1]
  const std::string ax1 = col(an, 0), ay1 = col(an, 1), ax2 = col(an, 2), ay2 = col(an, 3);
  const std::string aw = p.op("Sub", {ax2, ax1}, "aw"), ah = p.op("Sub", {ay2, ay1}, "ah");
  const std::string half = p.f(0.5f);
  const std::string acx = p.op("Add", {ax1, p.op("Mul", {half, aw}, "t")}, "acx");
  const std::string acy = p.op("Add", {ay1, p.op("Mul", {half, ah}, "t")}, "acy");
  const std::string clampv = p.f(static_cast<float>(std::log(1000.0 / 16)));
  const std::string dx = p.op("Div", {col(d, 0), p.f(static_cast<float>(o.weights.wx))}, "dx");
  const std::string dy = p.op("Div", {col(d, 1), p.f(static_cast<float>(o.weights.wy))}, "dy");
  const std::string dw = p.op("Min", {p.op("Div", {col(d, 2), p.f(static_cast<float>(o.weights.ww))}, "t"), clampv}, "dw");
  const std::string dh = p.op("Min", {p.op("Div", {col(d, 3), p.f(static_cast<float>(o.weights.wh))}, "t"), clampv}, "dh");
  const std::string cx = p.op("Add", {p.op("Mul", {dx, aw}, "t"), acx}, "cx");
  const std::string cy = p.op("Add", {p.op("Mul", {dy, ah}, "t"), acy}, "cy");
  const std::string hw = p.op("Mul", {half, p.op("Mul", {p.op("Exp", {dw}, "t"), aw}, "w")}, "hw");
  const std::string hh = p.op("Mul", {half, p.op("Mul", {p.op("Exp", {dh}, "t"), ah}, "h")}, "hh");
  std::vector<std::string> corners = {p.op("Sub", {cx, hw}, "x1"), p.op("Sub", {cy, hh}, "y1"),
                                      p.op("Add", {cx, hw}, "x2"), p.op("Add", {cy, hh}, "y2")};
  if (o.clip_width > 0) {
    const std::string zero = p.f(0.f);
    for (int c = 0; c < 4; ++c) {
      const std::string hi = p.f(static_cast<float>(c % 2 == 0 ? o.clip_width : o.clip_height));
      corners[c] = p.op("Clip", {corners[c], zero, hi}, "clip");
    }
  }
  const std::string boxes = p.concat(corners, 2);  // [B, M, 4]

  // Class-wise NMS: scores [B, L, M] with each class seeing only its own candidates.
  std::vector<int64_t> cls;
  for (int64_t c = 0; c < num_labels; ++c) cls.push_back(first_label + c);
  const std::string cls_c = b.const_i64(cls, {1, num_labels, 1}, "classes");
  const std::string mine = p.op("Equal", {p.unsqueeze(labels, 1), cls_c}, "mine");
  const std::string cls_scores = p.op("Where", {mine, p.unsqueeze(scores, 1), p.f(0.f)}, "cls_scores");
  const std::string sel = b.fresh("selected");
  b.node("NonMaxSuppression",
         {boxes, cls_scores, b.scalar_i64(o.max_per_image), b.scalar_f32(static_cast<float>(o.nms_threshold)), thr},
         {sel});
  const std::string bsel = p.slice(sel, 0, 1, 1), jsel = p.slice(sel, 2, 3, 1);  // [K, 1]
  const std::string bj = p.concat({bsel, jsel}, 1);
  const std::string det_boxes = p.op("GatherND", {boxes, bj}, "det_boxes");
  const std::string det_scores = p.op("GatherND", {scores, bj}, "det_scores");
  const std::string det_labels = p.op("Add", {p.squeeze(p.slice(sel, 1, 2, 1), 1), b.scalar_i64(first_label)}, "det_labels");
  const std::string det_batch = p.squeeze(bsel, 1);

  // Order: by score descending, then (stably) by image ascending.
  const std::string kcount = p.slice(p.op("Shape", {det_scores}, "k"), 0, 1, 0);
  const std::string o1 = p.topk(det_scores, kcount, 0, true).second;
  const std::string b1 = p.op("Gather", {det_batch, o1}, "b1");
  const std::string o2 = p.topk(p.cast(b1, onnx::TensorProto_DataType_FLOAT), kcount, 0, false).second;
  // (TopK needs a numeric input: cast the batch index to float; exact below 2^24 images.)
  const std::string order = p.op("Gather", {o1, o2}, "order");
  const std::string bs = p.op("Gather", {det_batch, order}, "bs");
  // Rank within the image: cumulative count of the image's rows so far.
  const std::string nb = p.squeeze(p.slice(p.op("Shape", {deltas}, "s"), 0, 1, 0), 0);
  const std::string range = p.op("Range", {b.scalar_i64(0), nb, b.scalar_i64(1)}, "images");
  const std::string onehot =
      p.cast(p.op("Equal", {p.unsqueeze(bs, 1), p.unsqueeze(range, 0)}, "oh"), onnx::TensorProto_DataType_INT64);
  const std::string cum = b.fresh("cum");
  b.node("CumSum", {onehot, b.scalar_i64(0)}, {cum});
  const std::string rank = b.fresh("rank");
  set_attr(b.node("GatherElements", {cum, p.unsqueeze(bs, 1)}, {rank}), "axis", int64_t{1});
  const std::string keep = p.op("LessOrEqual", {p.squeeze(rank, 1), b.scalar_i64(o.max_per_image)}, "keep");
  const std::string kept = p.squeeze(p.op("NonZero", {keep}, "nz"), 0);
  const std::string final_idx = p.op("Gather", {order, kept}, "final");
  PostprocessOutputs out;
  out.boxes = p.op("Gather", {det_boxes, final_idx}, "boxes");
  out.scores = p.op("Gather", {det_scores, final_idx}, "scores");
  out.labels = p.op("Gather", {det_labels, final_idx}, "labels");
  out.batch = p.op("Gather", {det_batch, final_idx}, "batch");
  return out;
}

}  // namespace onnx_export
