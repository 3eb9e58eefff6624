// bench_kernels rows: anchor matching and hard-negative mining at training shapes.
// All are memory-bound (match_bipartite's greedy step adds up to G row rescans per image); GB/s counts the minimum traffic: the real IoU rows read once
// plus the output written once (matchers), loss + labels read once and the mask written once
// (mining). Inputs are random with fixed seeds.
#include <cstdio>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/detection.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bench {
using namespace eng;
namespace {

// Random IoU in [0, 1) of shape [B, G, A] and per-image GT counts uniform in 0..G.
struct MatchInput {
  Tensor iou, counts;
  double real_rows = 0;  // sum of the counts
};

MatchInput make_match_input(int64_t B, int64_t G, int64_t A, uint64_t seed) {
  Generator gen(seed);
  MatchInput in;
  in.iou = rand({B, G, A}, gen);
  std::vector<int64_t> counts(static_cast<size_t>(B));
  for (auto& c : counts) {
    c = static_cast<int64_t>(gen.uniform() * static_cast<double>(G + 1));
    in.real_rows += static_cast<double>(c);
  }
  in.counts = from_vector(counts, {B});
  return in;
}

enum class Matcher { ssd, retinanet, bipartite };

void match_row(const Options& o, std::vector<Row>& rows, const char* name, int64_t B, int64_t G, int64_t A,
               Matcher matcher) {
  const MatchInput in = make_match_input(B, G, A, matcher == Matcher::retinanet ? 2 : 1);
  const double bytes = in.real_rows * static_cast<double>(A) * 4.0 + static_cast<double>(B * A) * 8.0 +
                       static_cast<double>(B) * 8.0;
  char shape[96];
  std::snprintf(shape, sizeof shape, "iou %lldx%lldx%lld f32, %.0f real GT rows", static_cast<long long>(B),
                static_cast<long long>(G), static_cast<long long>(A), in.real_rows);
  bench_engine_op(o, rows, name, shape, 0, bytes,
                  [&](Device d) { return std::vector<Tensor>{in.iou.to(d), in.counts.to(d)}; },
                  [matcher](const std::vector<Tensor>& t) {
                    NoGradGuard g;
                    switch (matcher) {
                      case Matcher::retinanet: return det::match_retinanet(t[0], t[1]);
                      case Matcher::bipartite: return det::match_bipartite(t[0], t[1]);
                      default: return det::match_ssd(t[0], t[1]);
                    }
                  });
}

void match_ssd_row(const Options& o, std::vector<Row>& rows) { match_row(o, rows, "match_ssd", 32, 20, 8732, Matcher::ssd); }

// The same input as match_ssd: the cost of GluonCV's one-to-one step beside torchvision's.
void match_bipartite_row(const Options& o, std::vector<Row>& rows) {
  match_row(o, rows, "match_bipartite", 32, 20, 8732, Matcher::bipartite);
}

void match_retinanet_row(const Options& o, std::vector<Row>& rows) {
  match_row(o, rows, "match_retinanet", 16, 20, 49104, Matcher::retinanet);
}

// SSD300 at batch 32: per-anchor CE in [0, 5), 1-3% positives per image (labels 1..20),
// the rest candidates.
void mining_row(const Options& o, std::vector<Row>& rows) {
  const int64_t B = 32, A = 8732;
  Generator gen(3);
  Tensor loss = rand({B, A}, gen) * 5.0;
  std::vector<int64_t> labels(static_cast<size_t>(B * A), 0);
  for (int64_t b = 0; b < B; ++b) {
    const double frac = 0.01 + 0.02 * gen.uniform();
    for (int64_t a = 0; a < A; ++a)
      if (gen.uniform() < frac) labels[b * A + a] = 1 + static_cast<int64_t>(gen.uniform() * 20);
  }
  Tensor lab = from_vector(labels, {B, A});
  const double bytes = static_cast<double>(B * A) * (4.0 + 8.0 + 1.0);
  bench_engine_op(o, rows, "hard_negative_mining", "loss 32x8732 f32, ratio 3, 1-3% positives", 0, bytes,
                  [&](Device d) { return std::vector<Tensor>{loss.to(d), lab.to(d)}; },
                  [](const std::vector<Tensor>& t) { return det::hard_negative_mining(t[0], t[1], 3.0); });
}

const RegisterRows kRows(50, {
    {"match_ssd", "eng::det::match_ssd, SSD300 at batch 32: iou 32x20x8732, 0..20 GTs per image", match_ssd_row},
    {"match_retinanet", "eng::det::match_retinanet, RetinaNet 512 at batch 16: iou 16x20x49104",
     match_retinanet_row},
    {"match_bipartite", "eng::det::match_bipartite (GluonCV), SSD300 at batch 32: iou 32x20x8732, 0..20 GTs per image",
     match_bipartite_row},
    {"hard_negative_mining", "eng::det::hard_negative_mining, SSD300 at batch 32: loss 32x8732, ratio 3",
     mining_row},
});

}  // namespace
}  // namespace bench
