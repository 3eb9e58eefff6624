// flatten_concat_heads: every head level permuted to [B, H*W*A, K] and joined in one kernel.
#include <array>
#include <memory>
#include <utility>

#include "bf16_helpers.h"
#include "kernels/flatten_heads.h"
#include "kernels/index32.h"
#include "test_helpers.h"

using namespace eng;

namespace {

// The composition the op replaces (and which the models used before): view, permute, concat.
Tensor reference(const std::vector<Tensor>& xs, int64_t k) {
  std::vector<Tensor> flat;
  for (const Tensor& x : xs) {
    const int64_t b = x.size(0), h = x.size(2), w = x.size(3);
    flat.push_back(x.reshape({b, -1, k, h, w}).permute({0, 3, 4, 1, 2}).reshape({b, -1, k}));
  }
  return concat(flat, 1);
}

// SSD-like levels: (A, H, W) per level.
std::vector<Tensor> make_levels(const std::vector<std::array<int64_t, 3>>& spec, int64_t b, int64_t k,
                                uint64_t seed, bool f32) {
  std::vector<Tensor> xs;
  for (const auto& s : spec) {
    Shape shape{b, s[0] * k, s[1], s[2]};
    xs.push_back(f32 ? test::random_f32(shape, seed++) : test::leaf(shape, seed++));
  }
  return xs;
}

}  // namespace

TEST_CASE("flatten_concat_heads: index map by hand") {
  // One level, B = 1, A = 2, K = 2, H = 1, W = 3: x[0, a*K + k, 0, w] = 100a + 10k + w.
  std::vector<double> v;
  for (int a = 0; a < 2; ++a)
    for (int k = 0; k < 2; ++k)
      for (int w = 0; w < 3; ++w) v.push_back(100 * a + 10 * k + w);
  Tensor x = from_vector<double>(v, {1, 4, 1, 3});
  // Second level: A = 1, K = 2, 1x1: values 7, 8.
  Tensor y = from_vector<double>({7, 8}, {1, 2, 1, 1});
  Tensor out = flatten_concat_heads({x, y}, 2);
  REQUIRE(out.sizes() == Shape{1, 7, 2});
  // Row r = w * A + a holds (k = 0, k = 1) = (100a + w, 100a + 10 + w); then level 2.
  REQUIRE(out.to_vector<double>() ==
          std::vector<double>{0, 10, 100, 110, 1, 11, 101, 111, 2, 12, 102, 112, 7, 8});
}

TEST_CASE("flatten_concat_heads: equals permute + concat, forward and backward") {
  const std::vector<std::array<int64_t, 3>> spec = {{4, 5, 5}, {6, 3, 3}, {6, 2, 2}, {4, 1, 1}};
  for (int64_t k : {4, 3}) {
    std::vector<Tensor> a = make_levels(spec, 2, k, 10 * k, false), b;
    for (const Tensor& t : a) b.push_back(test::cpu_leaf(t));
    Tensor ya = flatten_concat_heads(a, k), yb = reference(b, k);
    REQUIRE(ya.sizes() == yb.sizes());
    REQUIRE(ya.to_vector<double>() == yb.to_vector<double>());
    Generator gen(k);
    Tensor r = rand(ya.sizes(), gen, DType::f64);
    ya.backward(r);
    yb.backward(r);
    for (size_t i = 0; i < a.size(); ++i) REQUIRE(a[i].grad().to_vector<double>() == b[i].grad().to_vector<double>());
  }
}

TEST_CASE("flatten_concat_heads: more levels than one launch holds") {
  std::vector<std::array<int64_t, 3>> spec;
  for (int i = 0; i < kern::kMaxHeadLevels + 3; ++i) spec.push_back({1 + i % 3, 1 + i % 4, 2});
  std::vector<Tensor> a = make_levels(spec, 3, 2, 300, false), b;
  for (const Tensor& t : a) b.push_back(test::cpu_leaf(t));
  Tensor ya = flatten_concat_heads(a, 2), yb = reference(b, 2);
  REQUIRE(ya.to_vector<double>() == yb.to_vector<double>());
  Tensor r = test::leaf(ya.sizes(), 301).detach();
  ya.backward(r);
  yb.backward(r);
  for (size_t i = 0; i < a.size(); ++i) REQUIRE(a[i].grad().to_vector<double>() == b[i].grad().to_vector<double>());
}

TEST_CASE("flatten_concat_heads: gradcheck", "[gradcheck]") {
  std::vector<Tensor> xs = make_levels({{2, 3, 2}, {3, 1, 2}, {1, 1, 1}}, 2, 3, 40, false);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return flatten_concat_heads(in, 3); }, xs);
  // Only some levels require grad: the others get no gradient and no error.
  Tensor fixed = xs[1].detach();
  Tensor y = flatten_concat_heads({xs[0], fixed, xs[2]}, 3);
  sum(y).backward();
  REQUIRE(!fixed.grad().defined());
}

