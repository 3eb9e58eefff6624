// batched_nms: hand-built cases (overlap, labels, strict threshold, tie rule, chains, padding,
// max_per_image), the CUDA sort-key helpers, a brute-force reference on random data, bad
// input, and CUDA vs CPU.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "engine/cuda_context.h"
#include "engine/detection.h"
#include "kernels/nms.h"
#include "test_helpers.h"

using namespace eng;
using eng::det::Detections;

namespace {

// One image's candidates, built by hand.
struct Cand {
  double x1, y1, x2, y2, score;
  int64_t label;
};

// Packs images of candidates (padded with label -1 to the longest image) into tensors.
struct Batch {
  Tensor boxes, scores, labels;
};
Batch pack(const std::vector<std::vector<Cand>>& images, DType dt = DType::f64) {
  size_t K = 0;
  for (const auto& im : images) K = std::max(K, im.size());
  const int64_t B = static_cast<int64_t>(images.size());
  std::vector<double> boxes(B * K * 4, 0.0), scores(B * K, 0.0);
  std::vector<int64_t> labels(B * K, -1);
  for (int64_t b = 0; b < B; ++b)
    for (size_t k = 0; k < images[b].size(); ++k) {
      const Cand& c = images[b][k];
      const size_t i = b * K + k;
      boxes[4 * i] = c.x1, boxes[4 * i + 1] = c.y1, boxes[4 * i + 2] = c.x2, boxes[4 * i + 3] = c.y2;
      scores[i] = c.score;
      labels[i] = c.label;
    }
  const int64_t Ki = static_cast<int64_t>(K);
  return {from_vector(boxes, {B, Ki, 4}, TensorOptions(dt)), from_vector(scores, {B, Ki}, TensorOptions(dt)),
          from_vector(labels, {B, Ki})};
}

// The kept (score, label) of image b, in output order, and the count.
std::vector<std::pair<double, int64_t>> kept(const Detections& d, int64_t b) {
  std::vector<double> s = d.scores.select(0, b).to_vector<double>();
  std::vector<int64_t> l = d.labels.select(0, b).to_vector<int64_t>();
  const int64_t n = d.counts.to_vector<int64_t>()[b];
  std::vector<std::pair<double, int64_t>> out;
  for (int64_t j = 0; j < n; ++j) out.push_back({s[j], l[j]});
  return out;
}

std::vector<double> box_of(const Detections& d, int64_t b, int64_t j) {
  return d.boxes.select(0, b).select(0, j).to_vector<double>();
}

using test::iou_by_hand;

}  // namespace

TEST_CASE("batched_nms: two overlapping boxes of one label keep the better one") {
  // IoU([0,0,10,10], [1,1,11,11]) = 81 / 119 = 0.68; the third box is far away.
  Batch in = pack({{{1, 1, 11, 11, 0.8, 3}, {0, 0, 10, 10, 0.9, 3}, {20, 20, 30, 30, 0.5, 3}}});
  Detections d = det::batched_nms(in.boxes, in.scores, in.labels, 0.5, 10);
  REQUIRE(d.boxes.sizes() == Shape{1, 10, 4});
  REQUIRE(d.scores.sizes() == Shape{1, 10});
  REQUIRE(d.labels.sizes() == Shape{1, 10});
  REQUIRE(d.counts.sizes() == Shape{1});
  REQUIRE(d.labels.dtype() == DType::i64);
  REQUIRE(d.counts.dtype() == DType::i64);
  REQUIRE(d.scores.dtype() == DType::f64);
  auto k = kept(d, 0);
  REQUIRE(k.size() == 2);
  CHECK(k[0] == std::make_pair(0.9, int64_t(3)));
  CHECK(k[1] == std::make_pair(0.5, int64_t(3)));
  CHECK(box_of(d, 0, 0) == std::vector<double>{0, 0, 10, 10});
  CHECK(box_of(d, 0, 1) == std::vector<double>{20, 20, 30, 30});
  // Padding after the count.
  CHECK(box_of(d, 0, 2) == std::vector<double>{0, 0, 0, 0});
  CHECK(d.scores.to_vector<double>()[2] == 0.0);
  CHECK(d.labels.to_vector<int64_t>()[2] == -1);
}

