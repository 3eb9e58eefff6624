// det::sample_balanced (torchvision BalancedPositiveNegativeSampler): counts, no duplicates,
// only positives / negatives chosen, an image without GT (negatives only), the int()
// truncation of the positive cap, determinism under a seed, rough uniformity, bad input, and
// the same choice on CUDA.
#include <random>

#include "engine/cuda_context.h"
#include "engine/detection_two_stage.h"
#include "test_helpers.h"

using namespace eng;

namespace {

// labels [B, N]: image 0 has n_pos0 positives (labels 1..3), image 1 none (no GT); the rest
// are negatives (0), ignored (-1) and "between thresholds" (-2), shuffled.
Tensor make_labels(int64_t N, int64_t n_pos0, int64_t n_neg0, int64_t n_neg1, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> v;
  for (int64_t b = 0; b < 2; ++b) {
    std::vector<int64_t> row(static_cast<size_t>(N), -1);
    const int64_t pos = b == 0 ? n_pos0 : 0, neg = b == 0 ? n_neg0 : n_neg1;
    for (int64_t i = 0; i < pos; ++i) row[i] = 1 + i % 3;
    for (int64_t i = pos; i < pos + neg; ++i) row[i] = 0;
    for (int64_t i = pos + neg; i < N; i += 2) row[i] = -2;
    std::shuffle(row.begin(), row.end(), rng);
    v.insert(v.end(), row.begin(), row.end());
  }
  return from_vector(v, {2, N});
}

struct Counts {
  int64_t pos = 0, neg = 0, other = 0;
};
Counts count(const Tensor& mask, const Tensor& labels, int64_t b) {
  const std::vector<uint8_t> m = mask.cpu().select(0, b).to_vector<uint8_t>();
  const std::vector<int64_t> l = labels.cpu().select(0, b).to_vector<int64_t>();
  Counts c;
  for (size_t i = 0; i < m.size(); ++i) {
    REQUIRE((m[i] == 0 || m[i] == 1));
    if (!m[i]) continue;
    if (l[i] >= 1) ++c.pos;
    else if (l[i] == 0) ++c.neg;
    else ++c.other;
  }
  return c;
}

}  // namespace

TEST_CASE("sample_balanced: counts, kinds and the no-GT image") {
  SECTION("few positives: all of them, negatives fill the batch") {
    Tensor labels = make_labels(2000, 10, 900, 700, 1);
    Generator g(3);
    Tensor mask = det::sample_balanced(labels, 256, 0.5, g);
    REQUIRE(mask.dtype() == DType::u8);
    REQUIRE(mask.sizes() == Shape{2, 2000});
    Counts c0 = count(mask, labels, 0), c1 = count(mask, labels, 1);
    REQUIRE(c0.pos == 10);
    REQUIRE(c0.neg == 246);
    REQUIRE(c0.other == 0);
    REQUIRE(c1.pos == 0);  // no GT: negatives only
    REQUIRE(c1.neg == 256);
    REQUIRE(c1.other == 0);
  }
  SECTION("many positives: capped at int(batch * fraction); few negatives: all of them") {
    Tensor labels = make_labels(1000, 300, 50, 20, 2);
    Generator g(4);
    Tensor mask = det::sample_balanced(labels, 512, 0.25, g);
    Counts c0 = count(mask, labels, 0), c1 = count(mask, labels, 1);
    REQUIRE(c0.pos == 128);
    REQUIRE(c0.neg == 50);
    REQUIRE(c1.pos == 0);
    REQUIRE(c1.neg == 20);
  }
  SECTION("int() truncates: 10 x 0.25 = 2.5 -> 2 positives, 8 negatives") {
    Tensor labels = make_labels(100, 30, 30, 30, 3);
    Generator g(5);
    Counts c0 = count(det::sample_balanced(labels, 10, 0.25, g), labels, 0);
    REQUIRE(c0.pos == 2);
    REQUIRE(c0.neg == 8);
  }
  SECTION("batch 0 and empty rows") {
    Tensor labels = make_labels(50, 5, 5, 5, 4);
    Generator g(6);
    REQUIRE(det::sample_balanced(labels, 0, 0.5, g).to_vector<uint8_t>() == std::vector<uint8_t>(100, 0));
    REQUIRE(det::sample_balanced(zeros({3, 0}, TensorOptions(DType::i64)), 256, 0.5, g).sizes() == Shape{3, 0});
  }
}

