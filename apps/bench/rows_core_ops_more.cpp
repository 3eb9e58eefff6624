// bench_kernels rows for the remaining engine-core ops, so every op has one: the unary
// elementwise ops, mean, linear / matmul, the global pools, frozen batch norm,
// log_softmax and the L1 loss. Memory-bound rows count the minimum bytes (inputs read
// once, outputs written once); linear and matmul count 2*M*N*K FLOPs.
#include <string>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bench {
using namespace eng;
namespace {

constexpr double kF = 4.0;  // bytes per float

Tensor randn_on(const Shape& s, uint64_t seed, Device d) {
  Generator g(seed);
  return randn(s, g).to(d);
}

// An elementwise op over a VGG-sized activation (8x64x150x150): read x, write y.
void unary_row(const Options& o, std::vector<Row>& rows, const std::string& name,
               const std::function<Tensor(const Tensor&)>& fn) {
  const Shape s{8, 64, 150, 150};
  const double n = static_cast<double>(shape_numel(s));
  bench_engine_op(o, rows, name, "8x64x150x150 f32", 0, 2 * n * kF,
                  [&](Device d) { return std::vector<Tensor>{randn_on(s, 1, d)}; },
                  [fn](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return fn(in[0]);
                  });
}

void unary_rows(const Options& o, std::vector<Row>& rows) {
  unary_row(o, rows, "neg_fwd", [](const Tensor& x) { return neg(x); });
  unary_row(o, rows, "scalar_ops_fwd", [](const Tensor& x) { return mul_scalar(x, 2.0); });
  unary_row(o, rows, "sigmoid_fwd", [](const Tensor& x) { return sigmoid(x); });
  unary_row(o, rows, "exp_fwd", [](const Tensor& x) { return exp(x); });
  unary_row(o, rows, "log_fwd", [](const Tensor& x) { return log(abs(x) + 1.0); });  // includes abs, add
  unary_row(o, rows, "sqrt_fwd", [](const Tensor& x) { return sqrt(abs(x)); });      // includes abs
  unary_row(o, rows, "square_fwd", [](const Tensor& x) { return square(x); });
  unary_row(o, rows, "clamp_fwd", [](const Tensor& x) { return clamp(x, -0.5, 0.5); });
}

void mean_rows(const Options& o, std::vector<Row>& rows) {
  const Shape s{8, 256, 38, 38};
  bench_engine_op(o, rows, "mean_dim", "mean over H, W of 8x256x38x38 f32", 0,
                  static_cast<double>(shape_numel(s)) * kF,
                  [&](Device d) { return std::vector<Tensor>{randn_on(s, 2, d)}; },
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return mean(in[0], {2, 3});
                  });
}

void linear_rows(const Options& o, std::vector<Row>& rows) {
  const int64_t N = 256, IN = 4096, OUT = 1024;
  bench_engine_op(o, rows, "linear_fwd", "x 256x4096 -> 1024 f32", 2.0 * N * IN * OUT, 0,
                  [&](Device d) {
                    return std::vector<Tensor>{randn_on({N, IN}, 3, d), randn_on({OUT, IN}, 4, d) * 0.02,
                                               randn_on({OUT}, 5, d)};
                  },
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return linear(in[0], in[1], in[2]);
                  });
  const int64_t B = 8, M = 256, K = 256, Nn = 256;
  bench_engine_op(o, rows, "matmul_batched", "8 x (256x256 @ 256x256) f32", 2.0 * B * M * K * Nn, 0,
                  [&](Device d) {
                    return std::vector<Tensor>{randn_on({B, M, K}, 6, d), randn_on({B, K, Nn}, 7, d)};
                  },
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return matmul(in[0], in[1]);
                  });
}

void pool_norm_rows(const Options& o, std::vector<Row>& rows) {
  const Shape s{8, 128, 32, 32};
  const double n = static_cast<double>(shape_numel(s));
  auto x = [&](Device d) { return std::vector<Tensor>{randn_on(s, 8, d)}; };
  bench_engine_op(o, rows, "global_max_pool2d", "8x128x32x32 f32", 0, n * kF, x,
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return global_max_pool2d(in[0]);
                  });
  bench_engine_op(o, rows, "global_avg_pool2d", "8x128x32x32 f32", 0, n * kF, x,
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return global_avg_pool2d(in[0]);
                  });
  const Shape r{4, 256, 64, 64};  // a ResNet50 layer1 output at 256x256
  const double nr = static_cast<double>(shape_numel(r));
  bench_engine_op(o, rows, "frozen_batch_norm2d_fwd", "4x256x64x64 f32", 0, 2 * nr * kF,
                  [&](Device d) {
                    return std::vector<Tensor>{randn_on(r, 9, d), ones({256}, d), zeros({256}, d),
                                               zeros({256}, d), ones({256}, d)};
                  },
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return frozen_batch_norm2d(in[0], in[1], in[2], in[3], in[4]);
                  });
}

void softmax_loss_rows(const Options& o, std::vector<Row>& rows) {
  const int64_t R = 8 * 8732, C = 21;
  bench_engine_op(o, rows, "log_softmax_fwd", "69856x21 f32, dim 1", 0, 2.0 * R * C * kF,
                  [&](Device d) { return std::vector<Tensor>{randn_on({R, C}, 10, d)}; },
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return log_softmax(in[0], 1);
                  });
  bench_engine_op(o, rows, "l1_fwd", "69856x4 f32, per element", 0, 3.0 * R * 4 * kF,
                  [&](Device d) { return std::vector<Tensor>{randn_on({R, 4}, 11, d), randn_on({R, 4}, 12, d)}; },
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return l1_loss(in[0], in[1], Reduction::None);
                  });
}

const RegisterRows kRows(21, {
    {"neg_fwd", "unary elementwise ops on 8x64x150x150: neg, mul_scalar, sigmoid, exp, log, sqrt, square, clamp",
     unary_rows},
    {"mean_dim", "eng::mean over H and W of 8x256x38x38", mean_rows},
    {"linear_fwd", "eng::linear 256x4096 -> 1024 and batched eng::matmul (+ matmul_batched)", linear_rows},
    {"global_max_pool2d", "global max / avg pools on 8x128x32x32 and frozen_batch_norm2d on 4x256x64x64",
     pool_norm_rows},
    {"log_softmax_fwd", "eng::log_softmax over 21 classes and eng::l1_loss per element (+ l1_fwd)",
     softmax_loss_rows},
});

}  // namespace
}  // namespace bench
