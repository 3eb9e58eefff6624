// concat (torch.cat): joining along any dim, gradients as slices.
#include "test_helpers.h"

using namespace eng;

TEST_CASE("concat: hand-checked values along each dim") {
  Tensor a = from_vector<double>({1, 2, 3, 4}, {2, 2});
  Tensor b = from_vector<double>({5, 6, 7, 8, 9, 10}, {2, 3});
  Tensor c1 = concat({a, b}, 1);
  REQUIRE(c1.sizes() == Shape{2, 5});
  REQUIRE(c1.to_vector<double>() == std::vector<double>{1, 2, 5, 6, 7, 3, 4, 8, 9, 10});
  REQUIRE(concat({a, b}, -1).to_vector<double>() == c1.to_vector<double>());

  Tensor c = from_vector<double>({-1, -2}, {1, 2});
  Tensor c0 = concat({c, a, c}, 0);
  REQUIRE(c0.sizes() == Shape{4, 2});
  REQUIRE(c0.to_vector<double>() == std::vector<double>{-1, -2, 1, 2, 3, 4, -1, -2});

  // A single tensor is copied, not aliased; a non-contiguous input is read through its strides.
  Tensor one = concat({a}, 0);
  REQUIRE(!one.same(a));
  REQUIRE(one.storage() != a.storage());
  Tensor t = concat({a.transpose(0, 1), c}, 0);  // [[1, 3], [2, 4], [-1, -2]]
  REQUIRE(t.to_vector<double>() == std::vector<double>{1, 3, 2, 4, -1, -2});

  // Integer tensors join too (labels, indices).
  Tensor i = concat({from_vector<int64_t>({1, 2}, {2}), from_vector<int64_t>({3}, {1})}, 0);
  REQUIRE(i.dtype() == DType::i64);
  REQUIRE(i.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3});
}

TEST_CASE("concat: gradients are the matching slices") {
  Tensor a = test::leaf({2, 1, 3}, 1), b = test::leaf({2, 2, 3}, 2);
  Tensor k = test::leaf({2, 1, 3}, 3);
  k.set_requires_grad(false);  // an input that needs no gradient
  Tensor y = concat({a, k, b}, 1);
  REQUIRE(y.sizes() == Shape{2, 4, 3});
  Tensor g = arange(24, DType::f64).reshape({2, 4, 3});
  y.backward(g);
  REQUIRE(a.grad().to_vector<double>() == std::vector<double>{0, 1, 2, 12, 13, 14});
  REQUIRE(b.grad().to_vector<double>() == std::vector<double>{6, 7, 8, 9, 10, 11, 18, 19, 20, 21, 22, 23});
  REQUIRE(!k.grad().defined());
}

TEST_CASE("concat: gradcheck", "[gradcheck]") {
  Tensor a = test::leaf({2, 3, 4}, 11), b = test::leaf({2, 1, 4}, 12), c = test::leaf({2, 2, 4}, 13);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return concat(in, 1); }, {a, b, c});
  Tensor d = test::leaf({3, 2}, 14), e = test::leaf({3, 5}, 15);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return concat(in, -1); }, {d, e});
  Tensor f = test::leaf({1, 2}, 16), h = test::leaf({4, 2}, 17);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return concat(in, 0); }, {f, h});
}

TEST_CASE("concat: bad input is refused with a clear message") {
  REQUIRE_THROWS_WITH(concat({}, 0), Catch::Contains("at least one"));
  REQUIRE_THROWS_WITH(concat({zeros({2, 3}), zeros({3, 3})}, 1),
                      Catch::Contains("tensor 1 has shape [3, 3]") && Catch::Contains("except along dim 1"));
  REQUIRE_THROWS_WITH(concat({zeros({2, 3}), zeros({2, 3, 1})}, 0), Catch::Contains("tensor 1 has shape"));
  REQUIRE_THROWS_WITH(concat({zeros({2, 3}), zeros({2, 3}, DType::f64)}, 0), Catch::Contains("dtype mismatch"));
  REQUIRE_THROWS_WITH(concat({zeros({2, 3}), zeros({2, 3})}, 2), Catch::Contains("out of range"));
  REQUIRE_THROWS_WITH(concat({zeros({2}), Tensor()}, 0), Catch::Contains("tensor 1 is undefined"));
}

TEST_CASE("concat: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // SSD-style: per-level [N, A_l, 4] boxes joined along dim 1; the third input is a strided
  // view ([2, 4, 600] transposed to [2, 600, 4]).
  std::vector<Tensor> bases = {test::random_f32({2, 5776, 4}, 1), test::random_f32({2, 2166, 4}, 2),
                               test::random_f32({2, 4, 600}, 3)};
  Tensor r = test::random_f32({2, 5776 + 2166 + 600, 4}, 4);
  auto run = [&](Device dev, int64_t dim) {
    std::vector<Tensor> leaves, inputs;
    for (const Tensor& b : bases) {
      Tensor l = b.to(dev).detach();
      l.set_requires_grad(true);
      leaves.push_back(l);
    }
    inputs = {leaves[0], leaves[1], leaves[2].transpose(1, 2)};
    Tensor y = concat(inputs, dim);
    REQUIRE(y.device() == dev);
    y.backward(r.to(dev));
    std::vector<Tensor> out = {y.detach().cpu()};
    for (const Tensor& l : leaves) out.push_back(l.grad().cpu());
    return out;
  };
  std::vector<Tensor> cpu = run(Device::cpu(), 1), gpu = run(Device::cuda(), -2);
  for (size_t i = 0; i < cpu.size(); ++i)
    REQUIRE_CLOSE(gpu[i], cpu[i], test::kElementwiseAtol, test::kElementwiseRtol);
}
