// P::decode and P::top_per_image (onnx_nodes.h).
#include "export/onnx_nodes.h"

namespace onnx_export {

std::string P::decode(const std::string& d, const std::string& an, const eng::det::BoxCoderWeights& w, double clip_w,
                      double clip_h) {
  auto col = [&](const std::string& x, int64_t c) { return slice(x, c, c + 1, -1); };  // [..., 1]
  const std::string ax1 = col(an, 0), ay1 = col(an, 1), ax2 = col(an, 2), ay2 = col(an, 3);
  const std::string aw = op("Sub", {ax2, ax1}, "aw"), ah = op("Sub", {ay2, ay1}, "ah");
  const std::string half = f(0.5f);
  const std::string acx = op("Add", {ax1, op("Mul", {half, aw}, "t")}, "acx");
  const std::string acy = op("Add", {ay1, op("Mul", {half, ah}, "t")}, "acy");
  const std::string clampv = f(static_cast<float>(std::log(1000.0 / 16)));
  const std::string dx = op("Div", {col(d, 0), f(static_cast<float>(w.wx))}, "dx");
  const std::string dy = op("Div", {col(d, 1), f(static_cast<float>(w.wy))}, "dy");
  const std::string dw = op("Min", {op("Div", {col(d, 2), f(static_cast<float>(w.ww))}, "t"), clampv}, "dw");
  const std::string dh = op("Min", {op("Div", {col(d, 3), f(static_cast<float>(w.wh))}, "t"), clampv}, "dh");
  const std::string cx = op("Add", {op("Mul", {dx, aw}, "t"), acx}, "cx");
  const std::string cy = op("Add", {op("Mul", {dy, ah}, "t"), acy}, "cy");
  const std::string hw = op("Mul", {half, op("Mul", {op("Exp", {dw}, "t"), aw}, "w")}, "hw");
  const std::string hh = op("Mul", {half, op("Mul", {op("Exp", {dh}, "t"), ah}, "h")}, "hh");
  std::vector<std::string> corners = {op("Sub", {cx, hw}, "x1"), op("Sub", {cy, hh}, "y1"), op("Add", {cx, hw}, "x2"),
                                      op("Add", {cy, hh}, "y2")};
  if (clip_w > 0) {
    const std::string zero = f(0.f);
    for (int c = 0; c < 4; ++c) {
      const std::string hi = f(static_cast<float>(c % 2 == 0 ? clip_w : clip_h));
      corners[static_cast<size_t>(c)] = op("Clip", {corners[static_cast<size_t>(c)], zero, hi}, "clip");
    }
  }
  return concat(corners, -1);
}

std::string P::top_per_image(const std::string& key, const std::string& batch, const std::string& num_images,
                             int64_t cap) {
  return top_per_image_ranked(key, batch, num_images, cap).first;
}

std::pair<std::string, std::string> P::top_per_image_ranked(const std::string& key, const std::string& batch,
                                                            const std::string& num_images, int64_t cap) {
  // Two stable sorts: by key descending, then by image ascending.
  const std::string kcount = slice(op("Shape", {key}, "k"), 0, 1, 0);
  const std::string o1 = topk(key, kcount, 0, true).second;
  const std::string b1 = op("Gather", {batch, o1}, "b1");
  // (TopK needs a numeric input: the image index as float, exact below 2^24 images.)
  const std::string o2 = topk(cast(b1, onnx::TensorProto_DataType_FLOAT), kcount, 0, false).second;
  const std::string order = op("Gather", {o1, o2}, "order");
  const std::string bs = op("Gather", {batch, order}, "bs");
  // Rank within the image: the cumulative count of the image's rows so far (one-hot [K, N]).
  const std::string range = op("Range", {b.scalar_i64(0), num_images, b.scalar_i64(1)}, "images");
  const std::string onehot =
      cast(op("Equal", {unsqueeze(bs, 1), unsqueeze(range, 0)}, "oh"), onnx::TensorProto_DataType_INT64);
  const std::string cum = b.fresh("cum");
  b.node("CumSum", {onehot, b.scalar_i64(0)}, {cum});
  const std::string rank = b.fresh("rank");
  set_attr(b.node("GatherElements", {cum, unsqueeze(bs, 1)}, {rank}), "axis", int64_t{1});
  const std::string r = squeeze(rank, 1);
  const std::string keep = op("LessOrEqual", {r, b.scalar_i64(cap)}, "keep");
  const std::string kept = squeeze(op("NonZero", {keep}, "nz"), 0);
  return {op("Gather", {order, kept}, "top"), op("Gather", {r, kept}, "top_rank")};
}

}  // namespace onnx_export