TEST_CASE("batched_nms: boxes of different labels never suppress each other") {
  Batch in = pack({{{1, 1, 11, 11, 0.8, 2}, {0, 0, 10, 10, 0.9, 1}, {0, 0, 10, 10, 0.7, 0}}});
  Detections d = det::batched_nms(in.boxes, in.scores, in.labels, 0.5, 10);
  auto k = kept(d, 0);
  REQUIRE(k.size() == 3);
  CHECK(k[0] == std::make_pair(0.9, int64_t(1)));
  CHECK(k[1] == std::make_pair(0.8, int64_t(2)));
  CHECK(k[2] == std::make_pair(0.7, int64_t(0)));
  CHECK(box_of(d, 0, 1) == std::vector<double>{1, 1, 11, 11});
}

TEST_CASE("batched_nms: the IoU threshold is strict") {
  // [0,0,3,1] and [1,0,4,1]: intersection 2, union 4, IoU exactly 0.5.
  Batch in = pack({{{0, 0, 3, 1, 0.9, 0}, {1, 0, 4, 1, 0.8, 0}}});
  CHECK(kept(det::batched_nms(in.boxes, in.scores, in.labels, 0.5, 5), 0).size() == 2);   // 0.5 > 0.5 is false
  CHECK(kept(det::batched_nms(in.boxes, in.scores, in.labels, 0.49, 5), 0).size() == 1);  // suppressed
  // Touching boxes (intersection 0) are never suppressed, even at threshold 0.
  Batch touch = pack({{{0, 0, 1, 1, 0.9, 0}, {1, 0, 2, 1, 0.8, 0}}});
  CHECK(kept(det::batched_nms(touch.boxes, touch.scores, touch.labels, 0.0, 5), 0).size() == 2);
}

TEST_CASE("batched_nms: only kept boxes suppress (greedy chain)") {
  // A overlaps B (IoU 1/3), B overlaps C (IoU 1/3), A and C are disjoint. At threshold 0.3 A
  // removes B, and C survives because B was not kept.
  Batch in = pack({{{10, 0, 20, 10, 0.7, 5}, {0, 0, 10, 10, 0.9, 5}, {5, 0, 15, 10, 0.8, 5}}});
  Detections d = det::batched_nms(in.boxes, in.scores, in.labels, 0.3, 5);
  auto k = kept(d, 0);
  REQUIRE(k.size() == 2);
  CHECK(k[0].first == 0.9);
  CHECK(k[1].first == 0.7);
  CHECK(box_of(d, 0, 1) == std::vector<double>{10, 0, 20, 10});
}

TEST_CASE("batched_nms: ties go to the lower slot") {
  // Slots 1 and 2 are the same box with the same score: slot 1 is walked first and kept, slot 2
  // is suppressed by it. Slot 0 (other label, same score, other box) comes first in the output
  // because its slot is lower; slot 3 has the same score and label 4 and comes last.
  Batch in = pack({{{50, 50, 60, 60, 0.5, 7},
                    {0, 0, 10, 10, 0.5, 2},
                    {0, 0, 10, 10, 0.5, 2},
                    {100, 100, 110, 110, 0.5, 4}}});
  Detections d = det::batched_nms(in.boxes, in.scores, in.labels, 0.5, 5);
  auto k = kept(d, 0);
  REQUIRE(k.size() == 3);
  CHECK(k[0].second == 7);
  CHECK(k[1].second == 2);
  CHECK(k[2].second == 4);
  // Which of the two identical candidates was kept is visible when their boxes differ a little:
  // slot 1 wins over slot 2 with the same score.
  Batch in2 = pack({{{0, 0, 10, 10, 0.5, 2}, {0, 0, 10, 11, 0.5, 2}}});
  Detections d2 = det::batched_nms(in2.boxes, in2.scores, in2.labels, 0.5, 5);
  REQUIRE(kept(d2, 0).size() == 1);
  CHECK(box_of(d2, 0, 0) == std::vector<double>{0, 0, 10, 10});
  Batch in3 = pack({{{0, 0, 10, 11, 0.5, 2}, {0, 0, 10, 10, 0.5, 2}}});
  Detections d3 = det::batched_nms(in3.boxes, in3.scores, in3.labels, 0.5, 5);
  CHECK(box_of(d3, 0, 0) == std::vector<double>{0, 0, 10, 11});
}

