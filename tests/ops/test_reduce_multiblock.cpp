// The multi-block two-pass sum (kernels/reduce_multiblock.h): the slice rule, the CPU
// reference by hand, and on CUDA the kernel against the CPU reference and against the
// single-block baseline kern::cuda::sum_dim, bit-identical repeats, and the engine's sum /
// mean / conv bias gradient that now take it.
#include <cstring>

#include "engine/cuda_context.h"
#include "kernels/bf16.h"
#include "kernels/conv2d.h"
#include "kernels/reduce.h"
#include "kernels/reduce_multiblock.h"
#include "test_helpers.h"

using namespace eng;

TEST_CASE("sum_outer_inner: slices depend on the sizes only") {
  REQUIRE(kern::sum_outer_inner_slices(1, 1, 8192) == 1);     // small: one block, no partials
  REQUIRE(kern::sum_outer_inner_partials(1, 1, 8192) == 0);
  REQUIRE(kern::sum_outer_inner_slices(1, 1, 8193) == 2);
  REQUIRE(kern::sum_outer_inner_slices(1, 1, 71500000) == kern::kSumTargetBlocks);  // the focal-loss sum
  REQUIRE(kern::sum_outer_inner_slices(1, 4, 1 << 20) == 128);  // few long rows: 256 wanted, 8192 per slice
  REQUIRE(kern::sum_outer_inner_slices(16, 256, 38 * 38) == 3);  // a bias gradient: ceil(1024/256)=4, size allows 3
  REQUIRE(kern::sum_outer_inner_slices(32, 2048, 100) == 1);   // many outputs: one block each
  REQUIRE(kern::sum_outer_inner_partials(16, 256, 38 * 38) == 256 * 3);
}

TEST_CASE("sum_outer_inner: cpu reference by hand") {
  // x [A=2, O=3, B=4] = 0..23: y[o] = sum_a sum_b (12a + 4o + b) = 2 * (16o + 6) + 4 * 12 = 32o + 60.
  std::vector<double> x(24), y(3);
  for (int i = 0; i < 24; ++i) x[i] = i;
  kern::cpu::sum_outer_inner<double>(2, 3, 4, x.data(), y.data(), 1.0);
  REQUIRE(y == std::vector<double>{60, 92, 124});
  kern::cpu::sum_outer_inner<double>(2, 3, 4, x.data(), y.data(), 0.125);
  REQUIRE(y == std::vector<double>{7.5, 11.5, 15.5});
  // The same numbers as sum_dim's reference for A = 1.
  std::vector<double> z(3);
  kern::cpu::sum_dim<double>(3, 8, 1, x.data(), z.data(), 1.0);
  kern::cpu::sum_outer_inner<double>(1, 3, 8, x.data(), y.data(), 1.0);
  REQUIRE(y == z);
}

#ifdef ENGINE_WITH_CUDA  // (a CPU-only build has no CUDA kernels to link; the [cuda] tests skip)
namespace {

struct Shape3 {
  int64_t A, O, B;
};

// The kernel through raw pointers, its partials from the caching allocator.
template <typename T>
Tensor run_multiblock(const Tensor& x_dev, const Shape3& s, double scale) {
  Tensor y = empty({s.O}, TensorOptions(x_dev.dtype()).device(Device::cuda()));
  const int64_t np = kern::sum_outer_inner_partials(s.A, s.O, s.B);
  Tensor ws = empty({std::max<int64_t>(np, 1)}, TensorOptions(DType::f64).device(Device::cuda()));
  kern::cuda::sum_outer_inner<T>(s.A, s.O, s.B, x_dev.data<T>(), y.data<T>(), scale, ws.data<double>(),
                                 cuda::stream());
  return y.cpu();
}

template <typename T>
Tensor run_cpu(const Tensor& x, const Shape3& s, double scale) {
  Tensor y = empty({s.O}, TensorOptions(x.dtype()));
  kern::cpu::sum_outer_inner<T>(s.A, s.O, s.B, x.data<T>(), y.data<T>(), scale);
  return y;
}

// The baseline: one block per row (A == 1 only).
template <typename T>
Tensor run_baseline(const Tensor& x_dev, const Shape3& s, double scale) {
  Tensor y = empty({s.O}, TensorOptions(x_dev.dtype()).device(Device::cuda()));
  kern::cuda::sum_dim<T>(s.O, s.B, 1, x_dev.data<T>(), y.data<T>(), scale, cuda::stream());
  return y.cpu();
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), static_cast<size_t>(a.numel()) * dtype_size(a.dtype())) == 0;
}

}  // namespace

