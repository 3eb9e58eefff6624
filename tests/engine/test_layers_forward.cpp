// nn layers: forward results against hand-computed values and the ops they wrap.
#include "test_helpers.h"

#include <cmath>

#include "engine/nn/layers.h"

using namespace eng;
using namespace eng::nn;

namespace {
void set(Tensor t, const std::vector<double>& v) {
  NoGradGuard g;
  t.copy_(from_vector(v, t.sizes()));
}
}  // namespace

TEST_CASE("layers: Conv2d forward uses its weight, bias, stride, padding and dilation") {
  Conv2d conv(1, 1, 3, 1, 1);
  {
    NoGradGuard g;
    conv.weight.fill_(1.0);
    conv.bias.fill_(0.5);
  }
  Tensor y = conv.forward(ones({1, 1, 4, 4}));
  REQUIRE(y.sizes() == Shape{1, 1, 4, 4});
  auto v = y.to_vector<float>();
  REQUIRE(v[0] == 4.5f);           // corner: 2x2 window of ones inside the padding
  REQUIRE(v[1] == 6.5f);           // edge: 2x3
  REQUIRE(v[5] == 9.5f);           // inside: 3x3

  // fc6 of SSD: 3x3, dilation 6, padding 6 keeps 19x19; stride 2 halves (rounding up).
  Conv2d fc6(2, 3, 3, 1, 6, 6);
  REQUIRE(fc6.forward(zeros({1, 2, 19, 19})).sizes() == Shape{1, 3, 19, 19});
  Conv2d down(2, 3, 3, 2, 1);
  REQUIRE(down.forward(zeros({2, 2, 19, 19})).sizes() == Shape{2, 3, 10, 10});
  // Without bias the output of a zero input is exactly zero.
  Conv2d nobias(2, 3, 1, 1, 0, 1, false);
  REQUIRE(nobias.forward(zeros({1, 2, 2, 2})).to_vector<float>() == std::vector<float>(12, 0.0f));
}

TEST_CASE("layers: Linear forward is x W^T + b") {
  Linear l(3, 2);
  set(l.weight, {1, 2, 3, 4, 5, 6});
  set(l.bias, {0.5, -1});
  Tensor y = l.forward(from_vector<float>({1, 0, -1, 2, 1, 0}, {2, 3}));
  REQUIRE(y.to_vector<float>() == std::vector<float>{1 - 3 + 0.5f, 4 - 6 - 1.0f, 2 + 2 + 0.5f, 8 + 5 - 1.0f});
}

TEST_CASE("layers: BatchNorm2d uses batch stats in train mode and running stats in eval") {
  BatchNorm2d bn(2, 1e-5, 0.1);
  // Channel 0 holds 1,2,3,4 (mean 2.5, biased var 1.25, unbiased 5/3); channel 1 all 7.
  Tensor x = from_vector<float>({1, 2, 7, 7, 3, 4, 7, 7}, {2, 2, 1, 2});
  Tensor y = bn.forward(x);
  auto v = y.to_vector<float>();
  const double s = 1.0 / std::sqrt(1.25 + 1e-5);
  REQUIRE(v[0] == Approx(-1.5 * s).epsilon(1e-5));
  REQUIRE(v[5] == Approx(1.5 * s).epsilon(1e-5));
  REQUIRE(std::fabs(v[2]) < 1e-4);  // constant channel normalises to 0
  REQUIRE(bn.running_mean.to_vector<float>()[0] == Approx(0.25).epsilon(1e-6));
  REQUIRE(bn.running_mean.to_vector<float>()[1] == Approx(0.7).epsilon(1e-6));
  REQUIRE(bn.running_var.to_vector<float>()[0] == Approx(0.9 + 0.1 * 5.0 / 3.0).epsilon(1e-6));
  REQUIRE(bn.num_batches_tracked.item() == 1.0);

  bn.eval();
  set(bn.running_mean, {1, 2});
  set(bn.running_var, {4, 9});
  set(bn.weight, {2, 1});
  set(bn.bias, {0, 1});
  auto e = bn.forward(x).to_vector<float>();
  REQUIRE(e[0] == Approx(2 * (1 - 1) / std::sqrt(4 + 1e-5)).margin(1e-6));
  REQUIRE(e[1] == Approx(2 * (2 - 1) / std::sqrt(4 + 1e-5)).epsilon(1e-5));
  REQUIRE(e[2] == Approx((7 - 2) / std::sqrt(9 + 1e-5) + 1).epsilon(1e-5));
  REQUIRE(bn.num_batches_tracked.item() == 1.0);  // eval forwards are not counted
  REQUIRE(bn.running_mean.to_vector<float>() == std::vector<float>{1, 2});
}

