// Reductions: sum / mean over dims, max / argmax over a dim.
#include "test_helpers.h"

using namespace eng;

TEST_CASE("sum and mean: hand values") {
  Tensor x = arange(24, DType::f64).reshape({2, 3, 4});
  REQUIRE(sum(x).item() == 276.0);
  REQUIRE(sum(x).dim() == 0);
  REQUIRE(mean(x).item() == 11.5);
  // Over dim 1: x[a, :, c] summed = 3*(12a + c) + 12.
  Tensor s1 = sum(x, {1});
  REQUIRE(s1.sizes() == Shape{2, 4});
  REQUIRE(s1.to_vector<double>() == std::vector<double>{12, 15, 18, 21, 48, 51, 54, 57});
  REQUIRE(sum(x, {1}, true).sizes() == Shape{2, 1, 4});
  // Non-adjacent dims {0, 2}: for each middle index b: sum_a sum_c (12a + 4b + c) = 2*(4*4b + 6) + 4*12 = 32b + 60.
  REQUIRE(sum(x, {0, 2}).to_vector<double>() == std::vector<double>{60, 92, 124});
  REQUIRE(sum(x, {-1}).sizes() == Shape{2, 3});
  REQUIRE(mean(x, {0, 2}).to_vector<double>() == std::vector<double>{60.0 / 8, 92.0 / 8, 124.0 / 8});
  // A non-contiguous input.
  REQUIRE(sum(x.transpose(0, 2), {2}).to_vector<double>() == sum(x, {0}).transpose(0, 1).contiguous().to_vector<double>());
  REQUIRE_THROWS_WITH(sum(x, {3}), Catch::Contains("sum: dim 3 out of range"));
  REQUIRE_THROWS_WITH(sum(x, {1, 1}), Catch::Contains("repeated dim"));
}

namespace {
// 1 followed by n copies of float(1e-4): the exact sum of these floats, in double.
std::vector<float> one_and_many_small(int64_t n, double* exact) {
  std::vector<float> v(static_cast<size_t>(n + 1), 1e-4f);
  v[0] = 1.0f;
  *exact = 1.0 + static_cast<double>(n) * static_cast<double>(1e-4f);
  return v;
}
}  // namespace

// Float sums accumulate in double: adding 300000 terms of 1e-4 one by one to a float total
// near 30 loses about 1e-3 of the answer; the double accumulator keeps it to float rounding.
TEST_CASE("sum: float sums of many small terms stay accurate") {
  const int64_t n = 300000;
  double exact = 0;
  Tensor x = from_vector(one_and_many_small(n, &exact), {n + 1});
  CHECK(sum(x).item() == Approx(exact).epsilon(2e-7));
  CHECK(mean(x).item() == Approx(exact / (n + 1)).epsilon(2e-7));
  // The same along a middle axis ([1, n + 1, 2]) and with a leading axis ([2, n + 1]).
  Tensor col = x.reshape({n + 1, 1}), row = x.reshape({1, n + 1});
  Tensor pair = concat({col, col}, 1).reshape({1, n + 1, 2});
  for (double v : sum(pair, {1}).to_vector<double>()) CHECK(v == Approx(exact).epsilon(2e-7));
  for (double v : sum(concat({row, row}, 0), {1}).to_vector<double>()) CHECK(v == Approx(exact).epsilon(2e-7));
}

TEST_CASE("sum: cuda float sums of many small terms stay accurate", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const int64_t n = 300000;
  double exact = 0;
  Tensor x = from_vector(one_and_many_small(n, &exact), {n + 1}).to(Device::cuda());
  CHECK(sum(x).item() == Approx(exact).epsilon(2e-7));
  Tensor col = x.reshape({n + 1, 1});
  Tensor pair = concat({col, col}, 1).reshape({1, n + 1, 2});
  for (double v : sum(pair, {1}).cpu().to_vector<double>()) CHECK(v == Approx(exact).epsilon(2e-7));
}

