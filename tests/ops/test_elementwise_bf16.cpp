// Elementwise ops on bf16 tensors: bf16 storage, float maths, results rounded to nearest
// even. Hand values with rounding ties; the bf16 kernel against the f32 kernel on the same
// (widened) inputs, rounded once; backward through bf16; and the CUDA kernels against their
// CPU twins.
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/bf16.h"
#include "bf16_helpers.h"
#include "test_helpers.h"

using namespace eng;
using test::bits_of;

namespace {

Tensor bf16_of(const std::vector<float>& v, const Shape& shape) { return from_vector(v, shape).to(DType::bf16); }

// Random bf16 values: normal * 4 (+ shift). The ops below are single kernels, or a kernel
// after one that is exact in bf16 (abs, * 0.25), so the bf16 and f32 paths see the same inputs.
Tensor random_bf16(const Shape& shape, uint64_t seed, double shift = 0.0) {
  Generator g(seed);
  return (randn(shape, g) * 4.0 + shift).to(DType::bf16);
}

struct NamedOp {
  const char* name;
  std::function<Tensor(const Tensor&, const Tensor&)> f;
  bool exact_on_cuda;  // false where CUDA's and the host's expf / logf may differ by an ulp
};

std::vector<NamedOp> ops() {
  return {
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }, true},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }, true},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }, true},
      {"div", [](const Tensor& a, const Tensor& b) { return a / b; }, true},
      {"neg", [](const Tensor& a, const Tensor&) { return -a; }, true},
      {"add_scalar", [](const Tensor& a, const Tensor&) { return a + 0.3; }, true},
      {"mul_scalar", [](const Tensor& a, const Tensor&) { return a * 1.7; }, true},
      {"rsub_scalar", [](const Tensor& a, const Tensor&) { return 2.5 - a; }, true},
      {"relu", [](const Tensor& a, const Tensor&) { return relu(a); }, true},
      {"square", [](const Tensor& a, const Tensor&) { return square(a); }, true},
      {"abs", [](const Tensor& a, const Tensor&) { return abs(a); }, true},
      {"clamp", [](const Tensor& a, const Tensor&) { return clamp(a, -1.5, 2.25); }, true},
      {"sqrt", [](const Tensor& a, const Tensor&) { return sqrt(abs(a)); }, true},
      {"sigmoid", [](const Tensor& a, const Tensor&) { return sigmoid(a); }, false},
      {"exp", [](const Tensor& a, const Tensor&) { return exp(a * 0.25); }, false},
      {"log", [](const Tensor& a, const Tensor&) { return log(abs(a)); }, false},
  };
}

// Same bits, or (where allowed) neighbours: same sign, bit patterns one apart.
std::string compare_bits(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want, bool exact) {
  if (got.size() != want.size()) return "size mismatch";
  for (size_t i = 0; i < got.size(); ++i) {
    const int diff = std::abs(static_cast<int>(got[i]) - static_cast<int>(want[i]));
    const bool same_sign = (got[i] >> 15) == (want[i] >> 15);
    if (diff == 0 || (!exact && same_sign && diff == 1)) continue;
    return "element " + std::to_string(i) + ": got bits " + std::to_string(got[i]) + ", want " + std::to_string(want[i]);
  }
  return "";
}

}  // namespace

TEST_CASE("bf16 elementwise: hand values round to nearest even", "[bf16]") {
  const float e = std::ldexp(1.0f, -8);
  // 1 + 2^-8: tie, down to 1 (0x3F80); 1 + 3*2^-8: tie, up to 0x3F82.
  REQUIRE(bits_of(bf16_of({1.0f, 1.0f}, {2}) + bf16_of({e, 3 * e}, {2})) == std::vector<uint16_t>{0x3F80, 0x3F82});
  // (1 + 2^-7) * 1.5 = 1.51171875: tie between 0x3FC1 and 0x3FC2 (even).
  REQUIRE(bits_of(bf16_of({1.0f + 2 * e}, {1}) * bf16_of({1.5f}, {1})) == std::vector<uint16_t>{0x3FC2});
  REQUIRE(bits_of(bf16_of({1.0f}, {1}) / bf16_of({3.0f}, {1})) == std::vector<uint16_t>{0x3EAB});
  REQUIRE(bits_of(bf16_of({1.0f}, {1}) - bf16_of({1.0f + 2 * e}, {1})) == std::vector<uint16_t>{0xBC00});  // -2^-7
  // Broadcasting: [2, 3] + [3]. 2 + 3*2^-8 is 3/4 of the way to 2 + 2^-6: rounds up; 5 + 3*2^-8
  // is 3/8 of the way to 5 + 2^-5: rounds down.
  Tensor a = bf16_of({1, 2, 3, 4, 5, 6}, {2, 3}), b = bf16_of({0.5f, 3 * e, -1}, {3});
  REQUIRE((a + b).to_vector<float>() == std::vector<float>{1.5f, 2.015625f, 2.0f, 4.5f, 5.0f, 5.0f});
  REQUIRE((a + b).dtype() == DType::bf16);
  // Scalars are applied in float, and the float result rounded: both are ties here.
  REQUIRE(bits_of(bf16_of({1.0f}, {1}) * (1.0 + 3 * std::ldexp(1.0, -8))) == std::vector<uint16_t>{0x3F82});
  REQUIRE(bits_of(bf16_of({1.0f}, {1}) + std::ldexp(1.0, -8)) == std::vector<uint16_t>{0x3F80});
  // Unary: relu, exp(1) = 2.71828.. -> 2.71875 (0x402E), sqrt(2) = 1.41421.. -> 1.4140625 (0x3FB5).
  REQUIRE(relu(bf16_of({-2, 0, 3}, {3})).to_vector<float>() == std::vector<float>{0, 0, 3});
  REQUIRE(bits_of(exp(bf16_of({1}, {1}))) == std::vector<uint16_t>{0x402E});
  REQUIRE(bits_of(sqrt(bf16_of({2}, {1}))) == std::vector<uint16_t>{0x3FB5});
  REQUIRE(bits_of(sigmoid(bf16_of({0, 200}, {2}))) == std::vector<uint16_t>{0x3F00, 0x3F80});
}

