// The mobile activations relu6, hardsigmoid, hardswish (engine/ops.h) and their nn modules:
// values and gradients (kinks included) against PyTorch's (fixture made by
// tools/make_act_se_fixture.py), hand values, double gradcheck away from the kinks, relu6_
// in place, bf16, bad input, and the CUDA kernels against the CPU ones.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "bf16_helpers.h"
#include "engine/io/safetensors.h"
#include "engine/nn/mobile_layers.h"
#include "test_helpers.h"

using namespace eng;
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

namespace {

const io::SafetensorsFile& fixture() {
  static const io::SafetensorsFile f = io::load_safetensors(std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/act_se_parity.safetensors");
  return f;
}

struct Act {
  const char* name;
  Tensor (*fn)(const Tensor&);
};
const Act kActs[] = {{"relu6", relu6}, {"hardsigmoid", hardsigmoid}, {"hardswish", hardswish}};

// y and d/dx of sum(y * r) for a fresh leaf holding x.
std::pair<Tensor, Tensor> value_and_grad(Tensor (*fn)(const Tensor&), const Tensor& x_in, const Tensor& r) {
  Tensor x = x_in.detach().clone().set_requires_grad(true);
  Tensor y = fn(x);
  sum(mul(y, r)).backward();
  return {y.detach(), x.grad()};
}

// Gradient of sum(fn(x)) at the given points (double): f'(x) itself.
std::vector<double> derivative_at(Tensor (*fn)(const Tensor&), const std::vector<double>& pts) {
  Tensor x = from_vector<double>(pts, {static_cast<int64_t>(pts.size())});
  x.set_requires_grad(true);
  sum(fn(x)).backward();
  return x.grad().to_vector<double>();
}

void check_cuda_matches_cpu(const Fn& f, const Shape& shape, double lo, double hi) {
  Tensor t = test::random_f32(shape, 100, lo, hi);
  Tensor xc = t.clone().set_requires_grad(true), xg = t.to(Device::cuda()).set_requires_grad(true);
  Tensor yc = f({xc}), yg = f({xg});
  REQUIRE(yg.is_cuda());
  REQUIRE_CLOSE(yg.cpu(), yc, test::kElementwiseAtol, test::kElementwiseRtol);
  Tensor r = test::random_f32(yc.sizes(), 7);
  sum(mul(yc, r)).backward();
  sum(mul(yg, r.to(Device::cuda()))).backward();
  REQUIRE_CLOSE(xg.grad().cpu(), xc.grad(), test::kElementwiseAtol, test::kElementwiseRtol);
}

}  // namespace

TEST_CASE("mobile activations: forward and gradient equal PyTorch's, kinks included") {
  const auto& f = fixture();
  for (const char* dt : {"f32", "f64"}) {
    const Tensor x = f.get(std::string("act.x.") + dt), r = f.get(std::string("act.r.") + dt);
    for (const Act& a : kActs) {
      INFO(a.name << " " << dt);
      auto [y, g] = value_and_grad(a.fn, x, r);
      const std::string key = std::string("act.") + a.name;
      // f32: bit for bit (the same expression in the same order as torch's CPU kernel).
      // f64: hardsigmoid's gradient differs in the 8th digit (torch multiplies by 1.0f / 6.0f).
      const bool exact = std::string(dt) == "f32" || std::string(a.name) != "hardsigmoid";
      REQUIRE(y.to_vector<double>() == f.get(key + ".y." + dt).to_vector<double>());
      if (exact) {
        REQUIRE(g.to_vector<double>() == f.get(key + ".g." + dt).to_vector<double>());
      } else {
        REQUIRE_CLOSE(g, f.get(key + ".g." + dt), 0.0, 1e-7);
      }
    }
  }
}

TEST_CASE("mobile activations: hand values and torch's kink conventions") {
  Tensor x = from_vector<double>({-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.5, 6.0, 7.0}, {9});
  REQUIRE(relu6(x).to_vector<double>() == std::vector<double>{0, 0, 0, 0, 1.5, 3.0, 4.5, 6.0, 6.0});
  REQUIRE(hardsigmoid(x).to_vector<double>() == std::vector<double>{0, 0, 0.25, 0.5, 0.75, 1, 1, 1, 1});
  // x * (x + 3) / 6 on (-3, 3): -1.5 -> -0.375, 1.5 -> 1.125.
  REQUIRE(hardswish(x).to_vector<double>() == std::vector<double>{0, 0, -0.375, 0, 1.125, 3.0, 4.5, 6.0, 7.0});

  // relu6: 0 at both kinks (hardtanh's open interval), unlike clamp(x, 0, 6).
  REQUIRE(derivative_at(relu6, {-1.0, 0.0, 3.0, 6.0, 7.0}) == std::vector<double>{0, 0, 1, 0, 0});
  REQUIRE(derivative_at([](const Tensor& t) { return clamp(t, 0, 6); }, {0.0, 6.0}) == std::vector<double>{1, 1});
  // hardsigmoid: 1/6 strictly inside (-3, 3), 0 at +-3.
  REQUIRE(derivative_at(hardsigmoid, {-4.0, -3.0, 0.0, 3.0, 4.0}) == std::vector<double>{0, 0, 1.0 / 6.0, 0, 0});
  // hardswish: 0 at -3, x/3 + 1/2 inside, 1 at and above 3.
  REQUIRE(derivative_at(hardswish, {-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0}) ==
          std::vector<double>{0, 0, 0.0, 0.5, 1.0, 1, 1});
}

TEST_CASE("relu6: gradcheck", "[gradcheck]") {
  // Inside (0, 6) and on both flat parts, away from the kinks by much more than h.
  REQUIRE_GRADCHECK([](auto& in) { return relu6(in[0]) + relu6(in[1]) + relu6(in[2]); },
                    {test::leaf({3, 4}, 1, 0.1, 5.9), test::leaf({3, 4}, 2, -2.0, -0.1), test::leaf({3, 4}, 3, 6.1, 9.0)});
}
TEST_CASE("hardsigmoid: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return hardsigmoid(in[0]) + hardsigmoid(in[1]) + hardsigmoid(in[2]); },
                    {test::leaf({3, 4}, 1, -2.9, 2.9), test::leaf({3, 4}, 2, -6.0, -3.1), test::leaf({3, 4}, 3, 3.1, 6.0)});
}
TEST_CASE("hardswish: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return hardswish(in[0]) + hardswish(in[1]) + hardswish(in[2]); },
                    {test::leaf({3, 4}, 1, -2.9, 2.9), test::leaf({3, 4}, 2, -6.0, -3.1), test::leaf({3, 4}, 3, 3.1, 6.0)});
}

