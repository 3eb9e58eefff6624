// bench_kernels rows: class-wise NMS and the fused detection post-processing at SSD300 and
// RetinaNet inference shapes. GB/s counts the input read once (logits, deltas, anchors; for
// NMS boxes, scores and labels); the work after the first pass depends on how many scores
// pass the threshold, so the data and its pass rate are part of the shape string.
// Each CUDA row is checked against the CPU result first (same counts and labels, boxes and
// scores within the tolerance); the check is outside the timed function.
#include <cmath>
#include <cstdio>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detection.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bench {
using namespace eng;
using namespace eng::det;
namespace {

constexpr double kF = 4.0;  // bytes per float

// All outputs in one f64 CPU tensor (boxes, scores, labels, counts) for tolerance_ratio: a
// label or count that differs is always far outside the tolerance.
Tensor flatten(const Detections& d) {
  return concat({d.boxes.cpu().to(DType::f64).reshape({-1}), d.scores.cpu().to(DType::f64).reshape({-1}),
                 d.labels.cpu().to(DType::f64).reshape({-1}), d.counts.cpu().to(DType::f64)},
                0);
}

// Like bench_engine_op, for functions that return Detections: times the CPU run, checks the
// CUDA result against it (outside the timed function), then times the CUDA run.
void bench_detections(const Options& o, std::vector<Row>& rows, const std::string& name, const std::string& shape,
                      double bytes, const std::function<std::vector<Tensor>(Device)>& make_inputs,
                      const std::function<Detections(const std::vector<Tensor>&)>& fn) {
  const bool want_cuda = cuda_rows_possible(o);
  if (!o.cpu && !want_cuda) return;
  std::vector<Tensor> in_cpu = make_inputs(Device::cpu());
  const Tensor ref = flatten(fn(in_cpu));
  if (o.cpu) {
    Row r = time_it(o, false, [&] { fn(in_cpu); });
    r.name = name, r.device = "cpu", r.shape = shape, r.bytes = bytes;
    rows.push_back(r);
  }
  if (want_cuda) {
    std::vector<Tensor> in_gpu = make_inputs(Device::cuda());
    const double err = tolerance_ratio(flatten(fn(in_gpu)), ref);
    Row r;
    if (err <= 1.0) r = time_it(o, true, [&] { fn(in_gpu); });
    r.name = name, r.device = "cuda", r.shape = shape, r.bytes = bytes, r.max_err = err;
    r.valid = err <= 1.0;
    rows.push_back(r);
  }
}

// Random anchors: centres uniform in the image, sides between side / 20 and side / 2.
Tensor random_anchors(int64_t A, double side, uint64_t seed) {
  Generator g(seed);
  std::vector<float> v;
  v.reserve(static_cast<size_t>(A * 4));
  for (int64_t a = 0; a < A; ++a) {
    const double cx = g.uniform() * side, cy = g.uniform() * side;
    const double w = side * (0.05 + 0.45 * g.uniform()), h = side * (0.05 + 0.45 * g.uniform());
    v.insert(v.end(), {float(cx - w / 2), float(cy - h / 2), float(cx + w / 2), float(cy + h / 2)});
  }
  return from_vector(v, {A, 4});
}

Tensor normal(const Shape& s, double mean, double sd, uint64_t seed) {
  Generator g(seed);
  return (randn(s, g) * sd + mean).to(DType::f32);
}

// ---- nms: SSD300 at batch 32, 4000 candidates per image over 20 classes ----------------------
// Each image has 25 objects (a box and a class); a candidate copies one object's box, moved and
// resized by up to +-15 % of its size, with that object's class 80 % of the time and a random
// class otherwise; scores are U(0, 1). Same-class candidates of one object overlap, so NMS
// suppresses most of them.
void nms_rows(const Options& o, std::vector<Row>& rows) {
  const int64_t images = 32, K = 4000, classes = 20, objects = 25;
  auto make = [=](Device dev) {
    Generator g(60);
    std::vector<float> boxes, scores;
    std::vector<int64_t> labels;
    for (int64_t b = 0; b < images; ++b) {
      std::vector<double> ob;
      std::vector<int64_t> oc;
      for (int64_t k = 0; k < objects; ++k) {
        const double w = 20 + 150 * g.uniform(), h = 20 + 150 * g.uniform();
        const double x = g.uniform() * (300 - w), y = g.uniform() * (300 - h);
        ob.insert(ob.end(), {x, y, w, h});
        oc.push_back(static_cast<int64_t>(g.uniform() * classes));
      }
      for (int64_t k = 0; k < K; ++k) {
        const int64_t j = static_cast<int64_t>(g.uniform() * objects);
        const double* p = &ob[4 * j];
        const double w = p[2] * (0.85 + 0.3 * g.uniform()), h = p[3] * (0.85 + 0.3 * g.uniform());
        const double x = p[0] + p[2] * 0.3 * (g.uniform() - 0.5), y = p[1] + p[3] * 0.3 * (g.uniform() - 0.5);
        boxes.insert(boxes.end(), {float(x), float(y), float(x + w), float(y + h)});
        scores.push_back(float(g.uniform()));
        labels.push_back(g.uniform() < 0.8 ? oc[j] : static_cast<int64_t>(g.uniform() * classes));
      }
    }
    return std::vector<Tensor>{from_vector(boxes, {images, K, 4}).to(dev), from_vector(scores, {images, K}).to(dev),
                               from_vector(labels, {images, K}).to(dev)};
  };
  const char* shape = "32 img x 4000 cand, 20 cls, IoU 0.45, keep 200";
  bench_detections(o, rows, "nms", shape, double(images * K) * (16 + 4 + 8), make,
                   [](const std::vector<Tensor>& in) { return batched_nms(in[0], in[1], in[2], 0.45, 200); });
}

// ---- detect_postprocess -------------------------------------------------------------------------
// SSD300 at batch 32: logits N(0, 1) over 21 classes (about 85 % of the scores pass 0.01, so
// every class fills its 400 candidates: the heaviest case), deltas N(0, 0.5).
// RetinaNet 512 with 91 classes: logits N(-4, 1) (about 15 % pass 0.05), 5 levels, deltas
// N(0, 0.3).
void postprocess_rows(const Options& o, std::vector<Row>& rows) {
  {
    const int64_t images = 32, A = 8732, C = 21;
    auto make = [=](Device dev) {
      return std::vector<Tensor>{normal({images, A, C}, 0.0, 1.0, 61).to(dev),
                                 normal({images, A, 4}, 0.0, 0.5, 62).to(dev),
                                 random_anchors(A, 300, 63).to(dev)};
    };
    const PostprocessOptions opts = PostprocessOptions::ssd();
    const char* shape = "SSD300 32x8732x21, logits N(0,1), 400/cls, keep 200";
    bench_detections(o, rows, "detect_postprocess", shape, double(images * A * (C + 4) + A * 4) * kF, make,
                     [opts](const std::vector<Tensor>& in) { return detect_postprocess(in[0], in[1], in[2], opts); });
  }
  {
    const int64_t images = 16, C = 91;
    PostprocessOptions opts = PostprocessOptions::retinanet();
    opts.level_sizes = {64 * 64 * 9, 32 * 32 * 9, 16 * 16 * 9, 8 * 8 * 9, 4 * 4 * 9};
    const int64_t A = 49104;
    auto make = [=](Device dev) {
      return std::vector<Tensor>{normal({images, A, C}, -4.0, 1.0, 64).to(dev),
                                 normal({images, A, 4}, 0.0, 0.3, 65).to(dev),
                                 random_anchors(A, 512, 66).to(dev)};
    };
    bench_detections(o, rows, "detect_postprocess", "RetinaNet512 16x49104x91, N(-4,1), 1000/lvl, keep 300",
                     double(images * A * (C + 4) + A * 4) * kF, make,
                     [opts](const std::vector<Tensor>& in) { return detect_postprocess(in[0], in[1], in[2], opts); });
  }
}

const RegisterRows kRows(60, {
    {"nms", "det::batched_nms: 32 images x 4000 clustered candidates, 20 classes", nms_rows},
    {"detect_postprocess", "det::detect_postprocess: SSD300 batch 32 (softmax) and RetinaNet 512 (sigmoid)",
     postprocess_rows},
});

}  // namespace
}  // namespace bench
