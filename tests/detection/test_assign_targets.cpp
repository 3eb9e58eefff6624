// Training targets from matches: eng::det::assign_targets.
#include "engine/detection.h"
#include "test_helpers.h"

using namespace eng;
using det::kBackground;
using det::kIgnore;

namespace {

using Ids = std::vector<int64_t>;
using Floats = std::vector<float>;
constexpr int64_t B_ = kBackground, I_ = kIgnore;

// Two images, G = 2 (image 1 has one real box: row 1 is padding with a junk label), A = 4.
Tensor hand_anchors() { return from_vector<float>({0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4}, {4, 4}); }
Tensor hand_gt_boxes() {
  return from_vector<float>({10, 10, 11, 11, 20, 20, 21, 21, 30, 30, 31, 31, -5, -5, -5, -5}, {2, 2, 4});
}
Tensor hand_gt_labels() { return from_vector<int64_t>({3, 7, 5, -99}, {2, 2}); }
Tensor hand_matched() { return from_vector<int64_t>({1, B_, I_, 0, B_, 0, I_, 0}, {2, 4}); }

}  // namespace

TEST_CASE("assign_targets: hand example with the three models' label conventions") {
  struct Convention {
    int64_t bg, ign;
  };
  for (Convention c : {Convention{0, 0}, Convention{0, -1}, Convention{-1, -2}}) {
    INFO("background " << c.bg << ", ignore " << c.ign);
    det::AssignedTargets t =
        det::assign_targets(hand_matched(), hand_gt_boxes(), hand_gt_labels(), hand_anchors(), 8, c.bg, c.ign);
    REQUIRE(t.labels.dtype() == DType::i64);
    REQUIRE(t.labels.sizes() == Shape{2, 4});
    REQUIRE(t.boxes.dtype() == DType::f32);
    REQUIRE(t.boxes.sizes() == Shape{2, 4, 4});
    REQUIRE(t.positive.dtype() == DType::f32);
    REQUIRE(t.positive.sizes() == Shape{2, 4});
    REQUIRE(t.num_positive.dtype() == DType::i64);
    REQUIRE(t.labels.to_vector<int64_t>() == Ids{7, c.bg, c.ign, 3, c.bg, 5, c.ign, 5});
    REQUIRE(t.positive.to_vector<float>() == Floats{1, 0, 0, 1, 0, 1, 0, 1});
    REQUIRE(t.num_positive.to_vector<int64_t>() == Ids{2, 2});
    REQUIRE(t.boxes.to_vector<float>() == Floats{20, 20, 21, 21, 1, 1, 2, 2, 2, 2, 3, 3, 10, 10, 11, 11,  //
                                                 0,  0,  1,  1,  30, 30, 31, 31, 2, 2, 3, 3, 30, 30, 31, 31});
  }
}

// Difficult / crowd GTs: an anchor matched to an ignored GT is neither positive nor negative.
TEST_CASE("assign_targets: anchors matched to an ignored GT get the ignore label, not positive") {
  // hand_matched: image 0 anchors {1, B, I, 0}, image 1 {B, 0, I, 0}. Ignore GT 1 of image 0.
  Tensor ign = from_vector<uint8_t>({0, 1, 0, 1}, {2, 2});  // image 1 row 1 is padding: never matched
  for (int64_t ignore_label : {-1, -2}) {
    det::AssignedTargets t = det::assign_targets(hand_matched(), hand_gt_boxes(), hand_gt_labels(), hand_anchors(),
                                                 8, 0, ignore_label, ign);
    REQUIRE(t.labels.to_vector<int64_t>() == Ids{ignore_label, 0, ignore_label, 3, 0, 5, ignore_label, 5});
    REQUIRE(t.positive.to_vector<float>() == Floats{0, 0, 0, 1, 0, 1, 0, 1});
    REQUIRE(t.num_positive.to_vector<int64_t>() == Ids{1, 2});
    // The ignored anchor's box is the anchor itself (a finite, all-zero encoding).
    REQUIRE(t.boxes.to_vector<float>() == Floats{0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 10, 10, 11, 11,  //
                                                 0, 0, 1, 1, 30, 30, 31, 31, 2, 2, 3, 3, 30, 30, 31, 31});
  }
  // All zeros is the same as no gt_ignore.
  det::AssignedTargets none = det::assign_targets(hand_matched(), hand_gt_boxes(), hand_gt_labels(), hand_anchors(),
                                                  8, 0, -1, zeros({2, 2}, DType::u8));
  REQUIRE(none.labels.to_vector<int64_t>() == Ids{7, 0, -1, 3, 0, 5, -1, 5});
  // An ignored GT's label is not used, so it is not range-checked.
  det::AssignedTargets junk = det::assign_targets(hand_matched(), hand_gt_boxes(),
                                                  from_vector<int64_t>({3, 1000, 5, -99}, {2, 2}), hand_anchors(),
                                                  8, 0, -1, ign);
  REQUIRE(junk.labels.to_vector<int64_t>()[0] == -1);
  // Bad gt_ignore: one line naming the op and the problem.
  REQUIRE_THROWS_WITH(det::assign_targets(hand_matched(), hand_gt_boxes(), hand_gt_labels(), hand_anchors(), 8, 0,
                                          -1, ign.to(DType::i64)),
                      Catch::Contains("assign_targets: gt_ignore must be u8"));
  REQUIRE_THROWS_WITH(det::assign_targets(hand_matched(), hand_gt_boxes(), hand_gt_labels(), hand_anchors(), 8, 0,
                                          -1, zeros({2, 3}, DType::u8)),
                      Catch::Contains("assign_targets: gt_ignore must be [2, 2]"));
}

