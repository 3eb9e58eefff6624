// Elementwise ops: broadcasting binary ops, unary ops, scalar variants.
#include <functional>

#include "test_helpers.h"

using namespace eng;
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

namespace {

// CPU forward + backward vs CUDA forward + backward, float, elementwise tolerance.
void check_cuda_matches_cpu(const Fn& f, const std::vector<Shape>& shapes, double lo = -1.0, double hi = 1.0) {
  std::vector<Tensor> cpu_in, gpu_in;
  for (size_t i = 0; i < shapes.size(); ++i) {
    Tensor t = test::random_f32(shapes[i], 100 + i, lo, hi);
    cpu_in.push_back(t.clone().set_requires_grad(true));
    gpu_in.push_back(t.to(Device::cuda()).set_requires_grad(true));
  }
  Tensor yc = f(cpu_in), yg = f(gpu_in);
  REQUIRE(yg.is_cuda());
  REQUIRE_CLOSE(yg.cpu(), yc, test::kElementwiseAtol, test::kElementwiseRtol);
  Tensor r = test::random_f32(yc.sizes(), 7);
  sum(mul(yc, r)).backward();
  sum(mul(yg, r.to(Device::cuda()))).backward();
  for (size_t i = 0; i < shapes.size(); ++i)
    REQUIRE_CLOSE(gpu_in[i].grad().cpu(), cpu_in[i].grad(), test::kReductionAtol, test::kReductionRtol);
}

}  // namespace

TEST_CASE("broadcast_shapes follows NumPy rules") {
  REQUIRE(broadcast_shapes({2, 1, 4}, {3, 1}) == Shape{2, 3, 4});
  REQUIRE(broadcast_shapes({}, {5}) == Shape{5});
  REQUIRE_THROWS_WITH(broadcast_shapes({2, 3}, {4}), Catch::Contains("[2, 3] and [4] cannot be broadcast"));
}

TEST_CASE("binary ops: hand values with broadcasting") {
  Tensor a = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = from_vector<double>({10, 20, 30}, {3});
  REQUIRE(add(a, b).to_vector<double>() == std::vector<double>{11, 22, 33, 14, 25, 36});
  REQUIRE(sub(a, b).to_vector<double>() == std::vector<double>{-9, -18, -27, -6, -15, -24});
  REQUIRE(mul(a, b).to_vector<double>() == std::vector<double>{10, 40, 90, 40, 100, 180});
  Tensor c = from_vector<double>({2, 4}, {2, 1});
  REQUIRE(div(a, c).to_vector<double>() == std::vector<double>{0.5, 1, 1.5, 1, 1.25, 1.5});
  // Non-contiguous operand read through its strides.
  Tensor at = a.transpose(0, 1);  // [3, 2]
  REQUIRE(add(at, c.view({2})).to_vector<double>() == std::vector<double>{3, 8, 4, 9, 5, 10});
  REQUIRE_THROWS_WITH(add(a, from_vector<float>({1, 2, 3}, {3})), Catch::Contains("dtype mismatch"));
  REQUIRE_THROWS_WITH(add(a, zeros({4}, DType::f64)), Catch::Contains("cannot be broadcast"));
}

TEST_CASE("unary ops: hand values") {
  Tensor x = from_vector<double>({-2.0, -0.5, 0.5, 4.0}, {4});
  REQUIRE(neg(x).to_vector<double>() == std::vector<double>{2.0, 0.5, -0.5, -4.0});
  REQUIRE(relu(x).to_vector<double>() == std::vector<double>{0, 0, 0.5, 4.0});
  REQUIRE(square(x).to_vector<double>() == std::vector<double>{4, 0.25, 0.25, 16});
  REQUIRE(abs(x).to_vector<double>() == std::vector<double>{2.0, 0.5, 0.5, 4.0});
  REQUIRE(clamp(x, -1, 1).to_vector<double>() == std::vector<double>{-1, -0.5, 0.5, 1});
  REQUIRE((x + 1.0).to_vector<double>() == std::vector<double>{-1.0, 0.5, 1.5, 5.0});
  REQUIRE((x - 1.0).to_vector<double>() == std::vector<double>{-3.0, -1.5, -0.5, 3.0});
  REQUIRE((1.0 - x).to_vector<double>() == std::vector<double>{3.0, 1.5, 0.5, -3.0});
  REQUIRE((x * 2.0).to_vector<double>() == std::vector<double>{-4.0, -1.0, 1.0, 8.0});
  REQUIRE((x / 2.0).to_vector<double>() == std::vector<double>{-1.0, -0.25, 0.25, 2.0});
  auto s = sigmoid(from_vector<double>({0.0, 800.0, -800.0}, {3})).to_vector<double>();
  REQUIRE(s == std::vector<double>{0.5, 1.0, 0.0});  // no overflow at large |x|
  Tensor p = from_vector<double>({1.0, 4.0}, {2});
  REQUIRE(sqrt(p).to_vector<double>() == std::vector<double>{1.0, 2.0});
  REQUIRE(log(exp(p)).to_vector<double>()[1] == Approx(4.0).epsilon(1e-15));
  REQUIRE(exp(from_vector<double>({0.0}, {1})).item() == 1.0);
  REQUIRE_THROWS_WITH(relu(zeros({2}, DType::i64)), Catch::Contains("relu: expected a f32, f64 or bf16 tensor, got i64 of shape [2]"));
  REQUIRE_THROWS_WITH(clamp(x, 1, -1), Catch::Contains("lo (1) > hi (-1)"));
}

