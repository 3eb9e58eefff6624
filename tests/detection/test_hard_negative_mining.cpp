// Hard-negative mining: eng::det::hard_negative_mining and its loss order (order_key).
#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/detection.h"
#include "kernels/hard_negative_mining.h"
#include "test_helpers.h"

using namespace eng;

namespace {

using Mask = std::vector<uint8_t>;
using Labels = std::vector<int64_t>;

Mask mine(const std::vector<float>& loss, const Labels& labels, const Shape& shape, double ratio,
          int64_t min_negatives = 0, DType dt = DType::f32) {
  Tensor m = det::hard_negative_mining(from_vector<float>(loss, shape).to(dt), from_vector<int64_t>(labels, shape),
                                       ratio, min_negatives);
  REQUIRE(m.dtype() == DType::u8);
  REQUIRE(m.sizes() == shape);
  return m.to_vector<uint8_t>();
}

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Twelve anchors: positives at 0 and 6, anchor 3 ignored (-1) despite the largest loss, nine
// candidates. By (loss desc, index asc) the candidates come as
//   2 (0.9), 11 (0.8), 4 (0.7), 7 (0.7), 1 (0.5), 5 (0.3), 9 (0.3), 10 (0.3), 8 (0.1).
const std::vector<float> kLoss{9.0f, 0.5f, 0.9f, 5.0f, 0.7f, 0.3f, 8.0f, 0.7f, 0.1f, 0.3f, 0.3f, 0.8f};
const Labels kLabels{1, 0, 0, -1, 0, 0, 3, 0, 0, 0, 0, 0};

}  // namespace

TEST_CASE("hard_negative_mining: ratio 3 with two positives") {
  // P = 2 -> 6 negatives: the five above 0.3, then the first of the three tied at 0.3 (5).
  const Mask want{0, 1, 1, 0, 1, 1, 0, 1, 0, 0, 0, 1};
  REQUIRE(mine(kLoss, kLabels, {1, 12}, 3.0) == want);
  REQUIRE(mine(kLoss, kLabels, {1, 12}, 3.0, 0, DType::f64) == want);
  // min_negatives only matters when there is no positive.
  REQUIRE(mine(kLoss, kLabels, {1, 12}, 3.0, 100) == want);
  // A fractional ratio is floored: 2.5 * 2 = 5 -> stops before the tie; 3.4 * 2 = 6.8 -> 6.
  REQUIRE(mine(kLoss, kLabels, {1, 12}, 2.5) == Mask{0, 1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1});
  REQUIRE(mine(kLoss, kLabels, {1, 12}, 3.4) == want);
  // Ratio 4 -> 8: all three tied at 0.3 are in, 8 (0.1) is not.
  REQUIRE(mine(kLoss, kLabels, {1, 12}, 4.0) == Mask{0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1, 1});
  // Ratio 0 selects nothing.
  REQUIRE(mine(kLoss, kLabels, {1, 12}, 0.0, 5) == Mask(12, 0));
}

TEST_CASE("hard_negative_mining: no positives, and more asked than there are candidates") {
  Labels no_pos = kLabels;
  no_pos[0] = no_pos[6] = 0;  // now 11 candidates, anchor 3 still ignored
  // P = 0: k = min_negatives.
  REQUIRE(mine(kLoss, no_pos, {1, 12}, 3.0, 0) == Mask(12, 0));
  // Top 5 of 9 (0), 8 (6), 0.9 (2), 0.8 (11), 0.7 (4); the ignored 5.0 never.
  REQUIRE(mine(kLoss, no_pos, {1, 12}, 3.0, 5) == Mask{1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 1});
  // More than the candidates: every candidate, never the ignored one.
  REQUIRE(mine(kLoss, no_pos, {1, 12}, 3.0, 50) == Mask{1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1});
  REQUIRE(mine(kLoss, kLabels, {1, 12}, 10.0) == Mask{0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1});
  // No candidate at all (positives and ignored only).
  REQUIRE(mine({1, 2, 3, 4}, {1, -1, 2, -1}, {1, 4}, 3.0, 4) == Mask(4, 0));
}