TEST_CASE("bf16 elementwise: the bf16 kernel is the f32 kernel rounded once", "[bf16]") {
  // Every bf16 value widens exactly to f32, so op_bf16(a, b) must equal
  // round_bf16(op_f32(widen(a), widen(b))) bit for bit.
  Tensor a = random_bf16({7, 33}, 1), b = random_bf16({7, 33}, 2, 0.5);
  for (const NamedOp& op : ops()) {
    INFO(op.name);
    Tensor got = op.f(a, b);
    REQUIRE(got.dtype() == DType::bf16);
    Tensor ref = op.f(a.to(DType::f32), b.to(DType::f32)).to(DType::bf16);
    const std::string cmp = compare_bits(bits_of(got), bits_of(ref), true);
    INFO(cmp);
    REQUIRE(cmp.empty());
  }
}

TEST_CASE("bf16 elementwise: backward runs in bf16", "[bf16]") {
  const float tie_up = 1.0f + 3 * std::ldexp(1.0f, -8);
  Tensor x = bf16_of({-1.0f, 2.0f}, {2}).set_requires_grad(true);
  Tensor y = relu(x) * bf16_of({1.0f, 3.0f}, {2});
  sum(y.to(DType::f32) * from_vector<float>({tie_up, tie_up}, {2})).backward();
  // dL/dy = tie_up rounded to bf16 = 1.015625; dy/dx = [0, 3]; 3 * 1.015625 = 3.046875 exactly.
  REQUIRE(x.grad().dtype() == DType::bf16);
  REQUIRE(x.grad().to_vector<float>() == std::vector<float>{0.0f, 3.046875f});
  // A broadcast op's backward reduces the gradient with a bf16 sum.
  Tensor w = bf16_of({1, 2, 3, 4}, {2, 2}).set_requires_grad(true);
  Tensor v = bf16_of({1, 1}, {2}).set_requires_grad(true);
  sum((w * v).to(DType::f32)).backward();
  REQUIRE(v.grad().dtype() == DType::bf16);
  REQUIRE(v.grad().to_vector<float>() == std::vector<float>{4, 6});
  REQUIRE(w.grad().to_vector<float>() == std::vector<float>{1, 1, 1, 1});
}

TEST_CASE("bf16 elementwise: mixed dtypes are rejected", "[bf16]") {
  REQUIRE_THROWS_WITH(bf16_of({1}, {1}) + from_vector<float>({1}, {1}), Catch::Contains("add: dtype mismatch (bf16 and f32)"));
}

TEST_CASE("bf16 elementwise: cuda matches the cpu twin", "[cuda][bf16]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor a = random_bf16({5, 1000}, 3), b = random_bf16({5, 1000}, 4, 0.5);
  Tensor ga = a.to(Device::cuda()), gb = b.to(Device::cuda());
  for (const NamedOp& op : ops()) {
    INFO(op.name);
    Tensor got = op.f(ga, gb);
    REQUIRE(got.is_cuda());
    REQUIRE(got.dtype() == DType::bf16);
    const std::string cmp = compare_bits(bits_of(got), bits_of(op.f(a, b)), op.exact_on_cuda);
    INFO(cmp);
    REQUIRE(cmp.empty());
  }
  // The strided (broadcasting) kernel: [5, 1000] * [1000] and [5, 1] - [5, 1000].
  Tensor row = random_bf16({1000}, 5), col = random_bf16({5, 1}, 6);
  REQUIRE(bits_of(ga * row.to(Device::cuda())) == bits_of(a * row));
  REQUIRE(bits_of(col.to(Device::cuda()) - ga) == bits_of(col - a));
  // Backward kernels (unary_backward) on the device.
  for (auto f : std::vector<std::function<Tensor(const Tensor&)>>{
           [](const Tensor& x) { return relu(x); }, [](const Tensor& x) { return square(x); },
           [](const Tensor& x) { return clamp(x, -1.0, 1.0); }, [](const Tensor& x) { return x * 0.75; }}) {
    Tensor w = random_bf16({5, 1000}, 7);
    Tensor xc = a.detach().set_requires_grad(true), xg = ga.detach().set_requires_grad(true);
    f(xc).backward(w);
    f(xg).backward(w.to(Device::cuda()));
    REQUIRE(bits_of(xg.grad()) == bits_of(xc.grad()));
  }
}