TEST_CASE("sum_outer_inner: cuda matches cpu and the single-block baseline", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // Whole tensor (1 and many slices), few long rows, a bias gradient (long and short rows:
  // the short ones take the dividing loop), leading dims only, one output per element.
  const std::vector<Shape3> shapes = {{1, 1, 5000},   {1, 1, 300001}, {1, 3, 100000}, {4, 24, 1444},
                                      {16, 8, 25},    {3000, 5, 1},   {1, 2000, 3},   {7, 1, 1}};
  uint64_t seed = 50;
  for (const Shape3& s : shapes) {
    INFO("A " << s.A << " O " << s.O << " B " << s.B << " slices " << kern::sum_outer_inner_slices(s.A, s.O, s.B));
    Tensor x = test::random_f32({s.A * s.O * s.B}, seed++, -1.0, 2.0);
    Tensor xd = x.cuda();
    const double scale = 1.0 / static_cast<double>(s.A * s.B);
    Tensor ref = run_cpu<float>(x, s, scale);
    Tensor got = run_multiblock<float>(xd, s, scale);
    REQUIRE_CLOSE(got, ref, test::kReductionAtol, test::kReductionRtol);
    if (s.A == 1) REQUIRE_CLOSE(got, run_baseline<float>(xd, s, scale), test::kReductionAtol, test::kReductionRtol);
    // f64: double sums in a different order, so equal to ~1e-15.
    Tensor x64 = x.to(DType::f64);
    REQUIRE_CLOSE(run_multiblock<double>(x64.cuda(), s, 1.0), run_cpu<double>(x64, s, 1.0), 1e-12, 1e-12);
    // bf16: both round the double sum once, so they agree to one bf16 step at most.
    Tensor xb = x.to(DType::bf16);
    Tensor got_b = run_multiblock<kern::bf16>(xb.cuda(), s, scale).to(DType::f32);
    REQUIRE_CLOSE(got_b, run_cpu<kern::bf16>(xb, s, scale).to(DType::f32), 1e-2, 8e-3);
  }
}

TEST_CASE("sum_outer_inner: an empty reduction writes zeros", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = empty({0}, TensorOptions(DType::f32).device(Device::cuda()));
  Tensor y = full({3}, 7.0, TensorOptions(DType::f32).device(Device::cuda()));
  kern::cuda::sum_outer_inner<float>(0, 3, 5, x.data<float>(), y.data<float>(), 1.0, nullptr, cuda::stream());
  REQUIRE(y.cpu().to_vector<float>() == std::vector<float>{0, 0, 0});
}

TEST_CASE("sum: cuda multi-block sums are bit-identical run to run", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = test::random_f32({600000}, 77, -3.0, 3.0).cuda();
  REQUIRE(kern::sum_outer_inner_slices(1, 1, x.numel()) > 1);  // the two-pass path
  Tensor a = sum(x).cpu(), b = sum(x).cpu();
  REQUIRE(same_bits(a, b));
  Tensor g = test::random_f32({8, 64, 30, 30}, 78).cuda();  // the bias-gradient pattern
  REQUIRE(same_bits(sum(g, {0, 2, 3}).cpu(), sum(g, {0, 2, 3}).cpu()));
  Tensor r = test::random_f32({2, 300000}, 79).cuda();  // few long rows
  REQUIRE(same_bits(mean(r, {1}).cpu(), mean(r, {1}).cpu()));
}

