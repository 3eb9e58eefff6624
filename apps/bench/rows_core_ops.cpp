// bench_kernels rows: the engine-core ops other than GEMM/conv (memory-bound: GB/s counts
// the minimum bytes read and written once). Shapes are SSD300-like at batch 8 so the CPU
// rows stay quick; forward + backward rows time sum(y * r).backward() as one unit.
#include <algorithm>
#include <cstdio>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/nn/module.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/random.h"

namespace bench {
using namespace eng;
namespace {

constexpr double kF = 4.0;  // bytes per float

Tensor randn_on(const Shape& s, uint64_t seed, Device d) {
  Generator g(seed);
  return randn(s, g).to(d);
}

// Forward + backward of fn through sum(y * r): returns the input gradient for validation.
Tensor fwd_bwd(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x_in, const Tensor& r) {
  Tensor x = x_in.detach().set_requires_grad(true);
  sum(mul(fn(x), r)).backward();
  return x.grad();
}

const Shape kAct{8, 64, 150, 150};
const double kActN = static_cast<double>(shape_numel(kAct));

void relu_fwd(const Options& o, std::vector<Row>& rows) {
  const Shape& s = kAct;
  const double n = kActN;
  bench_engine_op(o, rows, "relu_fwd", "8x64x150x150 f32", 0, 2 * n * kF,
                  [&](Device d) { return std::vector<Tensor>{randn_on(s, 1, d)}; },
                  [](const std::vector<Tensor>& in) { NoGradGuard g; return relu(in[0]); });
}

void add_broadcast(const Options& o, std::vector<Row>& rows) {
  const Shape& s = kAct;
  const double n = kActN;
  bench_engine_op(o, rows, "add_broadcast", "8x64x150x150 + 64x1x1 f32", 0, 2 * n * kF,
                  [&](Device d) { return std::vector<Tensor>{randn_on(s, 1, d), randn_on({64, 1, 1}, 2, d)}; },
                  [](const std::vector<Tensor>& in) { NoGradGuard g; return add(in[0], in[1]); });
}

const Shape kScores{8, 8732, 21};
const double kScoresN = static_cast<double>(shape_numel(kScores));

void sum_dim(const Options& o, std::vector<Row>& rows) {
  const Shape& s = kScores;
  const double n = kScoresN;
  bench_engine_op(o, rows, "sum_dim", "sum over dim 1 of 8x8732x21 f32", 0, n * kF,
                  [&](Device d) { return std::vector<Tensor>{randn_on(s, 3, d)}; },
                  [](const std::vector<Tensor>& in) { NoGradGuard g; return sum(in[0], {1}); });
}

void max_dim(const Options& o, std::vector<Row>& rows) {
  const Shape& s = kScores;
  const double n = kScoresN;
  bench_engine_op(o, rows, "max_dim", "max over dim 2 of 8x8732x21 f32", 0, n * kF,
                  [&](Device d) { return std::vector<Tensor>{randn_on(s, 3, d)}; },
                  [](const std::vector<Tensor>& in) { NoGradGuard g; return max(in[0], 2).first; });
}

// SSD300 head scores at batch 8: [B * anchors, classes].
constexpr int64_t kAnchorRows = 8 * 8732, kClasses = 21;

void softmax_fwd(const Options& o, std::vector<Row>& rows) {
  const int64_t rows_n = kAnchorRows, C = kClasses;
  const double n = static_cast<double>(rows_n * C);
  bench_engine_op(o, rows, "softmax_fwd", "69856x21 f32, dim 1", 0, 2 * n * kF,
                  [&](Device d) { return std::vector<Tensor>{randn_on({rows_n, C}, 4, d)}; },
                  [](const std::vector<Tensor>& in) { NoGradGuard g; return softmax(in[0], 1); });
}

void ce_fwd_bwd(const Options& o, std::vector<Row>& rows) {
  const int64_t rows_n = kAnchorRows, C = kClasses;
  const double n = static_cast<double>(rows_n * C);
  auto make = [&](Device d) {
    Generator g(5);
    std::vector<int64_t> t(static_cast<size_t>(rows_n));
    for (auto& v : t) v = static_cast<int64_t>(g.uniform() * C);
    return std::vector<Tensor>{randn_on({rows_n, C}, 4, d), from_vector(t, {rows_n}).to(d),
                               randn_on({rows_n}, 6, d)};
  };
  bench_engine_op(o, rows, "softmax_ce", "69856x21 f32, per element", 0, 2 * n * kF, make,
                  [](const std::vector<Tensor>& in) {
                    return fwd_bwd([&](const Tensor& x) { return cross_entropy(x, in[1], Reduction::None); }, in[0],
                                   in[2]);
                  });
}

void smooth_l1_fwd_bwd(const Options& o, std::vector<Row>& rows) {
  const int64_t rows_n = kAnchorRows;
  bench_engine_op(o, rows, "smooth_l1", "69856x4 f32, beta 1", 0, 4.0 * rows_n * 4 * kF,
                  [&](Device d) {
                    return std::vector<Tensor>{randn_on({rows_n, 4}, 7, d), randn_on({rows_n, 4}, 8, d),
                                               randn_on({rows_n, 4}, 9, d)};
                  },
                  [](const std::vector<Tensor>& in) {
                    return fwd_bwd([&](const Tensor& x) { return smooth_l1_loss(x, in[1], Reduction::None); }, in[0],
                                   in[2]);
                  });
}

void max_pool2d_fwd(const Options& o, std::vector<Row>& rows) {
  const Shape s{8, 64, 300, 300};  // VGG conv1_2 output at SSD300
  const double n = static_cast<double>(shape_numel(s));
  Pool2dParams p;  // 2x2 s2
  bench_engine_op(o, rows, "max_pool2d_fwd", "8x64x300x300 k2 s2 f32", 0, 1.25 * n * kF,
                  [&](Device d) { return std::vector<Tensor>{randn_on(s, 10, d)}; },
                  [p](const std::vector<Tensor>& in) { NoGradGuard g; return max_pool2d(in[0], p); });
}

void batch_norm2d_fwd(const Options& o, std::vector<Row>& rows) {
  const Shape b{8, 128, 75, 75};
  const double nb = static_cast<double>(shape_numel(b));
  bench_engine_op(o, rows, "batch_norm2d_train_fwd", "8x128x75x75 f32", 0, 3 * nb * kF,
                  [&](Device d) {
                    return std::vector<Tensor>{randn_on(b, 11, d), ones({128}, d), zeros({128}, d), zeros({128}, d),
                                               ones({128}, d)};
                  },
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return batch_norm2d(in[0], in[1], in[2], in[3], in[4], true);
                  });
}

void upsample_fwd(const Options& o, std::vector<Row>& rows) {
  const Shape u{8, 256, 19, 19};
  bench_engine_op(o, rows, "upsample_nearest2d_fwd", "8x256x19x19 -> 38x38 f32", 0,
                  5.0 * static_cast<double>(shape_numel(u)) * kF,
                  [&](Device d) { return std::vector<Tensor>{randn_on(u, 12, d)}; },
                  [](const std::vector<Tensor>& in) { NoGradGuard g; return upsample_nearest2d(in[0], 38, 38); });
}

void concat_rows(const Options& o, std::vector<Row>& rows) {
  bench_engine_op(o, rows, "concat", "2 x 8x8732x4 along dim 1 f32", 0, 4.0 * 8 * 8732 * 4 * kF,
                  [&](Device d) {
                    return std::vector<Tensor>{randn_on({8, 8732, 4}, 13, d), randn_on({8, 8732, 4}, 14, d)};
                  },
                  [](const std::vector<Tensor>& in) { NoGradGuard g; return concat({in[0], in[1]}, 1); });
}

// The fused SGD step (momentum 0.9, weight decay) over SSD300-sized parameters (~35.6 M floats
// in 25 tensors): per element it reads p, g, buf and writes p, buf. CPU and CUDA run the same
// two steps from the same values and are compared before any timing; then step() alone is timed.
void sgd_rows(const Options& o, std::vector<Row>& rows) {
  const std::vector<int64_t> sizes = {1728, 36864, 73728, 147456, 294912, 589824, 1179648, 2359296, 2359296,
                                      2359296, 2359296, 4718592, 1048576, 131072, 294912, 65536, 294912,
                                      32768, 147456, 32768, 147456, 4000000, 4000000, 4000000, 4000000};
  double total = 0;
  for (int64_t v : sizes) total += static_cast<double>(v);
  char shape[64];
  std::snprintf(shape, sizeof shape, "%zu tensors, %.1f M params f32", sizes.size(), total / 1e6);
  optim::SGDOptions so;
  so.lr = 0.01, so.momentum = 0.9, so.weight_decay = 5e-4;
  auto make = [&](Device d) {
    std::vector<Tensor> ps;
    for (size_t i = 0; i < sizes.size(); ++i) {
      Tensor p = randn_on({sizes[i]}, 20 + i, d).set_requires_grad(true);
      p.set_grad(randn_on({sizes[i]}, 200 + i, d));
      ps.push_back(p);
    }
    return ps;
  };
  const bool want_cuda = cuda_rows_possible(o);
  if (!o.cpu && !want_cuda) return;
  std::vector<Tensor> pc = make(Device::cpu());
  optim::SGD oc(pc, so);
  oc.step();
  oc.step();
  if (o.cpu) {
    Row r = time_it(o, false, [&] { oc.step(); });
    r.name = "sgd_step_fused", r.device = "cpu", r.shape = shape, r.bytes = 5.0 * total * kF;
    rows.push_back(r);
  }
  if (want_cuda) {
    std::vector<Tensor> pg = make(Device::cuda());
    optim::SGD og(pg, so);
    og.step();
    og.step();
    // Compare against a fresh two-step CPU run (the CPU optimizer above has stepped further).
    std::vector<Tensor> ref = make(Device::cpu());
    optim::SGD oref(ref, so);
    oref.step();
    oref.step();
    double err = 0;
    for (size_t i = 0; i < pg.size(); ++i) err = std::max(err, tolerance_ratio(pg[i].cpu(), ref[i]));
    Row r;
    if (err <= 1.0) r = time_it(o, true, [&] { og.step(); });
    r.name = "sgd_step_fused", r.device = "cuda", r.shape = shape, r.bytes = 5.0 * total * kF, r.max_err = err;
    r.valid = err <= 1.0;
    rows.push_back(r);
  }
}

const RegisterRows kRows(20, {
    {"relu_fwd", "eng::relu on a VGG activation 8x64x150x150", relu_fwd},
    {"add_broadcast", "eng::add of a per-channel 64x1x1 tensor to 8x64x150x150", add_broadcast},
    {"sum_dim", "eng::sum over the anchor dim of SSD300 scores 8x8732x21", sum_dim},
    {"max_dim", "eng::max over the class dim of SSD300 scores 8x8732x21", max_dim},
    {"softmax_fwd", "eng::softmax over 21 classes of 69856 anchors", softmax_fwd},
    {"softmax_ce", "eng::cross_entropy per anchor (fused softmax CE), forward + backward", ce_fwd_bwd},
    {"smooth_l1", "eng::smooth_l1_loss on 69856x4 box offsets, forward + backward", smooth_l1_fwd_bwd},
    {"max_pool2d_fwd", "eng::max_pool2d 2x2 s2 on 8x64x300x300", max_pool2d_fwd},
    {"batch_norm2d_train_fwd", "eng::batch_norm2d train mode on 8x128x75x75", batch_norm2d_fwd},
    {"upsample_nearest2d_fwd", "eng::upsample_nearest2d 19x19 -> 38x38, 8x256 planes", upsample_fwd},
    {"concat", "eng::concat of two 8x8732x4 along dim 1", concat_rows},
    {"sgd_step_fused", "one fused SGD momentum step over 35.6 M parameters", sgd_rows},
});

}  // namespace
}  // namespace bench