TEST_CASE("assign_targets: f64 boxes keep their dtype") {
  det::AssignedTargets t = det::assign_targets(hand_matched(), hand_gt_boxes().to(DType::f64), hand_gt_labels(),
                                               hand_anchors().to(DType::f64), 8);
  REQUIRE(t.boxes.dtype() == DType::f64);
  REQUIRE(t.positive.dtype() == DType::f64);
  REQUIRE(t.boxes.to_vector<double>()[0] == 20.0);
  REQUIRE(t.positive.to_vector<double>() == std::vector<double>{1, 0, 0, 1, 0, 1, 0, 1});
}

TEST_CASE("assign_targets: G = 0, all ignored, an image without positives") {
  Tensor anc = hand_anchors();
  SECTION("G = 0") {
    Tensor m = from_vector<int64_t>({B_, B_, I_, B_, B_, B_, B_, B_}, {2, 4});
    det::AssignedTargets t = det::assign_targets(m, zeros({2, 0, 4}), zeros({2, 0}, DType::i64), anc, 3, -1, -2);
    REQUIRE(t.labels.to_vector<int64_t>() == Ids{-1, -1, -2, -1, -1, -1, -1, -1});
    REQUIRE(t.positive.to_vector<float>() == Floats(8, 0.f));
    REQUIRE(t.num_positive.to_vector<int64_t>() == Ids{0, 0});
    Floats want;
    for (int i = 0; i < 2; ++i)
      for (float v : anc.to_vector<float>()) want.push_back(v);
    REQUIRE(t.boxes.to_vector<float>() == want);
  }
  SECTION("all ignored") {
    Tensor m = full({2, 4}, static_cast<double>(I_), TensorOptions(DType::i64));
    det::AssignedTargets t = det::assign_targets(m, hand_gt_boxes(), hand_gt_labels(), anc, 8, 0, -1);
    REQUIRE(t.labels.to_vector<int64_t>() == Ids(8, -1));
    REQUIRE(t.num_positive.to_vector<int64_t>() == Ids{0, 0});
  }
  SECTION("B = 0 and A = 0") {
    det::AssignedTargets t = det::assign_targets(zeros({0, 4}, DType::i64), zeros({0, 2, 4}),
                                                 zeros({0, 2}, DType::i64), anc, 8);
    REQUIRE(t.labels.sizes() == Shape{0, 4});
    REQUIRE(t.num_positive.sizes() == Shape{0});
    t = det::assign_targets(zeros({2, 0}, DType::i64), hand_gt_boxes(), hand_gt_labels(), zeros({0, 4}), 8);
    REQUIRE(t.boxes.sizes() == Shape{2, 0, 4});
    REQUIRE(t.num_positive.to_vector<int64_t>() == Ids{0, 0});
  }
}

