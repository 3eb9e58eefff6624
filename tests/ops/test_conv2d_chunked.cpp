// The CPU conv2d in bands of output rows (kernels/conv2d_banded.h) against the whole-image
// im2col reference (kernels/conv2d.h): forward and both gradients, dilated / strided / 1x1 /
// odd shapes, every band size from one row to the whole image, N > 1; the front-end's col
// budget (engine/detail/conv2d_col_budget.h) and its bound on the workspace; gradcheck in
// double through eng::conv2d with one-row bands.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/allocator.h"
#include "engine/detail/conv2d_col_budget.h"
#include "kernels/conv2d_banded.h"
#include "kernels/conv2d_taps.h"
#include "test_helpers.h"

using namespace eng;

namespace {

// This file tests the im2col path's bands: 3x3 stride-1 shapes would otherwise take the
// Winograd path (kernels/conv2d_winograd.h) under ENGINE_CPU_CONV=auto. Read at every call.
[[maybe_unused]] const int kForceIm2col = ::setenv("ENGINE_CPU_CONV", "im2col", 1);


kern::Conv2dDims dims(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t k, int64_t stride, int64_t pad,
                      int64_t dil, int64_t kw = -1) {
  kern::Conv2dDims d;
  d.N = N, d.C = C, d.H = H, d.W = W, d.O = O, d.kh = k, d.kw = kw < 0 ? k : kw;
  d.stride_h = d.stride_w = stride, d.pad_h = d.pad_w = pad, d.dil_h = d.dil_w = dil;
  d.Ho = kern::conv2d_output_size(H, d.kh, stride, pad, dil);
  d.Wo = kern::conv2d_output_size(W, d.kw, stride, pad, dil);
  return d;
}

template <typename T>
std::vector<T> random_vec(size_t n, uint64_t seed) {
  std::vector<T> v(n);
  uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (auto& e : v) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    e = T(double(s >> 11) / double(1ULL << 53) * 2.0 - 1.0);
  }
  return v;
}

template <typename T>
double max_rel_diff(const std::vector<T>& a, const std::vector<T>& b) {
  double worst = 0, scale = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) scale = std::max(scale, std::fabs(double(b[i])));
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - double(b[i])) / scale);
  return worst;
}

// Runs the reference and the banded kernels for every band size 1 .. Ho and compares all
// outputs; `tol` relative to the largest reference magnitude.
template <typename T>
void check_against_reference(const kern::Conv2dDims& d, double tol) {
  const int64_t K = kern::conv2d_col_rows(d), HWo = d.Ho * d.Wo;
  auto x = random_vec<T>(d.N * d.C * d.H * d.W, 1), w = random_vec<T>(d.O * K, 2), b = random_vec<T>(d.O, 3);
  auto gy = random_vec<T>(d.N * d.O * HWo, 4);
  std::vector<T> col(kern::conv2d_col_size(d) + 1);
  std::vector<T> y(gy.size()), gx(x.size()), gw(w.size()), gb(d.O);
  kern::cpu::conv2d_forward<T>(d, x.data(), w.data(), b.data(), y.data(), col.data());
  kern::cpu::conv2d_backward<T>(d, x.data(), w.data(), gy.data(), gx.data(), gw.data(), gb.data(), col.data());
  for (int64_t rows = 1; rows <= d.Ho; ++rows) {
    INFO("band_rows " << rows << " of Ho " << d.Ho);
    std::vector<T> bcol(kern::conv2d_band_col_size(d, rows) + 1, T(777));  // stale values must not leak
    std::vector<T> y2(y.size(), T(-5)), gx2(gx.size(), T(-5)), gw2(gw.size(), T(-5)), gb2(d.O, T(-5));
    kern::cpu::conv2d_forward_banded<T>(d, x.data(), w.data(), b.data(), y2.data(), bcol.data(), rows);
    kern::cpu::conv2d_backward_banded<T>(d, x.data(), w.data(), gy.data(), gx2.data(), gw2.data(), gb2.data(),
                                         bcol.data(), rows);
    REQUIRE(max_rel_diff(y2, y) <= tol);
    // The fused ReLU epilogue: exactly the separate ReLU of the same band sums.
    std::vector<T> yr(y.size(), T(-5));
    kern::cpu::conv2d_forward_banded<T>(d, x.data(), w.data(), b.data(), yr.data(), bcol.data(), rows, true);
    for (size_t i = 0; i < y2.size(); ++i) REQUIRE(yr[i] == (y2[i] > T(0) ? y2[i] : T(0)));
    REQUIRE(max_rel_diff(gx2, gx) <= tol);
    REQUIRE(max_rel_diff(gw2, gw) <= tol);
    REQUIRE(gb2 == gb);  // the same loop, the same order
    // Only gx / only gw, without bias: the others untouched.
    std::vector<T> gx3(gx.size(), T(-5)), gw3(gw.size(), T(-5));
    kern::cpu::conv2d_backward_banded<T>(d, x.data(), w.data(), gy.data(), gx3.data(), nullptr, nullptr, bcol.data(),
                                         rows);
    kern::cpu::conv2d_backward_banded<T>(d, x.data(), w.data(), gy.data(), nullptr, gw3.data(), nullptr, bcol.data(),
                                         rows);
    REQUIRE(gx3 == gx2);
    REQUIRE(gw3 == gw2);
  }
}

