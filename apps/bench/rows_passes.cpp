// bench_kernels rows for the "fewer passes over activations" ops (issue 12): the SSD head
// permute + concat in one kernel against the per-level permute copies + concat it replaces,
// the in-place ReLU, and FrozenBatchNorm2d with cached constants.
// Memory-bound: GB/s counts each element read once and written once.
#include <array>
#include <vector>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bench {
using namespace eng;
namespace {

// SSD300's six head levels (anchors per location, feature size) at batch 8, K = 21 classes.
const std::array<std::array<int64_t, 2>, 6> kLevels = {{{4, 38}, {6, 19}, {6, 10}, {6, 5}, {4, 3}, {4, 1}}};
constexpr int64_t kBatch = 8, kClasses = 21;

std::vector<Tensor> head_levels(Device d) {
  std::vector<Tensor> xs;
  uint64_t seed = 40;
  for (const auto& l : kLevels) {
    Generator g(seed++);
    xs.push_back(randn({kBatch, l[0] * kClasses, l[1], l[1]}, g).to(d));
  }
  return xs;
}

double head_bytes() {
  double n = 0;
  for (const auto& l : kLevels) n += static_cast<double>(kBatch * l[0] * kClasses * l[1] * l[1]);
  return 2.0 * n * 4.0;  // f32 read + write
}

void flatten_heads_rows(const Options& o, std::vector<Row>& rows) {
  const char* shape = "SSD300 cls heads, 6 levels, 8x8732x21 f32";
  bench_engine_op(o, rows, "flatten_concat_heads", shape, 0, head_bytes(), head_levels,
                  [](const std::vector<Tensor>& in) { NoGradGuard g; return flatten_concat_heads(in, kClasses); });
  // The composition it replaced: one permute copy per level, then a concat copy.
  bench_engine_op(o, rows, "heads_permute_concat", shape, 0, head_bytes(), head_levels,
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    std::vector<Tensor> flat;
                    for (const Tensor& x : in)
                      flat.push_back(x.reshape({kBatch, -1, kClasses, x.size(2), x.size(3)})
                                         .permute({0, 3, 4, 1, 2})
                                         .reshape({kBatch, -1, kClasses}));
                    return concat(flat, 1);
                  });
}

// relu_ on a VGG activation: one read + one write in place, against relu's fresh output.
void relu_inplace_rows(const Options& o, std::vector<Row>& rows) {
  const Shape s{8, 64, 150, 150};
  const double n = static_cast<double>(shape_numel(s));
  auto make = [s](Device d) {
    Generator g(1);
    return std::vector<Tensor>{randn(s, g).to(d)};
  };
  bench_engine_op(o, rows, "relu_inplace", "8x64x150x150 f32", 0, 2 * n * 4.0, make,
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    Tensor x = in[0];  // the same tensor (relu_ is idempotent across reps)
                    return relu_(x);
                  });
}

// FrozenBatchNorm2d on a ResNet-50 layer1 activation at batch 2 (RetinaNet at 800 px): the
// op, which derives scale and shift from the four buffers on every call (5 small kernels),
// against the affine half that nn::FrozenBatchNorm2d runs with its cached scale and shift.
void frozen_bn_rows(const Options& o, std::vector<Row>& rows) {
  const Shape s{2, 256, 200, 200};
  const double bytes = 2.0 * static_cast<double>(shape_numel(s)) * 4.0;
  auto make = [s](Device d) {
    Generator g(3);
    Tensor x = randn(s, g).to(d);
    Tensor w = (rand({256}, g) + 0.5).to(d), b = randn({256}, g).to(d);
    Tensor rm = randn({256}, g).to(d), rv = (rand({256}, g) + 0.5).to(d);
    auto [scale, shift] = frozen_batch_norm2d_scale_shift(w, b, rm, rv);
    return std::vector<Tensor>{x, w, b, rm, rv, scale, shift};
  };
  bench_engine_op(o, rows, "frozen_batch_norm2d", "2x256x200x200 f32, scale/shift per call", 0, bytes, make,
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return frozen_batch_norm2d(in[0], in[1], in[2], in[3], in[4]);
                  });
  bench_engine_op(o, rows, "frozen_batch_norm2d_cached", "2x256x200x200 f32, cached scale/shift", 0, bytes, make,
                  [](const std::vector<Tensor>& in) {
                    NoGradGuard g;
                    return frozen_batch_norm2d_affine(in[0], in[5], in[6]);
                  });
}

const RegisterRows kRows(25, {
    {"flatten_concat_heads", "eng::flatten_concat_heads vs permute + concat, SSD300 class heads at batch 8",
     flatten_heads_rows},
    {"relu_inplace", "eng::relu_ (in place) on a VGG activation 8x64x150x150", relu_inplace_rows},
    {"frozen_bn", "eng::frozen_batch_norm2d vs its cached-constant half (nn::FrozenBatchNorm2d)", frozen_bn_rows},
});

}  // namespace
}  // namespace bench
