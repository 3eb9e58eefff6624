// nn::SqueezeExcitation (torchvision.ops.misc.SqueezeExcitation with MobileNetV3's
// Hardsigmoid), nn::AdaptiveAvgPool2d (1x1) and nn::make_divisible: names and shapes, a hand
// computed example, PyTorch's values (fixture by tools/make_act_se_fixture.py), gradcheck in
// double, bad input, and the CUDA path against the CPU.
#include <cmath>
#include <string>
#include <vector>

#include "engine/io/safetensors.h"
#include "engine/nn/mobile_layers.h"
#include "test_helpers.h"

using namespace eng;

namespace {

const io::SafetensorsFile& fixture() {
  static const io::SafetensorsFile f = io::load_safetensors(std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/act_se_parity.safetensors");
  return f;
}

// Points the module's layers at the given tensors (any dtype): forward reads the members.
void set_weights(nn::SqueezeExcitation& se, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2) {
  se.fc1->weight = w1;
  se.fc1->bias = b1;
  se.fc2->weight = w2;
  se.fc2->bias = b2;
}

}  // namespace

TEST_CASE("make_divisible: torchvision's _make_divisible") {
  // MobileNetV3-Large's SE squeeze channels: expanded / 4 rounded to a multiple of 8.
  REQUIRE(nn::make_divisible(72 / 4, 8) == 24);  // 16 would be < 0.9 * 18: one step up
  REQUIRE(nn::make_divisible(120 / 4, 8) == 32);
  REQUIRE(nn::make_divisible(672 / 4, 8) == 168);
  REQUIRE(nn::make_divisible(3, 8) == 8);          // min_value defaults to the divisor
  REQUIRE(nn::make_divisible(10, 16, 32) == 32);   // explicit min_value
  const Tensor rows = fixture().get("make_divisible");
  const auto v = rows.to_vector<double>();
  REQUIRE(rows.size(0) >= 10);
  for (int64_t i = 0; i < rows.size(0); ++i) {
    const double* r = &v[static_cast<size_t>(i * 4)];
    INFO("v " << r[0] << " divisor " << r[1] << " min_value " << r[2]);
    REQUIRE(nn::make_divisible(r[0], static_cast<int64_t>(r[1]), static_cast<int64_t>(r[2])) ==
            static_cast<int64_t>(r[3]));
  }
  REQUIRE_THROWS_WITH(nn::make_divisible(16, 0), Catch::Contains("make_divisible: divisor must be positive, got 0"));
  REQUIRE_THROWS_WITH(nn::make_divisible(-1, 8), Catch::Contains("make_divisible: value must be finite"));
  REQUIRE_THROWS_WITH(nn::make_divisible(std::nan(""), 8), Catch::Contains("make_divisible: value must be finite"));
  REQUIRE_THROWS_WITH(nn::make_divisible(1e300, 8), Catch::Contains("<= 2^40"));
}

TEST_CASE("AdaptiveAvgPool2d: 1x1 is the mean over H and W, other sizes refused") {
  Tensor x = from_vector<double>({1, 2, 3, 6, 0, 0, 0, 4}, {1, 2, 2, 2});
  Tensor y = nn::AdaptiveAvgPool2d(1).forward(x);
  REQUIRE(y.sizes() == Shape{1, 2, 1, 1});
  REQUIRE(y.to_vector<double>() == std::vector<double>{3.0, 1.0});
  REQUIRE_THROWS_WITH(nn::AdaptiveAvgPool2d(2),
                      Catch::Contains("AdaptiveAvgPool2d: only output size 1x1 is implemented, got 2x2"));
  REQUIRE_THROWS_WITH(nn::AdaptiveAvgPool2d(1, 3), Catch::Contains("got 1x3"));
}

TEST_CASE("SqueezeExcitation: torchvision's names, shapes and children") {
  nn::SqueezeExcitation se(16, nn::make_divisible(16 / 4, 8));
  std::vector<std::string> names;
  for (auto& [n, t] : se.named_parameters()) names.push_back(n + " " + shape_str(t.sizes()));
  REQUIRE(names == std::vector<std::string>{"fc1.weight [8, 16, 1, 1]", "fc1.bias [8]", "fc2.weight [16, 8, 1, 1]",
                                            "fc2.bias [16]"});
  std::vector<std::string> children;
  for (auto& [n, m] : se.named_children()) children.push_back(n + ":" + m->type_name());
  REQUIRE(children == std::vector<std::string>{"avgpool:AdaptiveAvgPool2d", "fc1:Conv2d", "fc2:Conv2d",
                                               "activation:ReLU", "scale_activation:Hardsigmoid"});
  REQUIRE(se.num_parameters() == 8 * 16 + 8 + 16 * 8 + 16);
  REQUIRE(nn::SqueezeExcitation(4, 2, nn::SEScale::Sigmoid).named_children().back().second->type_name() == "Sigmoid");
}

TEST_CASE("SqueezeExcitation: a hand-computed example") {
  // C = 2, S = 1. Channel means: (1+2+3+6)/4 = 3 and (0+0+0+4)/4 = 1.
  // fc1: h = relu(0.5*3 + 1*1 - 1) = 1.5.  fc2: a = (2*1.5 - 3, -1*1.5 + 0.5) = (0, -1).
  // hardsigmoid: s = ((0+3)/6, (-1+3)/6) = (0.5, 1/3).  y = s * x per channel.
  nn::SqueezeExcitation se(2, 1);
  set_weights(se, from_vector<double>({0.5, 1.0}, {1, 2, 1, 1}), from_vector<double>({-1.0}, {1}),
              from_vector<double>({2.0, -1.0}, {2, 1, 1, 1}), from_vector<double>({-3.0, 0.5}, {2}));
  Tensor x = from_vector<double>({1, 2, 3, 6, 0, 0, 0, 4}, {1, 2, 2, 2});
  const auto y = se.forward(x).to_vector<double>();
  const std::vector<double> want{0.5, 1.0, 1.5, 3.0, 0, 0, 0, 4.0 / 3.0};
  REQUIRE(y.size() == want.size());
  for (size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == Approx(want[i]).margin(1e-15));
}

TEST_CASE("SqueezeExcitation: equals torchvision's forward and gradients") {
  const auto& f = fixture();
  nn::SqueezeExcitation se(16, 8);
  // Through load_state_dict (f64 values cast into the f32 parameters), as a checkpoint would.
  nn::NamedTensors sd;
  for (const char* n : {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}) sd.push_back({n, f.get(std::string("se.") + n)});
  se.load_state_dict(sd);
  Tensor x32 = f.get("se.x").to(DType::f32);
  REQUIRE_CLOSE(se.forward(x32), f.get("se.y").to(DType::f32), 1e-5, 1e-5);

  // In double: forward and every gradient of sum(y * r).
  Tensor x = f.get("se.x").clone().set_requires_grad(true);
  std::vector<Tensor> w;
  for (const char* n : {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"})
    w.push_back(f.get(std::string("se.") + n).clone().set_requires_grad(true));
  set_weights(se, w[0], w[1], w[2], w[3]);
  Tensor y = se.forward(x);
  REQUIRE_CLOSE(y, f.get("se.y"), 1e-12, 1e-10);
  sum(mul(y, f.get("se.r"))).backward();
  // Gradients through the scale differ from torch's by up to 3e-8 relative: torch's f64
  // hardsigmoid backward multiplies by the float constant 1.0f / 6.0f (kernels/elementwise.h).
  REQUIRE_CLOSE(x.grad(), f.get("se.gx"), 1e-9, 1e-7);
  const char* names[] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
  for (int i = 0; i < 4; ++i) {
    INFO(names[i]);
    REQUIRE_CLOSE(w[i].grad(), f.get(std::string("se.g.") + names[i]), 1e-9, 1e-7);
  }
}

TEST_CASE("SqueezeExcitation: gradcheck through the input and all four parameters", "[gradcheck]") {
  nn::SqueezeExcitation se(6, 3);
  // Weights scaled so the hardsigmoid inputs stay well inside (-3, 3) (no kink within h).
  REQUIRE_GRADCHECK(
      [&](auto& in) {
        set_weights(se, in[1], in[2], in[3], in[4]);
        return se.forward(in[0]);
      },
      {test::leaf({2, 6, 3, 4}, 1), test::leaf({3, 6, 1, 1}, 2), test::leaf({3}, 3, 0.1, 0.5),
       test::leaf({6, 3, 1, 1}, 4), test::leaf({6}, 5)});
}

TEST_CASE("mul: [N, C, H, W] * [N, C, 1, 1] is differentiable in both", "[gradcheck]") {
  REQUIRE_GRADCHECK([](auto& in) { return mul(in[1], in[0]); }, {test::leaf({2, 3, 4, 5}, 1), test::leaf({2, 3, 1, 1}, 2)});
}

TEST_CASE("SqueezeExcitation: bad input is one line") {
  nn::SqueezeExcitation se(8, 4);
  REQUIRE_THROWS_WITH(se.forward(zeros({2, 6, 4, 4})),
                      Catch::Contains("SqueezeExcitation: expected input [N, 8, H, W], got [2, 6, 4, 4]"));
  REQUIRE_THROWS_WITH(se.forward(zeros({8, 4, 4})), Catch::Contains("got [8, 4, 4]"));
  REQUIRE_THROWS_WITH(nn::SqueezeExcitation(0, 4), Catch::Contains("SqueezeExcitation: channels must be positive"));
}

TEST_CASE("SqueezeExcitation: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  nn::SqueezeExcitation cpu_se(16, 8), gpu_se(16, 8);
  gpu_se.load_state_dict(cpu_se.state_dict());
  gpu_se.to(Device::cuda());
  Tensor t = test::random_f32({2, 16, 7, 5}, 3, -3, 3);
  Tensor xc = t.clone().set_requires_grad(true), xg = t.cuda().set_requires_grad(true);
  Tensor yc = cpu_se.forward(xc), yg = gpu_se.forward(xg);
  REQUIRE(yg.is_cuda());
  REQUIRE_CLOSE(yg.cpu(), yc, test::kGemmAtol, test::kGemmRtol);
  Tensor r = test::random_f32(yc.sizes(), 4);
  sum(mul(yc, r)).backward();
  sum(mul(yg, r.cuda())).backward();
  REQUIRE_CLOSE(xg.grad().cpu(), xc.grad(), test::kGemmAtol, test::kGemmRtol);
  REQUIRE_CLOSE(gpu_se.fc1->weight.grad().cpu(), cpu_se.fc1->weight.grad(), test::kGemmAtol, test::kGemmRtol);
  REQUIRE_CLOSE(gpu_se.fc2->bias.grad().cpu(), cpu_se.fc2->bias.grad(), test::kGemmAtol, test::kGemmRtol);
}
