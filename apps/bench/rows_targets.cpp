// bench_kernels row: training targets from matches (eng::det::assign_targets) at SSD300's
// training shape. Memory-bound; GB/s counts the minimum traffic: matches read once (8 B per
// anchor), labels (8 B), boxes (16 B) and the positive mask (4 B) written once.
#include <cmath>
#include <cstdio>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detection.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bench {
using namespace eng;
namespace {

// SSD300 at batch 32, 20 GT rows per image: 2% of the anchors matched to a random real GT,
// 5% ignored, the rest background; labels 1..20.
void assign_targets_row(const Options& o, std::vector<Row>& rows) {
  const int64_t B = 32, G = 20, A = 8732;
  Generator gen(5);
  std::vector<int64_t> m(static_cast<size_t>(B * A)), lab(static_cast<size_t>(B * G));
  for (auto& v : m) {
    const double u = gen.uniform();
    v = u < 0.02 ? static_cast<int64_t>(gen.uniform() * G) : (u < 0.07 ? det::kIgnore : det::kBackground);
  }
  for (auto& l : lab) l = 1 + static_cast<int64_t>(gen.uniform() * 20);
  Tensor matched = from_vector(m, {B, A}), labels = from_vector(lab, {B, G});
  Tensor gt = rand({B, G, 4}, gen) * 300.0, anchors = rand({A, 4}, gen) * 300.0;
  const double bytes = static_cast<double>(B * A) * (8.0 + 8.0 + 16.0 + 4.0) + static_cast<double>(B) * 8.0;
  const char* name = "assign_targets";
  const char* shape = "matched 32x8732, G 20, f32 boxes, 2% positive, 5% ignored";
  auto run = [&](Device d) {
    NoGradGuard g;
    return det::assign_targets(matched.to(d), gt.to(d), labels.to(d), anchors.to(d), 21, 0, -1);
  };
  det::AssignedTargets ref = run(Device::cpu());
  if (o.cpu) {
    Row r = time_it(o, false, [&] { run(Device::cpu()); });
    r.name = name, r.device = "cpu", r.shape = shape, r.bytes = bytes;
    rows.push_back(r);
  }
  if (cuda_rows_possible(o)) {
    Tensor dm = matched.cuda(), dg = gt.cuda(), dl = labels.cuda(), da = anchors.cuda();
    auto on_device = [&] { return det::assign_targets(dm, dg, dl, da, 21, 0, -1); };
    // Every output is compared (integers exactly); the timed call is the op alone.
    det::AssignedTargets got = on_device();
    double err = tolerance_ratio(got.boxes.cpu(), ref.boxes);
    const double err_mask = tolerance_ratio(got.positive.cpu(), ref.positive);
    if (err_mask > err) err = err_mask;
    if (got.labels.cpu().to_vector<int64_t>() != ref.labels.to_vector<int64_t>() ||
        got.num_positive.cpu().to_vector<int64_t>() != ref.num_positive.to_vector<int64_t>())
      err = INFINITY;
    Row r;
    if (err <= 1.0) r = time_it(o, true, [&] { on_device(); });
    r.name = name, r.device = "cuda", r.shape = shape, r.bytes = bytes, r.max_err = err;
    r.valid = err <= 1.0;
    rows.push_back(r);
  }
}

const RegisterRows kRows(55, {
    {"assign_targets", "eng::det::assign_targets, SSD300 at batch 32: matched 32x8732, 20 GT rows per image",
     assign_targets_row},
});

}  // namespace
}  // namespace bench