// The conv bias gradient: the multi-block sum against conv2d_backward's one block per
// channel (the baseline bench_kernels times beside it) and the CPU reference.
TEST_CASE("sum_outer_inner: bias gradient matches the one-block-per-channel kernel", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (const Shape3& s : {Shape3{4, 32, 1444}, Shape3{3, 16, 25}, Shape3{2, 2048, 9}}) {
    INFO("N " << s.A << " O " << s.O << " HW " << s.B);
    Tensor gy = test::random_f32({s.A * s.O * s.B}, 90);
    Tensor gyd = gy.cuda();
    kern::Conv2dDims d;
    d.N = s.A, d.O = s.O, d.Ho = s.B, d.Wo = 1, d.C = 1, d.H = s.B, d.W = 1;
    Tensor base = empty({s.O}, TensorOptions(DType::f32).device(Device::cuda()));
    kern::cuda::conv2d_backward<float>(d, nullptr, nullptr, gyd.data<float>(), nullptr, nullptr, base.data<float>(),
                                       nullptr, cuda::blas(), cuda::stream());
    Tensor got = run_multiblock<float>(gyd, s, 1.0);
    REQUIRE_CLOSE(got, base.cpu(), test::kReductionAtol, test::kReductionRtol);
    REQUIRE_CLOSE(got, run_cpu<float>(gy, s, 1.0), test::kReductionAtol, test::kReductionRtol);
  }
}

#endif  // ENGINE_WITH_CUDA

namespace {
template <typename F>
void check_engine_cuda(F f, const Shape& shape, uint64_t seed) {
  Tensor t = test::random_f32(shape, seed);
  Tensor xc = t.clone().set_requires_grad(true), xg = t.cuda().set_requires_grad(true);
  Tensor yc = f(xc), yg = f(xg);
  REQUIRE_CLOSE(yg.detach().cpu(), yc.detach(), test::kReductionAtol, test::kReductionRtol);
  Tensor r = test::random_f32(yc.sizes(), seed + 1);
  sum(mul(yc, r)).backward();
  sum(mul(yg, r.cuda())).backward();
  REQUIRE_CLOSE(xg.grad().cpu(), xc.grad(), test::kReductionAtol, test::kReductionRtol);
}
}  // namespace

TEST_CASE("sum and mean: cuda multi-block paths match cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_engine_cuda([](const Tensor& x) { return sum(x); }, {3, 70001}, 1);          // whole tensor, slices
  check_engine_cuda([](const Tensor& x) { return mean(x); }, {250000}, 2);
  check_engine_cuda([](const Tensor& x) { return sum(x, {1}); }, {3, 70001}, 3);     // few long rows
  check_engine_cuda([](const Tensor& x) { return mean(x, {1, 2}); }, {2, 300, 301}, 4);
  check_engine_cuda([](const Tensor& x) { return sum(x, {0, 2, 3}); }, {4, 24, 38, 38}, 5);  // bias gradient
  check_engine_cuda([](const Tensor& x) { return mean(x, {0, 2, 3}, true); }, {8, 16, 5, 5}, 6);
  check_engine_cuda([](const Tensor& x) { return sum(x, {0, 3}); }, {5, 3, 4, 7}, 7);  // around a 2-dim run
  check_engine_cuda([](const Tensor& x) { return sum(x, {0}); }, {20000, 3}, 8);      // leading, few outputs
  check_engine_cuda([](const Tensor& x) { return sum(x, {0}); }, {300, 100}, 9);      // leading, strided kernel
  check_engine_cuda([](const Tensor& x) { return sum(x, {0, 2}); }, {0, 4, 6}, 10);   // empty: zeros
}

TEST_CASE("conv2d: cuda bias gradient (multi-block) matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // A RetinaNet-head-like 3x3 conv (fewer channels), bias gradient summed over N, H, W.
  Tensor x = test::random_f32({2, 8, 20, 20}, 31), w = test::random_f32({16, 8, 3, 3}, 32);
  Tensor b = test::random_f32({16}, 33);
  Conv2dParams p;
  p.pad_h = p.pad_w = 1;
  Tensor bc = b.clone().set_requires_grad(true), bg = b.cuda().set_requires_grad(true);
  Tensor yc = conv2d(x, w, bc, p), yg = conv2d(x.cuda(), w.cuda(), bg, p);
  Tensor r = test::random_f32(yc.sizes(), 34);
  yc.backward(r);
  yg.backward(r.cuda());
  REQUIRE_CLOSE(bg.grad().cpu(), bc.grad(), test::kReductionAtol, test::kReductionRtol);
  REQUIRE_CLOSE(bc.grad(), sum(r, {0, 2, 3}), 1e-6, 1e-6);  // the gradient is that sum
}