TEST_CASE("max and argmax: hand values") {
  Tensor x = from_vector<double>({1, 9, 3, 9, 2, 0, 5, 4}, {2, 4});
  auto [v, i] = max(x, 1);
  REQUIRE(v.to_vector<double>() == std::vector<double>{9, 5});
  REQUIRE(i.to_vector<int64_t>() == std::vector<int64_t>{1, 2});  // first maximum wins the tie
  REQUIRE(i.dtype() == DType::i64);
  REQUIRE(argmax(x, 0).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1, 0});
  REQUIRE(max(x, 0, true).first.sizes() == Shape{1, 4});
  REQUIRE(!argmax(x.detach().set_requires_grad(true), 1).requires_grad());
}

TEST_CASE("sum: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return sum(in[0], {0, 2}); }, {test::leaf({2, 3, 4}, 1)});
  REQUIRE_GRADCHECK([](auto& in) { return sum(in[0], {1}, true); }, {test::leaf({2, 3, 4}, 2)});
  REQUIRE_GRADCHECK([](auto& in) { return sum(in[0]); }, {test::leaf({3, 2}, 3)});
}
TEST_CASE("mean: gradcheck", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return mean(in[0], {1, 2}); }, {test::leaf({2, 3, 4}, 1)});
  REQUIRE_GRADCHECK([](auto& in) { return mean(in[0]); }, {test::leaf({5}, 2)});
}
TEST_CASE("max: gradcheck", "[gradcheck]") {
  // Distinct values: the maximum is unique, so the function is smooth around the input.
  std::vector<double> v(24);
  for (int k = 0; k < 24; ++k) v[k] = ((k * 7) % 24) * 0.1;
  Tensor x = from_vector<double>(v, {2, 3, 4});
  x.set_requires_grad(true);
  REQUIRE_GRADCHECK([](auto& in) { return max(in[0], 1).first; }, {x});
  // The gradient lands only on the argmax positions.
  auto g = x.grad().to_vector<double>();
  int nonzero = 0;
  for (double e : g) nonzero += e != 0.0;
  REQUIRE(nonzero == 8);
}
TEST_CASE("argmax: gradcheck", "[gradcheck]") {
  // argmax is piecewise constant: its output carries no gradient, and max's values do.
  Tensor x = test::leaf({3, 5}, 4);
  Tensor i = argmax(x, 1);
  REQUIRE(!i.requires_grad());
  REQUIRE(i.dtype() == DType::i64);
  REQUIRE_GRADCHECK([](auto& in) { return max(in[0], 1).first; }, {x});
}

namespace {
template <typename F>
void check_reduce_cuda(F f, const Shape& shape) {
  Tensor t = test::random_f32(shape, 11);
  Tensor xc = t.clone().set_requires_grad(true), xg = t.to(Device::cuda()).set_requires_grad(true);
  Tensor yc = f(xc), yg = f(xg);
  REQUIRE_CLOSE(yg.cpu(), yc, test::kReductionAtol, test::kReductionRtol);
  Tensor r = test::random_f32(yc.sizes(), 12);
  sum(mul(yc, r)).backward();
  sum(mul(yg, r.to(Device::cuda()))).backward();
  REQUIRE_CLOSE(xg.grad().cpu(), xc.grad(), test::kReductionAtol, test::kReductionRtol);
}
}  // namespace

TEST_CASE("sum: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_reduce_cuda([](const Tensor& x) { return sum(x, {1}); }, {8, 300, 5});
  check_reduce_cuda([](const Tensor& x) { return sum(x, {-1}); }, {16, 1000});
  check_reduce_cuda([](const Tensor& x) { return sum(x, {0, 2}); }, {4, 7, 9});
  check_reduce_cuda([](const Tensor& x) { return sum(x); }, {100000});
}
TEST_CASE("mean: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_reduce_cuda([](const Tensor& x) { return mean(x, {2, 3}); }, {2, 16, 9, 9});
}
TEST_CASE("max: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_reduce_cuda([](const Tensor& x) { return max(x, 1).first; }, {4, 91, 3});
  check_reduce_cuda([](const Tensor& x) { return max(x, -1).first; }, {64, 21});
}
TEST_CASE("argmax: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor t = test::random_f32({32, 21}, 5);
  REQUIRE(argmax(t.to(Device::cuda()), 1).cpu().to_vector<int64_t>() == argmax(t, 1).to_vector<int64_t>());
}