TEST_CASE("batched_nms: padding, max_per_image and empty images") {
  // Image 0: a padding slot with the best score is ignored; 4 disjoint boxes, max 3 kept.
  // Image 1: only padding -> count 0.
  Batch in = pack({{{0, 0, 1, 1, 0.99, -1},
                    {0, 0, 1, 1, 0.2, 0},
                    {2, 2, 3, 3, 0.6, 1},
                    {4, 4, 5, 5, 0.4, 0},
                    {6, 6, 7, 7, 0.8, 2}},
                   {{0, 0, 1, 1, 0.9, -1}, {0, 0, 1, 1, 0.9, -5}}});
  Detections d = det::batched_nms(in.boxes, in.scores, in.labels, 0.5, 3);
  REQUIRE(d.counts.to_vector<int64_t>() == std::vector<int64_t>{3, 0});
  auto k = kept(d, 0);
  CHECK(k[0] == std::make_pair(0.8, int64_t(2)));
  CHECK(k[1] == std::make_pair(0.6, int64_t(1)));
  CHECK(k[2] == std::make_pair(0.4, int64_t(0)));
  CHECK(d.labels.select(0, 1).to_vector<int64_t>() == std::vector<int64_t>{-1, -1, -1});
  CHECK(d.scores.select(0, 1).to_vector<double>() == std::vector<double>{0, 0, 0});
  // K = 0 candidates: all padding, counts 0.
  Detections e = det::batched_nms(zeros({2, 0, 4}), zeros({2, 0}), zeros({2, 0}, DType::i64), 0.5, 4);
  CHECK(e.counts.to_vector<int64_t>() == std::vector<int64_t>{0, 0});
  CHECK(e.labels.sizes() == Shape{2, 4});
  CHECK(e.labels.to_vector<int64_t>() == std::vector<int64_t>(8, -1));
  // f32 in, f32 out.
  Batch f = pack({{{0, 0, 10, 10, 0.9, 0}, {1, 1, 11, 11, 0.8, 0}}}, DType::f32);
  Detections df = det::batched_nms(f.boxes, f.scores, f.labels, 0.5, 2);
  CHECK(df.boxes.dtype() == DType::f32);
  CHECK(df.counts.to_vector<int64_t>() == std::vector<int64_t>{1});
}

TEST_CASE("batched_nms: sort keys and mask geometry of the CUDA path") {
  // Ascending key order must be descending score order; the two zeros share a key.
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> desc = {inf, 3.0f, 1.0f, 0.5f, 1e-30f, 0.0f, -1e-30f, -0.5f, -2.0f, -inf};
  for (size_t i = 0; i + 1 < desc.size(); ++i) {
    INFO("scores " << desc[i] << " and " << desc[i + 1]);
    CHECK(kern::desc_score_key(desc[i]) < kern::desc_score_key(desc[i + 1]));
  }
  CHECK(kern::desc_score_key(-0.0f) == kern::desc_score_key(0.0f));
  for (float s : desc) CHECK(kern::score_from_desc_key(kern::desc_score_key(s)) == s);
  CHECK(!std::signbit(kern::score_from_desc_key(kern::desc_score_key(-0.0f))));
  CHECK(kern::index_bits(1) == 1);
  CHECK(kern::index_bits(2) == 1);
  CHECK(kern::index_bits(3) == 2);
  CHECK(kern::index_bits(8732) == 14);
  CHECK(kern::index_bits(16384) == 14);
  CHECK(kern::index_bits(16385) == 15);
  // Row i (block i / 64) must reach i + max_run - 1: band words = 1 + (62 + max_run) / 64.
  CHECK(kern::nms_words(1) == 1);
  CHECK(kern::nms_words(64) == 1);
  CHECK(kern::nms_words(65) == 2);
  CHECK(kern::nms_band_words(8000, 1) == 1);
  CHECK(kern::nms_band_words(8000, 2) == 2);    // row 63 reaches position 64 (next word)
  CHECK(kern::nms_band_words(8000, 65) == 2);   // row 63 reaches 127
  CHECK(kern::nms_band_words(8000, 66) == 3);   // row 63 reaches 128
  CHECK(kern::nms_band_words(8000, 400) == 8);  // SSD: 400 per class
  CHECK(kern::nms_band_words(8000, 0) == 125);  // 0 = K: all words
  CHECK(kern::nms_band_words(100, 100) == 2);   // capped at the words of the image
}

