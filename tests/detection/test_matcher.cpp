// Anchor matching: eng::det::match_ssd and eng::det::match_retinanet.
#include <cmath>
#include <limits>

#include "engine/detection.h"
#include "test_helpers.h"

using namespace eng;
using det::kBackground;
using det::kIgnore;

namespace {

using Ids = std::vector<int64_t>;
constexpr int64_t B_ = kBackground, I_ = kIgnore;  // short names for expected rows

// iou [B, G, A] from nested values, f32 unless said otherwise.
Tensor iou_of(const std::vector<float>& v, const Shape& shape, DType dt = DType::f32) {
  return from_vector<float>(v, shape).to(dt);
}
Tensor counts_of(const Ids& c) { return from_vector<int64_t>(c, {static_cast<int64_t>(c.size())}); }

Ids ssd(const Tensor& iou, const Ids& counts, double thr = 0.5) {
  Tensor m = det::match_ssd(iou, counts_of(counts), thr);
  REQUIRE(m.dtype() == DType::i64);
  REQUIRE(m.sizes() == Shape{iou.size(0), iou.size(2)});
  return m.to_vector<int64_t>();
}
Ids retina(const Tensor& iou, const Ids& counts, bool low_quality = true) {
  Tensor m = det::match_retinanet(iou, counts_of(counts), 0.5, 0.4, low_quality);
  REQUIRE(m.dtype() == DType::i64);
  REQUIRE(m.sizes() == Shape{iou.size(0), iou.size(2)});
  return m.to_vector<int64_t>();
}

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kJunk = 0.99f;  // values in padded rows: would win everything if they were read

}  // namespace

TEST_CASE("match_ssd: the issue's example") {
  // Every anchor's best GT is GT 1 (0.8, 0.9, 0.7), all above 0.5; GT 0 then forces its best
  // anchor 2 (0.6) and GT 1 its best anchor 1: anchor -> GT [1, 1, 0], all positive.
  Tensor iou = iou_of({0.4f, 0.5f, 0.6f, 0.8f, 0.9f, 0.7f}, {1, 2, 3});
  REQUIRE(ssd(iou, {2}) == Ids{1, 1, 0});
  // The same in double.
  REQUIRE(ssd(iou.to(DType::f64), {2}) == Ids{1, 1, 0});
}

TEST_CASE("match_ssd: threshold and forcing") {
  // One GT: >= 0.5 matches (0.5 included), below is background; its best anchor is 2.
  REQUIRE(ssd(iou_of({0.49f, 0.5f, 0.7f, 0.2f}, {1, 1, 4}), {1}) == Ids{B_, 0, 0, B_});
  // A different threshold.
  REQUIRE(ssd(iou_of({0.49f, 0.5f, 0.7f, 0.2f}, {1, 1, 4}), {1}, 0.3) == Ids{0, 0, 0, B_});
  // Forcing overrides the threshold: GT 0 only reaches 0.2 (anchor 1) and still gets it.
  //   GT0 [0.1, 0.2, 0.05], GT1 [0.9, 0.1, 0.1]
  REQUIRE(ssd(iou_of({0.1f, 0.2f, 0.05f, 0.9f, 0.1f, 0.1f}, {1, 2, 3}), {2}) == Ids{1, 0, B_});
  // Three GTs force the same anchor 1: the highest GT index wins (not the best IoU, GT 1).
  //   GT0 [0.3, 0.6, 0.2], GT1 [0.1, 0.7, 0.2], GT2 [0.2, 0.65, 0.1]
  REQUIRE(ssd(iou_of({0.3f, 0.6f, 0.2f, 0.1f, 0.7f, 0.2f, 0.2f, 0.65f, 0.1f}, {1, 3, 3}), {3}) == Ids{B_, 2, B_});
}

