// eng::optim::grad_norm and clip_grad_norm_ (torch.nn.utils.clip_grad_norm_ semantics),
// against values worked out by hand.
#include <cmath>
#include <limits>

#include "engine/cuda_graph.h"
#include "engine/optim.h"
#include "test_helpers.h"

using namespace eng;

namespace {

Tensor leaf_with_grad(const std::vector<float>& value, const std::vector<float>& grad, Device device = Device::cpu()) {
  const Shape shape{static_cast<int64_t>(value.size())};
  Tensor p = from_vector<float>(value, shape).to(device);
  p.set_requires_grad(true);
  p.set_grad(from_vector<float>(grad, shape).to(device));
  return p;
}

std::vector<float> grad_of(const Tensor& p) { return p.grad().to(Device::cpu()).to_vector<float>(); }

}  // namespace

TEST_CASE("grad_norm: the global L2 norm over every gradient", "[optim]") {
  // Gradients (3, 4) and (12): sqrt(9 + 16 + 144) = 13. A parameter without a gradient is skipped.
  Tensor a = leaf_with_grad({1, 1}, {3, 4});
  Tensor b = leaf_with_grad({5}, {12});
  Tensor none = from_vector<float>({7}, {1});
  none.set_requires_grad(true);
  const Tensor n = optim::grad_norm(std::vector<Tensor>{a, none, b});
  REQUIRE(n.dim() == 0);
  REQUIRE(n.dtype() == DType::f32);
  REQUIRE(n.item<float>() == 13.0f);
  // Named parameters give the same; no gradient at all gives 0.
  REQUIRE(optim::grad_norm(optim::NamedTensors{{"a", a}, {"b", b}}).item<float>() == 13.0f);
  REQUIRE(optim::grad_norm(std::vector<Tensor>{none}).item<float>() == 0.0f);
}

TEST_CASE("clip_grad_norm_: scales by max_norm / (norm + 1e-6) when the norm is larger", "[optim]") {
  Tensor a = leaf_with_grad({1, 1}, {3, 4});
  Tensor b = leaf_with_grad({5}, {12});
  const Tensor storage_before = a.grad();
  // norm 13, max_norm 6.5: coefficient 6.5 / 13.000001 = 0.49999996...; 3 -> 1.4999999, 12 -> 5.9999995.
  const Tensor total = optim::clip_grad_norm_(std::vector<Tensor>{a, b}, 6.5);
  REQUIRE(total.item<float>() == 13.0f);  // the norm before clipping
  const double coef = 6.5 / (13.0 + 1e-6);
  const std::vector<float> ga = grad_of(a), gb = grad_of(b);
  REQUIRE(ga[0] == Approx(3 * coef).epsilon(1e-6));
  REQUIRE(ga[1] == Approx(4 * coef).epsilon(1e-6));
  REQUIRE(gb[0] == Approx(12 * coef).epsilon(1e-6));
  // In place: the same gradient storage (a CUDA graph and the optimizer hold its address).
  REQUIRE(a.grad().raw_data() == storage_before.raw_data());
  // The new norm is max_norm (to float rounding).
  REQUIRE(optim::grad_norm(std::vector<Tensor>{a, b}).item<float>() == Approx(6.5).epsilon(1e-6));
}

TEST_CASE("clip_grad_norm_: gradients under the limit are unchanged bit for bit", "[optim]") {
  Tensor a = leaf_with_grad({1, 2, 3}, {0.1f, -0.2f, 0.3f});
  const Tensor total = optim::clip_grad_norm_(std::vector<Tensor>{a}, 1.0);
  REQUIRE(total.item<float>() == Approx(std::sqrt(0.14)).epsilon(1e-6));
  REQUIRE(grad_of(a) == std::vector<float>{0.1f, -0.2f, 0.3f});
}