TEST_CASE("relu6_: in place, same values and gradient as relu6") {
  Tensor base = test::leaf({4, 5}, 9, -3.0, 9.0);
  Tensor r = test::leaf({4, 5}, 10).detach();
  Tensor a = base.detach().clone().set_requires_grad(true);
  sum(mul(relu6(a), r)).backward();

  Tensor b = base.detach().clone().set_requires_grad(true);
  Tensor h = b * 1.0;  // not a leaf: in-place is allowed
  const void* before = h.data<double>();
  relu6_(h);
  REQUIRE(h.data<double>() == before);
  REQUIRE(h.to_vector<double>() == relu6(base.detach()).to_vector<double>());
  sum(mul(h, r)).backward();
  REQUIRE(b.grad().to_vector<double>() == a.grad().to_vector<double>());

  Tensor leaf = test::leaf({3}, 1);
  REQUIRE_THROWS_WITH(relu6_(leaf), Catch::Contains("relu6_: in-place change of a leaf that requires grad"));
  Tensor v = zeros({4, 4}, DType::f64);
  Tensor t = v.transpose(0, 1);
  REQUIRE_THROWS_WITH(relu6_(t), Catch::Contains("relu6_: input of shape [4, 4] is not contiguous; use relu6()"));

  // The module with inplace = true writes into its input.
  Tensor m = from_vector<double>({-1.0, 2.0, 8.0}, {3});
  nn::ReLU6(true).forward(m);
  REQUIRE(m.to_vector<double>() == std::vector<double>{0, 2, 6});
}