TEST_CASE("match_ssd: argmax ties go to the lowest index, both ways") {
  // Anchor 0 is tied between GT 0 and GT 1 (0.7 each): it takes GT 0.
  //   GT0 [0.7, 0.9, 0.1], GT1 [0.7, 0.1, 0.95]
  REQUIRE(ssd(iou_of({0.7f, 0.9f, 0.1f, 0.7f, 0.1f, 0.95f}, {1, 2, 3}), {2}) == Ids{0, 0, 1});
  // GT 0 has its best IoU 0.4 at anchors 1 and 2: only anchor 1 (the lower) is forced.
  REQUIRE(ssd(iou_of({0.3f, 0.4f, 0.4f, 0.1f}, {1, 1, 4}), {1}) == Ids{B_, 0, B_, B_});
  // Ties on both sides at once: anchor 0 is every GT's best (0.6) and ties between them; the
  // argmax gives GT 0, the forcing overwrites it with the highest GT, 1.
  REQUIRE(ssd(iou_of({0.6f, 0.6f, 0.6f, 0.6f}, {1, 2, 2}), {2}) == Ids{1, 0});
}

TEST_CASE("match_ssd: zero-GT images, padded rows and a mixed batch") {
  // B = 3, G = 3, A = 4 with 0, 1 and 3 real GTs; every padded row holds junk (0.99).
  const float J = kJunk;
  Tensor iou = iou_of({J, J, J, J, J, J, J, J, J, J, J, J,                                    // image 0: no GT
                       0.2f, 0.6f, 0.1f, 0.55f, J, J, J, J, J, J, J, J,                      // image 1: 1 GT
                       0.1f, 0.2f, 0.8f, 0.3f, 0.5f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.4f},  // 3 GTs
                      {3, 3, 4});
  // image 2: anchor 0 -> GT1 (0.5), 1 -> none >= 0.5, 2 -> GT0 (0.8), 3 -> best GT2 (0.4) < 0.5;
  // forcing: GT0 -> anchor 2, GT1 -> anchor 0, GT2 -> anchor 3.
  REQUIRE(ssd(iou, {0, 1, 3}) == Ids{B_, B_, B_, B_, B_, 0, B_, 0, 1, B_, 0, 2});
  // No GT rows at all (G = 0).
  REQUIRE(ssd(zeros({2, 0, 5}), {0, 0}) == Ids(10, B_));
  // No anchors.
  REQUIRE(ssd(zeros({2, 3, 0}), {1, 3}).empty());
}

TEST_CASE("match_ssd: NaN IoU counts as -inf") {
  // A naive argmax that starts from row[0] keeps the NaN and would force anchor 0.
  REQUIRE(ssd(iou_of({kNaN, 0.3f, 0.4f, 0.1f}, {1, 1, 4}), {1}) == Ids{B_, B_, 0, B_});
  // A NaN never passes the threshold, and loses the anchor's argmax to a real GT.
  REQUIRE(ssd(iou_of({kNaN, 0.9f, 0.2f, 0.1f}, {1, 2, 2}), {2}) == Ids{1, 0});
}

TEST_CASE("match_retinanet: background, ignore and foreground bands") {
  // One GT; its best IoU (0.6, anchor 3) already is a foreground match, so low-quality
  // matching changes nothing. Bounds: 0.4 is ignore, 0.5 is foreground.
  Tensor iou = iou_of({0.3f, 0.45f, 0.55f, 0.6f, 0.4f, 0.5f, 0.39f}, {1, 1, 7});
  const Ids want{B_, I_, 0, 0, I_, 0, B_};
  REQUIRE(retina(iou, {1}) == want);
  REQUIRE(retina(iou, {1}, false) == want);
  REQUIRE(retina(iou.to(DType::f64), {1}) == want);
  // Other thresholds.
  REQUIRE(det::match_retinanet(iou, counts_of({1}), 0.7, 0.3).to_vector<int64_t>() ==
          Ids{I_, I_, I_, 0, I_, I_, I_});
}

