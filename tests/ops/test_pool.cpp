// max_pool2d (floor and ceil mode, padding), global max / average pooling.
#include <algorithm>
#include <limits>
#include <random>

#include "test_helpers.h"

using namespace eng;

namespace {

// A double CPU leaf whose values are a shuffled even grid in [-1, 1): no two are closer
// than 2 / numel, so no window has a tie and gradcheck stays away from kinks.
Tensor distinct_leaf(const Shape& shape, uint64_t seed) {
  const int64_t n = shape_numel(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = -1.0 + 2.0 * static_cast<double>(i) / static_cast<double>(n);
  std::mt19937_64 rng(seed);
  std::shuffle(v.begin(), v.end(), rng);
  Tensor t = from_vector<double>(v, shape);
  t.set_requires_grad(true);
  return t;
}

Pool2dParams pool(int64_t k, int64_t s, int64_t p, bool ceil) {
  Pool2dParams q;
  q.kernel_h = q.kernel_w = k;
  q.stride_h = q.stride_w = s;
  q.pad_h = q.pad_w = p;
  q.ceil_mode = ceil;
  return q;
}

// Runs f on a fresh leaf copy of x on `dev`, back-propagates r and returns {y, dx} on the CPU.
std::pair<Tensor, Tensor> forward_backward(const std::function<Tensor(const Tensor&)>& f, const Tensor& x,
                                           const Tensor& r, Device dev) {
  Tensor xd = x.detach().to(dev).detach();
  xd.set_requires_grad(true);
  Tensor y = f(xd);
  y.backward(r.to(dev));
  return {y.detach().cpu(), xd.grad().cpu()};
}

// Direct definition of max pooling: pad with -inf, slide every window, first maximum wins.
// Returns y and, for the gradient, the flat index into x that each output took.
void naive_max_pool(const std::vector<double>& x, int64_t planes, int64_t H, int64_t W, const Pool2dParams& p,
                    int64_t OH, int64_t OW, std::vector<double>& y, std::vector<int64_t>& arg) {
  y.assign(planes * OH * OW, 0.0);
  arg.assign(planes * OH * OW, -1);
  for (int64_t q = 0; q < planes; ++q)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        double best = -std::numeric_limits<double>::infinity();
        int64_t best_i = -1;
        for (int64_t i = 0; i < p.kernel_h; ++i)
          for (int64_t j = 0; j < p.kernel_w; ++j) {
            const int64_t h = oh * p.stride_h - p.pad_h + i, w = ow * p.stride_w - p.pad_w + j;
            const bool inside = h >= 0 && h < H && w >= 0 && w < W;
            const double v = inside ? x[(q * H + h) * W + w] : -std::numeric_limits<double>::infinity();
            if (v > best) {
              best = v;
              best_i = (q * H + h) * W + w;
            }
          }
        y[(q * OH + oh) * OW + ow] = best;
        arg[(q * OH + oh) * OW + ow] = best_i;
      }
}

}  // namespace

TEST_CASE("pool_output_size: PyTorch's floor and ceil rules") {
  REQUIRE(pool_output_size(75, 2, 2, 0, true) == 38);   // SSD300 conv4_3 pool (ceil mode)
  REQUIRE(pool_output_size(75, 2, 2, 0, false) == 37);
  REQUIRE(pool_output_size(19, 3, 1, 1, false) == 19);  // SSD pool5: 3x3 s1 p1 keeps the size
  REQUIRE(pool_output_size(300, 2, 2, 0, false) == 150);
  REQUIRE(pool_output_size(5, 3, 2, 1, true) == 3);
  REQUIRE(pool_output_size(5, 3, 2, 1, false) == 3);
  REQUIRE(pool_output_size(6, 3, 2, 0, true) == 3);
  REQUIRE(pool_output_size(6, 3, 2, 0, false) == 2);
  // The ceil-mode correction: the last window would start beyond the input (+ left pad).
  REQUIRE(pool_output_size(3, 1, 3, 0, true) == 1);  // plain ceil((3 - 1) / 3) + 1 would give 2
  REQUIRE(pool_output_size(5, 3, 3, 1, true) == 2);  // plain ceil would give 3
  REQUIRE_THROWS_WITH(pool_output_size(5, 0, 1, 0, false), Catch::Contains("must be positive"));
  REQUIRE_THROWS_WITH(pool_output_size(1, 3, 1, 0, false), Catch::Contains("smaller than the kernel"));
}