TEST_CASE("layers: FrozenBatchNorm2d is a fixed affine map") {
  FrozenBatchNorm2d f(2);
  set(f.weight, {2, -1});
  set(f.bias, {1, 0});
  set(f.running_mean, {1, 3});
  set(f.running_var, {3, 0});
  Tensor x = from_vector<float>({2, 5, 4, 3}, {1, 2, 1, 2});
  auto v = f.forward(x).to_vector<float>();
  REQUIRE(v[0] == Approx(2 * (2 - 1) / std::sqrt(3 + 1e-5) + 1).epsilon(1e-5));
  REQUIRE(v[1] == Approx(2 * (5 - 1) / std::sqrt(3 + 1e-5) + 1).epsilon(1e-5));
  REQUIRE(v[2] == Approx(-(4 - 3) / std::sqrt(1e-5)).epsilon(1e-4));
  REQUIRE(v[3] == Approx(0).margin(1e-6));
}

TEST_CASE("layers: ReLU and MaxPool2d") {
  ReLU r;
  REQUIRE(r.forward(from_vector<float>({-1, 0, 2}, {3})).to_vector<float>() == std::vector<float>{0, 0, 2});
  REQUIRE(MaxPool2d(2, 2, 0, true).forward(zeros({1, 1, 75, 75})).sizes() == Shape{1, 1, 38, 38});
  REQUIRE(MaxPool2d(2).forward(zeros({1, 1, 75, 75})).sizes() == Shape{1, 1, 37, 37});  // stride = kernel
  REQUIRE(MaxPool2d(3, 1, 1).forward(zeros({1, 1, 19, 19})).sizes() == Shape{1, 1, 19, 19});
  Tensor x = from_vector<float>({1, 5, 2, 0, 3, 4, 8, 1, 0, 0, 0, 0, 9, 0, 0, 7}, {1, 1, 4, 4});
  REQUIRE(MaxPool2d(2).forward(x).to_vector<float>() == std::vector<float>{5, 8, 9, 7});
}

TEST_CASE("layers: Sequential chains its layers and gradients reach the parameters") {
  manual_seed(5);
  auto conv = std::make_shared<Conv2d>(2, 3, 3, 1, 1);
  Sequential seq{conv, std::make_shared<ReLU>(), std::make_shared<MaxPool2d>(2)};
  Tensor x = test::random_f32({2, 2, 6, 6}, 9);
  Tensor expected = max_pool2d(relu(conv2d(x, conv->weight, conv->bias, conv->params)), Pool2dParams{});
  Tensor y = seq.forward(x);
  REQUIRE(y.sizes() == Shape{2, 3, 3, 3});
  REQUIRE(y.to_vector<float>() == expected.to_vector<float>());

  sum(y).backward();
  REQUIRE(conv->weight.grad().defined());
  REQUIRE(conv->weight.grad().sizes() == conv->weight.sizes());
  REQUIRE(conv->bias.grad().defined());
  seq.zero_grad();
  REQUIRE(!conv->weight.grad().defined());
  REQUIRE_THROWS_WITH(Module("Plain").forward(x), Catch::Contains("forward not implemented for Plain"));
}
