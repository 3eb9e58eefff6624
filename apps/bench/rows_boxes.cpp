// bench_kernels rows: the box utilities (anchor generation, batched IoU, box coding) at
// SSD300 / RetinaNet training shapes. All are memory-bound: GB/s counts the minimum bytes
// (inputs read once, output written once).
#include <cmath>
#include <cstdio>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/detection.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bench {
using namespace eng;
using namespace eng::det;
namespace {

constexpr double kF = 4.0;  // bytes per float

// SSD300 VOC priors: maps 38..1, steps 8..300, sizes {min, sqrt(min max)}, ratios 1, 2, 1/2 (, 3, 1/3).
std::vector<PriorLevel> ssd300_levels() {
  const int64_t maps[] = {38, 19, 10, 5, 3, 1};
  const double steps[] = {8, 16, 32, 64, 100, 300};
  const double mins[] = {30, 60, 111, 162, 213, 264}, maxs[] = {60, 111, 162, 213, 264, 315};
  const bool three[] = {false, true, true, true, false, false};
  std::vector<PriorLevel> levels;
  for (int k = 0; k < 6; ++k) {
    PriorLevel l;
    l.fmap_h = l.fmap_w = maps[k];
    l.step_h = l.step_w = steps[k];
    l.sizes = {mins[k], std::sqrt(mins[k] * maxs[k])};
    l.ratios = {1, 2, 0.5};
    if (three[k]) l.ratios.insert(l.ratios.end(), {3, 1.0 / 3});
    levels.push_back(l);
  }
  return levels;
}

std::vector<PriorLevel> retinanet_levels() {
  std::vector<PriorLevel> levels;
  for (int k = 0; k < 5; ++k) {
    PriorLevel l;
    l.fmap_h = l.fmap_w = 64 >> k;
    l.step_h = l.step_w = 8 << k;
    const double s = 32 << k;
    l.sizes = {s, s * std::pow(2.0, 1.0 / 3), s * std::pow(2.0, 2.0 / 3)};
    l.ratios = {0.5, 1, 2};
    l.offset = 0;
    levels.push_back(l);
  }
  return levels;
}

PriorOptions cross_product() {
  PriorOptions o;
  o.order = PriorOrder::CrossProduct;
  return o;
}

// n random corner boxes inside an image of side `side` (sides 4 .. side / 3).
Tensor random_boxes(const Shape& shape, double side, uint64_t seed) {
  Generator g(seed);
  const int64_t n = shape_numel(shape) / 4;
  std::vector<float> v;
  v.reserve(static_cast<size_t>(n * 4));
  for (int64_t i = 0; i < n; ++i) {
    const double w = 4 + g.uniform() * side / 3, h = 4 + g.uniform() * side / 3;
    const double x = g.uniform() * (side - w), y = g.uniform() * (side - h);
    v.insert(v.end(), {float(x), float(y), float(x + w), float(y + h)});
  }
  return from_vector(v, shape);
}

void prior_rows(const Options& o, std::vector<Row>& rows) {
  const auto levels = ssd300_levels();
  const double A = static_cast<double>(num_priors(levels, PriorOrder::MultiBox));
  bench_engine_op(o, rows, "multibox_prior", "SSD300 8732 anchors (tiny: launch-bound)", 0, A * 4 * kF,
                  [](Device d) { return std::vector<Tensor>{zeros({1}, TensorOptions().device(d))}; },
                  [levels](const std::vector<Tensor>& in) {
                    return multibox_prior(levels, 300, 300, PriorOptions{}, in[0].device());
                  });
}

void iou_rows(const Options& o, std::vector<Row>& rows) {
  const int64_t B = 32, G = 20;
  Tensor anchors = multibox_prior(ssd300_levels(), 300, 300, PriorOptions{});
  const int64_t A = anchors.size(0);
  Generator g(3);
  std::vector<int64_t> counts(static_cast<size_t>(B));
  for (auto& c : counts) c = 1 + static_cast<int64_t>(g.uniform() * G);  // 1 .. 20 real GT
  Tensor gt = random_boxes({B, G, 4}, 300, 4), cnt = from_vector(counts, {B});
  const double bytes = (double(B) * G * A + A * 4.0 + B * G * 4.0) * kF + B * 8.0;
  bench_engine_op(o, rows, "box_iou", "batched 32 img x 20 GT x 8732 anchors f32", 0, bytes,
                  [=](Device d) { return std::vector<Tensor>{gt.to(d), cnt.to(d), anchors.to(d)}; },
                  [](const std::vector<Tensor>& in) { return box_iou_batched(in[0], in[1], in[2]); });
}

// Encode or decode, at SSD300 batch 32 and RetinaNet 512 batch 16.
void coder_rows(const Options& o, std::vector<Row>& rows, bool decode) {
  struct CoderShape {
    const char* label;
    int64_t B;
    Tensor anchors;
    BoxCoderWeights w;
    double side;
  };
  const std::vector<CoderShape> shapes{
      {"32x8732 (SSD300), weights 10,10,5,5 f32", 32, multibox_prior(ssd300_levels(), 300, 300, PriorOptions{}),
       BoxCoderWeights{}, 300},
      {"16x49104 (RetinaNet 512), weights 1 f32", 16, multibox_prior(retinanet_levels(), 512, 512, cross_product()),
       BoxCoderWeights{1, 1, 1, 1}, 512},
  };
  for (const CoderShape& s : shapes) {
    const int64_t A = s.anchors.size(0);
    const double n = double(s.B) * A;
    const double bytes = (2 * n * 4 + A * 4.0) * kF;
    Generator g(6);
    Tensor boxes = decode ? Tensor() : random_boxes({s.B, A, 4}, s.side, 5);
    Tensor deltas = decode ? randn({s.B, A, 4}, g) * 0.5 : Tensor();
    Tensor anchors = s.anchors;
    const BoxCoderWeights w = s.w;
    if (!decode) {
      bench_engine_op(o, rows, "box_encode", s.label, 0, bytes,
                      [=](Device d) { return std::vector<Tensor>{boxes.to(d), anchors.to(d)}; },
                      [w](const std::vector<Tensor>& in) { return box_encode(in[0], in[1], w); });
    } else {
      bench_engine_op(o, rows, "box_decode", s.label, 0, bytes,
                      [=](Device d) { return std::vector<Tensor>{deltas.to(d), anchors.to(d)}; },
                      [w](const std::vector<Tensor>& in) { return box_decode(in[0], in[1], w); });
    }
  }
}

const RegisterRows kRows(40, {
    {"multibox_prior", "det::multibox_prior, SSD300 VOC anchors (8732 boxes)", prior_rows},
    {"box_iou", "det::box_iou_batched, 32 images x 20 padded GT x 8732 SSD300 anchors", iou_rows},
    {"box_encode", "det::box_encode, SSD300 at batch 32 and RetinaNet 512 at batch 16",
     [](const Options& o, std::vector<Row>& rows) { coder_rows(o, rows, false); }},
    {"box_decode", "det::box_decode (clamped), SSD300 at batch 32 and RetinaNet 512 at batch 16",
     [](const Options& o, std::vector<Row>& rows) { coder_rows(o, rows, true); }},
});

}  // namespace
}  // namespace bench
