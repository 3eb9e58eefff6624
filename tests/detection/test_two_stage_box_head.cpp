// det::box_head_postprocess: torchvision's RoIHeads.postprocess_detections on the committed
// fixture (tools/make_two_stage_det_fixture.py), hand-built cases (background dropped,
// strict score threshold, class-specific decode with (10, 10, 5, 5), clip, min size, per-class
// NMS, detections_per_image), edge cases (an image without RoIs, all boxes tiny), the slot
// cap, bad input, and CUDA against the CPU.
#include <cmath>
#include <random>

#include "engine/cuda_context.h"
#include "engine/detection_two_stage.h"
#include "engine/io/safetensors.h"
#include "kernels/box_head_postprocess.h"
#include "test_helpers.h"

using namespace eng;
using det::BoxHeadPostprocessOptions;
using det::Detections;

namespace {

const std::string kFixture = std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/two_stage_det.safetensors";

std::vector<int64_t> i64s(const Tensor& t) { return t.cpu().to_vector<int64_t>(); }
Tensor f64(const std::vector<double>& v, const Shape& s) { return from_vector(v, s, TensorOptions(DType::f64)); }

BoxHeadPostprocessOptions opts(double score, double nms, int64_t k) {
  BoxHeadPostprocessOptions o;
  o.score_threshold = score, o.nms_threshold = nms, o.detections_per_image = k;
  return o;
}

}  // namespace

TEST_CASE("box_head_postprocess: torchvision postprocess_detections (fixture)") {
  const io::SafetensorsFile f = io::load_safetensors(kFixture);
  for (DType dt : {DType::f64, DType::f32}) {
    INFO("dtype " << dtype_name(dt));
    const bool d64 = dt == DType::f64;
    Detections got = det::box_head_postprocess(f.get("head_class_logits").to(dt), f.get("head_box_deltas").to(dt),
                                               f.get("head_proposals").to(dt), f.get("head_roi_image"),
                                               {{64, 80}, {56, 72}},
                                               opts(0.05, 0.5, 50));
    REQUIRE(i64s(got.counts) == i64s(f.get("head_counts")));
    REQUIRE(i64s(got.labels) == i64s(f.get("head_labels")));
    REQUIRE_CLOSE(got.scores.to(DType::f64), f.get("head_scores"), d64 ? 1e-12 : 1e-5, d64 ? 1e-12 : 1e-5);
    REQUIRE_CLOSE(got.boxes.to(DType::f64), f.get("head_boxes"), d64 ? 1e-9 : 1e-4, d64 ? 1e-12 : 1e-5);
  }
}

