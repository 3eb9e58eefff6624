#include "models/anchor_fit.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <utility>

#include "data/augment.h"
#include "data/input_fit.h"
#include "engine/autograd.h"
#include "engine/detection.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "models/anchor_scales.h"

namespace models {

TrainingBoxes fit_boxes(const data::Dataset& d, int input_size, bool keep_aspect, const data::AspectLimits& limits) {
  ENGINE_CHECK(input_size >= 1, "fit_boxes: input size must be positive, got ", input_size);
  TrainingBoxes out;
  for (const data::Sample& s : d.samples) {
    std::vector<data::Object> objects;
    for (const data::Object& o : s.objects)
      if (!o.difficult && !o.iscrowd) objects.push_back(o);
    if (objects.empty()) continue;
    if (s.width <= 0 || s.height <= 0) {
      ++out.unsized_images;
      continue;
    }
    // The boxes as the loader fits the image (data/input_fit.h): stretched to S x S, or scaled
    // by the aspect-keeping fit of two-stage models.
    const data::InputFit fit = data::fit_input(s.width, s.height, input_size, keep_aspect, limits);
    data::scale_and_drop_small_boxes(objects, s.width, s.height, fit.width, fit.height);
    for (const data::Object& o : objects) out.boxes.push_back(o.box);
  }
  return out;
}

AnchorFit measure_anchor_fit(const std::vector<data::Box>& boxes, const eng::Tensor& anchors) {
  eng::NoGradGuard ng;
  ENGINE_CHECK(anchors.dim() == 2 && anchors.size(1) == 4, "measure_anchor_fit: anchors must be [A, 4], got ",
               eng::shape_str(anchors.sizes()));
  ENGINE_CHECK(anchors.size(0) > 0, "measure_anchor_fit: the model has no anchors");
  const eng::Tensor anc = anchors.to(eng::Device::cpu()).to(eng::DType::f32).contiguous();
  AnchorFit fit;
  fit.boxes = static_cast<int64_t>(boxes.size());
  if (boxes.empty()) return fit;
  std::vector<double> best;
  best.reserve(boxes.size());
  // Chunks of boxes keep the [n, A] IoU matrix small (SSD512 has 24564 anchors).
  constexpr size_t kChunk = 256;
  for (size_t start = 0; start < boxes.size(); start += kChunk) {
    const size_t n = std::min(kChunk, boxes.size() - start);
    std::vector<float> flat;
    flat.reserve(n * 4);
    for (size_t i = start; i < start + n; ++i)
      for (double v : {boxes[i].x1, boxes[i].y1, boxes[i].x2, boxes[i].y2}) flat.push_back(static_cast<float>(v));
    const eng::Tensor b = eng::from_vector(flat, {static_cast<int64_t>(n), 4});
    const eng::Tensor m = eng::max(eng::det::box_iou(b, anc), 1).first.contiguous();
    const float* p = m.data<float>();
    for (size_t i = 0; i < n; ++i) best.push_back(p[i]);
  }
  int64_t hit = 0;
  double sum = 0;
  for (double v : best) {
    hit += v >= kAnchorFitIoU;
    sum += v;
  }
  fit.mean_iou = sum / static_cast<double>(best.size());
  fit.recall = static_cast<double>(hit) / static_cast<double>(best.size());
  std::sort(best.begin(), best.end());
  fit.median_iou = 0.5 * (best[(best.size() - 1) / 2] + best[best.size() / 2]);
  return fit;
}

std::string describe_anchor_fit(const AnchorFit& fit) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%lld boxes: %.1f%% reach IoU %.1f with their best anchor, median best IoU %.3f",
                static_cast<long long>(fit.boxes), 100.0 * fit.recall, kAnchorFitIoU, fit.median_iou);
  return buf;
}

double shape_iou(const BoxShape& a, const BoxShape& b) {
  const double inter = std::min(a.w, b.w) * std::min(a.h, b.h);
  const double uni = a.w * a.h + b.w * b.h - inter;
  return uni > 0 ? inter / uni : 0.0;
}

namespace {

// A uniform double in [0, 1) from 53 bits of mt19937_64: the same on every platform
// (std::uniform_real_distribution's algorithm is not fixed by the standard).
double unit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0); }

size_t nearest(const BoxShape& s, const std::vector<BoxShape>& c) {
  size_t best = 0;
  double best_iou = -1;
  for (size_t j = 0; j < c.size(); ++j) {
    const double iou = shape_iou(s, c[j]);
    if (iou > best_iou) {
      best_iou = iou;
      best = j;
    }
  }
  return best;
}

}  // namespace

