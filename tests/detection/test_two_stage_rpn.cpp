// det::rpn_proposals: torchvision's RegionProposalNetwork.filter_proposals on the committed
// fixture (tools/make_two_stage_det_fixture.py), hand-built cases (per-level NMS, per-level
// top-k and its tie rule, clip, min size, score threshold), edge cases (more proposals than
// anchors, all boxes tiny, an empty level, B = 2 with different counts), bad input, and CUDA
// against the CPU.
#include <cmath>
#include <limits>
#include <random>

#include "engine/cuda_context.h"
#include "engine/detection_two_stage.h"
#include "engine/io/safetensors.h"
#include "test_helpers.h"

using namespace eng;
using det::ProposalOptions;
using det::Proposals;

namespace {

const std::string kFixture = std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/two_stage_det.safetensors";
const std::vector<int64_t> kFixtureLevels = {240, 60, 15};

std::vector<int64_t> i64s(const Tensor& t) { return t.cpu().to_vector<int64_t>(); }

void check_fixture_case(const std::string& p, const ProposalOptions& o, DType dtype, double atol, double rtol,
                        const std::vector<int64_t>& levels = kFixtureLevels) {
  const io::SafetensorsFile f = io::load_safetensors(kFixture);
  Proposals got = det::rpn_proposals(f.get(p + "_objectness").to(dtype), f.get(p + "_deltas").to(dtype),
                                     f.get(p + "_anchors").to(dtype), levels, {{64, 80}, {50, 70}}, o);
  REQUIRE(i64s(got.counts) == i64s(f.get(p + "_counts")));
  REQUIRE(i64s(got.levels) == i64s(f.get(p + "_levels")));
  REQUIRE_CLOSE(got.scores.to(DType::f64), f.get(p + "_scores"), atol, rtol);
  REQUIRE_CLOSE(got.boxes.to(DType::f64), f.get(p + "_boxes"), atol, rtol);
}

ProposalOptions opts(int64_t pre, int64_t post, double nms, double min_size, double score) {
  ProposalOptions o;
  o.pre_nms_top_n = pre, o.post_nms_top_n = post, o.nms_threshold = nms, o.min_size = min_size;
  o.score_threshold = score;
  return o;
}

Tensor f64(const std::vector<double>& v, const Shape& s) { return from_vector(v, s, TensorOptions(DType::f64)); }

}  // namespace

TEST_CASE("rpn_proposals: torchvision filter_proposals (fixture)") {
  // Clip sizes (h, w): (64, 80) and (50, 70).
  // Case 1: pre 50 per level (the last level has 15 anchors), post 40, NMS 0.7, defaults.
  // Case 2: pre 30, post 60 (fewer survivors than that), NMS 0.5, min_size 2, score 0.8.
  // Case 3: levels 200 / 0 / 60 (an empty level), pre 1000 (more than every level), post 500.
  SECTION("f64") {
    check_fixture_case("rpn1", opts(50, 40, 0.7, 1e-3, 0.0), DType::f64, 1e-9, 1e-12);
    check_fixture_case("rpn2", opts(30, 60, 0.5, 2.0, 0.8), DType::f64, 1e-9, 1e-12);
    check_fixture_case("rpn3", opts(1000, 500, 0.7, 1e-3, 0.0), DType::f64, 1e-9, 1e-12, {200, 0, 60});
  }
  SECTION("f32") {
    check_fixture_case("rpn1", opts(50, 40, 0.7, 1e-3, 0.0), DType::f32, 1e-4, 1e-5);
    check_fixture_case("rpn2", opts(30, 60, 0.5, 2.0, 0.8), DType::f32, 1e-4, 1e-5);
    check_fixture_case("rpn3", opts(1000, 500, 0.7, 1e-3, 0.0), DType::f32, 1e-4, 1e-5, {200, 0, 60});
  }
}