TEST_CASE("max_pool2d: hand-checked values, ceil and floor") {
  // 3x3 input, 2x2 stride 2: ceil mode keeps the partial windows at the right and bottom.
  Tensor x = from_vector<double>({1, 5, 2, 7, 3, 9, 4, 8, 6}, {1, 1, 3, 3});
  Tensor yc = max_pool2d(x, pool(2, 2, 0, true));
  REQUIRE(yc.sizes() == Shape{1, 1, 2, 2});
  REQUIRE(yc.to_vector<double>() == std::vector<double>{7, 9, 8, 6});
  Tensor yf = max_pool2d(x, pool(2, 2, 0, false));
  REQUIRE(yf.sizes() == Shape{1, 1, 1, 1});
  REQUIRE(yf.item() == 7.0);

  // Two planes (N = 1, C = 2) stay independent; a 4x4 plane.
  Tensor x2 = from_vector<double>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,  //
                                   15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
                                  {1, 2, 4, 4});
  REQUIRE(max_pool2d(x2, pool(2, 2, 0, false)).to_vector<double>() ==
          std::vector<double>{5, 7, 13, 15, 15, 13, 7, 5});
}

TEST_CASE("max_pool2d: padding counts as -inf and overlapping windows add gradients") {
  // All values negative: if the padding counted as 0 the border outputs would be 0.
  // x[i][j] = -(3 i + j + 1); 3x3 s1 p1 takes the neighbour nearest the top-left.
  Tensor x = from_vector<double>({-1, -2, -3, -4, -5, -6, -7, -8, -9}, {1, 1, 3, 3});
  x.set_requires_grad(true);
  Tensor y = max_pool2d(x, pool(3, 1, 1, false));
  REQUIRE(y.sizes() == Shape{1, 1, 3, 3});
  REQUIRE(y.to_vector<double>() == std::vector<double>{-1, -1, -2, -1, -1, -2, -4, -4, -5});
  // Each input collects one unit of gradient per window that chose it.
  y.backward(ones({1, 1, 3, 3}, DType::f64));
  REQUIRE(x.grad().to_vector<double>() == std::vector<double>{4, 2, 0, 2, 1, 0, 0, 0, 0});
}

TEST_CASE("max_pool2d: matches a naive double reference (forward and gradient)") {
  struct Case {
    Shape shape;
    Pool2dParams p;
  };
  Pool2dParams rect = pool(3, 2, 1, true);
  rect.kernel_w = 2;
  rect.stride_w = 3;
  rect.pad_w = 0;
  const std::vector<Case> cases = {
      {{2, 3, 7, 9}, pool(2, 2, 0, true)},   {{2, 3, 7, 9}, pool(2, 2, 0, false)},
      {{1, 2, 10, 6}, pool(3, 1, 1, false)}, {{1, 2, 11, 11}, pool(3, 2, 1, true)},
      {{2, 1, 8, 13}, rect},                 {{1, 1, 5, 5}, pool(3, 3, 1, true)},
  };
  for (const Case& c : cases) {
    Tensor x = distinct_leaf(c.shape, 7);
    const int64_t H = c.shape[2], W = c.shape[3];
    const int64_t OH = pool_output_size(H, c.p.kernel_h, c.p.stride_h, c.p.pad_h, c.p.ceil_mode);
    const int64_t OW = pool_output_size(W, c.p.kernel_w, c.p.stride_w, c.p.pad_w, c.p.ceil_mode);
    std::vector<double> y_ref;
    std::vector<int64_t> arg;
    naive_max_pool(x.to_vector<double>(), c.shape[0] * c.shape[1], H, W, c.p, OH, OW, y_ref, arg);
    Tensor y = max_pool2d(x, c.p);
    REQUIRE(y.sizes() == Shape{c.shape[0], c.shape[1], OH, OW});
    REQUIRE(y.to_vector<double>() == y_ref);

    Generator gen(3);
    Tensor r = rand(y.sizes(), gen, DType::f64);
    y.backward(r);
    std::vector<double> gx_ref(x.numel(), 0.0), rv = r.to_vector<double>();
    for (size_t o = 0; o < arg.size(); ++o) gx_ref[arg[o]] += rv[o];
    REQUIRE_CLOSE(x.grad(), from_vector<double>(gx_ref, x.sizes()), 1e-12, 1e-12);
  }
}

