// GluonCV's matcher: eng::det::match_bipartite (bipartite one-to-one, ties, then IoU >= 0.5),
// compared with torchvision's (match_ssd) on hand-made cases, and its CUDA kernel against the
// CPU reference.
#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "engine/detection.h"
#include "test_helpers.h"

using namespace eng;
using det::kBackground;

namespace {

using Ids = std::vector<int64_t>;
constexpr int64_t B_ = kBackground;

Tensor iou_of(const std::vector<float>& v, const Shape& shape, DType dt = DType::f32) {
  return from_vector<float>(v, shape).to(dt);
}
Tensor counts_of(const Ids& c) { return from_vector<int64_t>(c, {static_cast<int64_t>(c.size())}); }

Ids bip(const Tensor& iou, const Ids& counts, double thr = 0.5) {
  Tensor m = det::match_bipartite(iou, counts_of(counts), thr);
  REQUIRE(m.dtype() == DType::i64);
  REQUIRE(m.sizes() == Shape{iou.size(0), iou.size(2)});
  return m.to_vector<int64_t>();
}
Ids ssd(const Tensor& iou, const Ids& counts, double thr = 0.5) {
  return det::match_ssd(iou, counts_of(counts), thr).to_vector<int64_t>();
}

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

}  // namespace

TEST_CASE("match_bipartite: two GTs sharing a best anchor get distinct anchors, match_ssd gives it to the later") {
  // GT0 [0.6, 0.3, 0.1], GT1 [0.9, 0.5, 0.1]: anchor 0 is both GTs' best.
  Tensor iou = iou_of({0.6f, 0.3f, 0.1f, 0.9f, 0.5f, 0.1f}, {1, 2, 3});
  // torchvision: anchor 0 -> GT1 (best, and GT1 forces last), anchor 1 -> GT1 (0.5 >= 0.5);
  // GT0's forcing of anchor 0 is overwritten, so GT0 has no anchor at all.
  REQUIRE(ssd(iou, {2}) == Ids{1, 1, B_});
  // GluonCV: (anchor 0, GT1) = 0.9 first; GT0 takes its best free anchor, 1 (0.3), although
  // anchor 1's own best GT is GT1 at 0.5: the one-to-one step comes before the threshold.
  REQUIRE(bip(iou, {2}) == Ids{1, 0, B_});
  REQUIRE(bip(iou.to(DType::f64), {2}) == Ids{1, 0, B_});
  // The same with the GTs in the other order: bipartite does not depend on the order.
  Tensor swapped = iou_of({0.9f, 0.5f, 0.1f, 0.6f, 0.3f, 0.1f}, {1, 2, 3});
  REQUIRE(bip(swapped, {2}) == Ids{0, 1, B_});
  REQUIRE(ssd(swapped, {2}) == Ids{1, 0, B_});  // torchvision: GT1 (later) now wins anchor 0
}

TEST_CASE("match_bipartite: the threshold step") {
  // One GT: the bipartite step takes anchor 2 (0.7); then >= 0.5 (0.5 included) joins.
  REQUIRE(bip(iou_of({0.49f, 0.5f, 0.7f, 0.2f}, {1, 1, 4}), {1}) == Ids{B_, 0, 0, B_});
  REQUIRE(bip(iou_of({0.49f, 0.5f, 0.7f, 0.2f}, {1, 1, 4}), {1}, 0.3) == Ids{0, 0, 0, B_});
  // A GT whose best IoU is low still gets its one anchor (0.2 at anchor 1), nothing else.
  REQUIRE(bip(iou_of({0.1f, 0.2f, 0.05f, 0.9f, 0.1f, 0.1f}, {1, 2, 3}), {2}) == Ids{1, 0, B_});
  // Threshold step: a free anchor takes its best GT (argmax), not the first one above 0.5.
  //   GT0 [0.95, 0.55, 0.1], GT1 [0.1, 0.8, 0.99]: bipartite 0->0, 2->1; anchor 1 -> GT1 (0.8).
  REQUIRE(bip(iou_of({0.95f, 0.55f, 0.1f, 0.1f, 0.8f, 0.99f}, {1, 2, 3}), {2}) == Ids{0, 1, 1});
  // A threshold above 1 leaves only the one-to-one step.
  REQUIRE(bip(iou_of({0.49f, 0.5f, 0.7f, 0.2f}, {1, 1, 4}), {1}, 1.5) == Ids{B_, B_, 0, B_});
}

