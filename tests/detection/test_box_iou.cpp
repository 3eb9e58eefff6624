// box_iou (pairwise) and box_iou_batched (padded GT per image against all anchors).
#include <cmath>

#include "engine/detection.h"
#include "test_helpers.h"

using namespace eng;
using namespace eng::det;

namespace {

// n random corner boxes in [0, 300): corner U[0, 250), sides U[2, 50), fixed seed. Every
// fourth box shares a corner region with the previous one so that many pairs overlap.
Tensor random_boxes(int64_t n, uint64_t seed, DType dt = DType::f32) {
  Generator g(seed);
  std::vector<double> v;
  for (int64_t i = 0; i < n; ++i) {
    double x = g.uniform() * 250, y = g.uniform() * 250;
    if (i % 4 == 3) x = v[v.size() - 4] + 5, y = v[v.size() - 3] + 5;
    const double w = 2 + g.uniform() * 48, h = 2 + g.uniform() * 48;
    v.insert(v.end(), {x, y, x + w, y + h});
  }
  return from_vector(v, {n, 4}, TensorOptions(dt));
}

}  // namespace

TEST_CASE("box_iou: hand values") {
  // a = [0, 0, 2, 2] (area 4) against:
  //   identical                    -> 1
  //   [3, 3, 4, 4] disjoint         -> 0
  //   [2, 0, 4, 2] touching edge    -> intersection width 0 -> 0
  //   [1, 0, 3, 2] half overlap     -> inter 1 x 2 = 2, union 4 + 4 - 2 = 6 -> 1/3
  //   [0.5, 0.5, 1.5, 1.5] inside   -> inter 1, union 4 + 1 - 1 = 4 -> 1/4
  //   [1, 1, 1, 1] zero area inside -> inter 0, union 4 -> 0
  // b = [1, 1, 1, 1] (zero area): against itself the union is 0 -> 0 (not NaN).
  // b = [1, 1, 3, 4] (area 6): vs a: inter [1, 1, 2, 2] = 1, union 4 + 6 - 1 = 9 -> 1/9.
  Tensor a = from_vector<double>({0, 0, 2, 2, 1, 1, 1, 1, 1, 1, 3, 4}, {3, 4});
  Tensor b = from_vector<double>({0, 0, 2, 2, 3, 3, 4, 4, 2, 0, 4, 2, 1, 0, 3, 2, 0.5, 0.5, 1.5, 1.5, 1, 1, 1, 1},
                                 {6, 4});
  Tensor iou = box_iou(a, b);
  REQUIRE(iou.sizes() == Shape{3, 6});
  std::vector<double> v = iou.to_vector<double>();
  const std::vector<double> row0{1, 0, 0, 1.0 / 3, 0.25, 0};
  for (int m = 0; m < 6; ++m) REQUIRE(v[m] == Approx(row0[m]).margin(1e-15));
  for (int m = 0; m < 6; ++m) REQUIRE(v[6 + m] == 0.0);  // the zero-area box overlaps nothing
  REQUIRE(!std::isnan(v[11]));
  // Row 2 = [1, 1, 3, 4]: vs [0,0,2,2] 1/9; vs [3,3,4,4] width min(3,4) - max(1,3) = 0 -> 0;
  // vs [2,0,4,2] inter [2..3]x[1..2] = 1, union 6 + 4 - 1 = 9 -> 1/9; vs [1,0,3,2] inter
  // 2 x 1 = 2, union 6 + 4 - 2 = 8 -> 1/4; vs [0.5,0.5,1.5,1.5] inter 0.5 x 0.5 = 0.25,
  // union 6 + 1 - 0.25 = 6.75 -> 1/27; vs the zero-area box 0.
  REQUIRE(v[12] == Approx(1.0 / 9));
  REQUIRE(v[13] == 0.0);
  REQUIRE(v[14] == Approx(1.0 / 9));
  REQUIRE(v[15] == Approx(0.25));
  REQUIRE(v[16] == Approx(1.0 / 27));
  REQUIRE(v[17] == 0.0);
  // Float gives the same values.
  std::vector<double> f = box_iou(a.to(DType::f32), b.to(DType::f32)).to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) REQUIRE(f[i] == Approx(v[i]).margin(1e-7));
}

TEST_CASE("box_iou: empty sets and bad input") {
  Tensor a = from_vector<float>({0, 0, 1, 1}, {1, 4});
  REQUIRE(box_iou(a, zeros({0, 4})).sizes() == Shape{1, 0});
  REQUIRE(box_iou(zeros({0, 4}), a).sizes() == Shape{0, 1});
  REQUIRE_THROWS_WITH(box_iou(zeros({2, 3}), a), Catch::Contains("box_iou: a must have last dim 4"));
  REQUIRE_THROWS_WITH(box_iou(a, zeros({4})), Catch::Contains("box_iou: b must be 2-d"));
  REQUIRE_THROWS_WITH(box_iou(a, zeros({1, 4}, DType::f64)), Catch::Contains("dtype mismatch"));
  REQUIRE_THROWS_WITH(box_iou(zeros({1, 4}, DType::i64), zeros({1, 4}, DType::i64)),
                      Catch::Contains("expected a f32 or f64 tensor"));
}