TEST_CASE("box_head_postprocess: hand-built cases") {
  // Three classes; RoI 0 and RoI 1 are the same proposal. Zero deltas: every class's box is
  // the proposal. RoI 0 scores class 1 highest, RoI 1 class 2, so per-class NMS keeps one box
  // of each class.
  Tensor props = f64({10, 10, 30, 30, 10, 10, 30, 30, 50, 50, 60, 60}, {3, 4});
  Tensor deltas = zeros({3, 12}, TensorOptions(DType::f64));
  Tensor logits = f64({0, 3, 1, 0, 1, 3, 5, -5, -5}, {3, 3});  // RoI 2: background wins
  Tensor img = from_vector<int64_t>({0, 0, 0}, {3});
  Detections d = det::box_head_postprocess(logits, deltas, props, img, 1, 100, 100, opts(0.05, 0.5, 10));
  REQUIRE(i64s(d.counts) == std::vector<int64_t>{2});
  const std::vector<int64_t> l = i64s(d.labels);
  REQUIRE(std::vector<int64_t>(l.begin(), l.begin() + 3) == std::vector<int64_t>({1, 2, -1}));
  const double p_hi = std::exp(3.0) / (std::exp(0.0) + std::exp(3.0) + std::exp(1.0));
  REQUIRE(d.scores.to_vector<double>()[0] == Approx(p_hi));
  REQUIRE(d.scores.to_vector<double>()[1] == Approx(p_hi));
  // Strict threshold: at the best score itself nothing passes.
  const double best = d.scores.to_vector<double>()[0];
  Detections none = det::box_head_postprocess(logits, deltas, props, img, 1, 100, 100, opts(best, 0.5, 10));
  REQUIRE(i64s(none.counts) == std::vector<int64_t>{0});
  // detections_per_image 1 keeps the best one (ties: RoI 0 first).
  Detections one = det::box_head_postprocess(logits, deltas, props, img, 1, 100, 100, opts(0.05, 0.5, 1));
  REQUIRE(i64s(one.labels) == std::vector<int64_t>{1});

  // Class-specific decode with weights (10, 10, 5, 5): class 2's deltas (10, 0, 0, 0) move the
  // centre by one width; class 1 has (0, 0, 5 ln 2, 0): twice as wide. Then the clip to a
  // 40 x 35 (h x w) image.
  Tensor p1 = f64({0, 0, 10, 10}, {1, 4});
  Tensor d1 = f64({0, 0, 0, 0, 0, 0, 5 * std::log(2.0), 0, 10, 0, 0, 0}, {1, 12});
  Tensor l1 = f64({0, 2, 2}, {1, 3});
  Detections c = det::box_head_postprocess(l1, d1, p1, from_vector<int64_t>({0}, {1}), 1, 40, 35, opts(0.05, 0.5, 5));
  REQUIRE(i64s(c.counts) == std::vector<int64_t>{2});
  const std::vector<double> bx = c.boxes.to_vector<double>();
  REQUIRE(i64s(c.labels)[0] == 1);  // equal scores: class order
  REQUIRE(bx[0] == Approx(0.0).margin(1e-9));  // [-5, 0, 15, 10] clipped
  REQUIRE(bx[2] == Approx(15.0));
  REQUIRE(bx[4] == Approx(10.0));
  REQUIRE(bx[6] == Approx(20.0));
}

TEST_CASE("box_head_postprocess: edge cases") {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> n(0, 1);
  const int64_t R = 6, C = 4;
  std::vector<double> lv, dv, pv;
  for (int64_t i = 0; i < R * C; ++i) lv.push_back(2 * n(rng));
  for (int64_t i = 0; i < R * 4 * C; ++i) dv.push_back(0.5 * n(rng));
  for (int64_t r = 0; r < R; ++r) pv.insert(pv.end(), {10.0 * r, 5, 10.0 * r + 8, 20});
  Tensor logits = f64(lv, {R, C}), deltas = f64(dv, {R, 4 * C}), props = f64(pv, {R, 4});
  SECTION("an image without RoIs (image 1 of 3)") {
    Tensor img = from_vector<int64_t>({0, 0, 0, 2, 2, 2}, {R});
    Detections d = det::box_head_postprocess(logits, deltas, props, img, 3, 100, 100, opts(0.0, 1.0, 50));
    REQUIRE(d.boxes.sizes() == Shape{3, 50, 4});
    // Threshold 0 and NMS 1.0: every (RoI, class >= 1) comes back.
    REQUIRE(i64s(d.counts) == std::vector<int64_t>({3 * (C - 1), 0, 3 * (C - 1)}));
  }
  SECTION("all boxes tiny") {
    BoxHeadPostprocessOptions o = opts(0.0, 0.5, 50);
    o.min_size = 1e4;
    Detections d = det::box_head_postprocess(logits, deltas, props, from_vector<int64_t>({0, 0, 0, 1, 1, 1}, {R}),
                                             2, 100, 100, o);
    REQUIRE(i64s(d.counts) == std::vector<int64_t>({0, 0}));
    REQUIRE(i64s(d.labels) == std::vector<int64_t>(100, -1));
  }
  SECTION("no RoI at all") {
    Detections d = det::box_head_postprocess(zeros({0, C}), zeros({0, 4 * C}), zeros({0, 4}),
                                             zeros({0}, TensorOptions(DType::i64)), 2, 100, 100, opts(0.05, 0.5, 7));
    REQUIRE(i64s(d.counts) == std::vector<int64_t>({0, 0}));
    REQUIRE(d.labels.sizes() == Shape{2, 7});
  }
}

