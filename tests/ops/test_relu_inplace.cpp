// relu_ (in-place ReLU), nn::ReLU(inplace), and ReLU's backward from its output.
#include <memory>

#include "bf16_helpers.h"
#include "engine/nn/layers.h"
#include "test_helpers.h"

using namespace eng;

namespace {

// conv2d -> ReLU (in place or not) -> max_pool2d -> sum(y * r): gradients of x, w, b.
std::vector<Tensor> conv_relu_pool_grads(const Tensor& x0, const Tensor& w0, const Tensor& b0, const Tensor& r,
                                         bool inplace) {
  Tensor x = test::cpu_leaf(x0), w = test::cpu_leaf(w0), b = test::cpu_leaf(b0);
  Tensor h = conv2d(x, w, b, Conv2dParams::square(1, 1));
  if (inplace) {
    relu_(h);
  } else {
    h = relu(h);
  }
  Pool2dParams p;
  p.kernel_h = p.kernel_w = p.stride_h = p.stride_w = 2;
  Tensor y = max_pool2d(h, p);
  sum(mul(y, r)).backward();
  return {y.detach(), x.grad(), w.grad(), b.grad()};
}

}  // namespace

TEST_CASE("relu_: overwrites its input and returns it") {
  Tensor x = from_vector<double>({-2, 0, 0.5, 4, -1e-30}, {5});
  Tensor& r = relu_(x);
  REQUIRE(&r == &x);
  REQUIRE(x.to_vector<double>() == std::vector<double>{0, 0, 0.5, 4, 0});
}

TEST_CASE("relu_: gradients equal the out-of-place ones (conv -> relu_ -> max_pool)") {
  Tensor x = test::leaf({2, 3, 6, 6}, 1), w = test::leaf({4, 3, 3, 3}, 2), b = test::leaf({4}, 3);
  Tensor r = test::leaf({2, 4, 3, 3}, 4).detach();
  auto out = conv_relu_pool_grads(x, w, b, r, false);
  auto in = conv_relu_pool_grads(x, w, b, r, true);
  for (size_t i = 0; i < out.size(); ++i) {
    INFO("tensor " << i);
    REQUIRE(in[i].to_vector<double>() == out[i].to_vector<double>());
  }
}

TEST_CASE("relu_: gradcheck", "[gradcheck]") {
  Tensor x = test::leaf({3, 5}, 10), w = test::leaf({3, 5}, 11);
  REQUIRE_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        Tensor h = mul(in[0], in[1]);  // mul saves its inputs, not its output: relu_ may overwrite h
        relu_(h);
        return mul(h, h);
      },
      {x, w});
}

TEST_CASE("relu: the backward keeps the output, not the input") {
  Tensor x = test::leaf({4, 4}, 20);
  Tensor h = mul_scalar(x, 3.0);  // MulScalar's backward saves nothing
  std::weak_ptr<Storage> h_mem = h.storage();
  Tensor y = relu(h);
  h = Tensor();
  REQUIRE(h_mem.expired());  // the input's memory is gone; backward still works
  sum(y).backward();
  std::vector<double> g = x.grad().to_vector<double>(), xv = x.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) REQUIRE(g[i] == (xv[i] > 0 ? 3.0 : 0.0));
}

TEST_CASE("relu_: refused where another backward needs the input, with a one-line error") {
  Tensor x = test::leaf({1, 2, 4, 4}, 30);
  // A leaf that requires grad.
  REQUIRE_THROWS_WITH(relu_(x), Catch::Contains("relu_: in-place change of a leaf that requires grad"));
  const char* shared = "shares its memory with another tensor (a view, or a tensor saved for another op's backward)";
  // The saved input of a conv2d whose weight needs grad.
  Tensor h = mul_scalar(x, 1.0);
  Tensor w = test::leaf({2, 2, 3, 3}, 31);
  Tensor c = conv2d(h, w, Tensor(), Conv2dParams::square(1, 1));
  const std::vector<double> before = h.to_vector<double>();
  REQUIRE_THROWS_WITH(relu_(h), Catch::Contains(shared));
  REQUIRE(h.to_vector<double>() == before);  // untouched
  // Outputs that their own backward reads: sigmoid, relu.
  Tensor s = sigmoid(x);
  REQUIRE_THROWS_WITH(relu_(s), Catch::Contains(shared));
  Tensor r = relu(x);
  REQUIRE_THROWS_WITH(relu_(r), Catch::Contains(shared));
  // A view the caller holds (no autograd involved), a non-contiguous tensor, a wrong dtype.
  Tensor base = from_vector<double>({-1, 2, -3, 4}, {2, 2});
  Tensor v = base.view({4});
  REQUIRE_THROWS_WITH(relu_(v), Catch::Contains(shared));
  Tensor t = from_vector<double>({-1, 2, -3, 4}, {2, 2}).transpose(0, 1);
  REQUIRE_THROWS_WITH(relu_(t), Catch::Contains("is not contiguous"));
  Tensor i = zeros({3}, DType::i32);
  REQUIRE_THROWS_WITH(relu_(i), Catch::Contains("relu_: expected a f32, f64 or bf16 tensor, got i32"));
}

