// The autograd tape: accumulation, graph reuse, grad mode, detach, saved-tensor release.
#include "test_helpers.h"

using namespace eng;

TEST_CASE("autograd: chain rule and accumulation into leaves") {
  Tensor x = from_vector<double>({1.0, 2.0, 3.0}, {3});
  x.set_requires_grad(true);
  // y = sum(x*x + 3x): dy/dx = 2x + 3; x is used twice, so the two paths must add.
  Tensor y = sum(add(mul(x, x), x * 3.0));
  REQUIRE(y.requires_grad());
  REQUIRE(!y.is_leaf());
  y.backward();
  REQUIRE(x.grad().to_vector<double>() == std::vector<double>{5.0, 7.0, 9.0});
  // A second graph accumulates (+=) into the same .grad.
  sum(x * 2.0).backward();
  REQUIRE(x.grad().to_vector<double>() == std::vector<double>{7.0, 9.0, 11.0});
  x.zero_grad();
  REQUIRE(!x.grad().defined());
}

TEST_CASE("autograd: requires_grad propagation and NoGradGuard") {
  Tensor a = ones({2}, DType::f64);
  Tensor b = ones({2}, DType::f64).set_requires_grad(true);
  REQUIRE(!add(a, a).requires_grad());
  REQUIRE(add(a, b).requires_grad());
  {
    NoGradGuard g;
    REQUIRE(!grad_enabled());
    Tensor c = add(a, b);
    REQUIRE(!c.requires_grad());
    REQUIRE(c.grad_fn() == nullptr);
  }
  REQUIRE(grad_enabled());
  Tensor d = b.detach();
  REQUIRE(!d.requires_grad());
  REQUIRE(d.storage() == b.storage());
  REQUIRE(!mul(d, d).requires_grad());
  REQUIRE_THROWS_WITH(b.fill_(3.0), Catch::Contains("in-place change of a tensor that requires grad"));
  REQUIRE_THROWS_WITH(zeros({2}, DType::i64).set_requires_grad(true), Catch::Contains("only float tensors"));
}

TEST_CASE("autograd: retain_graph and a second backward") {
  Tensor x = from_vector<double>({2.0}, {1}).set_requires_grad(true);
  Tensor y = sum(mul(x, x));
  y.backward(Tensor(), /*retain_graph=*/true);
  REQUIRE(x.grad().item() == 4.0);
  y.backward();  // allowed: the first kept the graph
  REQUIRE(x.grad().item() == 8.0);
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("second time"));
}

TEST_CASE("autograd: saved tensors are freed after backward") {
  Tensor x = test::leaf({1000}, 3);
  std::weak_ptr<Storage> saved;
  Tensor y;
  {
    Tensor e = exp(x);            // exp's node saves its output
    saved = e.storage();
    y = sum(e);
  }
  REQUIRE(!saved.expired());    // kept alive by the graph only
  y.backward();
  REQUIRE(saved.expired());     // released once the node ran
  REQUIRE(x.grad().defined());
}

TEST_CASE("autograd: gradients through views") {
  Tensor x = test::leaf({2, 3}, 5);
  // permute + slice + expand + reshape all carry gradient back to x.
  REQUIRE_GRADCHECK([](auto& in) { return in[0].transpose(0, 1).slice(0, 1, 3).reshape({4}) * 2.0; }, {x});
  REQUIRE_GRADCHECK([](auto& in) { return in[0].unsqueeze(0).expand({3, 2, 3}) * in[0]; }, {test::leaf({2, 3}, 6)});
  REQUIRE_GRADCHECK([](auto& in) { return in[0].select(1, 2).squeeze(); }, {test::leaf({2, 3}, 7)});
  // dtype casts pass the gradient back in the input's dtype (a finite-difference check through
  // f32 cannot reach double tolerance, so check the values directly).
  Tensor d = test::leaf({3}, 8);
  sum(d.to(DType::f32) * 3.0).backward();
  REQUIRE(d.grad().dtype() == DType::f64);
  REQUIRE(d.grad().to_vector<double>() == std::vector<double>{3, 3, 3});
}

TEST_CASE("autograd: backward needs a scalar or a gradient") {
  Tensor x = test::leaf({3}, 9);
  Tensor y = x * 2.0;
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("gradient must be given"));
  y.backward(ones({3}, DType::f64));
  REQUIRE(x.grad().to_vector<double>() == std::vector<double>{2, 2, 2});
  REQUIRE_THROWS_WITH(ones({1}).backward(), Catch::Contains("does not require grad"));
}

TEST_CASE("autograd: graph on cuda", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = from_vector<float>({1.0f, 2.0f, 3.0f}, {3}).to(Device::cuda()).set_requires_grad(true);
  sum(add(mul(x, x), x * 3.0)).backward();
  REQUIRE(x.grad().is_cuda());
  REQUIRE(x.grad().cpu().to_vector<float>() == std::vector<float>{5.0f, 7.0f, 9.0f});
}