namespace {

// Brute force, written differently from the kernel: repeatedly take the best remaining
// candidate of the whole image (score desc, slot asc), keep it, and delete every remaining
// candidate of its label that overlaps it by IoU > thr. Picks come out in output order.
std::vector<int64_t> brute_force_nms(const std::vector<double>& boxes, const std::vector<double>& scores,
                                     const std::vector<int64_t>& labels, double thr, int64_t max_out) {
  const size_t K = scores.size();
  std::vector<bool> alive(K);
  for (size_t k = 0; k < K; ++k) alive[k] = labels[k] >= 0;
  std::vector<int64_t> picks;
  while (static_cast<int64_t>(picks.size()) < max_out) {
    int64_t best = -1;
    for (size_t k = 0; k < K; ++k)
      if (alive[k] && (best < 0 || scores[k] > scores[best])) best = static_cast<int64_t>(k);
    if (best < 0) break;
    picks.push_back(best);
    alive[best] = false;
    for (size_t k = 0; k < K; ++k)
      if (alive[k] && labels[k] == labels[best] && iou_by_hand(&boxes[4 * k], &boxes[4 * best]) > thr)
        alive[k] = false;
  }
  return picks;
}

// Random candidates around a few cluster centres so that NMS has work to do. `grid` rounds
// coordinates to integers (exact IoU in float); scores are multiples of 1/64 (many ties).
Batch random_candidates(int64_t B, int64_t K, int64_t num_labels, uint64_t seed, bool grid, DType dt) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> boxes(B * K * 4), scores(B * K);
  std::vector<int64_t> labels(B * K);
  for (int64_t i = 0; i < B * K; ++i) {
    const double cx = 40.0 * std::floor(u(rng) * 8) + 8 * u(rng), cy = 40.0 * std::floor(u(rng) * 8) + 8 * u(rng);
    const double w = 10 + 30 * u(rng), h = 10 + 30 * u(rng);
    double b[4] = {cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2};
    for (double& v : b)
      if (grid) v = std::round(v);
    for (int c = 0; c < 4; ++c) boxes[4 * i + c] = b[c];
    scores[i] = std::floor(u(rng) * 64) / 64.0;
    labels[i] = u(rng) < 0.1 ? -1 : static_cast<int64_t>(u(rng) * num_labels);
  }
  return {from_vector(boxes, {B, K, 4}, TensorOptions(dt)), from_vector(scores, {B, K}, TensorOptions(dt)),
          from_vector(labels, {B, K})};
}

}  // namespace

TEST_CASE("batched_nms: matches a brute-force reference on random data") {
  const int64_t B = 3, K = 400;
  for (double thr : {0.3, 0.5, 0.7}) {
    for (int64_t max_out : {int64_t(25), int64_t(500)}) {
      Batch in = random_candidates(B, K, 5, 100 + static_cast<uint64_t>(thr * 10), false, DType::f64);
      Detections d = det::batched_nms(in.boxes, in.scores, in.labels, thr, max_out);
      std::vector<double> bx = in.boxes.to_vector<double>(), sc = in.scores.to_vector<double>();
      std::vector<int64_t> lb = in.labels.to_vector<int64_t>();
      int64_t total = 0;
      for (int64_t b = 0; b < B; ++b) {
        INFO("thr " << thr << " max_out " << max_out << " image " << b);
        std::vector<double> ib(bx.begin() + b * K * 4, bx.begin() + (b + 1) * K * 4);
        std::vector<double> is(sc.begin() + b * K, sc.begin() + (b + 1) * K);
        std::vector<int64_t> il(lb.begin() + b * K, lb.begin() + (b + 1) * K);
        std::vector<int64_t> picks = brute_force_nms(ib, is, il, thr, max_out);
        REQUIRE(d.counts.to_vector<int64_t>()[b] == static_cast<int64_t>(picks.size()));
        std::vector<double> os = d.scores.select(0, b).to_vector<double>();
        std::vector<int64_t> ol = d.labels.select(0, b).to_vector<int64_t>();
        std::vector<double> ob = d.boxes.select(0, b).to_vector<double>();
        for (size_t j = 0; j < picks.size(); ++j) {
          const int64_t k = picks[j];
          REQUIRE(os[j] == is[k]);
          REQUIRE(ol[j] == il[k]);
          for (int c = 0; c < 4; ++c) REQUIRE(ob[4 * j + c] == ib[4 * k + c]);
        }
        total += static_cast<int64_t>(picks.size());
      }
      // The data must make NMS work: something is suppressed, something survives.
      CHECK(total > 0);
      if (max_out == 500) CHECK(total < B * K * 9 / 10);
    }
  }
}

