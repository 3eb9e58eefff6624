// detect_postprocess: the presets, hand-built cases for both score kinds (overlap within a
// class, same box in two classes, threshold, top-k and its tie rule, background, per-level
// top-k, max_per_image, empty images, decode), an independent reference on random data, bad
// input, and CUDA vs CPU.
#include <algorithm>
#include <cmath>
#include <random>

#include "engine/cuda_context.h"
#include "engine/detection.h"
#include "test_helpers.h"

using namespace eng;
using det::Detections;
using det::PostprocessOptions;
using det::ScoreKind;

namespace {

Tensor t64(const std::vector<double>& v, const Shape& s) { return from_vector(v, s, TensorOptions(DType::f64)); }

// Options with every field set by the test (no dependence on the presets).
PostprocessOptions opts(ScoreKind kind, double thr, int64_t topk, double nms, int64_t max_out) {
  PostprocessOptions o;
  o.kind = kind;
  o.score_threshold = thr;
  o.topk_candidates = topk;
  o.nms_threshold = nms;
  o.max_per_image = max_out;
  o.weights = {10, 10, 5, 5};
  return o;
}

struct Det {
  double score;
  int64_t label;
  std::vector<double> box;
};

std::vector<Det> image_dets(const Detections& d, int64_t b) {
  const int64_t n = d.counts.cpu().to_vector<int64_t>()[b];
  std::vector<double> s = d.scores.cpu().select(0, b).to_vector<double>();
  std::vector<int64_t> l = d.labels.cpu().select(0, b).to_vector<int64_t>();
  std::vector<double> bx = d.boxes.cpu().select(0, b).to_vector<double>();
  std::vector<Det> out;
  for (int64_t j = 0; j < n; ++j) out.push_back({s[j], l[j], {bx.begin() + 4 * j, bx.begin() + 4 * j + 4}});
  return out;
}

double softmax_of(const std::vector<double>& row, size_t c) {
  double s = 0;
  for (double v : row) s += std::exp(v);
  return std::exp(row[c]) / s;
}
double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

TEST_CASE("detect_postprocess: presets") {
  PostprocessOptions s = PostprocessOptions::ssd();
  CHECK(s.kind == ScoreKind::Softmax);
  CHECK(s.score_threshold == 0.01);
  CHECK(s.topk_candidates == 400);
  CHECK(s.nms_threshold == 0.45);
  CHECK(s.max_per_image == 200);
  CHECK((s.weights.wx == 10 && s.weights.wy == 10 && s.weights.ww == 5 && s.weights.wh == 5));
  PostprocessOptions r = PostprocessOptions::retinanet();
  CHECK(r.kind == ScoreKind::Sigmoid);
  CHECK(r.score_threshold == 0.05);
  CHECK(r.topk_candidates == 1000);
  CHECK(r.nms_threshold == 0.5);
  CHECK(r.max_per_image == 300);
  CHECK((r.weights.wx == 1 && r.weights.wy == 1 && r.weights.ww == 1 && r.weights.wh == 1));
}

TEST_CASE("detect_postprocess: softmax keeps one of two overlapping boxes per class, never the background") {
  // Anchors 0 and 1 overlap (IoU 0.68); anchor 2 is far away and almost surely background.
  // Zero deltas: boxes are the anchors. Class 1: a0 beats a1. Class 2: a1 beats a0. The
  // background (class 0) would pass the threshold for a0 and a1 and dominates a2, but is
  // never a candidate.
  const std::vector<std::vector<double>> rows = {{0, 4, 0}, {0, 3, 0.5}, {5, 0, 0}};
  std::vector<double> logits;
  for (const auto& r : rows) logits.insert(logits.end(), r.begin(), r.end());
  Tensor x = t64(logits, {1, 3, 3});
  Tensor anchors = t64({0, 0, 10, 10, 1, 1, 11, 11, 50, 50, 60, 60}, {3, 4});
  Detections d = det::detect_postprocess(x, zeros({1, 3, 4}, DType::f64), anchors,
                                         opts(ScoreKind::Softmax, 0.01, 400, 0.45, 10));
  REQUIRE(d.boxes.sizes() == Shape{1, 10, 4});
  REQUIRE(d.labels.dtype() == DType::i64);
  std::vector<Det> k = image_dets(d, 0);
  REQUIRE(k.size() == 2);
  CHECK(k[0].label == 1);
  CHECK(k[0].score == Approx(softmax_of(rows[0], 1)).epsilon(1e-12));
  CHECK(k[0].box == std::vector<double>{0, 0, 10, 10});
  CHECK(k[1].label == 2);
  CHECK(k[1].score == Approx(softmax_of(rows[1], 2)).epsilon(1e-12));
  CHECK(k[1].box == std::vector<double>{1, 1, 11, 11});
  // Sanity of the data: the background scores would have passed the threshold.
  CHECK(softmax_of(rows[0], 0) > 0.01);
  CHECK(softmax_of(rows[2], 1) < 0.01);
  // Padding.
  CHECK(d.labels.to_vector<int64_t>()[2] == -1);
  CHECK(d.scores.to_vector<double>()[2] == 0.0);
}

TEST_CASE("detect_postprocess: the same box in two classes is kept twice") {
  // p1 == p2: equal scores, the lower class comes first.
  Tensor x = t64({0, 2, 2}, {1, 1, 3});
  Tensor anchors = t64({0, 0, 10, 10}, {1, 4});
  Detections d = det::detect_postprocess(x, zeros({1, 1, 4}, DType::f64), anchors,
                                         opts(ScoreKind::Softmax, 0.01, 400, 0.45, 10));
  std::vector<Det> k = image_dets(d, 0);
  REQUIRE(k.size() == 2);
  CHECK(k[0].label == 1);
  CHECK(k[1].label == 2);
  CHECK(k[0].score == k[1].score);
  CHECK(k[0].score == Approx(std::exp(2.0) / (1 + 2 * std::exp(2.0))).epsilon(1e-12));
  CHECK(k[0].box == k[1].box);
}

TEST_CASE("detect_postprocess: score threshold") {
  // p = (0.2119, 0.5761, 0.2119): threshold 0.3 keeps class 1 only, 0.2 keeps classes 1 and 2.
  Tensor x = t64({0, 1, 0}, {1, 1, 3});
  Tensor anchors = t64({0, 0, 10, 10}, {1, 4});
  Tensor deltas = zeros({1, 1, 4}, DType::f64);
  Detections hi = det::detect_postprocess(x, deltas, anchors, opts(ScoreKind::Softmax, 0.3, 400, 0.45, 10));
  Detections lo = det::detect_postprocess(x, deltas, anchors, opts(ScoreKind::Softmax, 0.2, 400, 0.45, 10));
  REQUIRE(image_dets(hi, 0).size() == 1);
  CHECK(image_dets(hi, 0)[0].label == 1);
  REQUIRE(image_dets(lo, 0).size() == 2);
  CHECK(image_dets(lo, 0)[1].label == 2);
  // Sigmoid: p = sigmoid(0) = 0.5 exactly; the threshold is strict.
  Tensor z = t64({0}, {1, 1, 1});
  CHECK(image_dets(det::detect_postprocess(z, deltas, anchors, opts(ScoreKind::Sigmoid, 0.5, 10, 0.5, 10)), 0)
            .empty());
  CHECK(image_dets(det::detect_postprocess(z, deltas, anchors, opts(ScoreKind::Sigmoid, 0.49, 10, 0.5, 10)), 0)
            .size() == 1);
}

namespace {
// Five disjoint 10x10 anchors on a row.
Tensor row_anchors(int64_t n) {
  std::vector<double> v;
  for (int64_t i = 0; i < n; ++i) v.insert(v.end(), {20.0 * i, 0, 20.0 * i + 10, 10});
  return t64(v, {n, 4});
}
}  // namespace

TEST_CASE("detect_postprocess: softmax top-k per class and its tie rule") {
  // Class 1 logits over 5 disjoint anchors (background 0): 1, 3, 2, 3, 3. With top-2 the two
  // best are a1 and a3 (a4 has the same score but a higher anchor index).
  Tensor x = t64({0, 1, 0, 3, 0, 2, 0, 3, 0, 3}, {1, 5, 2});
  Tensor deltas = zeros({1, 5, 4}, DType::f64);
  Detections d2 = det::detect_postprocess(x, deltas, row_anchors(5), opts(ScoreKind::Softmax, 0.01, 2, 0.45, 10));
  std::vector<Det> k = image_dets(d2, 0);
  REQUIRE(k.size() == 2);
  CHECK(k[0].box[0] == 20);  // a1
  CHECK(k[1].box[0] == 60);  // a3
  // Top-4: a1, a3, a4 (ties by anchor), then a2.
  Detections d4 = det::detect_postprocess(x, deltas, row_anchors(5), opts(ScoreKind::Softmax, 0.01, 4, 0.45, 10));
  k = image_dets(d4, 0);
  REQUIRE(k.size() == 4);
  CHECK(k[0].box[0] == 20);
  CHECK(k[1].box[0] == 60);
  CHECK(k[2].box[0] == 80);
  CHECK(k[3].box[0] == 40);
  CHECK(k[3].score == Approx(sig(2)).epsilon(1e-12));  // softmax of (0, 2) is sigmoid(2)
}

TEST_CASE("detect_postprocess: max_per_image and images without candidates") {
  // Image 0: five disjoint anchors of class 1, max 3 kept (the best three). Image 1: the
  // background dominates everywhere (p1 = 4.5e-5 < 0.01): count 0.
  Tensor x = t64({0, 1, 0, 5, 0, 2, 0, 4, 0, 3, /**/ 10, 0, 10, 0, 10, 0, 10, 0, 10, 0}, {2, 5, 2});
  Detections d = det::detect_postprocess(x, zeros({2, 5, 4}, DType::f64), row_anchors(5),
                                         opts(ScoreKind::Softmax, 0.01, 400, 0.45, 3));
  REQUIRE(d.counts.to_vector<int64_t>() == std::vector<int64_t>{3, 0});
  std::vector<Det> k = image_dets(d, 0);
  CHECK(k[0].box[0] == 20);  // logit 5
  CHECK(k[1].box[0] == 60);  // logit 4
  CHECK(k[2].box[0] == 80);  // logit 3
  CHECK(d.labels.select(0, 1).to_vector<int64_t>() == std::vector<int64_t>{-1, -1, -1});
  // No anchors at all: every image is empty.
  Detections e = det::detect_postprocess(zeros({2, 0, 3}, DType::f64), zeros({2, 0, 4}, DType::f64),
                                         zeros({0, 4}, DType::f64), PostprocessOptions::ssd());
  CHECK(e.counts.to_vector<int64_t>() == std::vector<int64_t>{0, 0});
  CHECK(e.boxes.sizes() == Shape{2, 200, 4});
}

TEST_CASE("detect_postprocess: decode of the survivors") {
  // Anchor (10, 20, 30, 60): centre (20, 40), size 20 x 40. Deltas (1, -2, 0.5, 5) with
  // weights (10, 10, 5, 5): centre (22, 32), size (20 e^0.1, 40 e^1).
  Tensor x = t64({0, 3, 0, 3}, {1, 2, 2});
  Tensor anchors = t64({10, 20, 30, 60, 100, 100, 110, 110}, {2, 4});
  // Anchor 1: th = 50 -> dh = 10, clamped at ln(1000/16): height 10 * 1000 / 16 = 625.
  Tensor deltas = t64({1, -2, 0.5, 5, 0, 0, 0, 50}, {1, 2, 4});
  Detections d = det::detect_postprocess(x, deltas, anchors, opts(ScoreKind::Softmax, 0.01, 400, 0.45, 10));
  std::vector<Det> k = image_dets(d, 0);
  REQUIRE(k.size() == 2);
  const double w = 20 * std::exp(0.1), h = 40 * std::exp(1.0);
  REQUIRE_CLOSE(t64(k[0].box, {4}), t64({22 - w / 2, 32 - h / 2, 22 + w / 2, 32 + h / 2}, {4}), 1e-12, 1e-12);
  REQUIRE_CLOSE(t64(k[1].box, {4}), t64({100, 105 - 312.5, 110, 105 + 312.5}, {4}), 1e-9, 1e-12);
}

TEST_CASE("detect_postprocess: sigmoid top-k is per level over (anchor, class) pairs") {
  // Two levels of two disjoint anchors, C = 2 (class 0 is a real class for Sigmoid).
  // Level 0: (a0, c0) logit 3, (a1, c0) logit 2; level 1: (a2, c0) logit 1; the rest -9.
  // Top-1 per level keeps a0 and a2, dropping a1 although it beats a2.
  Tensor x = t64({3, -9, 2, -9, 1, -9, -9, -9}, {1, 4, 2});
  Tensor deltas = zeros({1, 4, 4}, DType::f64);
  PostprocessOptions o = opts(ScoreKind::Sigmoid, 0.05, 1, 0.5, 10);
  o.level_sizes = {2, 2};
  std::vector<Det> k = image_dets(det::detect_postprocess(x, deltas, row_anchors(4), o), 0);
  REQUIRE(k.size() == 2);
  CHECK(k[0].label == 0);
  CHECK(k[0].box[0] == 0);
  CHECK(k[0].score == Approx(sig(3)).epsilon(1e-12));
  CHECK(k[1].box[0] == 40);
  CHECK(k[1].score == Approx(sig(1)).epsilon(1e-12));
  // One level (level_sizes empty) with top-2: a0 and a1.
  o.level_sizes = {};
  o.topk_candidates = 2;
  k = image_dets(det::detect_postprocess(x, deltas, row_anchors(4), o), 0);
  REQUIRE(k.size() == 2);
  CHECK(k[1].box[0] == 20);
  // Pairs are flattened anchor-major: a0 has classes 0 and 1 at logit 2, a1 class 0 at logit 2.
  // Top-2 of the three equal scores: (a0, c0) and (a0, c1); (a1, c0) is cut.
  Tensor y = t64({2, 2, -9, 2, -9, -9}, {1, 2, 3});
  o.topk_candidates = 2;
  k = image_dets(det::detect_postprocess(y, zeros({1, 2, 4}, DType::f64), row_anchors(2), o), 0);
  REQUIRE(k.size() == 2);
  CHECK(k[0].label == 0);
  CHECK(k[1].label == 1);
  CHECK(k[0].box[0] == 0);
  CHECK(k[1].box[0] == 0);
}

namespace {

// ---- an independent reference, written from the torchvision description -------------------

struct RefCand {
  double box[4];
  double score;
  int64_t label;
};

void decode_by_hand(const double* t, const double* a, const det::BoxCoderWeights& w, double* out) {
  const double aw = a[2] - a[0], ah = a[3] - a[1], acx = a[0] + aw / 2, acy = a[1] + ah / 2;
  const double clamp = std::log(1000.0 / 16);
  const double cx = acx + t[0] / w.wx * aw, cy = acy + t[1] / w.wy * ah;
  const double pw = std::exp(std::min(t[2] / w.ww, clamp)) * aw, ph = std::exp(std::min(t[3] / w.wh, clamp)) * ah;
  out[0] = cx - pw / 2, out[1] = cy - ph / 2, out[2] = cx + pw / 2, out[3] = cy + ph / 2;
}

using test::iou_by_hand;

// torchvision-style: per class (Softmax) or per level (Sigmoid) select + top-k, concatenate
// the lists, then class-wise NMS as a global greedy pick (best first, ties to the earlier
// list position), keep max_per_image.
std::vector<RefCand> reference_image(const std::vector<double>& logits, const std::vector<double>& deltas,
                                     const std::vector<double>& anchors, int64_t A, int64_t C,
                                     const PostprocessOptions& o) {
  std::vector<RefCand> list;
  auto take = [&](std::vector<std::pair<double, int64_t>>& v, int64_t k, auto&& to_cand) {
    std::sort(v.begin(), v.end(), [](const auto& p, const auto& q) {
      return p.first != q.first ? p.first > q.first : p.second < q.second;
    });
    for (size_t r = 0; r < v.size() && static_cast<int64_t>(r) < k; ++r) list.push_back(to_cand(v[r]));
  };
  auto cand = [&](double score, int64_t a, int64_t label) {
    RefCand c;
    decode_by_hand(&deltas[4 * a], &anchors[4 * a], o.weights, c.box);
    c.score = score;
    c.label = label;
    return c;
  };
  if (o.kind == ScoreKind::Softmax) {
    for (int64_t c = 1; c < C; ++c) {
      std::vector<std::pair<double, int64_t>> v;
      for (int64_t a = 0; a < A; ++a) {
        double s = 0;
        for (int64_t k = 0; k < C; ++k) s += std::exp(logits[a * C + k]);
        const double p = std::exp(logits[a * C + c]) / s;
        if (p > o.score_threshold) v.push_back({p, a});
      }
      take(v, o.topk_candidates, [&](const auto& p) { return cand(p.first, p.second, c); });
    }
  } else {
    std::vector<int64_t> levels = o.level_sizes.empty() ? std::vector<int64_t>{A} : o.level_sizes;
    int64_t start = 0;
    for (int64_t n : levels) {
      std::vector<std::pair<double, int64_t>> v;
      for (int64_t f = 0; f < n * C; ++f) {
        const double p = 1.0 / (1.0 + std::exp(-logits[start * C + f]));
        if (p > o.score_threshold) v.push_back({p, f});
      }
      take(v, o.topk_candidates, [&](const auto& p) { return cand(p.first, start + p.second / C, p.second % C); });
      start += n;
    }
  }
  std::vector<bool> alive(list.size(), true);
  std::vector<RefCand> out;
  while (static_cast<int64_t>(out.size()) < o.max_per_image) {
    int64_t best = -1;
    for (size_t i = 0; i < list.size(); ++i)
      if (alive[i] && (best < 0 || list[i].score > list[best].score)) best = static_cast<int64_t>(i);
    if (best < 0) break;
    out.push_back(list[best]);
    for (size_t i = 0; i < list.size(); ++i)
      if (alive[i] && list[i].label == list[best].label &&
          (static_cast<int64_t>(i) == best || iou_by_hand(list[i].box, list[best].box) > o.nms_threshold))
        alive[i] = false;
  }
  return out;
}

// Random anchors in clusters (so that decoded boxes overlap), small random deltas.
std::vector<double> random_anchors(int64_t A, std::mt19937_64& rng, double extent = 300) {
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<double> v;
  for (int64_t a = 0; a < A; ++a) {
    const double cx = extent * (std::floor(u(rng) * 6) + 0.5) / 6 + 10 * u(rng);
    const double cy = extent * (std::floor(u(rng) * 6) + 0.5) / 6 + 10 * u(rng);
    const double w = 16 + 80 * u(rng), h = 16 + 80 * u(rng);
    v.insert(v.end(), {cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2});
  }
  return v;
}
std::vector<double> random_normal(size_t n, std::mt19937_64& rng, double mean, double sd) {
  std::normal_distribution<double> g(mean, sd);
  std::vector<double> v(n);
  for (double& x : v) x = g(rng);
  return v;
}

void check_against_reference(const PostprocessOptions& o, int64_t B, int64_t A, int64_t C, double logit_mean,
                             double logit_sd, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> anchors = random_anchors(A, rng);
  std::vector<double> logits = random_normal(B * A * C, rng, logit_mean, logit_sd);
  std::vector<double> deltas = random_normal(B * A * 4, rng, 0.0, 0.5);
  Detections d = det::detect_postprocess(t64(logits, {B, A, C}), t64(deltas, {B, A, 4}), t64(anchors, {A, 4}), o);
  for (int64_t b = 0; b < B; ++b) {
    INFO("image " << b);
    std::vector<double> lb(logits.begin() + b * A * C, logits.begin() + (b + 1) * A * C);
    std::vector<double> db(deltas.begin() + b * A * 4, deltas.begin() + (b + 1) * A * 4);
    std::vector<RefCand> ref = reference_image(lb, db, anchors, A, C, o);
    std::vector<Det> got = image_dets(d, b);
    REQUIRE(got.size() == ref.size());
    for (size_t j = 0; j < ref.size(); ++j) {
      INFO("detection " << j);
      REQUIRE(got[j].label == ref[j].label);
      REQUIRE(got[j].score == Approx(ref[j].score).epsilon(1e-12).margin(1e-15));
      for (int c = 0; c < 4; ++c) REQUIRE(got[j].box[c] == Approx(ref[j].box[c]).epsilon(1e-12).margin(1e-9));
    }
  }
}

}  // namespace

TEST_CASE("detect_postprocess: softmax matches an independent reference on random data") {
  // 300 anchors, 6 classes, logits N(0, 2). Checked on this data: top-40 per class cuts
  // (166 kept vs 561 without cuts), max 60 cuts, and NMS removes about half of the rest.
  check_against_reference(opts(ScoreKind::Softmax, 0.01, 40, 0.45, 1000), 2, 300, 6, 0.0, 2.0, 21);
  check_against_reference(opts(ScoreKind::Softmax, 0.01, 400, 0.45, 60), 2, 300, 6, 0.0, 2.0, 23);
  // Generous limits: the threshold and the NMS alone decide.
  check_against_reference(opts(ScoreKind::Softmax, 0.2, 400, 0.45, 1000), 2, 300, 6, 0.0, 2.0, 22);
}

TEST_CASE("detect_postprocess: sigmoid matches an independent reference on random data") {
  // Three levels (150, 100, 50 anchors), 5 classes, logits N(-2, 2): top-60 per level cuts
  // (about 180 kept vs 950 without cuts), then max 80 cuts, then one level without cuts.
  PostprocessOptions o = opts(ScoreKind::Sigmoid, 0.05, 60, 0.5, 1000);
  o.weights = {1, 1, 1, 1};
  o.level_sizes = {150, 100, 50};
  check_against_reference(o, 2, 300, 5, -2.0, 2.0, 31);
  o.topk_candidates = 5000;
  o.max_per_image = 80;
  check_against_reference(o, 2, 300, 5, -2.0, 2.0, 33);
  o.level_sizes = {};
  o.max_per_image = 1000;
  check_against_reference(o, 2, 300, 5, -2.0, 2.0, 32);
}

TEST_CASE("detect_postprocess: rejects bad input") {
  using Catch::Matchers::Contains;
  Tensor x = zeros({1, 2, 3}, DType::f64), dl = zeros({1, 2, 4}, DType::f64), an = zeros({2, 4}, DType::f64);
  PostprocessOptions o = PostprocessOptions::ssd();
  REQUIRE_THROWS_WITH(det::detect_postprocess(x.select(0, 0), dl, an, o),
                      Contains("detect_postprocess: class_logits must be 3-d"));
  REQUIRE_THROWS_WITH(det::detect_postprocess(x, zeros({1, 3, 4}, DType::f64), an, o),
                      Contains("box_deltas must be [B, A, 4]"));
  REQUIRE_THROWS_WITH(det::detect_postprocess(x, dl, zeros({3, 4}, DType::f64), o), Contains("anchors must be [A, 4]"));
  REQUIRE_THROWS_WITH(det::detect_postprocess(x, dl.to(DType::f32), an, o), Contains("dtype mismatch"));
  REQUIRE_THROWS_WITH(det::detect_postprocess(x.to(DType::i64), dl.to(DType::i64), an.to(DType::i64), o),
                      Contains("expected a f32 or f64 tensor"));
  REQUIRE_THROWS_WITH(det::detect_postprocess(zeros({1, 2, 1}, DType::f64), dl, an, o),
                      Contains("Softmax scoring needs C >= 2"));
  PostprocessOptions bad = o;
  bad.topk_candidates = 0;
  REQUIRE_THROWS_WITH(det::detect_postprocess(x, dl, an, bad), Contains("topk_candidates must be >= 1"));
  bad = o;
  bad.max_per_image = 0;
  REQUIRE_THROWS_WITH(det::detect_postprocess(x, dl, an, bad), Contains("max_per_image must be >= 1"));
  bad = o;
  bad.weights.ww = 0;
  REQUIRE_THROWS_WITH(det::detect_postprocess(x, dl, an, bad), Contains("box coder weights must be positive"));
  bad = o;
  bad.nms_threshold = std::nan("");
  REQUIRE_THROWS_WITH(det::detect_postprocess(x, dl, an, bad), Contains("nms_threshold is NaN"));
  PostprocessOptions r = PostprocessOptions::retinanet();
  r.level_sizes = {1, 2};
  REQUIRE_THROWS_WITH(det::detect_postprocess(x, dl, an, r), Contains("level_sizes sum to 3 but there are 2 anchors"));
  r.level_sizes = {3, -1};
  REQUIRE_THROWS_WITH(det::detect_postprocess(x, dl, an, r), Contains("level_sizes[1] is negative"));
  r.level_sizes = std::vector<int64_t>(17, 0);
  r.level_sizes[0] = 2;
  REQUIRE_THROWS_WITH(det::detect_postprocess(x, dl, an, r), Contains("at most 16 levels"));
}

namespace {

// CUDA vs CPU in f32 on the same inputs: same counts and labels, scores and boxes within the
// reduction tolerance.
void check_cuda_matches_cpu(const Tensor& logits, const Tensor& deltas, const Tensor& anchors,
                            const PostprocessOptions& o) {
  Detections ref = det::detect_postprocess(logits, deltas, anchors, o);
  Detections got = det::detect_postprocess(logits.cuda(), deltas.cuda(), anchors.cuda(), o);
  REQUIRE(got.scores.is_cuda());
  REQUIRE(got.counts.cpu().to_vector<int64_t>() == ref.counts.to_vector<int64_t>());
  REQUIRE(got.labels.cpu().to_vector<int64_t>() == ref.labels.to_vector<int64_t>());
  REQUIRE_CLOSE(got.scores.cpu(), ref.scores, test::kReductionAtol, test::kReductionRtol);
  REQUIRE_CLOSE(got.boxes.cpu(), ref.boxes, test::kReductionAtol, test::kReductionRtol);
}

Tensor f32(const std::vector<double>& v, const Shape& s) { return from_vector(v, s, TensorOptions(DType::f32)); }

}  // namespace

TEST_CASE("detect_postprocess: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  std::mt19937_64 rng(2024);
  {
    INFO("SSD300-like: B 2, 8732 anchors, 21 classes");
    const int64_t B = 2, A = 8732, C = 21;
    Tensor anchors = f32(random_anchors(A, rng), {A, 4});
    Tensor logits = f32(random_normal(B * A * C, rng, 0.0, 1.5), {B, A, C});
    Tensor deltas = f32(random_normal(B * A * 4, rng, 0.0, 0.5), {B, A, 4});
    check_cuda_matches_cpu(logits, deltas, anchors, PostprocessOptions::ssd());
    PostprocessOptions strict = PostprocessOptions::ssd();
    strict.score_threshold = 0.3;  // few candidates, short segments
    check_cuda_matches_cpu(logits, deltas, anchors, strict);
  }
  {
    INFO("RetinaNet-like: B 2, 3 levels, 91 classes");
    const int64_t B = 2, C = 91;
    PostprocessOptions o = PostprocessOptions::retinanet();
    o.level_sizes = {32 * 32 * 9, 16 * 16 * 9, 8 * 8 * 9};
    const int64_t A = 32 * 32 * 9 + 16 * 16 * 9 + 8 * 8 * 9;
    Tensor anchors = f32(random_anchors(A, rng, 512), {A, 4});
    Tensor logits = f32(random_normal(B * A * C, rng, -4.0, 1.5), {B, A, C});
    Tensor deltas = f32(random_normal(B * A * 4, rng, 0.0, 0.3), {B, A, 4});
    check_cuda_matches_cpu(logits, deltas, anchors, o);
  }
}

namespace {
// One anchor sticking out of a 100x100 image, zero deltas, class 1 clearly scored.
Detections one_edge_box(double clip, Device device) {
  Tensor logits = from_vector<float>({0.0f, 5.0f}, {1, 1, 2}).to(device);
  Tensor deltas = zeros({1, 1, 4}, TensorOptions(DType::f32).device(device));
  Tensor anchors = from_vector<float>({-10, -10, 20, 20}, {1, 4}).to(device);
  PostprocessOptions o = PostprocessOptions::ssd();
  o.clip_width = o.clip_height = clip;
  return detect_postprocess(logits, deltas, anchors, o);
}
}  // namespace

TEST_CASE("detect_postprocess: clip to the image before NMS (torchvision)") {
  // Zero deltas decode to the anchor itself; the clip clamps it into [0, 100] x [0, 100].
  Detections unclipped = one_edge_box(0, Device::cpu());
  REQUIRE(unclipped.counts.to_vector<int64_t>()[0] == 1);
  auto ub = unclipped.boxes.select(0, 0).select(0, 0).to_vector<double>();
  REQUIRE(ub == std::vector<double>{-10, -10, 20, 20});
  Detections clipped = one_edge_box(100, Device::cpu());
  auto cb = clipped.boxes.select(0, 0).select(0, 0).to_vector<double>();
  REQUIRE(cb == std::vector<double>{0, 0, 20, 20});
  PostprocessOptions bad = PostprocessOptions::ssd();
  bad.clip_width = 100;  // height left at 0
  REQUIRE_THROWS_WITH(detect_postprocess(zeros({1, 1, 2}), zeros({1, 1, 4}), zeros({1, 4}), bad),
                      Catch::Contains("clip size must be both positive or both 0"));
}

TEST_CASE("detect_postprocess: clip matches on cuda", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Detections g = one_edge_box(100, Device::cuda());
  REQUIRE(g.boxes.cpu().select(0, 0).select(0, 0).to_vector<double>() == std::vector<double>{0, 0, 20, 20});
}