TEST_CASE("max_pool2d: gradcheck", "[gradcheck]") {
  Tensor a = distinct_leaf({2, 2, 5, 5}, 11);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return max_pool2d(in[0], pool(2, 2, 0, true)); }, {a});
  Tensor b = distinct_leaf({1, 2, 4, 5}, 12);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return max_pool2d(in[0], pool(3, 1, 1, false)); }, {b});
  Tensor c = distinct_leaf({1, 1, 7, 6}, 13);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return max_pool2d(in[0], pool(3, 2, 1, true)); }, {c});
}

TEST_CASE("max_pool2d: bad input is refused with a clear message") {
  REQUIRE_THROWS_WITH(max_pool2d(zeros({3, 4, 4}), pool(2, 2, 0, false)), Catch::Contains("4-d"));
  REQUIRE_THROWS_WITH(max_pool2d(zeros({1, 1, 4, 4}), pool(2, 2, 2, false)), Catch::Contains("half the kernel"));
  REQUIRE_THROWS_WITH(max_pool2d(zeros({1, 1, 4, 4}), pool(2, 0, 0, false)), Catch::Contains("stride"));
  REQUIRE_THROWS_WITH(max_pool2d(zeros({1, 1, 2, 2}), pool(3, 1, 0, false)),
                      Catch::Contains("smaller than the kernel"));
  REQUIRE_THROWS_WITH(max_pool2d(zeros({1, 1, 4, 4}, DType::i64), pool(2, 2, 0, false)),
                      Catch::Contains("expected a f32, f64 or bf16 tensor, got i64"));
}

TEST_CASE("max_pool2d: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  struct Case {
    Shape shape;
    Pool2dParams p;
  };
  const std::vector<Case> cases = {
      {{2, 3, 75, 75}, pool(2, 2, 0, true)},  // odd size, ceil mode (SSD300 38x38 map)
      {{2, 3, 75, 75}, pool(2, 2, 0, false)},
      {{2, 4, 19, 19}, pool(3, 1, 1, false)},  // SSD pool5
      {{1, 3, 13, 10}, pool(3, 2, 1, true)},
      {{1, 2, 5, 5}, pool(3, 3, 1, true)},
  };
  uint64_t seed = 1;
  for (const Case& c : cases) {
    Tensor x = test::random_f32(c.shape, seed++);
    auto f = [&](const Tensor& t) { return max_pool2d(t, c.p); };
    Tensor y_shape = max_pool2d(x, c.p);
    Tensor r = test::random_f32(y_shape.sizes(), seed++);
    auto cpu = forward_backward(f, x, r, Device::cpu());
    auto gpu = forward_backward(f, x, r, Device::cuda());
    REQUIRE_CLOSE(gpu.first, cpu.first, test::kElementwiseAtol, test::kElementwiseRtol);
    REQUIRE_CLOSE(gpu.second, cpu.second, test::kElementwiseAtol, test::kElementwiseRtol);
  }
}