TEST_CASE("box_iou_batched: padding rows, zero-GT images and agreement with box_iou") {
  // Image 0: 2 real GT + 1 padding row that holds a real-looking box (must still give 0).
  // Image 1: no GT at all.
  Tensor gt = from_vector<double>({0, 0, 2, 2, 1, 0, 3, 2, 0, 0, 2, 2,  //
                                   0, 0, 2, 2, 0, 0, 2, 2, 0, 0, 2, 2},
                                  {2, 3, 4});
  Tensor counts = from_vector<int64_t>({2, 0}, {2});
  Tensor anchors = from_vector<double>({0, 0, 2, 2, 1, 0, 3, 2, 3, 3, 4, 4, 0.5, 0.5, 1.5, 1.5}, {4, 4});
  Tensor iou = box_iou_batched(gt, counts, anchors);
  REQUIRE(iou.sizes() == Shape{2, 3, 4});
  std::vector<double> v = iou.to_vector<double>();
  // gt 0 = [0,0,2,2]: 1, 1/3, 0, 1/4;  gt 1 = [1,0,3,2]: 1/3, 1, 0, inter 0.5 x 1 = 0.5,
  // union 4 + 1 - 0.5 = 4.5 -> 1/9.
  const std::vector<double> expect{1, 1.0 / 3, 0, 0.25, 1.0 / 3, 1, 0, 1.0 / 9};
  for (size_t i = 0; i < expect.size(); ++i) REQUIRE(v[i] == Approx(expect[i]).margin(1e-15));
  for (size_t i = 8; i < 24; ++i) REQUIRE(v[i] == 0.0);  // padding row and the empty image

  // Larger case against the pairwise op, image by image.
  const int64_t B = 3, G = 7, A = 50;
  Tensor big_gt = random_boxes(B * G, 5).reshape({B, G, 4});
  Tensor big_anchors = random_boxes(A, 6);
  Tensor big_counts = from_vector<int64_t>({7, 3, 0}, {3});
  Tensor out = box_iou_batched(big_gt, big_counts, big_anchors);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t c = std::vector<int64_t>{7, 3, 0}[static_cast<size_t>(b)];
    if (c > 0)
      REQUIRE_CLOSE(out.select(0, b).narrow(0, 0, c), box_iou(big_gt.select(0, b).narrow(0, 0, c), big_anchors), 0.0,
                    0.0);
    if (c < G) REQUIRE_CLOSE(out.select(0, b).narrow(0, c, G - c), zeros({G - c, A}), 0.0, 0.0);
  }
}

TEST_CASE("box_iou_batched: bad input") {
  Tensor gt = zeros({2, 3, 4});
  Tensor counts = from_vector<int64_t>({1, 2}, {2});
  Tensor anchors = zeros({5, 4});
  REQUIRE_THROWS_WITH(box_iou_batched(zeros({2, 3, 5}), counts, anchors), Catch::Contains("gt must have last dim 4"));
  REQUIRE_THROWS_WITH(box_iou_batched(zeros({6, 4}), counts, anchors), Catch::Contains("gt must be 3-d"));
  REQUIRE_THROWS_WITH(box_iou_batched(gt, counts, zeros({5, 2})), Catch::Contains("anchors must have last dim 4"));
  REQUIRE_THROWS_WITH(box_iou_batched(gt, counts, zeros({5, 4}, DType::f64)), Catch::Contains("dtype mismatch"));
  REQUIRE_THROWS_WITH(box_iou_batched(gt, from_vector<int32_t>({1, 2}, {2}), anchors),
                      Catch::Contains("gt_counts must be i64, got i32"));
  REQUIRE_THROWS_WITH(box_iou_batched(gt, from_vector<int64_t>({1, 2, 0}, {3}), anchors),
                      Catch::Contains("gt_counts has 3 entries for 2 images"));
  REQUIRE_THROWS_WITH(box_iou_batched(gt, from_vector<int64_t>({1, 4}, {2}), anchors),
                      Catch::Contains("gt_counts[1] = 4 is outside [0, 3]"));
  REQUIRE_THROWS_WITH(box_iou_batched(gt, from_vector<int64_t>({-1, 0}, {2}), anchors),
                      Catch::Contains("gt_counts[0] = -1"));
}

TEST_CASE("box_iou: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor a = random_boxes(37, 1), b = random_boxes(301, 2);
  Tensor cpu = box_iou(a, b);
  Tensor gpu = box_iou(a.cuda(), b.cuda());
  REQUIRE(gpu.is_cuda());
  REQUIRE_CLOSE(gpu.cpu(), cpu, test::kElementwiseAtol, test::kElementwiseRtol);
  // Batched, with G above the 128-box shared-memory tile and A not a multiple of the block.
  const int64_t B = 4, G = 150, A = 1000;
  Tensor gt = random_boxes(B * G, 3).reshape({B, G, 4});
  Tensor counts = from_vector<int64_t>({150, 129, 1, 0}, {B});
  Tensor anchors = random_boxes(A, 4);
  Tensor bc = box_iou_batched(gt, counts, anchors);
  Tensor bg = box_iou_batched(gt.cuda(), counts.cuda(), anchors.cuda());
  REQUIRE_CLOSE(bg.cpu(), bc, test::kElementwiseAtol, test::kElementwiseRtol);
  // Double on the device too.
  Tensor dc = box_iou(a.to(DType::f64), b.to(DType::f64));
  REQUIRE_CLOSE(box_iou(a.to(DType::f64).cuda(), b.to(DType::f64).cuda()).cpu(), dc, 1e-12, 1e-12);
}