TEST_CASE("batched_nms: rejects bad input") {
  Batch in = pack({{{0, 0, 1, 1, 0.9, 0}}});
  using Catch::Matchers::Contains;
  REQUIRE_THROWS_WITH(det::batched_nms(in.boxes.select(0, 0), in.scores, in.labels, 0.5, 5),
                      Contains("batched_nms: boxes must be 3-d"));
  REQUIRE_THROWS_WITH(det::batched_nms(zeros({1, 1, 5}, DType::f64), in.scores, in.labels, 0.5, 5),
                      Contains("boxes must be [B, K, 4]"));
  REQUIRE_THROWS_WITH(det::batched_nms(in.boxes, zeros({1, 2}, DType::f64), in.labels, 0.5, 5),
                      Contains("scores must be [B, K]"));
  REQUIRE_THROWS_WITH(det::batched_nms(in.boxes, in.scores, zeros({2, 1}, DType::i64), 0.5, 5),
                      Contains("labels must be [B, K]"));
  REQUIRE_THROWS_WITH(det::batched_nms(in.boxes, in.scores, in.labels.to(DType::i32), 0.5, 5),
                      Contains("labels must be i64"));
  REQUIRE_THROWS_WITH(det::batched_nms(in.boxes, in.scores.to(DType::f32), in.labels, 0.5, 5),
                      Contains("batched_nms: dtype mismatch"));
  REQUIRE_THROWS_WITH(det::batched_nms(in.boxes.to(DType::i64), in.scores.to(DType::i64), in.labels, 0.5, 5),
                      Contains("expected a f32 or f64 tensor"));
  REQUIRE_THROWS_WITH(det::batched_nms(in.boxes, in.scores, in.labels, 0.5, 0),
                      Contains("max_per_image must be >= 1"));
  REQUIRE_THROWS_WITH(det::batched_nms(in.boxes, in.scores, in.labels, std::nan(""), 5),
                      Contains("iou_threshold is NaN"));
}

TEST_CASE("batched_nms: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // Integer boxes (the IoU is then exact on both devices) and scores in steps of 1/64 (many
  // ties, so the tie rule is exercised); 7 labels and 10% padding.
  struct Case {
    int64_t B, K, max_out;
    double thr;
  };
  for (const Case& c : {Case{3, 2000, 100, 0.45}, Case{2, 700, 1000, 0.5}, Case{4, 64, 10, 0.3}, Case{1, 1, 3, 0.5}}) {
    INFO("B " << c.B << " K " << c.K << " max_out " << c.max_out);
    Batch in = random_candidates(c.B, c.K, 7, 7 + c.K, true, DType::f32);
    Detections ref = det::batched_nms(in.boxes, in.scores, in.labels, c.thr, c.max_out);
    Detections got = det::batched_nms(in.boxes.cuda(), in.scores.cuda(), in.labels.cuda(), c.thr, c.max_out);
    REQUIRE(got.boxes.is_cuda());
    REQUIRE(got.counts.cpu().to_vector<int64_t>() == ref.counts.to_vector<int64_t>());
    REQUIRE(got.labels.cpu().to_vector<int64_t>() == ref.labels.to_vector<int64_t>());
    REQUIRE_CLOSE(got.scores.cpu(), ref.scores, test::kReductionAtol, test::kReductionRtol);
    REQUIRE_CLOSE(got.boxes.cpu(), ref.boxes, test::kReductionAtol, test::kReductionRtol);
  }
}
