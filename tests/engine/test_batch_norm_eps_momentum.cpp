// nn::BatchNorm2d with MobileNetV3's settings (torchvision's ssdlite320_mobilenet_v3_large
// builds its backbone with BatchNorm2d(eps=0.001, momentum=0.03)): the running statistics
// follow torch's rule new = (1 - momentum) * old + momentum * batch (unbiased variance), and
// the given eps is used in training and in eval, checked against values computed by hand.
#include <cmath>
#include <vector>

#include "engine/nn/layers.h"
#include "test_helpers.h"

using namespace eng;

TEST_CASE("BatchNorm2d: non-default eps and momentum (MobileNetV3's 1e-3 and 0.03)") {
  nn::BatchNorm2d bn(2, 1e-3, 0.03);
  REQUIRE(bn.eps == 1e-3);
  REQUIRE(bn.momentum == 0.03);
  {
    NoGradGuard g;
    bn.weight.copy_(from_vector<double>({2.0, 1.0}, {2}));
    bn.bias.copy_(from_vector<double>({0.5, 0.0}, {2}));
  }
  // x [2, 2, 1, 2]. Channel 0 holds 1, 2 (n = 0) and 3, 6 (n = 1): mean 3, biased variance
  // (4 + 1 + 0 + 9) / 4 = 3.5, unbiased 14 / 3. Channel 1 holds 0, 0 and 0, 4: mean 1,
  // biased variance (1 + 1 + 1 + 9) / 4 = 3, unbiased 4.
  Tensor x = from_vector<double>({1, 2, 0, 0, 3, 6, 0, 4}, {2, 2, 1, 2}).to(DType::f32);
  bn.train();
  const auto y = bn.forward(x).to_vector<double>();
  // Training output: (x - mean) / sqrt(biased var + eps) * w + b, eps = 1e-3:
  // sqrt(3.501) = 1.8710959355..., sqrt(3.001) = 1.7323394586...
  const double s0 = 1.8710959355, s1 = 1.7323394586;
  const std::vector<double> want{2 * -2 / s0 + 0.5, 2 * -1 / s0 + 0.5, -1 / s1, -1 / s1,
                                 0.5,               2 * 3 / s0 + 0.5,  -1 / s1, 3 / s1};
  for (size_t i = 0; i < want.size(); ++i) REQUIRE(y[i] == Approx(want[i]).epsilon(1e-6));
  // With torch's default eps (1e-5) the first value would be -2 * 2 / sqrt(3.50001) + 0.5 =
  // -1.63809 instead of -1.63778, 3e-4 away: the test tells the two apart.
  REQUIRE(std::fabs(y[0] - (-4 / std::sqrt(3.50001) + 0.5)) > 1e-4);

  // Running stats after one step: mean 0.97 * 0 + 0.03 * (3, 1) = (0.09, 0.03);
  // var 0.97 * 1 + 0.03 * (14/3, 4) = (1.11, 1.09).
  auto rm = bn.running_mean.to_vector<double>(), rv = bn.running_var.to_vector<double>();
  REQUIRE(rm[0] == Approx(0.09).epsilon(1e-6));
  REQUIRE(rm[1] == Approx(0.03).epsilon(1e-6));
  REQUIRE(rv[0] == Approx(1.11).epsilon(1e-6));
  REQUIRE(rv[1] == Approx(1.09).epsilon(1e-6));
  // A second identical step: mean 0.97 * 0.09 + 0.09 = 0.1773, var 0.97 * 1.11 + 0.14 = 1.2167.
  bn.forward(x);
  rm = bn.running_mean.to_vector<double>();
  rv = bn.running_var.to_vector<double>();
  REQUIRE(rm[0] == Approx(0.1773).epsilon(1e-6));
  REQUIRE(rv[0] == Approx(1.2167).epsilon(1e-6));
  REQUIRE(rv[1] == Approx(0.97 * 1.09 + 0.12).epsilon(1e-6));  // 1.1773
  REQUIRE(bn.num_batches_tracked.item() == 2.0);

  // Eval: (x - running_mean) / sqrt(running_var + eps) * w + b with eps = 1e-3.
  bn.eval();
  const auto ye = bn.forward(x).to_vector<double>();
  REQUIRE(ye[0] == Approx((1 - 0.1773) / std::sqrt(1.2167 + 1e-3) * 2 + 0.5).epsilon(1e-6));  // 1.99108...
  REQUIRE(ye[7] == Approx((4 - 0.97 * 0.03 - 0.03) / std::sqrt(1.1773 + 1e-3)).epsilon(1e-6));
  REQUIRE(bn.num_batches_tracked.item() == 2.0);  // eval does not count
}

TEST_CASE("BatchNorm2d: defaults stay torch's (eps 1e-5, momentum 0.1)") {
  nn::BatchNorm2d bn(3);
  REQUIRE(bn.eps == 1e-5);
  REQUIRE(bn.momentum == 0.1);
  Tensor x = from_vector<double>({0, 2, 0, 2, 0, 2}, {1, 3, 1, 2}).to(DType::f32);
  bn.forward(x);
  // Batch mean 1, unbiased variance 2: running mean 0.1, running var 0.9 + 0.2 = 1.1.
  REQUIRE(bn.running_mean.to_vector<double>()[0] == Approx(0.1).epsilon(1e-6));
  REQUIRE(bn.running_var.to_vector<double>()[2] == Approx(1.1).epsilon(1e-6));
}