TEST_CASE("box_head_postprocess: slots per RoI never drop a candidate") {
  // At most floor(1 / t) + 1 softmax entries exceed t; the cap has one more.
  REQUIRE(kern::box_head_slots_per_roi(91, 0.05) == 22);
  REQUIRE(kern::box_head_slots_per_roi(91, 0.0) == 90);
  REQUIRE(kern::box_head_slots_per_roi(91, 0.001) == 90);
  REQUIRE(kern::box_head_slots_per_roi(5, 0.3) == 4);
  // 40 classes with equal logits: p = 1/40 each; threshold just below: 39 non-background pass,
  // cap min(39, floor(40.4) + 2) keeps them all.
  const int64_t C = 40;
  Tensor logits = zeros({1, C}, TensorOptions(DType::f64));
  Tensor deltas = zeros({1, 4 * C}, TensorOptions(DType::f64));
  Tensor props = f64({0, 0, 10, 10}, {1, 4});
  Detections d = det::box_head_postprocess(logits, deltas, props, from_vector<int64_t>({0}, {1}), 1, 50, 50,
                                           opts(1.0 / 40.4, 1.0, 100));
  REQUIRE(i64s(d.counts) == std::vector<int64_t>{39});
}

TEST_CASE("box_head_postprocess: bad input") {
  Tensor l = zeros({3, 4}), d = zeros({3, 16}), p = zeros({3, 4});
  Tensor img = from_vector<int64_t>({0, 0, 1}, {3});
  const BoxHeadPostprocessOptions o;
  REQUIRE_THROWS_WITH(det::box_head_postprocess(l, d, p, from_vector<int64_t>({0, 1, 0}, {3}), 2, 10, 10, o),
                      Catch::Contains("roi_image must be non-decreasing"));
  REQUIRE_THROWS_WITH(det::box_head_postprocess(l, d, p, from_vector<int64_t>({0, 0, 2}, {3}), 2, 10, 10, o),
                      Catch::Contains("roi_image[2] = 2 is outside [0, 2)"));
  REQUIRE_THROWS_WITH(det::box_head_postprocess(l, d, p, from_vector<int64_t>({-1, 0, 0}, {3}), 2, 10, 10, o),
                      Catch::Contains("roi_image[0] = -1"));
  REQUIRE_THROWS_WITH(det::box_head_postprocess(l, zeros({3, 12}), p, img, 2, 10, 10, o),
                      Catch::Contains("box_deltas must be [R, 4 C]"));
  REQUIRE_THROWS_WITH(det::box_head_postprocess(l, d, zeros({2, 4}), img, 2, 10, 10, o),
                      Catch::Contains("proposals must be"));
  REQUIRE_THROWS_WITH(det::box_head_postprocess(zeros({3, 1}), zeros({3, 4}), p, img, 2, 10, 10, o),
                      Catch::Contains("C >= 2"));
  REQUIRE_THROWS_WITH(det::box_head_postprocess(l, d, p, zeros({3}), 2, 10, 10, o), Catch::Contains("i64"));
  REQUIRE_THROWS_WITH(det::box_head_postprocess(l, d, p, img, 0, 10, 10, o), Catch::Contains("batch must be >= 1"));
  REQUIRE_THROWS_WITH(det::box_head_postprocess(l, d, p, img, 2, -1, 10, o), Catch::Contains("image size"));
  REQUIRE_THROWS_WITH(det::box_head_postprocess(l, d, p, img, std::vector<det::ImageSize>{}, o),
                      Catch::Contains("batch must be >= 1"));
  REQUIRE_THROWS_WITH(det::box_head_postprocess(l, d, p, img, std::vector<det::ImageSize>{{5, 5}}, o),
                      Catch::Contains("roi_image[2] = 1 is outside [0, 1)"));
  BoxHeadPostprocessOptions bad = o;
  bad.detections_per_image = 0;
  REQUIRE_THROWS_WITH(det::box_head_postprocess(l, d, p, img, 2, 10, 10, bad),
                      Catch::Contains("detections_per_image must be >= 1"));
  bad = o;
  bad.weights.wx = 0;
  REQUIRE_THROWS_WITH(det::box_head_postprocess(l, d, p, img, 2, 10, 10, bad), Catch::Contains("weights"));
}