TEST_CASE("relu: backward refuses a saved output that was modified in place since the forward") {
  Tensor x = test::leaf({4}, 35);
  Tensor y = relu(mul_scalar(x, 2.0));
  {
    NoGradGuard ng;  // in-place writes of a tensor that requires grad are allowed here
    y.fill_(1.0);
  }
  REQUIRE_THROWS_WITH(sum(y).backward(),
                      Catch::Contains("relu backward: a tensor it saved (its output, shape [4]) was modified in place"));
}

TEST_CASE("relu_: allowed under NoGradGuard and on tensors nobody else holds") {
  NoGradGuard ng;
  Tensor x = test::leaf({6}, 40);  // a leaf requiring grad, but grad mode is off
  const std::vector<double> v = x.to_vector<double>();
  relu_(x);
  std::vector<double> got = x.to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) REQUIRE(got[i] == (v[i] > 0 ? v[i] : 0.0));
}

TEST_CASE("nn::ReLU(inplace): same values and gradients as nn::ReLU, input overwritten") {
  nn::ReLU plain, inplace(true);
  REQUIRE(!plain.inplace);
  REQUIRE(inplace.inplace);
  Tensor x = test::leaf({3, 4}, 50);
  Tensor a = mul_scalar(x, 2.0), a2 = mul_scalar(x, 2.0);
  Tensor y = plain.forward(a), y2 = inplace.forward(a2);
  REQUIRE(y2.storage() == a2.storage());                       // no new activation
  REQUIRE(a2.to_vector<double>() == y.to_vector<double>());   // the caller's tensor changed
  REQUIRE(a.to_vector<double>() != y.to_vector<double>());
  Tensor x2 = test::cpu_leaf(x);
  Tensor y3 = inplace.forward(mul_scalar(x2, 2.0));
  sum(mul(y, y)).backward();
  sum(mul(y3, y3)).backward();
  REQUIRE(x2.grad().to_vector<double>() == x.grad().to_vector<double>());
}

TEST_CASE("relu_: bf16 gives the bits of relu", "[bf16]") {
  Tensor x = test::random_bf16({2, 33}, 60);
  Tensor expect = relu(x), y = x.clone();
  relu_(y);
  REQUIRE(test::bits_of(y) == test::bits_of(expect));
}

TEST_CASE("relu_: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x0 = test::random_f32({4097}, 70), w0 = test::random_f32({4097}, 71), r = test::random_f32({4097}, 72);
  std::vector<Tensor> ys, gx;
  for (Device d : {Device::cpu(), Device::cuda()}) {
    Tensor x = x0.detach().to(d).detach(), w = w0.to(d);
    x.set_requires_grad(true);
    Tensor h = mul(x, w);
    relu_(h);
    sum(mul(h, r.to(d))).backward();
    ys.push_back(h.detach().cpu());
    gx.push_back(x.grad().cpu());
  }
  REQUIRE(ys[1].to_vector<float>() == ys[0].to_vector<float>());
  REQUIRE(gx[1].to_vector<float>() == gx[0].to_vector<float>());
  Tensor b = test::random_bf16({1000}, 73);
  Tensor bc = b.clone(), bg = b.cuda();
  relu_(bc);
  relu_(bg);
  REQUIRE(test::bits_of(bg.cpu()) == test::bits_of(bc));
}