TEST_CASE("flatten_concat_heads: bad input is refused with a clear message") {
  REQUIRE_THROWS_WITH(flatten_concat_heads({}, 4), Catch::Contains("at least one level"));
  REQUIRE_THROWS_WITH(flatten_concat_heads({zeros({2, 8, 3})}, 4), Catch::Contains("must be [B, A*K, H, W], got [2, 8, 3]"));
  REQUIRE_THROWS_WITH(flatten_concat_heads({zeros({2, 10, 3, 3})}, 4), Catch::Contains("not a multiple of K = 4"));
  REQUIRE_THROWS_WITH(flatten_concat_heads({zeros({2, 8, 3, 3}), zeros({1, 8, 3, 3})}, 4),
                      Catch::Contains("level 1 has batch 1"));
  REQUIRE_THROWS_WITH(flatten_concat_heads({zeros({2, 8, 3, 3}, DType::i32)}, 4),
                      Catch::Contains("expected a f32, f64 or bf16 tensor, got i32"));
  REQUIRE_THROWS_WITH(flatten_concat_heads({zeros({2, 8, 3, 3}), zeros({2, 8, 3, 3}, DType::f64)}, 4),
                      Catch::Contains("dtype mismatch"));
  REQUIRE_THROWS_WITH(flatten_concat_heads({zeros({2, 8, 3, 3})}, 0), Catch::Contains("K must be positive"));
}

TEST_CASE("flatten_concat_heads: bf16 bits unchanged, backward scatters bits", "[bf16]") {
  std::vector<Tensor> xs = {test::random_bf16({2, 8, 3, 3}, 1), test::random_bf16({2, 12, 2, 1}, 2)};
  Tensor y = flatten_concat_heads(xs, 4);
  REQUIRE(y.dtype() == DType::bf16);
  REQUIRE(test::bits_of(y) == test::bits_of(reference(xs, 4)));
  std::vector<Tensor> leaves;
  for (const Tensor& x : xs) leaves.push_back(x.detach().set_requires_grad(true));
  Tensor g = test::random_bf16(y.sizes(), 3);
  flatten_concat_heads(leaves, 4).backward(g);
  // The gradient of level l is gy read back through the inverse map: compare with the
  // reference composition's backward (view/permute/concat move bits too).
  std::vector<Tensor> ref_leaves;
  for (const Tensor& x : xs) ref_leaves.push_back(x.detach().set_requires_grad(true));
  reference(ref_leaves, 4).backward(g);
  for (size_t i = 0; i < xs.size(); ++i) REQUIRE(test::bits_of(leaves[i].grad()) == test::bits_of(ref_leaves[i].grad()));
}

TEST_CASE("flatten_concat_heads: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // SSD300's six levels at batch 2 (A = 4 6 6 6 4 4), K = 4 and K = 21, and a TinySSD-like set.
  const std::vector<std::vector<std::array<int64_t, 3>>> specs = {
      {{4, 38, 38}, {6, 19, 19}, {6, 10, 10}, {6, 5, 5}, {4, 3, 3}, {4, 1, 1}},
      {{4, 32, 32}, {4, 16, 16}, {4, 8, 8}, {4, 4, 4}, {4, 1, 1}}};
  uint64_t seed = 70;
  // Each case with the 32-bit and with the (forced) 64-bit index instantiation.
  std::vector<std::pair<bool, size_t>> cases;
  for (bool force64 : {false, true})
    for (size_t s = 0; s < specs.size(); ++s) cases.emplace_back(force64, s);
  for (const auto& [force64, si] : cases) {
    const auto& spec = specs[si];
    for (int64_t k : {4, 21}) {
      std::unique_ptr<kern::ForceIndex64> force = force64 ? std::make_unique<kern::ForceIndex64>() : nullptr;
      std::vector<Tensor> xs = make_levels(spec, 2, k, seed, true);
      seed += 10;
      std::vector<Tensor> c, g;
      for (const Tensor& x : xs) {
        c.push_back(test::cpu_leaf(x));
        g.push_back(test::cuda_leaf(x));
      }
      Tensor yc = flatten_concat_heads(c, k), yg = flatten_concat_heads(g, k);
      REQUIRE(yg.is_cuda());
      REQUIRE(yg.cpu().to_vector<float>() == yc.to_vector<float>());
      Tensor r = test::random_f32(yc.sizes(), seed++);
      yc.backward(r);
      yg.backward(r.cuda());
      for (size_t i = 0; i < xs.size(); ++i) REQUIRE(g[i].grad().cpu().to_vector<float>() == c[i].grad().to_vector<float>());
    }
  }
  // bf16 on the device: the same bits as the CPU twin.
  std::vector<Tensor> xs = {test::random_bf16({2, 16, 5, 5}, 90), test::random_bf16({2, 24, 3, 3}, 91)};
  std::vector<Tensor> xg = {xs[0].cuda(), xs[1].cuda()};
  REQUIRE(test::bits_of(flatten_concat_heads(xg, 4).cpu()) == test::bits_of(flatten_concat_heads(xs, 4)));
}