TEST_CASE("rpn_proposals: NMS is per level, top-k per level with ties by anchor index") {
  // Level 0: anchors 0 and 1 are the same box (IoU 1), anchor 2 is far away. Level 1: anchor
  // 3 is the same box as anchor 0. Zero deltas: boxes are the anchors.
  Tensor anchors = f64({0, 0, 10, 10, 0, 0, 10, 10, 20, 20, 30, 30, 0, 0, 10, 10}, {4, 4});
  Tensor deltas = zeros({1, 4, 4}, TensorOptions(DType::f64));
  Tensor logits = f64({1.0, 2.0, 0.5, 0.0}, {1, 4});
  Proposals p = det::rpn_proposals(logits, deltas, anchors, {3, 1}, 100, 100, opts(10, 10, 0.7, 1e-3, 0.0));
  REQUIRE(i64s(p.counts) == std::vector<int64_t>{3});
  // anchor 1 (score sig(2)) suppresses anchor 0 within level 0; anchor 3 (level 1) survives.
  REQUIRE(i64s(p.levels) == std::vector<int64_t>({0, 0, 1, -1, -1, -1, -1, -1, -1, -1}));
  const std::vector<double> s = p.scores.to_vector<double>();
  REQUIRE(s[0] == Approx(1 / (1 + std::exp(-2.0))));
  REQUIRE(s[1] == Approx(1 / (1 + std::exp(-0.5))));
  REQUIRE(s[2] == Approx(0.5));
  REQUIRE(s[3] == 0.0);

  // Ties: three equal logits in one level, pre_nms_top_n 2 keeps the two lower anchor indices.
  Tensor far = f64({0, 0, 5, 5, 20, 20, 25, 25, 40, 40, 45, 45}, {3, 4});
  Proposals t = det::rpn_proposals(f64({1, 1, 1}, {1, 3}), zeros({1, 3, 4}, TensorOptions(DType::f64)), far, {3},
                                   100, 100, opts(2, 5, 0.7, 1e-3, 0.0));
  REQUIRE(i64s(t.counts) == std::vector<int64_t>{2});
  std::vector<double> b = t.boxes.to_vector<double>();
  REQUIRE(std::vector<double>(b.begin(), b.begin() + 8) == std::vector<double>({0, 0, 5, 5, 20, 20, 25, 25}));
}

TEST_CASE("rpn_proposals: clip, min size and score threshold") {
  // Anchor 0 sticks out of a 50 x 40 (h x w) image and is clipped; anchor 1 lies left of the
  // image, so its clipped width is 0 and min_size drops it; anchor 2 has score sig(-3) < 0.1.
  Tensor anchors = f64({30, -5, 60, 20, -20, 0, -10, 10, 0, 0, 10, 10}, {3, 4});
  Tensor deltas = zeros({1, 3, 4}, TensorOptions(DType::f64));
  Proposals p = det::rpn_proposals(f64({1, 2, -3}, {1, 3}), deltas, anchors, {3}, 50, 40,
                                   opts(10, 10, 0.7, 1e-3, 0.1));
  REQUIRE(i64s(p.counts) == std::vector<int64_t>{1});
  std::vector<double> b = p.boxes.to_vector<double>();
  REQUIRE(std::vector<double>(b.begin(), b.begin() + 4) == std::vector<double>({30, 0, 40, 20}));
  // The same with score threshold 0: anchor 2 comes back, anchor 1 is still too small.
  Proposals q = det::rpn_proposals(f64({1, 2, -3}, {1, 3}), deltas, anchors, {3}, 50, 40,
                                   opts(10, 10, 0.7, 1e-3, 0.0));
  REQUIRE(i64s(q.counts) == std::vector<int64_t>{2});
  // Decode with weights (1, 1, 1, 1): dx = 0.5 moves the centre by half the width.
  Tensor d1 = f64({0.5, 0, 0, 0}, {1, 1, 4});
  Proposals r = det::rpn_proposals(f64({0}, {1, 1}), d1, f64({0, 0, 10, 10}, {1, 4}), {1}, 100, 100,
                                   opts(10, 10, 0.7, 1e-3, 0.0));
  std::vector<double> rb = r.boxes.to_vector<double>();
  REQUIRE(std::vector<double>(rb.begin(), rb.begin() + 4) == std::vector<double>({5, 0, 15, 10}));
}

