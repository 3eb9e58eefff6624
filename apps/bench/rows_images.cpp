// bench_kernels rows: the input pipeline's device side (issue 12): uint8 images normalised
// on the device (normalize_images), at the SSD300 training batch. Memory-bound: GB/s counts
// one byte read and one output element written per pixel.
#include <cstdint>

#include "bench/bench_common.h"
#include "engine/normalize_images.h"
#include "engine/ops.h"

namespace bench {
using namespace eng;
namespace {

// A fixed pseudo-random uint8 batch (a simple LCG: the values only need to vary).
Tensor u8_images(const Shape& s, Device d) {
  Tensor t = empty(s, TensorOptions(DType::u8));
  uint8_t* p = t.data<uint8_t>();
  uint32_t state = 12345;
  for (int64_t i = 0; i < t.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    p[i] = static_cast<uint8_t>(state >> 24);
  }
  return t.to(d);
}

const std::vector<double> kMean{123.675, 116.28, 103.53}, kStd{58.395, 57.12, 57.375};

void normalize_rows(const Options& o, std::vector<Row>& rows) {
  const Shape s{32, 3, 300, 300};
  const double n = static_cast<double>(shape_numel(s));
  bench_engine_op(o, rows, "normalize_images_f32", "u8 32x3x300x300 -> f32", 0, n * (1 + 4),
                  [&](Device d) { return std::vector<Tensor>{u8_images(s, d)}; },
                  [](const std::vector<Tensor>& in) { return normalize_images(in[0], kMean, kStd); });
  bench_engine_op(o, rows, "normalize_images_bf16", "u8 32x3x300x300 -> bf16", 0, n * (1 + 2),
                  [&](Device d) { return std::vector<Tensor>{u8_images(s, d)}; },
                  [](const std::vector<Tensor>& in) { return normalize_images(in[0], kMean, kStd, DType::bf16); });
}

const RegisterRows kRows(22, {
    {"normalize_images_f32", "eng::normalize_images: u8 images to f32 / bf16 network input (+ _bf16)",
     normalize_rows},
});

}  // namespace
}  // namespace bench