struct Case {
  const char* name;
  kern::Conv2dDims d;
};
std::vector<Case> shapes() {
  return {
      {"3x3 pad 1 odd sizes, N 2", dims(2, 3, 7, 5, 4, 3, 1, 1, 1)},
      {"fc6-like 3x3 dilation 6 pad 6", dims(1, 4, 19, 19, 5, 3, 1, 6, 6)},
      {"dilation 2 pad 2, N 3", dims(3, 2, 9, 8, 3, 3, 1, 2, 2)},
      {"stride 2 pad 1 odd", dims(2, 3, 11, 9, 4, 3, 2, 1, 1)},
      {"stride 3, no padding", dims(1, 2, 10, 13, 3, 3, 3, 0, 1)},
      {"1x1 stride 1 (plain GEMM)", dims(2, 6, 5, 7, 4, 1, 1, 0, 1)},
      {"1x1 stride 2 (strided gather)", dims(2, 6, 9, 7, 4, 1, 2, 0, 1)},
      {"1x1 pad 1", dims(1, 3, 4, 5, 2, 1, 1, 1, 1)},
      {"2x3 kernel stride 2 pad 1", dims(2, 2, 8, 9, 3, 2, 2, 1, 1, 3)},
      {"7x7 stride 2 pad 3 (ResNet stem)", dims(1, 3, 17, 15, 4, 7, 2, 3, 1)},
      {"kernel larger than the input with padding", dims(1, 2, 3, 3, 2, 5, 1, 2, 1)},
  };
}

}  // namespace

TEST_CASE("conv2d banded: matches the whole-image reference, f64") {
  for (const auto& s : shapes()) {
    INFO(s.name);
    check_against_reference<double>(s.d, 1e-13);
  }
}

TEST_CASE("conv2d banded: matches the whole-image reference, f32") {
  for (const auto& s : shapes()) {
    INFO(s.name);
    check_against_reference<float>(s.d, 2e-6);
  }
  // Large enough that OpenBLAS blocks and threads the GEMMs.
  check_against_reference<float>(dims(1, 64, 19, 19, 96, 3, 1, 6, 6), 1e-5);
}