TEST_CASE("add: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return add(in[0], in[1]); }, {test::leaf({2, 3, 4}, 1), test::leaf({3, 1}, 2)});
}
TEST_CASE("sub: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return sub(in[0], in[1]); }, {test::leaf({4, 1}, 1), test::leaf({2, 1, 3}, 2)});
}
TEST_CASE("mul: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return mul(in[0], in[1]); }, {test::leaf({2, 3}, 1), test::leaf({3}, 2)});
}
TEST_CASE("div: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return div(in[0], in[1]); },
                    {test::leaf({2, 3}, 1), test::leaf({2, 1}, 2, 0.5, 2.0)});
}
TEST_CASE("neg: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return neg(in[0]); }, {test::leaf({5}, 1)});
}
TEST_CASE("scalar ops: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return ((in[0] + 2.0) * 3.0 - 1.0) / 4.0; }, {test::leaf({2, 3}, 1)});
  REQUIRE_GRADCHECK([](auto& in) { return 5.0 - in[0]; }, {test::leaf({3}, 2)});
}
TEST_CASE("relu: gradcheck", "[gradcheck]") {
  // Values kept away from the kink at 0.
  Tensor x = test::leaf({3, 4}, 1, 0.1, 1.0);
  Tensor y = test::leaf({3, 4}, 2, -1.0, -0.1);
  REQUIRE_GRADCHECK([](auto& in) { return relu(in[0]) + relu(in[1]); }, {x, y});
}
TEST_CASE("sigmoid: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return sigmoid(in[0]); }, {test::leaf({2, 5}, 1, -4, 4)});
}
TEST_CASE("exp: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return exp(in[0]); }, {test::leaf({6}, 1)});
}
TEST_CASE("log: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return log(in[0]); }, {test::leaf({6}, 1, 0.5, 3.0)});
}
TEST_CASE("sqrt: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return sqrt(in[0]); }, {test::leaf({6}, 1, 0.5, 3.0)});
}
TEST_CASE("square: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return square(in[0]); }, {test::leaf({6}, 1)});
}
TEST_CASE("abs: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return abs(in[0]); }, {test::leaf({4}, 1, 0.2, 1.0)});
  REQUIRE_GRADCHECK([](auto& in) { return abs(in[0]); }, {test::leaf({4}, 2, -1.0, -0.2)});
}
TEST_CASE("clamp: gradcheck", "[gradcheck]") {
  // Inputs on both sides of both bounds, none within h of them.
  Tensor x = from_vector<double>({-2.0, -0.3, 0.1, 0.4, 1.7}, {5});
  x.set_requires_grad(true);
  REQUIRE_GRADCHECK([](auto& in) { return clamp(in[0], -0.5, 0.5); }, {x});
  // Only the two inside the range pass gradient (loss = sum(r*y) makes it r there).
  auto g = x.grad().to_vector<double>();
  REQUIRE(g[0] == 0.0);
  REQUIRE(g[4] == 0.0);
  REQUIRE(g[2] != 0.0);
}

TEST_CASE("add: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return add(in[0], in[1]); }, {{4, 3, 5}, {3, 1}});
}
TEST_CASE("sub: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return sub(in[0], in[1]); }, {{1000}, {1000}});
}
TEST_CASE("mul: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return mul(in[0], in[1]); }, {{2, 64, 7}, {64, 1}});
}
TEST_CASE("div: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return div(in[0], in[1] * in[1] + 0.5); }, {{3, 33}, {33}});
}
TEST_CASE("neg: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return neg(in[0]); }, {{513}});
}
TEST_CASE("scalar ops: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return (2.0 - (in[0] + 1.5) * 3.0) / 4.0; }, {{100}});
}
TEST_CASE("relu: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return relu(in[0]); }, {{4097}});
}
TEST_CASE("sigmoid: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return sigmoid(in[0]); }, {{4097}}, -8, 8);
}
TEST_CASE("exp: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return exp(in[0]); }, {{777}}, -3, 3);
}
TEST_CASE("log: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return log(in[0]); }, {{777}}, 0.1, 5);
}
TEST_CASE("sqrt: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return sqrt(in[0]); }, {{777}}, 0.1, 5);
}
TEST_CASE("square: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return square(in[0]); }, {{777}});
}
TEST_CASE("abs: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return abs(in[0]); }, {{777}});
}
TEST_CASE("clamp: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu([](auto& in) { return clamp(in[0], -0.3, 0.6); }, {{777}});
}