TEST_CASE("match_retinanet: low-quality matches") {
  // GT0 [0.35, 0.1, 0.2], GT1 [0.1, 0.45, 0.3]: GT0's best (0.35, anchor 0) is background by the
  // bands and GT1's best (0.45, anchor 1) is ignore; low-quality matching promotes both.
  Tensor iou = iou_of({0.35f, 0.1f, 0.2f, 0.1f, 0.45f, 0.3f}, {1, 2, 3});
  REQUIRE(retina(iou, {2}) == Ids{0, 1, B_});
  REQUIRE(retina(iou, {2}, false) == Ids{B_, I_, B_});

  // The promoted anchor takes its OWN best GT: anchor 0 is GT0's best (0.3) but its best GT is
  // GT1 (0.45). GT0 [0.3, 0.1, 0], GT1 [0.45, 0.9, 0].
  REQUIRE(retina(iou_of({0.3f, 0.1f, 0.0f, 0.45f, 0.9f, 0.0f}, {1, 2, 3}), {2}) == Ids{1, 1, B_});

  // A tie for a GT's best IoU promotes every tied anchor (0 and 2).
  REQUIRE(retina(iou_of({0.3f, 0.1f, 0.3f, 0.2f}, {1, 1, 4}), {1}) == Ids{0, B_, 0, B_});

  // A GT whose best IoU is 0 promotes nothing (else anchors 1 and 2 would become GT 0).
  //   GT0 [0, 0, 0], GT1 [0.2, 0, 0]
  REQUIRE(retina(iou_of({0.0f, 0.0f, 0.0f, 0.2f, 0.0f, 0.0f}, {1, 2, 3}), {2}) == Ids{1, B_, B_});
}

TEST_CASE("match_retinanet: zero-GT images, padded rows and a mixed batch") {
  const float J = kJunk;
  Tensor iou = iou_of({J, J, J, J, J, J, J, J, J, J, J, J,                                          // no GT
                       0.2f, 0.45f, 0.7f, 0.1f, J, J, J, J, J, J, J, J,                             // 1 GT
                       0.1f, 0.5f, 0.38f, 0.2f, 0.3f, 0.2f, 0.39f, 0.1f, 0.05f, 0.05f, 0.1f, 0.15f},  // 3 GTs
                      {3, 3, 4});
  // image 2: anchor 0: best GT1 0.3 -> background; 1: GT0 0.5 -> foreground; 2: best GT1 0.39,
  // GT1's best -> promoted to GT1; 3: GT2's best (0.15) -> promoted to its own best GT, GT0 (0.2).
  REQUIRE(retina(iou, {0, 1, 3}) == Ids{B_, B_, B_, B_, B_, I_, 0, B_, B_, 0, 1, 0});
  REQUIRE(retina(iou, {0, 1, 3}, false) == Ids{B_, B_, B_, B_, B_, I_, 0, B_, B_, 0, B_, B_});
  REQUIRE(retina(zeros({2, 0, 5}), {0, 0}) == Ids(10, B_));
}

TEST_CASE("match_ssd and match_retinanet: bad input") {
  Tensor iou = zeros({2, 3, 4});
  REQUIRE_THROWS_WITH(det::match_ssd(zeros({3, 4}), counts_of({1})),
                      Catch::Contains("match_ssd: iou must be 3-d, got shape [3, 4]"));
  REQUIRE_THROWS_WITH(det::match_ssd(iou, from_vector<int32_t>({1, 1}, {2})),
                      Catch::Contains("match_ssd: gt_counts must be i64, got i32"));
  REQUIRE_THROWS_WITH(det::match_ssd(iou, counts_of({1, 1, 1})),
                      Catch::Contains("match_ssd: gt_counts has 3 entries for 2 images"));
  REQUIRE_THROWS_WITH(det::match_ssd(iou, counts_of({1, 4})),
                      Catch::Contains("match_ssd: gt_counts[1] = 4 is outside [0, 3]"));
  REQUIRE_THROWS_WITH(det::match_retinanet(iou, counts_of({-1, 0})),
                      Catch::Contains("match_retinanet: gt_counts[0] = -1 is outside [0, 3]"));
  REQUIRE_THROWS_WITH(det::match_ssd(zeros({2, 3, 4}, DType::i64), counts_of({1, 1})),
                      Catch::Contains("match_ssd: expected a f32 or f64 tensor, got i64"));
  REQUIRE_THROWS_WITH(det::match_retinanet(iou, counts_of({1, 1}), 0.4, 0.5),
                      Catch::Contains("match_retinanet: bg_threshold 0.5 must not exceed fg_threshold 0.4"));
  REQUIRE_THROWS_WITH(det::match_ssd(iou, counts_of({1, 1}), std::nan("")),
                      Catch::Contains("match_ssd: threshold is NaN"));
}

