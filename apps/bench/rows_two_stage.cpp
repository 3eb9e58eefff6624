// bench_kernels rows: the two-stage (Faster R-CNN R50-FPN) detection utilities at the model's
// inference / training shapes, 800x800 input, batch 2:
//   rpn_proposals         anchors on P2..P6 = 3 (200^2 + 100^2 + 50^2 + 25^2 + 13^2) = 159882;
//                         test 1000 / 1000 and train 2000 / 2000 (pre per level / post).
//   box_head_postprocess  1000 RoIs per image, 91 classes, score 0.05, NMS 0.5, top 100.
//   box_iou_per_image     20 GT x 2020 proposals (2000 + the GT appended) per image.
//   sample_balanced       RPN labels [2, 159882] (256, 0.5): host work (CUDA adds the copies).
// GB/s counts the inputs read once. Each CUDA row is checked against the CPU result first
// (outside the timed function). Matching torchvision rows: tools/bench_torch.py.
#include <cmath>

#include "bench/bench_common.h"
#include "engine/cuda_context.h"
#include "engine/detection_two_stage.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bench {
using namespace eng;
using namespace eng::det;
namespace {

constexpr double kF = 4.0;  // bytes per float
const std::vector<int64_t> kLevels = {3 * 200 * 200, 3 * 100 * 100, 3 * 50 * 50, 3 * 25 * 25, 3 * 13 * 13};
constexpr int64_t kAnchors = 159882;

Tensor f64_all(const std::vector<Tensor>& ts) {
  std::vector<Tensor> flat;
  for (const Tensor& t : ts) flat.push_back(t.cpu().to(DType::f64).reshape({-1}));
  return concat(flat, 0);
}

// Like bench_engine_op for functions with several outputs (flattened into one f64 tensor).
void bench_multi(const Options& o, std::vector<Row>& rows, const std::string& name, const std::string& shape,
                 double bytes, const std::function<std::vector<Tensor>(Device)>& make_inputs,
                 const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn) {
  const bool want_cuda = cuda_rows_possible(o);
  if (!o.cpu && !want_cuda) return;
  std::vector<Tensor> in_cpu = make_inputs(Device::cpu());
  const Tensor ref = f64_all(fn(in_cpu));
  if (o.cpu) {
    Row r = time_it(o, false, [&] { fn(in_cpu); });
    r.name = name, r.device = "cpu", r.shape = shape, r.bytes = bytes;
    rows.push_back(r);
  }
  if (want_cuda) {
    std::vector<Tensor> in_gpu = make_inputs(Device::cuda());
    const double err = tolerance_ratio(f64_all(fn(in_gpu)), ref);
    Row r;
    if (err <= 1.0) r = time_it(o, true, [&] { fn(in_gpu); });
    r.name = name, r.device = "cuda", r.shape = shape, r.bytes = bytes, r.max_err = err;
    r.valid = err <= 1.0;
    rows.push_back(r);
  }
}

// Random boxes: centres uniform in the image, sides between side / 40 and side / 4.
Tensor random_boxes(const Shape& lead, int64_t n, double side, uint64_t seed) {
  Generator g(seed);
  int64_t total = n;
  for (int64_t s : lead) total *= s;
  std::vector<float> v;
  v.reserve(static_cast<size_t>(total * 4));
  for (int64_t i = 0; i < total; ++i) {
    const double cx = g.uniform() * side, cy = g.uniform() * side;
    const double w = side * (0.025 + 0.225 * g.uniform()), h = side * (0.025 + 0.225 * g.uniform());
    v.insert(v.end(), {float(cx - w / 2), float(cy - h / 2), float(cx + w / 2), float(cy + h / 2)});
  }
  Shape s = lead;
  s.push_back(n);
  s.push_back(4);
  return from_vector(v, s);
}

Tensor normal(const Shape& s, double mean, double sd, uint64_t seed) {
  Generator g(seed);
  return (randn(s, g) * sd + mean).to(DType::f32);
}

void rpn_rows(const Options& o, std::vector<Row>& rows) {
  const int64_t B = 2, A = kAnchors;
  auto make = [=](Device dev) {
    return std::vector<Tensor>{normal({B, A}, 0.0, 2.0, 70).to(dev), normal({B, A, 4}, 0.0, 0.3, 71).to(dev),
                               random_boxes({}, A, 800, 72).to(dev)};
  };
  for (int64_t n : {1000, 2000}) {
    ProposalOptions opts;
    opts.pre_nms_top_n = opts.post_nms_top_n = n;
    const std::string shape = "FRCNN 800x800 2x159882 anchors P2-P6, pre " + std::to_string(n) + "/lvl, post " +
                              std::to_string(n) + (n == 1000 ? " (test)" : " (train)");
    bench_multi(o, rows, "rpn_proposals", shape, double(B * A * 5 + A * 4) * kF, make,
                [opts](const std::vector<Tensor>& in) {
                  Proposals p = rpn_proposals(in[0], in[1], in[2], kLevels, 800, 800, opts);
                  return std::vector<Tensor>{p.boxes, p.scores, p.levels, p.counts};
                });
  }
}

void box_head_rows(const Options& o, std::vector<Row>& rows) {
  const int64_t B = 2, per = 1000, R = B * per, C = 91;
  auto make = [=](Device dev) {
    std::vector<int64_t> img;
    for (int64_t r = 0; r < R; ++r) img.push_back(r / per);
    return std::vector<Tensor>{normal({R, C}, 0.0, 2.0, 73).to(dev), normal({R, 4 * C}, 0.0, 0.5, 74).to(dev),
                               random_boxes({}, R, 800, 75).to(dev), from_vector(img, {R}).to(dev)};
  };
  const BoxHeadPostprocessOptions opts;
  bench_multi(o, rows, "box_head_postprocess", "FRCNN 2 img x 1000 RoIs x 91 cls, logits N(0,2), 0.05, NMS 0.5, top 100",
              double(R * 5 * C + R * 4) * kF + double(R) * 8, make, [opts](const std::vector<Tensor>& in) {
                Detections d = box_head_postprocess(in[0], in[1], in[2], in[3], B, 800, 800, opts);
                return std::vector<Tensor>{d.boxes, d.scores, d.labels, d.counts};
              });
}

void iou_rows(const Options& o, std::vector<Row>& rows) {
  const int64_t B = 2, G = 20, N = 2020;
  auto make = [=](Device dev) {
    return std::vector<Tensor>{random_boxes({B}, G, 800, 76).to(dev), from_vector<int64_t>({20, 13}, {B}).to(dev),
                               random_boxes({B}, N, 800, 77).to(dev), from_vector<int64_t>({2020, 2013}, {B}).to(dev)};
  };
  bench_engine_op(o, rows, "box_iou_per_image", "FRCNN RoI matching: 2 img x 20 GT x 2020 proposals f32", 0,
                  double(B * G * N) * kF, make,
                  [](const std::vector<Tensor>& in) { return box_iou_per_image(in[0], in[1], in[2], in[3]); });
}

void sampler_rows(const Options& o, std::vector<Row>& rows) {
  const int64_t B = 2, A = kAnchors;
  auto make = [=](Device dev) {
    Generator g(78);
    std::vector<int64_t> v;
    for (int64_t i = 0; i < B * A; ++i) {
      const double u = g.uniform();
      v.push_back(u < 0.002 ? 1 : (u < 0.9 ? 0 : (u < 0.95 ? -1 : -2)));  // ~300 positives per image
    }
    return std::vector<Tensor>{from_vector(v, {B, A}).to(dev)};
  };
  bench_engine_op(o, rows, "sample_balanced", "RPN 2x159882 labels, 256 per image, 0.5 (host draws)", 0,
                  double(B * A) * 9, make, [](const std::vector<Tensor>& in) {
                    Generator g(79);
                    return sample_balanced(in[0], 256, 0.5, g);
                  });
}

const RegisterRows kRows(65, {
    {"rpn_proposals", "det::rpn_proposals: Faster R-CNN 800x800, batch 2, test and train sizes", rpn_rows},
    {"box_head_postprocess", "det::box_head_postprocess: Faster R-CNN 2 x 1000 RoIs, 91 classes", box_head_rows},
    {"box_iou_per_image", "det::box_iou_per_image: 2 images x 20 GT x 2020 proposals", iou_rows},
    {"sample_balanced", "det::sample_balanced: RPN labels 2 x 159882, (256, 0.5)", sampler_rows},
});

}  // namespace
}  // namespace bench