TEST_CASE("hard_negative_mining: images are independent") {
  // Image 0 as above (6 chosen); image 1 has one positive and ratio 3 -> 3 chosen; image 2 has
  // no positive -> min_negatives = 2.
  std::vector<float> loss = kLoss;
  Labels labels = kLabels;
  const std::vector<float> l1{0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f, 0.9f, 1.0f, 1.1f, 1.2f};
  const Labels lab1{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const std::vector<float> l2{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  const Labels lab2(12, 0);
  loss.insert(loss.end(), l1.begin(), l1.end());
  loss.insert(loss.end(), l2.begin(), l2.end());
  labels.insert(labels.end(), lab1.begin(), lab1.end());
  labels.insert(labels.end(), lab2.begin(), lab2.end());
  const Mask got = mine(loss, labels, {3, 12}, 3.0, 2);
  const Mask want{0, 1, 1, 0, 1, 1, 0, 1, 0, 0, 0, 1,   //
                  0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0,   // 0.9, 1.0, 1.1 (1.2 is the positive)
                  1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};  // all tied: the two lowest indices
  REQUIRE(got == want);
}

TEST_CASE("hard_negative_mining: NaN, signed zeros, infinities and negative losses") {
  // Order: NaN (0, 6) > +inf (5) > -0.0 (2) == +0.0 (3) > -1 (1) > -2 (7) > -inf (4).
  const std::vector<float> loss{kNaN, -1.0f, -0.0f, 0.0f, -kInf, kInf, -kNaN, -2.0f};
  const Labels labels(8, 0);
  REQUIRE(mine(loss, labels, {1, 8}, 3.0, 2) == Mask{1, 0, 0, 0, 0, 0, 1, 0});
  REQUIRE(mine(loss, labels, {1, 8}, 3.0, 3) == Mask{1, 0, 0, 0, 0, 1, 1, 0});
  // -0.0 and +0.0 tie: the lower index (2, the negative zero) goes first.
  REQUIRE(mine(loss, labels, {1, 8}, 3.0, 4) == Mask{1, 0, 1, 0, 0, 1, 1, 0});
  REQUIRE(mine(loss, labels, {1, 8}, 3.0, 6) == Mask{1, 1, 1, 1, 0, 1, 1, 0});
  REQUIRE(mine(loss, labels, {1, 8}, 3.0, 7) == Mask{1, 1, 1, 1, 0, 1, 1, 1});
  REQUIRE(mine(loss, labels, {1, 8}, 3.0, 6, DType::f64) == Mask{1, 1, 1, 1, 0, 1, 1, 0});
}

TEMPLATE_TEST_CASE("hard_negative_mining: order_key preserves the loss order", "", float, double) {
  using T = TestType;
  const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
  const T tiny = std::numeric_limits<T>::denorm_min(), big = std::numeric_limits<T>::max();
  // Strictly increasing, except that -0.0 and +0.0 are equal.
  const std::vector<T> up{-inf, -big, T(-1e30), T(-1), T(-0.5), T(-1e-30), -tiny, T(-0.0), T(0.0),
                          tiny, T(1e-30), T(0.5), T(1), T(1e30), big, inf};
  for (size_t i = 0; i + 1 < up.size(); ++i) {
    INFO("i = " << i);
    if (i == 7) REQUIRE(kern::mining::order_key(up[i]) == kern::mining::order_key(up[i + 1]));
    else REQUIRE(kern::mining::order_key(up[i]) < kern::mining::order_key(up[i + 1]));
  }
  // NaN of either sign is above +inf, and every key is >= 1 (0 marks a non-candidate).
  REQUIRE(kern::mining::order_key(nan) > kern::mining::order_key(inf));
  REQUIRE(kern::mining::order_key(-nan) == kern::mining::order_key(nan));
  REQUIRE(kern::mining::order_key(-inf) >= 1);
}

namespace {

// Random batch: losses on a grid of 0.1 in [-0.5, 1.5) (about 20 distinct values, so many
// exact ties), ~3% positives, ~5% ignored, image 1 without positives.
void random_batch(int64_t B, int64_t A, uint64_t seed, std::vector<float>& loss, Labels& labels) {
  Generator gen(seed);
  loss.resize(static_cast<size_t>(B * A));
  labels.resize(static_cast<size_t>(B * A));
  for (int64_t i = 0; i < B * A; ++i) {
    loss[i] = static_cast<float>(std::round(gen.uniform() * 20.0) / 10.0 - 0.5);
    const double u = gen.uniform();
    const bool no_positives = (i / A) == 1;
    labels[i] = (u < 0.03 && !no_positives) ? 1 + static_cast<int64_t>(gen.uniform() * 20) : (u < 0.08 ? -1 : 0);
  }
}

// An independent brute force: stable-sort the candidates by loss (descending), take k.
Mask brute_force(const std::vector<float>& loss, const Labels& labels, int64_t B, int64_t A, double ratio,
                 int64_t min_negatives) {
  Mask out(loss.size(), 0);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> cand;
    int64_t P = 0;
    for (int64_t a = 0; a < A; ++a) {
      if (labels[b * A + a] > 0) ++P;
      if (labels[b * A + a] == 0) cand.push_back(a);
    }
    std::stable_sort(cand.begin(), cand.end(),
                     [&](int64_t x, int64_t y) { return loss[b * A + x] > loss[b * A + y]; });
    int64_t k = P > 0 ? static_cast<int64_t>(std::floor(ratio * P)) : min_negatives;
    k = std::min<int64_t>(k, static_cast<int64_t>(cand.size()));
    for (int64_t i = 0; i < k; ++i) out[b * A + cand[i]] = 1;
  }
  return out;
}

}  // namespace

TEST_CASE("hard_negative_mining: matches a brute-force sort on random data with ties") {
  const int64_t B = 6, A = 500;
  for (uint64_t seed : {1, 2, 3}) {
    std::vector<float> loss;
    Labels labels;
    random_batch(B, A, seed, loss, labels);
    for (double ratio : {3.0, 2.5, 0.0, 40.0}) {
      for (int64_t min_neg : {0, 7}) {
        INFO("seed " << seed << " ratio " << ratio << " min_negatives " << min_neg);
        const Mask want = brute_force(loss, labels, B, A, ratio, min_neg);
        REQUIRE(mine(loss, labels, {B, A}, ratio, min_neg) == want);
        REQUIRE(mine(loss, labels, {B, A}, ratio, min_neg, DType::f64) == want);
      }
    }
  }
}

TEST_CASE("hard_negative_mining: bad input") {
  Tensor loss = zeros({2, 5});
  Tensor labels = zeros({2, 5}, DType::i64);
  REQUIRE_THROWS_WITH(det::hard_negative_mining(zeros({10}), labels),
                      Catch::Contains("hard_negative_mining: loss must be 2-d, got shape [10]"));
  REQUIRE_THROWS_WITH(det::hard_negative_mining(zeros({2, 5}, DType::i64), labels),
                      Catch::Contains("hard_negative_mining: expected a f32 or f64 tensor, got i64"));
  REQUIRE_THROWS_WITH(det::hard_negative_mining(loss, zeros({2, 5}, DType::i32)),
                      Catch::Contains("hard_negative_mining: labels must be i64, got i32"));
  REQUIRE_THROWS_WITH(det::hard_negative_mining(loss, zeros({2, 4}, DType::i64)),
                      Catch::Contains("hard_negative_mining: labels [2, 4] and loss [2, 5] differ in shape"));
  REQUIRE_THROWS_WITH(det::hard_negative_mining(loss, labels, -1.0),
                      Catch::Contains("hard_negative_mining: ratio -1 must be finite and >= 0"));
  REQUIRE_THROWS_WITH(det::hard_negative_mining(loss, labels, std::nan("")),
                      Catch::Contains("must be finite and >= 0"));
  REQUIRE_THROWS_WITH(det::hard_negative_mining(loss, labels, 3.0, -2),
                      Catch::Contains("hard_negative_mining: min_negatives -2 must be >= 0"));
}

TEST_CASE("hard_negative_mining: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // SSD300-like: B = 4, A = 8732, ties on a 0.1 grid, image 1 without positives; image 2 all
  // equal losses (the whole selection is decided by the index rule, across many tiles);
  // image 3 with NaNs, signed zeros and infinities.
  const int64_t B = 4, A = 8732;
  std::vector<float> loss;
  Labels labels;
  random_batch(B, A, 99, loss, labels);
  for (int64_t a = 0; a < A; ++a) loss[2 * A + a] = 0.25f;
  for (int64_t a = 0; a < A; a += 97) loss[3 * A + a] = kNaN;
  for (int64_t a = 5; a < A; a += 89) loss[3 * A + a] = -0.0f;
  for (int64_t a = 7; a < A; a += 83) loss[3 * A + a] = 0.0f;
  loss[3 * A + 11] = kInf;
  loss[3 * A + 12] = -kInf;
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor l = from_vector<float>(loss, {B, A}).to(dt), lab = from_vector<int64_t>(labels, {B, A});
    for (double ratio : {3.0, 1.5, 0.0, 1000.0}) {
      for (int64_t min_neg : {0, 50}) {
        INFO("ratio " << ratio << " min_negatives " << min_neg);
        Tensor want = det::hard_negative_mining(l, lab, ratio, min_neg);
        Tensor got = det::hard_negative_mining(l.cuda(), lab.cuda(), ratio, min_neg);
        REQUIRE(got.is_cuda());
        REQUIRE(got.cpu().to_vector<uint8_t>() == want.to_vector<uint8_t>());
      }
    }
  }
}