TEST_CASE("clip_grad_norm_: a non-finite norm is passed on as torch does (error_if_nonfinite=False)", "[optim]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // NaN norm: coefficient NaN, every gradient becomes NaN.
  Tensor a = leaf_with_grad({1, 1}, {nan, 1});
  Tensor b = leaf_with_grad({1}, {2});
  REQUIRE(std::isnan(optim::clip_grad_norm_(std::vector<Tensor>{a, b}, 1.0).item<float>()));
  REQUIRE(std::isnan(grad_of(b)[0]));
  // Infinite norm: coefficient 1 / inf = 0; finite gradients become 0, the infinite one NaN (inf * 0).
  Tensor c = leaf_with_grad({1, 1}, {inf, 3});
  REQUIRE(std::isinf(optim::clip_grad_norm_(std::vector<Tensor>{c}, 1.0).item<float>()));
  REQUIRE(std::isnan(grad_of(c)[0]));
  REQUIRE(grad_of(c)[1] == 0.0f);
}

TEST_CASE("clip_grad_norm_: max_norm must be finite and positive", "[optim]") {
  Tensor a = leaf_with_grad({1}, {1});
  for (double bad : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    INFO("max_norm " << bad);
    REQUIRE_THROWS_WITH(optim::clip_grad_norm_(std::vector<Tensor>{a}, bad),
                        Catch::Matchers::Contains("clip_grad_norm_: max_norm must be finite and > 0"));
  }
}

TEST_CASE("clip_grad_norm_: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const Tensor g1 = test::random_f32({1000}, 1), g2 = test::random_f32({37, 3}, 2);
  auto make = [&](Device d) {
    std::vector<Tensor> ps;
    for (const Tensor& g : {g1, g2}) {
      Tensor p = zeros(g.sizes(), TensorOptions().device(d));
      p.set_requires_grad(true);
      p.set_grad(g.to(d).clone());
      ps.push_back(p);
    }
    return ps;
  };
  std::vector<Tensor> cpu = make(Device::cpu()), gpu = make(Device::cuda());
  const float n_cpu = optim::grad_norm(cpu).item<float>();
  const Tensor n_gpu = optim::grad_norm(gpu);
  REQUIRE(n_gpu.device().is_cuda());
  REQUIRE(n_gpu.to(Device::cpu()).item<float>() == Approx(n_cpu).epsilon(1e-5));
  const double max_norm = 0.25 * n_cpu;
  optim::clip_grad_norm_(cpu, max_norm);
  optim::clip_grad_norm_(gpu, max_norm);
  for (size_t k = 0; k < cpu.size(); ++k) {
    const std::vector<float> c = grad_of(cpu[k]), g = grad_of(gpu[k]);
    REQUIRE(c.size() == g.size());
    for (size_t i = 0; i < c.size(); ++i) REQUIRE(g[i] == Approx(c[i]).epsilon(1e-5).margin(1e-7));
  }
}

TEST_CASE("clip_grad_norm_: recorded in a CUDA graph, a replay clips the current gradients", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor p = leaf_with_grad({0, 0}, {3, 4}, Device::cuda());
  Tensor norm_out = zeros({}, TensorOptions(DType::f32).device(Device::cuda()));
  // One eager call first (as the training step's warm-up does): the caching allocator then
  // holds the blocks the captured call needs, so the capture allocates nothing.
  norm_out.copy_(optim::clip_grad_norm_(std::vector<Tensor>{p}, 1.0));
  cuda::Graph graph;
  graph.capture([&] { norm_out.copy_(optim::clip_grad_norm_(std::vector<Tensor>{p}, 1.0)); });
  // The capture recorded work without running it; write new gradients and replay.
  p.grad().copy_(from_vector<float>({6, 8}, {2}));
  graph.replay();
  REQUIRE(norm_out.to(Device::cpu()).item<float>() == 10.0f);
  const std::vector<float> g = grad_of(p);
  REQUIRE(g[0] == Approx(0.6).epsilon(1e-5));
  REQUIRE(g[1] == Approx(0.8).epsilon(1e-5));
}