// ---------------------------------------------------------------- CUDA against the CPU

namespace {

// Random IoU [4, 7, A] with counts {7, 0, 3, 1}: values on a grid of 1/20 (many ties both
// per anchor and per GT), junk in padded rows, a few NaNs, and constructed collisions:
// in image 0, GTs 1, 2 and 3 all reach 1.0 at anchor 500 (forcing collision) and GT 4 has
// its best value at two anchors (low-quality tie).
Tensor random_iou(int64_t A, uint64_t seed) {
  const int64_t B = 4, G = 7;
  const Ids counts{7, 0, 3, 1};
  Generator gen(seed);
  std::vector<float> v(static_cast<size_t>(B * G * A));
  for (auto& x : v) x = static_cast<float>(std::floor(gen.uniform() * 20.0) / 20.0);
  auto at = [&](int64_t b, int64_t g, int64_t a) -> float& { return v[static_cast<size_t>((b * G + g) * A + a)]; };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = counts[b]; g < G; ++g)
      for (int64_t a = 0; a < A; ++a) at(b, g, a) = 1.0f;  // padding: must never be read
  for (int g = 1; g <= 3; ++g) at(0, g, 500) = 1.0f;
  for (int64_t a = 0; a < A; ++a) at(0, 4, a) = std::min(at(0, 4, a), 0.3f);
  at(0, 4, 17) = at(0, 4, 900) = 0.35f;
  at(2, 1, 3) = kNaN;
  at(2, 2, 0) = kNaN;
  return from_vector<float>(v, {B, G, A});
}

const Ids kCudaCounts{7, 0, 3, 1};

}  // namespace

TEST_CASE("match_ssd: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor iou = random_iou(1000, 42).to(dt);
    for (double thr : {0.5, 0.35}) {
      Tensor want = det::match_ssd(iou, counts_of(kCudaCounts), thr);
      // Counts given on the host and on the device.
      Tensor got = det::match_ssd(iou.cuda(), counts_of(kCudaCounts), thr);
      Tensor got2 = det::match_ssd(iou.cuda(), counts_of(kCudaCounts).cuda(), thr);
      REQUIRE(got.is_cuda());
      REQUIRE(got.cpu().to_vector<int64_t>() == want.to_vector<int64_t>());
      REQUIRE(got2.cpu().to_vector<int64_t>() == want.to_vector<int64_t>());
    }
    // The constructed collision: GTs 1..3 force anchor 500, GT 3 wins.
    REQUIRE(det::match_ssd(iou.cuda(), counts_of(kCudaCounts)).cpu().to_vector<int64_t>()[500] == 3);
  }
  // The hand example, on the device.
  Tensor small = iou_of({0.4f, 0.5f, 0.6f, 0.8f, 0.9f, 0.7f}, {1, 2, 3}).cuda();
  REQUIRE(det::match_ssd(small, counts_of({2})).cpu().to_vector<int64_t>() == Ids{1, 1, 0});
}

TEST_CASE("match_retinanet: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor iou = random_iou(1000, 43).to(dt);
    for (bool low_quality : {true, false}) {
      Tensor want = det::match_retinanet(iou, counts_of(kCudaCounts), 0.5, 0.4, low_quality);
      Tensor got = det::match_retinanet(iou.cuda(), counts_of(kCudaCounts).cuda(), 0.5, 0.4, low_quality);
      REQUIRE(got.cpu().to_vector<int64_t>() == want.to_vector<int64_t>());
    }
    // The constructed tie of GT 4 in image 0 promotes both anchors.
    Ids m = det::match_retinanet(iou.cuda(), counts_of(kCudaCounts)).cpu().to_vector<int64_t>();
    REQUIRE(m[17] >= 0);
    REQUIRE(m[900] >= 0);
  }
  Tensor small = iou_of({0.3f, 0.1f, 0.3f, 0.2f}, {1, 1, 4}).cuda();
  REQUIRE(det::match_retinanet(small, counts_of({1})).cpu().to_vector<int64_t>() == Ids{0, B_, 0, B_});
}
