// nn::FrozenBatchNorm2d computes scale and shift once per change of its buffers.
#include <map>
#include <string>

#include "engine/nn/layers.h"
#include "test_helpers.h"

using namespace eng;

namespace {

// A FrozenBatchNorm2d over 3 channels with distinct, non-trivial buffers (f64).
std::shared_ptr<nn::FrozenBatchNorm2d> make_bn(uint64_t seed) {
  auto bn = std::make_shared<nn::FrozenBatchNorm2d>(3);
  NoGradGuard ng;
  bn->weight.copy_(test::leaf({3}, seed, 0.5, 2.0).detach().to(DType::f32));
  bn->bias.copy_(test::leaf({3}, seed + 1).detach().to(DType::f32));
  bn->running_mean.copy_(test::leaf({3}, seed + 2).detach().to(DType::f32));
  bn->running_var.copy_(test::leaf({3}, seed + 3, 0.5, 3.0).detach().to(DType::f32));
  return bn;
}

// What the module must output: the op on the current buffers.
Tensor expected(const nn::FrozenBatchNorm2d& bn, const Tensor& x) {
  return frozen_batch_norm2d(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps);
}

}  // namespace

TEST_CASE("FrozenBatchNorm2d: scale and shift computed once for repeated forwards") {
  auto bn = make_bn(1);
  Tensor x = test::random_f32({2, 3, 4, 5}, 10);
  for (int i = 0; i < 4; ++i) REQUIRE(bn->forward(x).to_vector<float>() == expected(*bn, x).to_vector<float>());
  REQUIRE(bn->scale_shift_computations() == 1);
  // The gradient to x is the op's (scale per channel).
  Tensor xa = test::cpu_leaf(x), xb = test::cpu_leaf(x);
  Tensor r = test::random_f32({2, 3, 4, 5}, 11);
  sum(mul(bn->forward(xa), r)).backward();
  sum(mul(expected(*bn, xb), r)).backward();
  REQUIRE(xa.grad().to_vector<float>() == xb.grad().to_vector<float>());
  REQUIRE(bn->scale_shift_computations() == 1);
}

TEST_CASE("FrozenBatchNorm2d: loading new weights changes the output") {
  auto bn = make_bn(1);
  Tensor x = test::random_f32({2, 3, 4, 5}, 12);
  const std::vector<float> before = bn->forward(x).to_vector<float>();
  auto other = make_bn(20);
  std::map<std::string, Tensor> sd;
  for (auto& [name, t] : other->state_dict()) sd[name] = t;
  bn->load_state_dict(sd);
  const std::vector<float> after = bn->forward(x).to_vector<float>();
  REQUIRE(after != before);
  REQUIRE(after == other->forward(x).to_vector<float>());
  REQUIRE(after == expected(*bn, x).to_vector<float>());
  REQUIRE(bn->scale_shift_computations() == 2);
}

TEST_CASE("FrozenBatchNorm2d: every way a buffer changes is seen") {
  auto bn = make_bn(1);
  Tensor x = test::random_f32({1, 3, 2, 2}, 13);
  bn->forward(x);
  int64_t n = bn->scale_shift_computations();
  auto check_changed = [&](const char* what) {
    INFO(what);
    REQUIRE(bn->forward(x).to_vector<float>() == expected(*bn, x).to_vector<float>());
    REQUIRE(bn->scale_shift_computations() == ++n);
  };
  {
    NoGradGuard ng;
    bn->running_var.copy_(full({3}, 4.0));  // copy_ of the whole buffer
  }
  check_changed("copy_ of running_var");
  bn->bias.narrow(0, 1, 1).fill_(7.0);  // fill_ through a view
  check_changed("fill_ of a view of bias");
  bn->running_mean.select(0, 2).copy_(scalar_tensor(0.25));  // one element through a view
  check_changed("copy_ into one element of running_mean");
  bn->weight = full({3}, 3.0);  // a new tensor in the member
  check_changed("a new weight tensor");
  bn->eps = 1e-3;
  check_changed("eps");
  bn->running_var.data<float>()[0] = 9.0f;  // a raw write is not seen until invalidate_cache()
  bn->invalidate_cache();
  check_changed("a raw write, then invalidate_cache");
  // And nothing changed: no recomputation.
  bn->forward(x);
  REQUIRE(bn->scale_shift_computations() == n);
}

TEST_CASE("FrozenBatchNorm2d: bad input is still refused with the op's messages") {
  auto bn = make_bn(1);
  REQUIRE_THROWS_WITH(bn->forward(zeros({1, 4, 2, 2})), Catch::Contains("weight must have shape [4]"));
  bn->forward(zeros({1, 3, 2, 2}));
  REQUIRE_THROWS_WITH(bn->forward(zeros({1, 4, 2, 2})), Catch::Contains("frozen_batch_norm2d: scale must have shape [4]"));
}

TEST_CASE("FrozenBatchNorm2d: moving to CUDA recomputes there, cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  auto bn = make_bn(1);
  Tensor x = test::random_f32({2, 3, 4, 5}, 14);
  const std::vector<float> cpu = bn->forward(x).to_vector<float>();
  bn->to(Device::cuda());
  Tensor y = bn->forward(x.cuda());
  REQUIRE(y.is_cuda());
  REQUIRE_CLOSE(y.cpu(), from_vector<float>(cpu, x.sizes()), test::kElementwiseAtol, test::kElementwiseRtol);
  REQUIRE(bn->scale_shift_computations() == 2);
  bn->forward(x.cuda());
  REQUIRE(bn->scale_shift_computations() == 2);
  {
    NoGradGuard ng;
    bn->running_mean.fill_(0.5);
  }
  REQUIRE_CLOSE(bn->forward(x.cuda()).cpu(), expected(*bn, x.cuda()).cpu(), 0, 0);
  REQUIRE(bn->scale_shift_computations() == 3);
}