TEST_CASE("assign_targets: bad input") {
  Tensor m = hand_matched(), gb = hand_gt_boxes(), gl = hand_gt_labels(), anc = hand_anchors();
  REQUIRE_THROWS_WITH(det::assign_targets(from_vector<int64_t>({2, B_, B_, B_}, {1, 4}), gb.narrow(0, 0, 1),
                                          gl.narrow(0, 0, 1), anc, 8),
                      Catch::Contains("assign_targets: matched[0, 0] = 2 is neither a GT index in [0, 2)"));
  REQUIRE_THROWS_WITH(det::assign_targets(from_vector<int64_t>({B_, -3, B_, B_}, {1, 4}), gb.narrow(0, 0, 1),
                                          gl.narrow(0, 0, 1), anc, 8),
                      Catch::Contains("assign_targets: matched[0, 1] = -3 is neither"));
  REQUIRE_THROWS_WITH(det::assign_targets(m, gb, gl, anc, 6),
                      Catch::Contains("assign_targets: gt_labels[0, 1] = 7 (matched by anchor 0) is outside [0, 6)"));
  REQUIRE_THROWS_WITH(det::assign_targets(m, gb, from_vector<int64_t>({-1, 7, 5, 0}, {2, 2}), anc, 8),
                      Catch::Contains("gt_labels[0, 0] = -1 (matched by anchor 3) is outside [0, 8)"));
  REQUIRE_THROWS_WITH(det::assign_targets(m.to(DType::i32), gb, gl, anc, 8),
                      Catch::Contains("assign_targets: matched must be i64, got i32"));
  REQUIRE_THROWS_WITH(det::assign_targets(m, gb, gl.to(DType::f32), anc, 8),
                      Catch::Contains("assign_targets: gt_labels must be i64, got f32"));
  REQUIRE_THROWS_WITH(det::assign_targets(m, gb.to(DType::i64), gl, anc, 8),
                      Catch::Contains("assign_targets: expected a f32 or f64 tensor, got i64"));
  REQUIRE_THROWS_WITH(det::assign_targets(m, gb, gl, anc.to(DType::f64), 8), Catch::Contains("assign_targets"));
  REQUIRE_THROWS_WITH(det::assign_targets(m, gb, gl, anc.narrow(0, 0, 3), 8),
                      Catch::Contains("assign_targets: anchors must be [4, 4] (matched [2, 4]), got [3, 4]"));
  REQUIRE_THROWS_WITH(det::assign_targets(m, gb.narrow(0, 0, 1), gl, anc, 8),
                      Catch::Contains("assign_targets: gt_boxes must be [2, G, 4], got [1, 2, 4]"));
  REQUIRE_THROWS_WITH(det::assign_targets(m, gb, gl.narrow(1, 0, 1), anc, 8),
                      Catch::Contains("assign_targets: gt_labels must be [2, 2] like gt_boxes [2, 2, 4], got [2, 1]"));
  REQUIRE_THROWS_WITH(det::assign_targets(m.reshape({8}), gb, gl, anc, 8),
                      Catch::Contains("assign_targets: matched must be 2-d"));
  REQUIRE_THROWS_WITH(det::assign_targets(m, gb, gl, anc, 0),
                      Catch::Contains("assign_targets: num_classes must be > 0, got 0"));
}

// ---------------------------------------------------------------- CUDA against the CPU

namespace {

// B = 5 images, G = 6 padded rows with per-image counts {6, 0, 2, 6, 1}; every anchor gets a
// random match among the image's real rows, background or ignore; padded labels are junk.
struct RandomCase {
  Tensor matched, gt_boxes, gt_labels, anchors;
};
RandomCase random_case(int64_t A, uint64_t seed) {
  const int64_t B = 5, G = 6;
  const Ids counts{6, 0, 2, 6, 1};
  Generator gen(seed);
  Ids m(static_cast<size_t>(B * A)), lab(static_cast<size_t>(B * G));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t a = 0; a < A; ++a) {
      const double u = gen.uniform();
      int64_t v = u < 0.6 ? B_ : (u < 0.75 ? I_ : static_cast<int64_t>(gen.uniform() * counts[b]));
      if (v >= 0 && counts[b] == 0) v = B_;
      m[static_cast<size_t>(b * A + a)] = v;
    }
    for (int64_t g = 0; g < G; ++g) lab[static_cast<size_t>(b * G + g)] = g < counts[b] ? 1 + g : -1000 - g;
  }
  RandomCase c;
  c.matched = from_vector<int64_t>(m, {B, A});
  c.gt_boxes = test::random_f32({B, G, 4}, seed + 1, 0, 300);
  c.gt_labels = from_vector<int64_t>(lab, {B, G});
  c.anchors = test::random_f32({A, 4}, seed + 2, 0, 300);
  return c;
}