TEST_CASE("rpn_proposals: edge cases") {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  const int64_t A = 12;
  std::vector<double> av, lv, dv;
  for (int64_t a = 0; a < A; ++a) {
    const double x = 60 * u(rng), y = 60 * u(rng);
    av.insert(av.end(), {x, y, x + 5 + 20 * u(rng), y + 5 + 20 * u(rng)});
  }
  for (int64_t i = 0; i < 2 * A; ++i) lv.push_back(4 * u(rng) - 2);
  for (int64_t i = 0; i < 2 * A * 4; ++i) dv.push_back(0.2 * (u(rng) - 0.5));
  Tensor anchors = f64(av, {A, 4}), logits = f64(lv, {2, A}), deltas = f64(dv, {2, A, 4});

  SECTION("more proposals requested than anchors; an empty level") {
    Proposals p = det::rpn_proposals(logits, deltas, anchors, {0, 8, 0, 4}, 100, 100, opts(1000, 500, 1.0, 0, 0));
    // NMS threshold 1.0 suppresses nothing (IoU > 1 never holds): every anchor comes back.
    REQUIRE(p.boxes.sizes() == Shape{2, 500, 4});
    REQUIRE(i64s(p.counts) == std::vector<int64_t>{A, A});
    std::vector<int64_t> lev = i64s(p.levels);
    for (int64_t b = 0; b < 2; ++b) {
      int n1 = 0, n3 = 0;
      for (int64_t j = 0; j < 500; ++j) {
        const int64_t l = lev[b * 500 + j];
        if (j >= A) REQUIRE(l == -1);
        n1 += l == 1, n3 += l == 3;
      }
      REQUIRE(n1 == 8);
      REQUIRE(n3 == 4);
    }
    std::vector<double> s = p.scores.to_vector<double>();
    for (int64_t j = 1; j < A; ++j) REQUIRE(s[j - 1] >= s[j]);
  }
  SECTION("all boxes tiny") {
    Proposals p = det::rpn_proposals(logits, deltas, anchors, {A}, 100, 100, opts(1000, 50, 0.7, 1000.0, 0));
    REQUIRE(i64s(p.counts) == std::vector<int64_t>{0, 0});
    REQUIRE(p.boxes.to_vector<double>() == std::vector<double>(400, 0.0));
    REQUIRE(i64s(p.levels) == std::vector<int64_t>(100, -1));
  }
  SECTION("B = 2 with different counts") {
    std::vector<double> v = lv;
    for (int64_t a = 0; a < A; ++a) v[A + a] = -5.0;  // image 1: every score sig(-5) < 0.5
    Tensor lg = f64(v, {2, A});
    Proposals p = det::rpn_proposals(lg, deltas, anchors, {A}, 100, 100, opts(1000, 50, 1.0, 0, 0.5));
    std::vector<int64_t> c = i64s(p.counts);
    REQUIRE(c[0] > 0);
    REQUIRE(c[1] == 0);
  }
}

TEST_CASE("rpn_proposals: bad input") {
  Tensor a = zeros({4, 4}), l = zeros({1, 4}), d = zeros({1, 4, 4});
  const ProposalOptions o;
  REQUIRE_THROWS_WITH(det::rpn_proposals(l, d, a, {3}, 10, 10, o), Catch::Contains("level_sizes sum to 3"));
  REQUIRE_THROWS_WITH(det::rpn_proposals(l, d, a, {5, -1}, 10, 10, o), Catch::Contains("level_sizes[1] is negative"));
  REQUIRE_THROWS_WITH(det::rpn_proposals(l, d, a, {}, 10, 10, o), Catch::Contains("levels"));
  REQUIRE_THROWS_WITH(det::rpn_proposals(l, zeros({1, 3, 4}), a, {4}, 10, 10, o), Catch::Contains("deltas must be"));
  REQUIRE_THROWS_WITH(det::rpn_proposals(l, d, zeros({4, 3}), {4}, 10, 10, o), Catch::Contains("anchors must be"));
  REQUIRE_THROWS_WITH(det::rpn_proposals(l, d, a, {4}, 0, 10, o), Catch::Contains("image size"));
  REQUIRE_THROWS_WITH(det::rpn_proposals(l, d, a, {4}, 10, std::nan(""), o), Catch::Contains("image size"));
  REQUIRE_THROWS_WITH(det::rpn_proposals(l, d, a, {4}, std::vector<det::ImageSize>{{10, 10}, {10, 10}}, o),
                      Catch::Contains("2 image sizes for 1 images"));
  REQUIRE_THROWS_WITH(det::rpn_proposals(l, d, a, {4}, std::vector<det::ImageSize>{{10, -3}}, o),
                      Catch::Contains("image size of image 0"));
  REQUIRE_THROWS_WITH(det::rpn_proposals(l, d, a, {4}, 10, 10, opts(0, 5, 0.7, 0, 0)),
                      Catch::Contains("pre_nms_top_n must be >= 1"));
  REQUIRE_THROWS_WITH(det::rpn_proposals(l, d, a, {4}, 10, 10, opts(5, 0, 0.7, 0, 0)),
                      Catch::Contains("post_nms_top_n must be >= 1"));
  REQUIRE_THROWS_WITH(det::rpn_proposals(l, d.to(DType::f64), a, {4}, 10, 10, o), Catch::Contains("rpn_proposals"));
}