TEST_CASE("match_bipartite: ties with a GT's best IoU are matched too, equal pairs go to the lower anchor") {
  // GT0's best IoU 0.4 is at anchors 1 and 2: the bipartite step takes anchor 1 (lower index),
  // the tie rule adds anchor 2. match_ssd forces only anchor 1.
  Tensor iou = iou_of({0.3f, 0.4f, 0.4f, 0.1f}, {1, 1, 4});
  REQUIRE(bip(iou, {1}) == Ids{B_, 0, 0, B_});
  REQUIRE(ssd(iou, {1}) == Ids{B_, 0, B_, B_});
  // Equal pairs across GTs: GT0 and GT1 both reach 0.6 at anchor 0 only; the pair with the
  // lower GT index goes first, GT1 then takes its next free anchor (anchor 1, 0.2). Anchor 0's
  // tie with GT1's column maximum does not matter: it is already taken.
  REQUIRE(bip(iou_of({0.6f, 0.1f, 0.6f, 0.2f}, {1, 2, 2}), {2}) == Ids{0, 1});
  // A free anchor ties with its best GT's maximum: it joins that GT even below 0.5.
  //   GT0 [0.3, 0.3, 0.1], GT1 [0.1, 0.2, 0.45]: 0->0 and 2->1 one-to-one, anchor 1 ties GT0's 0.3.
  REQUIRE(bip(iou_of({0.3f, 0.3f, 0.1f, 0.1f, 0.2f, 0.45f}, {1, 2, 3}), {2}) == Ids{0, 0, 1});
}

TEST_CASE("match_bipartite: GTs without overlap, more GTs than anchors, padding, zero-GT images, NaN") {
  // A GT with IoU 0 everywhere gets nothing (the bipartite threshold is 1e-12), and its zero
  // column maximum does not make every zero anchor a "tie".
  REQUIRE(bip(iou_of({0.0f, 0.0f, 0.0f, 0.0f, 0.7f, 0.0f}, {1, 2, 3}), {2}) == Ids{B_, 1, B_});
  // Three GTs, two anchors: the two best pairs win, GT1 (0.5 at anchor 0, taken) is left out.
  //   GT0 [0.9, 0.1], GT1 [0.5, 0.2], GT2 [0.1, 0.8]
  REQUIRE(bip(iou_of({0.9f, 0.1f, 0.5f, 0.2f, 0.1f, 0.8f}, {1, 3, 2}), {3}) == Ids{0, 2});
  // B = 3, G = 2, A = 3 with 0, 1 and 2 real GTs; padded rows hold 0.99 and must not be read.
  Tensor batch = iou_of({0.99f, 0.99f, 0.99f, 0.99f, 0.99f, 0.99f,  // image 0: both rows padding
                         0.2f,  0.6f,  0.1f,  0.99f, 0.99f, 0.99f,  // image 1: GT0 real
                         0.7f,  0.1f,  0.0f,  0.7f,  0.65f, 0.0f},  // image 2: both real
                        {3, 2, 3});
  REQUIRE(bip(batch, {0, 1, 2}) == Ids{B_, B_, B_, B_, 0, B_, 0, 1, B_});
  // NaN counts as -inf: it never wins and never passes the threshold.
  REQUIRE(bip(iou_of({kNaN, 0.6f, 0.55f}, {1, 1, 3}), {1}) == Ids{B_, 0, 0});
  // No anchors at all: an empty result.
  REQUIRE(bip(iou_of({}, {1, 2, 0}), {2}).empty());
}

TEST_CASE("match_anchors dispatches on the rule, match_bipartite refuses bad input") {
  Tensor iou = iou_of({0.6f, 0.3f, 0.1f, 0.9f, 0.5f, 0.1f}, {1, 2, 3});
  REQUIRE(det::match_anchors(iou, counts_of({2}), det::MatchRule::ssd).to_vector<int64_t>() == ssd(iou, {2}));
  REQUIRE(det::match_anchors(iou, counts_of({2}), det::MatchRule::bipartite).to_vector<int64_t>() == bip(iou, {2}));
  REQUIRE(std::string(det::match_rule_name(det::MatchRule::ssd)) == "ssd");
  REQUIRE(std::string(det::match_rule_name(det::MatchRule::bipartite)) == "bipartite");
  REQUIRE_THROWS_WITH(det::match_bipartite(zeros({3, 4}), counts_of({1})),
                      Catch::Contains("match_bipartite: iou must be 3-d, got shape [3, 4]"));
  REQUIRE_THROWS_WITH(det::match_bipartite(zeros({2, 3, 4}), counts_of({1, 4})),
                      Catch::Contains("match_bipartite: gt_counts[1] = 4 is outside [0, 3]"));
  REQUIRE_THROWS_WITH(det::match_bipartite(zeros({2, 3, 4}), counts_of({1, 1}), std::nan("")),
                      Catch::Contains("match_bipartite: threshold is NaN"));
  REQUIRE_THROWS_WITH(det::match_bipartite(zeros({2, 3, 4}, DType::i64), counts_of({1, 1})),
                      Catch::Contains("match_bipartite: expected a f32 or f64 tensor, got i64"));
}

