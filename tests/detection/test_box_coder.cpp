// box_encode / box_decode: hand values for SSD (10, 10, 5, 5) and RetinaNet (1, 1, 1, 1)
// weights, broadcasting over leading dims, round trips, the decode clamp.
#include <cmath>

#include "engine/detection.h"
#include "test_helpers.h"

using namespace eng;
using namespace eng::det;

namespace {

const BoxCoderWeights kRetina{1, 1, 1, 1};

// n random corner boxes with positive sides: corner U[0, 250), sides U[2, 50), fixed seed.
Tensor random_boxes(int64_t n, uint64_t seed, DType dt = DType::f64) {
  Generator g(seed);
  std::vector<double> v;
  for (int64_t i = 0; i < n; ++i) {
    const double x = g.uniform() * 250, y = g.uniform() * 250, w = 2 + g.uniform() * 48, h = 2 + g.uniform() * 48;
    v.insert(v.end(), {x, y, x + w, y + h});
  }
  return from_vector(v, {n, 4}, TensorOptions(dt));
}

void require_values(const Tensor& t, const std::vector<double>& expect, double margin = 1e-12) {
  std::vector<double> v = t.to_vector<double>();
  REQUIRE(v.size() == expect.size());
  for (size_t i = 0; i < v.size(); ++i) {
    INFO("element " << i);
    REQUIRE(v[i] == Approx(expect[i]).margin(margin));
  }
}

}  // namespace

TEST_CASE("box_encode: hand values, SSD and RetinaNet weights") {
  // Anchor 0 = [0, 0, 10, 10]: centre (5, 5), size 10 x 10.
  // Box 0 = [2, 3, 12, 23]: centre (7, 13), size 10 x 20.
  //   SSD:  tx = 10 (7 - 5) / 10 = 2, ty = 10 (13 - 5) / 10 = 8, tw = 5 ln(10 / 10) = 0,
  //         th = 5 ln(20 / 10) = 3.4657359028
  // Anchor 1 = [10, 20, 30, 60]: centre (20, 40), size 20 x 40.
  // Box 1 = [15, 30, 20, 40]: centre (17.5, 35), size 5 x 10.
  //   SSD:  tx = 10 (-2.5) / 20 = -1.25, ty = 10 (-5) / 40 = -1.25, tw = 5 ln(0.25) = -6.9314718056,
  //         th = 5 ln(0.25) = -6.9314718056
  Tensor anchors = from_vector<double>({0, 0, 10, 10, 10, 20, 30, 60}, {2, 4});
  Tensor boxes = from_vector<double>({2, 3, 12, 23, 15, 30, 20, 40}, {2, 4});
  const double ln2 = std::log(2.0);
  require_values(box_encode(boxes, anchors), {2, 8, 0, 5 * ln2, -1.25, -1.25, -10 * ln2, -10 * ln2});
  // RetinaNet: the same divided by the SSD weights.
  require_values(box_encode(boxes, anchors, kRetina), {0.2, 0.8, 0, ln2, -0.125, -0.125, -2 * ln2, -2 * ln2});
  // Broadcast over a leading batch dim: [2, 2, 4] against [2, 4]; batch 1 swaps the boxes'
  // order, so box [15, 30, 20, 40] meets anchor 0: tx = 10 (17.5 - 5) / 10 = 12.5,
  // ty = 10 (35 - 5) / 10 = 30, tw = 5 ln(5 / 10) = -5 ln 2, th = 5 ln(10 / 10) = 0.
  Tensor batch = from_vector<double>({2, 3, 12, 23, 15, 30, 20, 40, 15, 30, 20, 40, 2, 3, 12, 23}, {2, 2, 4});
  Tensor t = box_encode(batch, anchors);
  REQUIRE(t.sizes() == Shape{2, 2, 4});
  require_values(t.select(0, 0), {2, 8, 0, 5 * ln2, -1.25, -1.25, -10 * ln2, -10 * ln2});
  // Box [2, 3, 12, 23] against anchor 1: tx = 10 (7 - 20) / 20 = -6.5, ty = 10 (13 - 40) / 40
  // = -6.75, tw = 5 ln(10 / 20) = -5 ln 2, th = 5 ln(20 / 40) = -5 ln 2.
  require_values(t.select(0, 1), {12.5, 30, -5 * ln2, 0, -6.5, -6.75, -5 * ln2, -5 * ln2});
  // Float: same numbers to float rounding.
  require_values(box_encode(boxes.to(DType::f32), anchors.to(DType::f32)),
                 {2, 8, 0, 5 * ln2, -1.25, -1.25, -10 * ln2, -10 * ln2}, 1e-5);
}