std::vector<BoxShape> kmeans_iou_shapes(const std::vector<BoxShape>& shapes, int k, uint64_t seed, int max_iters) {
  ENGINE_CHECK(k >= 1, "k-means: k must be at least 1, got ", k);
  std::set<std::pair<double, double>> distinct;
  for (const BoxShape& s : shapes) {
    ENGINE_CHECK(std::isfinite(s.w) && std::isfinite(s.h) && s.w > 0 && s.h > 0, "k-means: box shape ", s.w, " x ",
                 s.h, " is not positive");
    distinct.insert({s.w, s.h});
  }
  ENGINE_CHECK(static_cast<int64_t>(distinct.size()) >= k, "k-means: ", distinct.size(),
               " distinct box shapes cannot make ", k, " clusters");
  // k-means++ seeding: the first centre uniformly, each next one with probability
  // proportional to its squared distance (1 - IoU)^2 from the nearest centre so far.
  std::mt19937_64 rng(seed);
  std::vector<BoxShape> c;
  c.push_back(shapes[static_cast<size_t>(unit(rng) * static_cast<double>(shapes.size()))]);
  std::vector<double> d2(shapes.size());
  while (static_cast<int>(c.size()) < k) {
    double total = 0;
    for (size_t i = 0; i < shapes.size(); ++i) {
      const double d = 1.0 - shape_iou(shapes[i], c[nearest(shapes[i], c)]);
      total += d2[i] = d * d;
    }
    double r = unit(rng) * total;
    size_t pick = shapes.size();
    for (size_t i = 0; i < shapes.size(); ++i) {
      if (d2[i] <= 0) continue;
      pick = i;  // the last with a positive weight if rounding leaves r > 0
      r -= d2[i];
      if (r < 0) break;
    }
    c.push_back(shapes[pick]);  // pick < size: there are >= k distinct shapes
  }
  // Lloyd iterations: nearest by IoU, centroids = member means (an empty cluster stays put).
  std::vector<size_t> assign(shapes.size(), c.size());
  for (int it = 0; it < max_iters; ++it) {
    bool changed = false;
    for (size_t i = 0; i < shapes.size(); ++i) {
      const size_t j = nearest(shapes[i], c);
      changed = changed || j != assign[i];
      assign[i] = j;
    }
    if (!changed) break;
    std::vector<double> sw(c.size(), 0), sh(c.size(), 0), n(c.size(), 0);
    for (size_t i = 0; i < shapes.size(); ++i) {
      sw[assign[i]] += shapes[i].w;
      sh[assign[i]] += shapes[i].h;
      n[assign[i]] += 1;
    }
    for (size_t j = 0; j < c.size(); ++j)
      if (n[j] > 0) c[j] = {sw[j] / n[j], sh[j] / n[j]};
  }
  std::sort(c.begin(), c.end(), [](const BoxShape& a, const BoxShape& b) { return a.w * a.h < b.w * b.h; });
  return c;
}

double mean_best_shape_iou(const std::vector<BoxShape>& shapes, const std::vector<BoxShape>& clusters) {
  if (shapes.empty() || clusters.empty()) return 0;
  double sum = 0;
  for (const BoxShape& s : shapes) sum += shape_iou(s, clusters[nearest(s, clusters)]);
  return sum / static_cast<double>(shapes.size());
}

std::vector<double> scales_from_clusters(const std::vector<BoxShape>& clusters, int input_size, int64_t count) {
  ENGINE_CHECK(!clusters.empty() && count >= 2 && input_size >= 1, "scales_from_clusters: ", clusters.size(),
               " clusters, ", count, " scales, input ", input_size);
  std::vector<double> logs;
  for (const BoxShape& c : clusters) logs.push_back(std::log(std::sqrt(c.w * c.h) / input_size));
  std::sort(logs.begin(), logs.end());
  const size_t k = logs.size();
  std::vector<double> out;
  for (int64_t i = 0; i < count; ++i) {
    // Position i of count on the sorted clusters, linear in log size between neighbours.
    const double pos = k == 1 ? 0.0 : static_cast<double>(i) * static_cast<double>(k - 1) / static_cast<double>(count - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, k - 1);
    const double t = pos - static_cast<double>(lo);
    out.push_back(std::exp(logs[lo] * (1 - t) + logs[hi] * t));
  }
  // Scales must increase strictly (models/anchor_scales.h): nudge ties apart by 1%.
  for (size_t i = 1; i < out.size(); ++i) out[i] = std::max(out[i], out[i - 1] * 1.01);
  return out;
}

}  // namespace models

