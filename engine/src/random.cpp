#include "engine/random.h"

#include "engine/tensor.h"

namespace eng {

Generator& default_generator() {
  static Generator g(0);
  return g;
}

void manual_seed(uint64_t seed) { default_generator().seed(seed); }

Tensor rand(const Shape& shape, Generator& gen, TensorOptions opts) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = gen.uniform();
  bool rg = opts.requires_grad_;
  Tensor t = from_vector(v, shape, opts.requires_grad(false));
  if (rg) t.set_requires_grad(true);
  return t;
}

Tensor randn(const Shape& shape, Generator& gen, TensorOptions opts) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = gen.normal();
  bool rg = opts.requires_grad_;
  Tensor t = from_vector(v, shape, opts.requires_grad(false));
  if (rg) t.set_requires_grad(true);
  return t;
}

Tensor rand(const Shape& shape, TensorOptions opts) { return rand(shape, default_generator(), opts); }
Tensor randn(const Shape& shape, TensorOptions opts) { return randn(shape, default_generator(), opts); }

}  // namespace eng