TEST_CASE("mobile activations: modules, bad input") {
  Tensor x = from_vector<double>({-4.0, -1.5, 1.5, 7.0}, {4});
  REQUIRE(nn::ReLU6().forward(x).to_vector<double>() == relu6(x).to_vector<double>());
  REQUIRE(nn::Hardswish().forward(x).to_vector<double>() == hardswish(x).to_vector<double>());
  REQUIRE(nn::Hardsigmoid().forward(x).to_vector<double>() == hardsigmoid(x).to_vector<double>());
  REQUIRE(nn::Hardswish().num_parameters() == 0);
  REQUIRE(nn::ReLU6().type_name() == "ReLU6");
  REQUIRE_THROWS_WITH(relu6(zeros({2}, DType::i64)),
                      Catch::Contains("relu6: expected a f32, f64 or bf16 tensor, got i64 of shape [2]"));
  REQUIRE_THROWS_WITH(hardswish(zeros({2, 3}, DType::i32)), Catch::Contains("hardswish: expected a f32, f64 or bf16"));
  REQUIRE_THROWS_WITH(hardsigmoid(Tensor()), Catch::Contains("hardsigmoid: undefined input"));
}

TEST_CASE("mobile activations: bf16 forward and backward are the f32 results rounded once", "[bf16]") {
  Tensor xb = test::random_bf16({3000}, 5);
  Tensor xf = xb.to(DType::f32);
  for (const Act& a : kActs) {
    INFO(a.name);
    REQUIRE(test::bits_of(a.fn(xb)) == test::bits_of(a.fn(xf).to(DType::bf16)));
    // Backward: the upstream gradient r reaches the node exactly (d sum(y * r) / dy = r), so
    // the bf16 gradient is the f32 one rounded once.
    Tensor rb = test::random_bf16({3000}, 6);
    Tensor gb = value_and_grad(a.fn, xb, rb).second, gf = value_and_grad(a.fn, xf, rb.to(DType::f32)).second;
    REQUIRE(gb.dtype() == DType::bf16);
    REQUIRE(test::bits_of(gb) == test::bits_of(gf.to(DType::bf16)));
  }
}

TEST_CASE("relu6: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return relu6(in[0]); }, {4097}, -3, 9);
}
TEST_CASE("hardsigmoid: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return hardsigmoid(in[0]); }, {4097}, -6, 6);
}
TEST_CASE("hardswish: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return hardswish(in[0]); }, {4097}, -6, 6);
}

TEST_CASE("mobile activations: cuda equals PyTorch's values at the kinks, f32 and bf16", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const auto& f = fixture();
  const Tensor x = f.get("act.x.f32"), r = f.get("act.r.f32");
  for (const Act& a : kActs) {
    INFO(a.name);
    auto [y, g] = value_and_grad(a.fn, x.cuda(), r.cuda());
    const std::string key = std::string("act.") + a.name;
    REQUIRE(y.cpu().to_vector<float>() == f.get(key + ".y.f32").to_vector<float>());
    REQUIRE(g.cpu().to_vector<float>() == f.get(key + ".g.f32").to_vector<float>());
    // bf16 forward and backward: bit for bit the CPU kernels'.
    Tensor xb = x.to(DType::bf16), rb = r.to(DType::bf16);
    auto [yc, gc] = value_and_grad(a.fn, xb, rb);
    auto [yg, gg] = value_and_grad(a.fn, xb.cuda(), rb.cuda());
    REQUIRE(test::bits_of(yg.cpu()) == test::bits_of(yc));
    REQUIRE(test::bits_of(gg.cpu()) == test::bits_of(gc));
  }
  // relu6_ on the device.
  Tensor h = x.cuda() * 1.0f;
  relu6_(h);
  REQUIRE(h.cpu().to_vector<float>() == f.get("act.relu6.y.f32").to_vector<float>());
}