// ---- global pools ----

TEST_CASE("global_max_pool2d: hand-checked values and gradient") {
  Tensor x = from_vector<double>({1, 9, 3, 4, -5, -2, -8, -7}, {1, 2, 2, 2});
  x.set_requires_grad(true);
  Tensor y = global_max_pool2d(x);
  REQUIRE(y.sizes() == Shape{1, 2, 1, 1});
  REQUIRE(y.to_vector<double>() == std::vector<double>{9, -2});
  y.backward(from_vector<double>({10, 20}, {1, 2, 1, 1}));
  REQUIRE(x.grad().to_vector<double>() == std::vector<double>{0, 10, 0, 0, 0, 20, 0, 0});
}

TEST_CASE("global_avg_pool2d: hand-checked values and gradient") {
  Tensor x = from_vector<double>({1, 9, 3, 4, 2, 2, 2, 3, -1, -1, -1, -1}, {2, 1, 2, 3});
  x.set_requires_grad(true);
  Tensor y = global_avg_pool2d(x);
  REQUIRE(y.sizes() == Shape{2, 1, 1, 1});
  REQUIRE_CLOSE(y, from_vector<double>({21.0 / 6, 1.0 / 6}, {2, 1, 1, 1}), 1e-14, 1e-14);
  y.backward(from_vector<double>({6, 12}, {2, 1, 1, 1}));
  std::vector<double> g(12, 1.0);
  for (int i = 6; i < 12; ++i) g[i] = 2.0;
  REQUIRE_CLOSE(x.grad(), from_vector<double>(g, {2, 1, 2, 3}), 1e-14, 1e-14);
  REQUIRE_THROWS_WITH(global_avg_pool2d(zeros({2, 3})), Catch::Contains("4-d"));
  REQUIRE_THROWS_WITH(global_max_pool2d(zeros({2, 3, 0, 4})), Catch::Contains("empty"));
}

TEST_CASE("global_max_pool2d: gradcheck", "[gradcheck]") {
  Tensor x = distinct_leaf({2, 3, 4, 5}, 21);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return global_max_pool2d(in[0]); }, {x});
}

TEST_CASE("global_avg_pool2d: gradcheck", "[gradcheck]") {
  Tensor x = test::leaf({2, 3, 4, 5}, 22);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return global_avg_pool2d(in[0]); }, {x});
  // A non-contiguous input (channels-last view) goes through the same path.
  Tensor xt = test::leaf({2, 5, 4, 3}, 23);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return global_avg_pool2d(in[0].permute({0, 3, 2, 1})); },
                    {xt});
}

TEST_CASE("global_max_pool2d: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = test::random_f32({4, 16, 19, 19}, 31);
  Tensor r = test::random_f32({4, 16, 1, 1}, 32);
  auto f = [](const Tensor& t) { return global_max_pool2d(t); };
  auto cpu = forward_backward(f, x, r, Device::cpu());
  auto gpu = forward_backward(f, x, r, Device::cuda());
  REQUIRE_CLOSE(gpu.first, cpu.first, test::kElementwiseAtol, test::kElementwiseRtol);
  REQUIRE_CLOSE(gpu.second, cpu.second, test::kElementwiseAtol, test::kElementwiseRtol);
}

TEST_CASE("global_avg_pool2d: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = test::random_f32({4, 16, 19, 19}, 33);
  Tensor r = test::random_f32({4, 16, 1, 1}, 34);
  auto f = [](const Tensor& t) { return global_avg_pool2d(t); };
  auto cpu = forward_backward(f, x, r, Device::cpu());
  auto gpu = forward_backward(f, x, r, Device::cuda());
  REQUIRE_CLOSE(gpu.first, cpu.first, test::kReductionAtol, test::kReductionRtol);
  REQUIRE_CLOSE(gpu.second, cpu.second, test::kReductionAtol, test::kReductionRtol);
}