// Variant 2 (kernels/conv2d_taps.h): the forward tap by tap, padding taps skipped.
template <typename T>
void check_taps_against_reference(const kern::Conv2dDims& d, double tol) {
  const int64_t K = kern::conv2d_col_rows(d);
  auto x = random_vec<T>(d.N * d.C * d.H * d.W, 1), w = random_vec<T>(d.O * K, 2), b = random_vec<T>(d.O, 3);
  std::vector<T> col(kern::conv2d_col_size(d) + 1), y(d.N * d.O * d.Ho * d.Wo), y2(y.size(), T(-5)), y3(y.size());
  kern::cpu::conv2d_forward<T>(d, x.data(), w.data(), b.data(), y.data(), col.data());
  std::vector<T> ws(kern::conv2d_taps_workspace_size(d), T(777));
  kern::cpu::conv2d_forward_taps<T>(d, x.data(), w.data(), b.data(), y2.data(), ws.data());
  REQUIRE(max_rel_diff(y2, y) <= tol);
  kern::cpu::conv2d_forward<T>(d, x.data(), w.data(), nullptr, y.data(), col.data());
  kern::cpu::conv2d_forward_taps<T>(d, x.data(), w.data(), nullptr, y3.data(), ws.data());
  REQUIRE(max_rel_diff(y3, y) <= tol);
}

TEST_CASE("conv2d taps (variant 2): forward matches the whole-image reference") {
  for (const auto& s : shapes()) {
    INFO(s.name);
    check_taps_against_reference<double>(s.d, 1e-12);
    check_taps_against_reference<float>(s.d, 1e-5);
  }
  check_taps_against_reference<float>(dims(2, 64, 19, 19, 96, 3, 1, 6, 6), 1e-5);
  // Coverage: fc6 reads inside for (13 + 19 + 13)^2 of 57^2 (tap, pixel) pairs; no padding: 1.
  REQUIRE(kern::conv2d_tap_coverage(dims(1, 512, 19, 19, 1024, 3, 1, 6, 6)) == Approx(45.0 * 45 / (57.0 * 57)));
  REQUIRE(kern::conv2d_tap_coverage(dims(1, 4, 9, 9, 4, 3, 1, 0, 1)) == 1.0);
  REQUIRE(kern::conv2d_tap_coverage(dims(1, 4, 8, 8, 4, 3, 1, 1, 1)) == Approx(22.0 * 22 / (24.0 * 24)));
}

TEST_CASE("conv2d banded: band rows from the budget") {
  // fc6: K = 1024 * 9, Wo = 19 -> 700,416 bytes a row (f32).
  const auto fc6 = dims(1, 1024, 19, 19, 1024, 3, 1, 6, 6);
  REQUIRE(kern::conv2d_band_rows(fc6, 0, 4) == 19);                 // 0: whole image
  REQUIRE(kern::conv2d_band_rows(fc6, size_t(16) << 20, 4) == 19);  // 13.3 MB fits 16 MiB
  REQUIRE(kern::conv2d_band_rows(fc6, size_t(8) << 20, 4) == 10);   // 11 fit: 2 bands of 10 + 9
  REQUIRE(kern::conv2d_band_rows(fc6, 1, 4) == 1);                  // below one row: one row
  // VGG conv1_2 at 300: 576 x 300 floats a row; 16 MiB holds 24 rows -> 13 bands of 24 .. 12.
  const auto c12 = dims(1, 64, 300, 300, 64, 3, 1, 1, 1);
  const int64_t r = kern::conv2d_band_rows(c12, size_t(16) << 20, 4);
  REQUIRE(r == 24);
  REQUIRE(kern::conv2d_band_col_size(c12, r) * 4 <= (int64_t(16) << 20));
  REQUIRE(kern::conv2d_band_col_size(dims(1, 4, 5, 5, 2, 1, 1, 0, 1), 3) == 0);  // pointwise: no col
}

TEST_CASE("conv2d banded: bad band or groups throw one line") {
  auto d = dims(1, 2, 5, 5, 2, 3, 1, 1, 1);
  std::vector<float> x(50), w(36), y(50), col(1000);
  REQUIRE_THROWS_WITH(kern::cpu::conv2d_forward_banded<float>(d, x.data(), w.data(), nullptr, y.data(), col.data(), 0),
                      Catch::Contains("conv2d_banded: band_rows must be >= 1 (got 0)"));
  d.groups = 2;
  REQUIRE_THROWS_WITH(kern::cpu::conv2d_forward_banded<float>(d, x.data(), w.data(), nullptr, y.data(), col.data(), 1),
                      Catch::Contains("conv2d_banded: groups must be 1 (got 2)"));
}