void require_same(const det::AssignedTargets& got, const det::AssignedTargets& want, DType dt) {
  REQUIRE(got.labels.is_cuda());
  REQUIRE(got.labels.cpu().to_vector<int64_t>() == want.labels.to_vector<int64_t>());
  REQUIRE(got.num_positive.cpu().to_vector<int64_t>() == want.num_positive.to_vector<int64_t>());
  REQUIRE(got.boxes.dtype() == dt);
  REQUIRE(got.boxes.cpu().to_vector<double>() == want.boxes.to_vector<double>());
  REQUIRE(got.positive.cpu().to_vector<double>() == want.positive.to_vector<double>());
}

}  // namespace

TEST_CASE("assign_targets: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (DType dt : {DType::f32, DType::f64}) {
    INFO("dtype " << dtype_name(dt));
    RandomCase c = random_case(3000, 7);  // 12 anchor chunks of 256 per image
    Tensor gb = c.gt_boxes.to(dt), anc = c.anchors.to(dt);
    det::AssignedTargets want = det::assign_targets(c.matched, gb, c.gt_labels, anc, 7, -1, -2);
    // Image 1 has no positives, the others some; the counts add up to the mask.
    const Ids np = want.num_positive.to_vector<int64_t>();
    REQUIRE(np[1] == 0);
    REQUIRE(np[0] > 0);
    det::AssignedTargets got =
        det::assign_targets(c.matched.cuda(), gb.cuda(), c.gt_labels.cuda(), anc.cuda(), 7, -1, -2);
    require_same(got, want, dt);
    // With every other GT row ignored: fewer positives, the same on both sides.
    Ids ign(static_cast<size_t>(c.gt_labels.numel()));
    for (size_t i = 0; i < ign.size(); ++i) ign[i] = i % 2;
    Tensor ignore = from_vector<int64_t>(ign, c.gt_labels.sizes()).to(DType::u8);
    det::AssignedTargets want_i = det::assign_targets(c.matched, gb, c.gt_labels, anc, 7, -1, -2, ignore);
    const Ids np_i = want_i.num_positive.to_vector<int64_t>();
    REQUIRE(np_i[0] < np[0]);
    det::AssignedTargets got_i = det::assign_targets(c.matched.cuda(), gb.cuda(), c.gt_labels.cuda(), anc.cuda(), 7,
                                                     -1, -2, ignore.cuda());
    require_same(got_i, want_i, dt);
  }
  SECTION("G = 0 on the device") {
    Tensor m = full({3, 300}, static_cast<double>(B_), TensorOptions(DType::i64));
    Tensor anc = test::random_f32({300, 4}, 3);
    det::AssignedTargets want = det::assign_targets(m, zeros({3, 0, 4}), zeros({3, 0}, DType::i64), anc, 4);
    det::AssignedTargets got = det::assign_targets(m.cuda(), zeros({3, 0, 4}).cuda(),
                                                   zeros({3, 0}, DType::i64).cuda(), anc.cuda(), 4);
    require_same(got, want, DType::f32);
  }
  SECTION("device-resident matches and labels are trusted, an index >= G reads as background") {
    Tensor m = from_vector<int64_t>({2, 0, I_, B_}, {1, 4}).cuda();
    det::AssignedTargets t = det::assign_targets(m, hand_gt_boxes().narrow(0, 0, 1).cuda(),
                                                 from_vector<int64_t>({3, 99}, {1, 2}).cuda(), hand_anchors().cuda(),
                                                 8, -1, -2);
    REQUIRE(t.labels.cpu().to_vector<int64_t>() == Ids{-1, 3, -2, -1});
    REQUIRE(t.num_positive.cpu().to_vector<int64_t>() == Ids{1});
  }
  SECTION("inputs on different devices") {
    REQUIRE_THROWS_WITH(det::assign_targets(hand_matched(), hand_gt_boxes().cuda(), hand_gt_labels().cuda(),
                                            hand_anchors().cuda(), 8),
                        Catch::Contains("assign_targets: inputs on different devices"));
  }
}