namespace models {

namespace {

double fitness(const AnchorFit& f) { return f.recall + 0.5 * f.mean_iou; }

AnchorFit fit_of(const std::vector<data::Box>& boxes, ModelConfig c, const std::vector<double>& scales) {
  c.anchor_preset = "custom";
  c.anchor_scales = scales;
  return measure_anchor_fit(boxes, create_model(c)->anchors(eng::Device::cpu()));
}

}  // namespace

AnchorProposal propose_anchor_scales(const std::vector<data::Box>& boxes, const ModelConfig& base, int k,
                                     uint64_t seed) {
  const int64_t count = anchor_scale_count(base.arch);
  ENGINE_CHECK(count > 0, base.arch, " takes no custom anchor sizes (tiny_ssd, ssd300_vgg16, ssd512_vgg16 and the GluonCV presets do)");
  ENGINE_CHECK(!boxes.empty(), "anchor proposal: no training boxes");
  ENGINE_CHECK(base.input_size >= 1, "anchor proposal: the input size must be resolved, got ", base.input_size);
  const int input = static_cast<int>(base.input_size);
  std::vector<BoxShape> shapes;
  for (const data::Box& b : boxes) shapes.push_back({b.x2 - b.x1, b.y2 - b.y1});
  AnchorProposal p;
  p.clusters = kmeans_iou_shapes(shapes, k > 0 ? k : static_cast<int>(count), seed);
  p.cluster_iou = mean_best_shape_iou(shapes, p.clusters);
  p.kmeans_scales = scales_from_clusters(p.clusters, input, count);

  // Refinement on a deterministic subsample (every n-th box).
  constexpr size_t kMaxSearchBoxes = 2000;
  std::vector<data::Box> sample;
  const size_t stride = (boxes.size() + kMaxSearchBoxes - 1) / kMaxSearchBoxes;
  for (size_t i = 0; i < boxes.size(); i += stride) sample.push_back(boxes[i]);
  // Starting points: the k-means scales, the preset's, and every splice of the two (the j
  // smallest k-means scales on the fine levels, the preset's on the coarse ones). On small
  // objects k-means alone puts small anchors on the coarse maps too, where a local search
  // cannot move them all back; a splice keeps them where they can help. The best start by
  // the fitness below is then refined.
  const std::vector<double> preset = preset_anchor_scales(base);
  std::vector<std::pair<std::string, std::vector<double>>> starts = {{"k-means", p.kmeans_scales}};
  if (preset.size() == p.kmeans_scales.size()) {
    starts.push_back({"preset", preset});
    for (size_t j = 1; j < preset.size(); ++j) {
      std::vector<double> splice(p.kmeans_scales.begin(), p.kmeans_scales.begin() + static_cast<std::ptrdiff_t>(j));
      splice.insert(splice.end(), preset.begin() + static_cast<std::ptrdiff_t>(j), preset.end());
      bool increasing = true;
      for (size_t i = 1; i < splice.size(); ++i) increasing = increasing && splice[i] > splice[i - 1];
      if (increasing) starts.push_back({"k-means " + std::to_string(j) + " + preset " + std::to_string(preset.size() - j), splice});
    }
  }
  std::vector<double> cur;
  double best = -1;
  for (const auto& [name, scales] : starts) {
    const double v = fitness(fit_of(sample, base, scales));
    if (v > best + 1e-12) {
      best = v;
      cur = scales;
      p.start = name;
    }
  }
  constexpr int kRounds = 4;
  for (int round = 0; round < kRounds; ++round) {
    bool improved = false;
    for (size_t i = 0; i < cur.size(); ++i) {
      for (double f : {0.8, 0.9, 1.1, 1.25}) {
        std::vector<double> cand = cur;
        cand[i] *= f;
        const bool valid = cand[i] > 0 && cand[i] <= kMaxAnchorScale && (i == 0 || cand[i] > cand[i - 1]) &&
                           (i + 1 == cand.size() || cand[i] < cand[i + 1]);
        if (!valid) continue;
        const double v = fitness(fit_of(sample, base, cand));
        if (v > best + 1e-12) {
          best = v;
          cur = cand;
          improved = true;
        }
      }
    }
    if (!improved) break;
  }
  p.scales = cur;
  p.fit = fit_of(boxes, base, cur);
  return p;
}

}  // namespace models