namespace {
void check_cuda_matches_cpu(const Tensor& logits, const Tensor& deltas, const Tensor& props, const Tensor& img,
                            int64_t B, const BoxHeadPostprocessOptions& o) {
  std::vector<det::ImageSize> sizes = {{200, 240}, {100, 100}, {150, 180}};  // (h, w) per image
  sizes.resize(static_cast<size_t>(B), det::ImageSize{200, 240});
  Detections ref = det::box_head_postprocess(logits, deltas, props, img, sizes, o);
  Detections got = det::box_head_postprocess(logits.cuda(), deltas.cuda(), props.cuda(), img.cuda(), sizes, o);
  REQUIRE(got.boxes.is_cuda());
  REQUIRE(i64s(got.counts) == i64s(ref.counts));
  REQUIRE(i64s(got.labels) == i64s(ref.labels));
  REQUIRE_CLOSE(got.scores.cpu(), ref.scores, test::kReductionAtol, test::kReductionRtol);
  REQUIRE_CLOSE(got.boxes.cpu(), ref.boxes, test::kReductionAtol, test::kReductionRtol);
}
}  // namespace

TEST_CASE("box_head_postprocess: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  std::mt19937_64 rng(31);
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<double> n(0, 1);
  // 3 images: 150 RoIs, none, 90 RoIs; 41 classes (two warp chunks); clustered proposals.
  const std::vector<int64_t> per_image = {150, 0, 90};
  const int64_t B = 3, R = 240, C = 41;
  std::vector<float> lv, dv, pv;
  std::vector<int64_t> iv;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r = 0; r < per_image[b]; ++r) iv.push_back(b);
  for (int64_t r = 0; r < R; ++r) {
    const double cx = 40 + 40 * (r % 5) + 4 * n(rng), cy = 30 + 35 * (r % 4) + 4 * n(rng);
    const double w = 10 + 40 * u(rng), h = 10 + 40 * u(rng);
    pv.insert(pv.end(), {float(cx - w / 2), float(cy - h / 2), float(cx + w / 2), float(cy + h / 2)});
  }
  pv[4 * 7 + 2] = pv[4 * 7] + 1e-3f;  // a tiny proposal
  for (int64_t i = 0; i < R * C; ++i) lv.push_back(float(2.5 * n(rng)));
  for (int64_t i = 0; i < R * 4 * C; ++i) dv.push_back(float(0.5 * n(rng)));
  Tensor logits = from_vector(lv, {R, C}), deltas = from_vector(dv, {R, 4 * C}), props = from_vector(pv, {R, 4});
  Tensor img = from_vector(iv, {R});
  SECTION("torchvision defaults") { check_cuda_matches_cpu(logits, deltas, props, img, B, opts(0.05, 0.5, 100)); }
  SECTION("threshold 0: every class a candidate") {
    check_cuda_matches_cpu(logits, deltas, props, img, B, opts(0.0, 0.5, 300));
  }
  SECTION("strict threshold, few detections") {
    check_cuda_matches_cpu(logits, deltas, props, img, B, opts(0.3, 0.3, 5));
  }
}
