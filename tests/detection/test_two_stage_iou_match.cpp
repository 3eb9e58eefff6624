// det::box_iou_per_image (per-image GT x proposal IoU, padded) and the Faster R-CNN matchers:
// match_retinanet with (0.7, 0.3, low-quality) and (0.5, 0.5, none) against torchvision's
// Matcher on the committed fixture (ties from duplicate proposals, between-threshold -2),
// plus counts, padding, bad input and CUDA against the CPU.
#include <random>

#include "engine/cuda_context.h"
#include "engine/detection_two_stage.h"
#include "engine/io/safetensors.h"
#include "test_helpers.h"

using namespace eng;

namespace {
const std::string kFixture = std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/two_stage_det.safetensors";

Tensor random_boxes(int64_t B, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<double> v;
  for (int64_t i = 0; i < B * n; ++i) {
    const double x = 50 * u(rng), y = 50 * u(rng);
    v.insert(v.end(), {x, y, x + 1 + 30 * u(rng), y + 1 + 30 * u(rng)});
  }
  return from_vector(v, {B, n, 4}, TensorOptions(DType::f64));
}
}  // namespace

TEST_CASE("box_iou_per_image: per-image IoU with padding") {
  Tensor a = random_boxes(2, 4, 1), b = random_boxes(2, 6, 2);
  Tensor ac = from_vector<int64_t>({4, 2}, {2}), bc = from_vector<int64_t>({5, 0}, {2});
  Tensor iou = det::box_iou_per_image(a, ac, b, bc);
  REQUIRE(iou.sizes() == Shape{2, 4, 6});
  REQUIRE(iou.dtype() == DType::f64);
  Tensor ref0 = det::box_iou(a.select(0, 0), b.select(0, 0));  // [4, 6]
  const std::vector<double> got = iou.to_vector<double>(), r0 = ref0.to_vector<double>();
  for (int64_t g = 0; g < 4; ++g)
    for (int64_t n = 0; n < 6; ++n) REQUIRE(got[g * 6 + n] == (n < 5 ? r0[g * 6 + n] : 0.0));
  for (size_t k = 24; k < 48; ++k) REQUIRE(got[k] == 0.0);  // image 1 has no proposal
  // A hand-checked pair: [0,0,2,2] and [1,1,3,3] overlap by 1 of 7.
  Tensor x = from_vector<double>({0, 0, 2, 2}, {1, 1, 4}), y = from_vector<double>({1, 1, 3, 3}, {1, 1, 4});
  Tensor one = from_vector<int64_t>({1}, {1});
  REQUIRE(det::box_iou_per_image(x, one, y, one).to_vector<double>()[0] == Approx(1.0 / 7.0));
  // Empty sets.
  REQUIRE(det::box_iou_per_image(zeros({2, 0, 4}), zeros({2}, TensorOptions(DType::i64)), zeros({2, 3, 4}),
                                 zeros({2}, TensorOptions(DType::i64)))
              .sizes() == Shape{2, 0, 3});
}

TEST_CASE("box_iou_per_image: bad input") {
  Tensor a = zeros({2, 3, 4}), b = zeros({2, 5, 4});
  Tensor c2 = from_vector<int64_t>({1, 1}, {2});
  REQUIRE_THROWS_WITH(det::box_iou_per_image(a, from_vector<int64_t>({4, 1}, {2}), b, c2),
                      Catch::Contains("a_counts[0] = 4 is outside [0, 3]"));
  REQUIRE_THROWS_WITH(det::box_iou_per_image(a, c2, b, from_vector<int64_t>({1, -1}, {2})),
                      Catch::Contains("b_counts[1] = -1"));
  REQUIRE_THROWS_WITH(det::box_iou_per_image(a, c2, zeros({3, 5, 4}), c2), Catch::Contains("images"));
  REQUIRE_THROWS_WITH(det::box_iou_per_image(a, c2, zeros({2, 5, 3}), c2), Catch::Contains("[B, *, 4]"));
  REQUIRE_THROWS_WITH(det::box_iou_per_image(a, zeros({2}), b, c2), Catch::Contains("a_counts must be i64"));
  REQUIRE_THROWS_WITH(det::box_iou_per_image(a, c2, b.to(DType::f64), c2), Catch::Contains("box_iou_per_image"));
}

TEST_CASE("match_retinanet with the Faster R-CNN thresholds equals torchvision's Matcher (fixture)") {
  const io::SafetensorsFile f = io::load_safetensors(kFixture);
  const Tensor gc = f.get("match_gt_counts"), pc = f.get("match_proposal_counts");
  const Tensor iou = det::box_iou_per_image(f.get("match_gt"), gc, f.get("match_proposals"), pc);
  const std::vector<int64_t> n = pc.to_vector<int64_t>();
  const int64_t N = iou.size(2);
  auto check = [&](const Tensor& got, const Tensor& ref) {
    const std::vector<int64_t> g = got.to_vector<int64_t>(), r = ref.to_vector<int64_t>();
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t j = 0; j < n[b]; ++j) {
        INFO("image " << b << " proposal " << j);
        REQUIRE(g[b * N + j] == r[b * N + j]);
      }
  };
  const Tensor rpn = det::match_retinanet(iou, gc, 0.7, 0.3, true);
  const Tensor roi = det::match_retinanet(iou, gc, 0.5, 0.5, false);
  check(rpn, f.get("match_rpn"));
  check(roi, f.get("match_roi"));
  // The fixture exercises what it claims: between-threshold entries, and two proposals equal
  // to GT 0 of each image (IoU 1) that both take it.
  const std::vector<int64_t> r = f.get("match_rpn").to_vector<int64_t>();
  REQUIRE(std::count(r.begin(), r.end(), det::kIgnore) > 0);
  REQUIRE(r[n[0] - 1] == 0);
  REQUIRE(r[n[0] - 2] == 0);
  const std::vector<int64_t> o = f.get("match_roi").to_vector<int64_t>();
  REQUIRE(std::count(o.begin(), o.end(), det::kIgnore) == 0);
}

TEST_CASE("box_iou_per_image: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor a = random_boxes(3, 7, 3).to(dt), b = random_boxes(3, 300, 4).to(dt);
    Tensor ac = from_vector<int64_t>({7, 0, 3}, {3}), bc = from_vector<int64_t>({300, 12, 150}, {3});
    Tensor ref = det::box_iou_per_image(a, ac, b, bc);
    Tensor got = det::box_iou_per_image(a.cuda(), ac.cuda(), b.cuda(), bc.cuda());
    REQUIRE(got.is_cuda());
    REQUIRE_CLOSE(got.cpu(), ref, 1e-6, 1e-6);
    // Counts outside the range are clamped on the GPU (no host sync to check them).
    Tensor bad_a = from_vector<int64_t>({99, -4, 3}, {3});
    Tensor clamped = det::box_iou_per_image(a.cuda(), bad_a.cuda(), b.cuda(), bc.cuda()).cpu();
    REQUIRE_CLOSE(clamped, det::box_iou_per_image(a, from_vector<int64_t>({7, 0, 3}, {3}), b, bc), 1e-6, 1e-6);
  }
}