namespace {
// Forward + backward through eng::conv2d / conv2d_relu at the current col budget.
struct FrontEndResult {
  std::vector<float> y, gx, gw, gb;
};
Tensor f32_leaf(const eng::Shape& s, uint64_t seed) {
  Tensor t = test::leaf(s, seed).detach().to(DType::f32);
  t.set_requires_grad(true);
  return t;
}
FrontEndResult run_front_end(const Conv2dParams& p, const eng::Shape& xs, const eng::Shape& ws, bool relu) {
  Tensor x = f32_leaf(xs, 11), w = f32_leaf(ws, 12), b = f32_leaf({ws[0]}, 13);
  Tensor y = relu ? conv2d_relu(x, w, b, p) : conv2d(x, w, b, p);
  Generator gen(14);
  sum(mul(y, randn(y.sizes(), gen))).backward();
  return {y.to_vector<float>(), x.grad().to_vector<float>(), w.grad().to_vector<float>(),
          b.grad().to_vector<float>()};
}
// Restores the budget when a test ends, also on failure.
struct BudgetGuard {
  explicit BudgetGuard(size_t bytes) { detail::set_conv_col_budget(bytes); }
  ~BudgetGuard() { detail::reset_conv_col_budget(); }
};
}  // namespace

TEST_CASE("conv2d banded: the front-end's banded path matches ENGINE_CPU_CONV_CHUNK_MB=0 (the reference)") {
  struct FE {
    const char* name;
    Conv2dParams p;
    eng::Shape xs, ws;
    bool relu;
  };
  const std::vector<FE> cases = {
      {"dilated fc6-like", Conv2dParams::square(1, 6, 6), {2, 8, 19, 19}, {6, 8, 3, 3}, true},
      {"3x3 stride 1", Conv2dParams::square(1, 1, 1), {3, 4, 13, 11}, {5, 4, 3, 3}, false},
      {"stride 2", Conv2dParams::square(2, 1, 1), {2, 4, 15, 12}, {5, 4, 3, 3}, true},
      {"1x1 stride 2 downsample", Conv2dParams::square(2, 0, 1), {2, 8, 14, 14}, {6, 8, 1, 1}, false},
      {"1x1 stride 1", Conv2dParams::square(1, 0, 1), {2, 8, 7, 9}, {6, 8, 1, 1}, true},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    FrontEndResult ref, banded;
    {
      BudgetGuard g(0);
      ref = run_front_end(c.p, c.xs, c.ws, c.relu);
    }
    for (size_t budget : {size_t(1), size_t(3000), size_t(16) << 20}) {  // one-row bands, a few rows, one band
      INFO("budget " << budget << " bytes");
      BudgetGuard g(budget);
      banded = run_front_end(c.p, c.xs, c.ws, c.relu);
      REQUIRE(max_rel_diff(banded.y, ref.y) <= 1e-6);
      REQUIRE(max_rel_diff(banded.gx, ref.gx) <= 2e-6);
      REQUIRE(max_rel_diff(banded.gw, ref.gw) <= 2e-6);
      REQUIRE(banded.gb == ref.gb);
    }
  }
}

