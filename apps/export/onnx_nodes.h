// Small builders of ONNX node patterns shared by the post-processing graphs
// (onnx_postprocess.cpp, onnx_two_stage.cpp): slices, reshapes, TopK, casts, the box decode,
// and the per-image top-n selection.
#pragma once
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "engine/detection.h"
#include "export/onnx_builder.h"

namespace onnx_export {

struct P {
  // (b: the graph being built; every method adds nodes and returns the output name.)
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

  // Corner boxes from deltas [..., 4] against anchors / proposals [..., 4] (same shape):
  // dx = tx / wx, ..., dw = min(tw / ww, ln(1000 / 16)); centre = a_centre + d a_size, size =
  // exp(dw) a_size; clipped to [0, clip_w] x [0, clip_h] when clip_w > 0 (kernels/box_math.h).
  std::string decode(const std::string& d, const std::string& an, const eng::det::BoxCoderWeights& w, double clip_w,
                     double clip_h);
  // Row indices of K candidates (`key` [K] f32, `batch` [K] i64) ordered by image ascending,
  // then key descending (equal keys: the earlier row first: TopK breaks ties by the lower
  // index), keeping at most `cap` per image. `num_images`: a scalar i64.
  std::string top_per_image(const std::string& key, const std::string& batch, const std::string& num_images,
                            int64_t cap);
  // The same, and the kept rows' 1-based rank within their image (i64 [kept]).
  std::pair<std::string, std::string> top_per_image_ranked(const std::string& key, const std::string& batch,
                                                           const std::string& num_images, int64_t cap);
};

}  // namespace onnx_export
