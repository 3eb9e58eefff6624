#include "data/shapes_dataset.h"

#include <vector>

#include "engine/random.h"

namespace data {

ShapesBatch make_shapes(int64_t n, uint64_t seed, int64_t size, double noise) {
  ENGINE_CHECK(n > 0 && size >= 8, "make_shapes: need n > 0 and size >= 8 (got n ", n, ", size ", size, ")");
  eng::Generator gen(seed);
  std::vector<float> pixels(static_cast<size_t>(n * size * size));
  std::vector<int64_t> labels(static_cast<size_t>(n));
  auto randint = [&](int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(gen.uniform() * (hi - lo)); };
  for (int64_t i = 0; i < n; ++i) {
    const int64_t cls = randint(0, kShapeClasses);
    labels[i] = cls;
    float* img = pixels.data() + i * size * size;
    const float on = static_cast<float>(0.8 + 0.4 * gen.uniform());
    const int64_t len = randint(size / 2, size - 2);       // bar / line length
    const int64_t r = randint(1, size - len);              // top-left corner
    const int64_t c = randint(1, size - len);
    auto set = [&](int64_t y, int64_t x) {
      if (y >= 0 && y < size && x >= 0 && x < size) img[y * size + x] = on;
    };
    switch (cls) {
      case 0: for (int64_t k = 0; k < len; ++k) set(r + len / 2, c + k); break;
      case 1: for (int64_t k = 0; k < len; ++k) set(r + k, c + len / 2); break;
      case 2: {
        const int64_t side = std::max<int64_t>(3, len / 2);
        for (int64_t y = 0; y < side; ++y)
          for (int64_t x = 0; x < side; ++x) set(r + y, c + x);
        break;
      }
      default: for (int64_t k = 0; k < len; ++k) set(r + k, c + k); break;
    }
    for (int64_t p = 0; p < size * size; ++p) img[p] += static_cast<float>(noise * gen.normal()) - 0.1f;
  }
  return {eng::from_vector(pixels, {n, 1, size, size}), eng::from_vector(labels, {n})};
}

}  // namespace data