TEST_CASE("conv2d banded: the col workspace stays within the budget") {
  // K = 32 * 9 = 288, Ho * Wo = 4096: a whole-image col of 4.7 MB against a 256 KiB budget.
  NoGradGuard ng;
  Generator gen(5);
  Tensor x = randn({1, 32, 64, 64}, gen), w = randn({8, 32, 3, 3}, gen);
  const size_t y_bytes = 8 * 64 * 64 * 4, whole_col = size_t(288) * 4096 * 4, budget = 256 << 10;
  auto conv = [&] { return conv2d(x, w, Tensor(), Conv2dParams::square(1, 1, 1)); };
  size_t a0 = 0, a1 = 0, a2 = 0, peak = 0;
  {
    BudgetGuard g(budget);
    conv();  // the thread's col buffer: at most the budget from here on
    a0 = cpu_alloc::stats().allocated;
  }
  {
    BudgetGuard g(0);
    conv();  // the whole-image reference grows it to one image's col matrix
    a1 = cpu_alloc::stats().allocated;
  }
  {
    BudgetGuard g(budget);
    cpu_alloc::reset_peak();
    const size_t before = cpu_alloc::stats().allocated;
    conv();  // shrinks it back
    peak = cpu_alloc::stats().peak_allocated - before;
    a2 = cpu_alloc::stats().allocated;
  }
  INFO("allocated: banded " << a0 << ", after the reference " << a1 << ", banded again " << a2 << "; peak of one "
                            << "banded conv " << peak);
  REQUIRE(a1 >= a0 + whole_col - budget);
  REQUIRE(a2 == a0);
  REQUIRE(peak <= y_bytes + budget);  // y and (at most) a fresh budget-sized col
}

TEST_CASE("conv2d banded: gradcheck in double with one-row bands", "[gradcheck]") {
  BudgetGuard g(1);
  auto f = [](Conv2dParams p) {
    return [p](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], p); };
  };
  SECTION("dilation 2 pad 2") {
    REQUIRE_GRADCHECK(f(Conv2dParams::square(1, 2, 2)), {test::leaf({2, 2, 6, 5}, 1), test::leaf({2, 2, 3, 3}, 2), test::leaf({2}, 3)});
  }
  SECTION("stride 2 pad 1") {
    REQUIRE_GRADCHECK(f(Conv2dParams::square(2, 1, 1)), {test::leaf({1, 2, 7, 6}, 4), test::leaf({2, 2, 3, 3}, 5), test::leaf({2}, 6)});
  }
  SECTION("1x1 stride 2") {
    REQUIRE_GRADCHECK(f(Conv2dParams::square(2, 0, 1)), {test::leaf({2, 3, 5, 5}, 7), test::leaf({2, 3, 1, 1}, 8), test::leaf({2}, 9)});
  }
  SECTION("1x1 stride 1") {
    REQUIRE_GRADCHECK(f(Conv2dParams::square(1, 0, 1)), {test::leaf({2, 3, 4, 3}, 10), test::leaf({2, 3, 1, 1}, 11), test::leaf({2}, 12)});
  }
}

TEST_CASE("conv2d banded: conv2d_relu's fused epilogue equals conv2d then relu, NaN included") {
  // The front-end fuses the ReLU into the banded forward (relu_done): same bits as the separate
  // op, and NaN becomes 0 as relu's x > 0 ? x : 0 says. Dilated (regions would take it under
  // auto), 1x1 (plain GEMM) and a strided layer, all forced through im2col by this file.
  const Conv2dParams shapes[] = {Conv2dParams::square(1, 2, 2), Conv2dParams::square(1, 0, 1),
                                 Conv2dParams::square(2, 1, 1)};
  const int64_t ks[] = {3, 1, 3};
  for (int s = 0; s < 3; ++s) {
    Tensor x = test::random_f32({2, 8, 9, 7}, 60 + s), w = test::random_f32({6, 8, ks[s], ks[s]}, 70 + s);
    Tensor b = test::random_f32({6}, 80 + s);
    x.data<float>()[3] = NAN;
    const std::vector<float> fused = conv2d_relu(x, w, b, shapes[s]).to_vector<float>();
    const std::vector<float> sep = relu(conv2d(x, w, b, shapes[s])).to_vector<float>();
    REQUIRE(fused.size() == sep.size());
    bool any_nan_input_reached = false;
    for (size_t i = 0; i < fused.size(); ++i) {
      REQUIRE_FALSE(std::isnan(fused[i]));
      REQUIRE(std::memcmp(&fused[i], &sep[i], sizeof(float)) == 0);
    }
    const std::vector<float> raw = conv2d(x, w, b, shapes[s]).to_vector<float>();
    for (float v : raw) any_nan_input_reached |= std::isnan(v);
    REQUIRE(any_nan_input_reached);
  }
}
