// A generated image-classification set for demos and smoke tests: single-channel
// `size` x `size` images, each holding one shape at a random place with random brightness,
// plus Gaussian noise. Classes:
//   0 horizontal bar   1 vertical bar   2 filled square   3 diagonal line
// The same seed gives the same set on every machine.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace data {

inline constexpr int64_t kShapeClasses = 4;

struct ShapesBatch {
  eng::Tensor images;  // f32 [n, 1, size, size], roughly zero-mean
  eng::Tensor labels;  // i64 [n]
};

ShapesBatch make_shapes(int64_t n, uint64_t seed, int64_t size = 16, double noise = 0.3);

}  // namespace data