namespace {
void check_cuda_matches_cpu(const Tensor& logits, const Tensor& deltas, const Tensor& anchors,
                            const std::vector<int64_t>& levels, const ProposalOptions& o) {
  const std::vector<det::ImageSize> sizes = {{200, 240}, {150, 260}};  // (h, w) per image
  Proposals ref = det::rpn_proposals(logits, deltas, anchors, levels, sizes, o);
  Proposals got = det::rpn_proposals(logits.cuda(), deltas.cuda(), anchors.cuda(), levels, sizes, o);
  REQUIRE(got.boxes.is_cuda());
  REQUIRE(i64s(got.counts) == i64s(ref.counts));
  REQUIRE(i64s(got.levels) == i64s(ref.levels));
  REQUIRE_CLOSE(got.scores.cpu(), ref.scores, test::kReductionAtol, test::kReductionRtol);
  REQUIRE_CLOSE(got.boxes.cpu(), ref.boxes, test::kReductionAtol, test::kReductionRtol);
}
}  // namespace

TEST_CASE("rpn_proposals: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  std::mt19937_64 rng(15);
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<double> n(0, 1);
  const std::vector<int64_t> levels = {3 * 32 * 32, 3 * 16 * 16, 0, 3 * 8 * 8, 3 * 4 * 4};
  int64_t A = 0;
  for (int64_t s : levels) A += s;
  const int64_t B = 2;
  std::vector<float> av, lv, dv;
  for (int64_t a = 0; a < A; ++a) {
    const double x = 260 * u(rng) - 10, y = 220 * u(rng) - 10, w = 2 + 60 * u(rng), h = 2 + 60 * u(rng);
    av.insert(av.end(), {float(x), float(y), float(x + w), float(y + h)});
  }
  // Logits rounded to 1/8: many ties, so the tie rule is exercised; a NaN and infinities too.
  for (int64_t i = 0; i < B * A; ++i) lv.push_back(float(std::round(8 * 2 * n(rng)) / 8));
  lv[5] = std::numeric_limits<float>::quiet_NaN();
  lv[9] = std::numeric_limits<float>::infinity();
  lv[A + 3] = -std::numeric_limits<float>::infinity();
  lv[A + 7] = -std::numeric_limits<float>::quiet_NaN();
  for (int64_t i = 0; i < B * A * 4; ++i) dv.push_back(float(0.3 * n(rng)));
  Tensor anchors = from_vector(av, {A, 4}), logits = from_vector(lv, {B, A}), deltas = from_vector(dv, {B, A, 4});
  SECTION("defaults, pre 200 (more than the small levels), post 300") {
    check_cuda_matches_cpu(logits, deltas, anchors, levels, opts(200, 300, 0.7, 1e-3, 0.0));
  }
  SECTION("score threshold, large min size, small post") {
    check_cuda_matches_cpu(logits, deltas, anchors, levels, opts(100, 20, 0.5, 20.0, 0.7));
  }
  SECTION("all tiny") {
    check_cuda_matches_cpu(logits, deltas, anchors, levels, opts(100, 20, 0.5, 1e6, 0.0));
  }
  SECTION("image 1 without survivors") {
    std::vector<float> v = lv;
    for (int64_t a = 0; a < A; ++a) v[A + a] = -6.0f;
    Tensor lg = from_vector(v, {B, A});
    check_cuda_matches_cpu(lg, deltas, anchors, levels, opts(50, 100, 0.7, 1e-3, 0.5));
  }
}