TEST_CASE("box_decode: hand values and the clamp") {
  Tensor anchors = from_vector<double>({0, 0, 10, 10, 10, 20, 30, 60}, {2, 4});
  const double ln2 = std::log(2.0);
  // Inverse of the encode hand case.
  Tensor deltas = from_vector<double>({2, 8, 0, 5 * ln2, -1.25, -1.25, -10 * ln2, -10 * ln2}, {2, 4});
  require_values(box_decode(deltas, anchors), {2, 3, 12, 23, 15, 30, 20, 40});
  // Zero deltas give the anchors back; RetinaNet weights: deltas (1, -0.5, ln 2, 0) on anchor 0
  // -> centre (5 + 10, 5 - 5) = (15, 0), size (20, 10) -> [5, -5, 25, 5].
  require_values(box_decode(zeros({2, 4}, DType::f64), anchors), {0, 0, 10, 10, 10, 20, 30, 60});
  Tensor rd = from_vector<double>({1, -0.5, ln2, 0, 0, 0, 0, 0}, {2, 4});
  require_values(box_decode(rd, anchors, kRetina), {5, -5, 25, 5, 10, 20, 30, 60});

  // Clamp: tw = th = 50 with weight 5 -> dw = dh = 10 > ln(1000 / 16) = 4.1351665567, so
  // w = h = 10 e^4.135 = 10 1000 / 16 = 625 -> [5 - 312.5, 5 - 312.5, 5 + 312.5, 5 + 312.5].
  // (Unclamped it would be 10 e^10 = 220264.66 wide.) dw below the clamp is untouched.
  Tensor huge = from_vector<double>({0, 0, 50, 50, 0, 0, -50, 5 * ln2}, {2, 4});
  Tensor b = box_decode(huge, anchors);
  // Anchor 1 with dw = -10 (no lower clamp): w = 20 e^-10 = 9.0799e-4; dh = ln 2: h = 80.
  const double tiny = 20 * std::exp(-10.0);
  require_values(b, {-307.5, -307.5, 317.5, 317.5, 20 - tiny / 2, 0, 20 + tiny / 2, 80}, 1e-9);
  // A custom clamp: ln 2 -> w = h = 20 -> [-5, -5, 15, 15].
  require_values(box_decode(huge.narrow(0, 0, 1), anchors.narrow(0, 0, 1), BoxCoderWeights{}, ln2),
                 {-5, -5, 15, 15}, 1e-9);
}

TEST_CASE("box_encode: decode(encode(b)) returns b") {
  const int64_t A = 200;
  Tensor anchors = random_boxes(A, 1);
  Tensor boxes = random_boxes(3 * A, 2).reshape({3, A, 4});
  for (const BoxCoderWeights& w : {BoxCoderWeights{}, kRetina}) {
    Tensor back = box_decode(box_encode(boxes, anchors, w), anchors, w);
    REQUIRE_CLOSE(back, boxes, 1e-10, 1e-12);
    // Float, pixel-sized boxes: 1e-5 relative.
    Tensor f = box_decode(box_encode(boxes.to(DType::f32), anchors.to(DType::f32), w), anchors.to(DType::f32), w);
    REQUIRE_CLOSE(f, boxes, 1e-4, 1e-5);
  }
}

TEST_CASE("box_encode: bad input") {
  Tensor anchors = zeros({5, 4});
  REQUIRE_THROWS_WITH(box_encode(zeros({5, 3}), anchors), Catch::Contains("box_encode: boxes must have last dim 4"));
  REQUIRE_THROWS_WITH(box_encode(zeros({4}), anchors), Catch::Contains("boxes must be [..., A, 4]"));
  REQUIRE_THROWS_WITH(box_encode(zeros({2, 6, 4}), anchors), Catch::Contains("has 6 boxes per row but there are 5"));
  REQUIRE_THROWS_WITH(box_encode(zeros({5, 4}), zeros({5, 4, 1})), Catch::Contains("anchors must be 2-d"));
  REQUIRE_THROWS_WITH(box_encode(zeros({5, 4}), zeros({5, 2})), Catch::Contains("anchors must be [A, 4]"));
  REQUIRE_THROWS_WITH(box_encode(zeros({5, 4}, DType::f64), anchors), Catch::Contains("dtype mismatch"));
  REQUIRE_THROWS_WITH(box_encode(zeros({5, 4}, DType::i32), zeros({5, 4}, DType::i32)),
                      Catch::Contains("expected a f32 or f64 tensor"));
  REQUIRE_THROWS_WITH(box_decode(zeros({5, 4}), anchors, BoxCoderWeights{10, 10, 0, 5}),
                      Catch::Contains("box_decode: weights (10, 10, 0, 5) must all be > 0"));
  REQUIRE_THROWS_WITH(box_decode(zeros({5, 3}), anchors), Catch::Contains("box_decode: deltas must have last dim 4"));
}

TEST_CASE("box_encode: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const int64_t A = 1000;
  Tensor anchors = random_boxes(A, 3, DType::f32);
  Tensor boxes = random_boxes(4 * A, 4, DType::f32).reshape({4, A, 4});
  for (const BoxCoderWeights& w : {BoxCoderWeights{}, kRetina}) {
    Tensor cpu = box_encode(boxes, anchors, w);
    Tensor gpu = box_encode(boxes.cuda(), anchors.cuda(), w);
    REQUIRE(gpu.is_cuda());
    REQUIRE_CLOSE(gpu.cpu(), cpu, test::kElementwiseAtol, test::kElementwiseRtol);
  }
}

TEST_CASE("box_decode: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const int64_t A = 1000;
  Tensor anchors = random_boxes(A, 5, DType::f32);
  // Deltas N(0, 2), some beyond the clamp after division by the weights (|t| up to ~10).
  Generator g(6);
  Tensor deltas = (randn({4, A, 4}, g) * 2.0).to(DType::f32);
  for (const BoxCoderWeights& w : {BoxCoderWeights{}, kRetina}) {
    Tensor cpu = box_decode(deltas, anchors, w);
    Tensor gpu = box_decode(deltas.cuda(), anchors.cuda(), w);
    REQUIRE(gpu.is_cuda());
    REQUIRE_CLOSE(gpu.cpu(), cpu, test::kElementwiseAtol, test::kElementwiseRtol);
  }
}