TEST_CASE("match_bipartite: an ignored GT claims its anchors, which become ignored targets") {
  // GT0 (real) [0.6, 0.3, 0.1], GT1 (ignored, e.g. difficult) [0.9, 0.5, 0.1]: bipartite gives
  // anchor 0 to GT1 and anchor 1 to GT0. With GT1 ignored, anchor 0 is neither positive nor
  // negative (label -1) and anchor 1 is GT0's positive.
  Tensor iou = iou_of({0.6f, 0.3f, 0.1f, 0.9f, 0.5f, 0.1f}, {1, 2, 3});
  Tensor matched = det::match_bipartite(iou, counts_of({2}));
  Tensor anchors = from_vector<float>({0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3}, {3, 4});
  Tensor gt = from_vector<float>({10, 10, 11, 11, 20, 20, 21, 21}, {1, 2, 4});
  Tensor labels = from_vector<int64_t>({3, 5}, {1, 2});
  Tensor ignore = from_vector<uint8_t>({0, 1}, {1, 2});
  det::AssignedTargets t = det::assign_targets(matched, gt, labels, anchors, 8, 0, -1, ignore);
  REQUIRE(t.labels.to_vector<int64_t>() == Ids{-1, 3, 0});
  REQUIRE(t.positive.to_vector<float>() == std::vector<float>{0, 1, 0});
  REQUIRE(t.num_positive.to_vector<int64_t>() == Ids{1});
}

// ---------------------------------------------------------------- CUDA against the CPU

namespace {

// IoU [B, G, A] on a coarse grid (many equal pairs and ties), padded rows of junk, a few NaNs,
// and images where many GTs share their best anchors (the rescans of the greedy step).
Tensor random_iou(const Ids& counts, int64_t G, int64_t A, uint64_t seed, double grid) {
  const int64_t B = static_cast<int64_t>(counts.size());
  Generator gen(seed);
  std::vector<float> v(static_cast<size_t>(B * G * A));
  for (auto& x : v) x = static_cast<float>(std::floor(gen.uniform() * grid) / grid);
  auto at = [&](int64_t b, int64_t g, int64_t a) -> float& { return v[static_cast<size_t>((b * G + g) * A + a)]; };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = counts[b]; g < G; ++g)
      for (int64_t a = 0; a < A; ++a) at(b, g, a) = 1.0f;  // padding
  if (A > 7)
    for (int64_t g = 0; g < std::min<int64_t>(counts[0], 6); ++g) at(0, g, 7) = 1.0f;  // a shared best anchor
  if (counts.size() > 2 && counts[2] > 2) {
    at(2, 1, 3) = kNaN;
    at(2, 2, 0) = kNaN;
  }
  return from_vector<float>(v, {B, G, A});
}

}  // namespace

TEST_CASE("match_bipartite: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  struct Case {
    Ids counts;
    int64_t G, A;
    double grid;
  };
  // Small grids give ties everywhere; G = 40 over 600 anchors gives long rescans; A < G leaves
  // GTs without an anchor.
  for (const Case& c : {Case{{7, 0, 3, 1}, 7, 1000, 20}, Case{{40, 25}, 40, 600, 10}, Case{{5}, 6, 3, 4}}) {
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor iou = random_iou(c.counts, c.G, c.A, 7 + static_cast<uint64_t>(c.G), c.grid).to(dt);
      for (double thr : {0.5, 0.3}) {
        Tensor want = det::match_bipartite(iou, counts_of(c.counts), thr);
        Tensor got = det::match_bipartite(iou.cuda(), counts_of(c.counts).cuda(), thr);
        REQUIRE(got.is_cuda());
        REQUIRE(got.cpu().to_vector<int64_t>() == want.to_vector<int64_t>());
      }
      // One-to-one: in image 0 the GTs that share anchor 7 still get distinct anchors (with
      // hundreds of anchors every GT keeps a positive IoU with some free one).
      if (c.A < 100) continue;
      Ids m = det::match_bipartite(iou.cuda(), counts_of(c.counts), 1.5).cpu().to_vector<int64_t>();
      std::set<int64_t> gts;
      for (int64_t a = 0; a < c.A; ++a)
        if (m[static_cast<size_t>(a)] >= 0) gts.insert(m[static_cast<size_t>(a)]);
      REQUIRE(static_cast<int64_t>(gts.size()) == std::min(c.counts[0], c.A));
    }
  }
  Tensor small = iou_of({0.6f, 0.3f, 0.1f, 0.9f, 0.5f, 0.1f}, {1, 2, 3}).cuda();
  REQUIRE(det::match_bipartite(small, counts_of({2})).cpu().to_vector<int64_t>() == Ids{1, 0, B_});
}
