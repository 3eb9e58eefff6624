// bench_kernels rows for the MobileNetV3 pieces: relu6, hardsigmoid, hardswish (forward; and
// forward + backward through sum(y * r)) and squeeze-and-excitation, on the widest SSDlite320
// activation at batch 8: the expansion output of the first C5 block, 8x672x20x20.
// Memory-bound: GB/s counts the minimum bytes (inputs read once, outputs written once).
#include <string>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bench {
using namespace eng;
namespace {

constexpr double kF = 4.0;  // bytes per float
const Shape kAct{8, 672, 20, 20};
const double kActN = static_cast<double>(shape_numel(kAct));
const char* kShape = "8x672x20x20 f32";

Tensor randn_on(const Shape& s, uint64_t seed, Device d, double scale = 1.0) {
  Generator g(seed);
  return (randn(s, g) * scale).to(d);
}

void act_row(const Options& o, std::vector<Row>& rows, const std::string& name, Tensor (*fn)(const Tensor&)) {
  // randn * 3 puts a good share of the values on each side of the kinks at -3, 0, 3, 6.
  bench_engine_op(o, rows, name + "_fwd", kShape, 0, 2 * kActN * kF,
                  [](Device d) { return std::vector<Tensor>{randn_on(kAct, 1, d, 3.0)}; },
                  [fn](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return fn(in[0]);
                  });
  // Forward (read x, write y), then backward of sum(y * r): mul, its gradient, and the
  // activation's backward (read x or y and g, write gx).
  bench_engine_op(o, rows, name + "_fwd_bwd", kShape, 0, 8 * kActN * kF,
                  [](Device d) { return std::vector<Tensor>{randn_on(kAct, 1, d, 3.0), randn_on(kAct, 2, d)}; },
                  [fn](const std::vector<Tensor>& in) {
                    Tensor x = in[0].detach().set_requires_grad(true);
                    sum(mul(fn(x), in[1])).backward();
                    return x.grad();
                  });
}

void act_rows(const Options& o, std::vector<Row>& rows) {
  act_row(o, rows, "relu6", relu6);
  act_row(o, rows, "hardsigmoid", hardsigmoid);
  act_row(o, rows, "hardswish", hardswish);
  bench_engine_op(o, rows, "hardswish_fwd_bf16", "8x672x20x20 bf16", 0, 2 * kActN * 2.0,
                  [](Device d) { return std::vector<Tensor>{randn_on(kAct, 1, d, 3.0).to(DType::bf16)}; },
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return hardswish(in[0]).to(DType::f32);  // compared in f32 (the cast is timed too)
                  });
}

// SqueezeExcitation(672, 168) as MobileNetV3 builds it, written with the ops its module uses:
// y = hardsigmoid(fc2(relu(fc1(avgpool(x))))) * x.
void se_rows(const Options& o, std::vector<Row>& rows) {
  const int64_t C = 672, S = 168;
  bench_engine_op(o, rows, "squeeze_excitation_fwd", kShape + std::string(", squeeze 168"), 0, 3 * kActN * kF,
                  [&](Device d) {
                    return std::vector<Tensor>{randn_on(kAct, 1, d), randn_on({S, C, 1, 1}, 2, d, 0.04),
                                               randn_on({S}, 3, d, 0.1), randn_on({C, S, 1, 1}, 4, d, 0.08),
                                               randn_on({C}, 5, d, 0.1)};
                  },
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    const Conv2dParams p;
                    Tensor s = relu(conv2d(global_avg_pool2d(in[0]), in[1], in[2], p));
                    return mul(hardsigmoid(conv2d(s, in[3], in[4], p)), in[0]);
                  });
}

const RegisterRows kRows(23, {
    {"relu6_fwd", "eng::relu6 / hardsigmoid / hardswish on 8x672x20x20 (forward, forward + backward, bf16)",
     act_rows},
    {"squeeze_excitation_fwd", "squeeze-and-excitation (672 -> 168 -> 672) on 8x672x20x20", se_rows},
});

}  // namespace
}  // namespace bench