TEST_CASE("sample_balanced: determinism under a seed, and uniform choice") {
  Tensor labels = make_labels(500, 40, 300, 200, 9);
  Generator a(11), b(11), c(12);
  const std::vector<uint8_t> ma = det::sample_balanced(labels, 64, 0.25, a).to_vector<uint8_t>();
  REQUIRE(ma == det::sample_balanced(labels, 64, 0.25, b).to_vector<uint8_t>());
  REQUIRE(ma != det::sample_balanced(labels, 64, 0.25, c).to_vector<uint8_t>());
  // The generator advances: a second call with the same generator differs.
  REQUIRE(ma != det::sample_balanced(labels, 64, 0.25, a).to_vector<uint8_t>());

  // Choosing 2 of 5 positives and 3 of 6 negatives 4000 times: every entry is chosen with
  // probability 2/5 or 1/2 (binomial sd about 0.008; the bound is 5 sd).
  Tensor small = from_vector<int64_t>({1, 0, 1, 0, 1, -1, 0, 1, 0, 1, 0, 0}, {1, 12});
  std::vector<int> hits(12, 0);
  Generator g(13);
  const int trials = 4000;
  for (int t = 0; t < trials; ++t) {
    const std::vector<uint8_t> m = det::sample_balanced(small, 5, 0.4, g).to_vector<uint8_t>();
    for (int i = 0; i < 12; ++i) hits[i] += m[i];
  }
  const std::vector<int64_t> l = small.to_vector<int64_t>();
  for (int i = 0; i < 12; ++i) {
    const double f = double(hits[i]) / trials;
    INFO("entry " << i << " label " << l[i] << " frequency " << f);
    if (l[i] == 1) REQUIRE(std::fabs(f - 0.4) < 0.04);
    else if (l[i] == 0) REQUIRE(std::fabs(f - 0.5) < 0.04);
    else REQUIRE(hits[i] == 0);
  }
}

TEST_CASE("sample_balanced: bad input") {
  Generator g(1);
  REQUIRE_THROWS_WITH(det::sample_balanced(zeros({2, 3}), 4, 0.5, g), Catch::Contains("labels must be i64"));
  REQUIRE_THROWS_WITH(det::sample_balanced(zeros({3}, TensorOptions(DType::i64)), 4, 0.5, g),
                      Catch::Contains("sample_balanced"));
  REQUIRE_THROWS_WITH(det::sample_balanced(zeros({2, 3}, TensorOptions(DType::i64)), -1, 0.5, g),
                      Catch::Contains("batch_size_per_image must be >= 0"));
  REQUIRE_THROWS_WITH(det::sample_balanced(zeros({2, 3}, TensorOptions(DType::i64)), 4, 1.5, g),
                      Catch::Contains("positive_fraction must be in [0, 1]"));
  REQUIRE_THROWS_WITH(det::sample_balanced(zeros({2, 3}, TensorOptions(DType::i64)), 4, std::nan(""), g),
                      Catch::Contains("positive_fraction must be in [0, 1]"));
}

TEST_CASE("sample_balanced: same choice on cuda", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor labels = make_labels(3000, 60, 2000, 1500, 21);
  Generator a(5), b(5);
  Tensor ref = det::sample_balanced(labels, 256, 0.5, a);
  Tensor got = det::sample_balanced(labels.cuda(), 256, 0.5, b);
  REQUIRE(got.is_cuda());
  REQUIRE(got.dtype() == DType::u8);
  REQUIRE(got.cpu().to_vector<uint8_t>() == ref.to_vector<uint8_t>());
}
