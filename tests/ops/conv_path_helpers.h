// Helpers of the CPU convolution path tests (Winograd, regions): run conv2d with
// ENGINE_CPU_CONV forced, and the scaled error of a result against the f64 im2col reference:
//   max |e_f32 - e_f64| / max(S), S = the same computation on absolute values in f64.
#pragma once
#include <cmath>
#include <cstdlib>
#include <utility>
#include <vector>

#include "test_helpers.h"

namespace conv_path_test {
using namespace eng;

// Sets ENGINE_CPU_CONV for one scope.
struct ConvPathGuard {
  explicit ConvPathGuard(const char* mode) { setenv("ENGINE_CPU_CONV", mode, 1); }
  ~ConvPathGuard() { unsetenv("ENGINE_CPU_CONV"); }
};

struct Result {
  Tensor y, gx, gw, gb;
};

// conv2d (or conv2d_relu) with the path forced by `mode`, and the gradients for upstream gy.
inline Result run(const char* mode, const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p, bool relu,
           const Tensor& gy) {
  ConvPathGuard guard(mode);
  Tensor xl = test::cpu_leaf(x), wl = test::cpu_leaf(w), bl = b.defined() ? test::cpu_leaf(b) : Tensor();
  Result r;
  r.y = relu ? conv2d_relu(xl, wl, bl, p) : conv2d(xl, wl, bl, p);
  if (gy.defined()) {
    r.y.backward(gy);
    r.gx = xl.grad();
    r.gw = wl.grad();
    if (bl.defined()) r.gb = bl.grad();
  }
  r.y = r.y.detach();
  return r;
}

inline Tensor to64(const Tensor& t) { return t.defined() ? t.detach().to(DType::f64) : Tensor(); }
inline Tensor abs64(const Tensor& t) { return t.defined() ? abs(to64(t)) : Tensor(); }

// max |a - ref| / max(S) (a in f32, ref and S in f64).
inline double scaled_error(const Tensor& a, const Tensor& ref, const Tensor& S) {
  const std::vector<double> av = a.to_vector<double>(), rv = ref.to_vector<double>(), sv = S.to_vector<double>();
  REQUIRE(av.size() == rv.size());
  double worst = 0, smax = 0;
  for (double s : sv) smax = std::max(smax, s);
  for (size_t i = 0; i < av.size(); ++i) {
    const double e = std::fabs(av[i] - rv[i]);
    if (!(e <= worst)) worst = e;  // NaN sticks
  }
  return smax > 0 ? worst / smax : worst;
}

struct Errors {
  double y = 0, gx = 0, gw = 0, gb = 0;
};

// The scaled errors of `mode` against the f64 reference on one shape (x, w, b, gy f32).
inline Errors errors_of(const char* mode, const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p,
                 bool relu, const Tensor& gy) {
  const Result r = run(mode, x, w, b, p, relu, gy);
  const Result ref = run("im2col", to64(x), to64(w), to64(b), p, relu, to64(gy));
  // S: the same conv (no ReLU: |.| inputs give non-negative pre-activations anyway) on |values|.
  const Result S = run("im2col", abs64(x), abs64(w), abs64(b), p, false, abs64(gy));
  Errors e;
  e.y = scaled_error(r.y, ref.y, S.y);
  if (gy.defined()) {
    e.gx = scaled_error(r.gx, ref.gx, S.gx);
    e.gw = scaled_error(r.gw, ref.gw, S.gw);
    if (b.defined()) e.gb = scaled_error(r.gb, ref.gb, S.gb);
  }
  return e;
}


// NaN / Inf in x, w or gy (one element each, 16 -> 16 channels on 2 x 9 x 9, `p` keeping 9 x 9):
// the path `mode` gives NaN and Inf exactly where the im2col reference does, in y, gx and gw.
inline void require_reference_nonfinite(const char* mode, const Conv2dParams& p) {
  Tensor x = test::random_f32({2, 16, 9, 9}, 3), w = test::random_f32({16, 16, 3, 3}, 4, -0.2, 0.2);
  Tensor b = test::random_f32({16}, 5);
  Tensor gy = test::random_f32({2, 16, 9, 9}, 6);
  for (const float bad : {NAN, INFINITY, -INFINITY}) {
    for (int which = 0; which < 3; ++which) {  // x, w, gy
      Tensor xb = x.clone(), wb = w.clone(), gb = gy.clone();
      if (which == 0) xb.data<float>()[1 * 16 * 81 + 3 * 81 + 4 * 9 + 5] = bad;
      if (which == 1) wb.data<float>()[7 * 16 * 9 + 2 * 9 + 4] = bad;
      if (which == 2) gb.data<float>()[0 * 16 * 81 + 5 * 81 + 0 * 9 + 8] = bad;
      INFO("bad value " << bad << " in " << (which == 0 ? "x" : which == 1 ? "w" : "gy"));
      const Result a = run(mode, xb, wb, b, p, false, gb);
      const Result c = run("im2col", xb, wb, b, p, false, gb);
      for (auto [ta, tc] : {std::pair{a.y, c.y}, std::pair{a.gx, c.gx}, std::pair{a.gw, c.gw}}) {
        const std::vector<float> va = ta.to_vector<float>(), vc = tc.to_vector<float>();
        REQUIRE(va.size() == vc.size());
        for (size_t i = 0; i < va.size(); ++i) {
          INFO("element " << i << ": " << va[i] << " vs reference " << vc[i]);
          REQUIRE(std::isnan(va[i]) == std::isnan(vc[i]));
          REQUIRE(std::isinf(va[i]) == std::isinf(vc[i]));
        }
      }
    }
  }
}

// Finite differences of the f32 path `mode` itself (set by the caller's ConvPathGuard) on
// x [2, 6, 9, 7], w [5, 6, 3, 3]: conv2d is linear in x and in (w, b) separately, so along a
// direction v the central difference (L(x + v) - L(x - v)) / 2 equals <dL/dx, v> up to
// rounding, for any step, with L = sum(r * y) accumulated in double. Ho x Wo: the output size.
inline void check_finite_differences(const Conv2dParams& p, int64_t Ho, int64_t Wo) {
  Tensor x = test::random_f32({2, 6, 9, 7}, 21), w = test::random_f32({5, 6, 3, 3}, 22, -0.3, 0.3);
  Tensor b = test::random_f32({5}, 23);
  Tensor r = test::random_f32({2, 5, Ho, Wo}, 24);
  auto loss = [&](const Tensor& xx, const Tensor& ww, const Tensor& bb) {
    NoGradGuard ng;
    const std::vector<double> y = conv2d(xx, ww, bb, p).to_vector<double>(), rv = r.to_vector<double>();
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += y[i] * rv[i];
    return s;
  };
  Tensor xl = test::cpu_leaf(x), wl = test::cpu_leaf(w), bl = test::cpu_leaf(b);
  conv2d(xl, wl, bl, p).backward(r);
  auto dot = [](const Tensor& a, const Tensor& c) {
    const std::vector<double> av = a.to_vector<double>(), cv = c.to_vector<double>();
    double s = 0, m = 0;
    for (size_t i = 0; i < av.size(); ++i) s += av[i] * cv[i], m += std::fabs(av[i] * cv[i]);
    return std::pair<double, double>{s, m};
  };
  for (int dir = 0; dir < 3; ++dir) {
    Tensor vx = test::random_f32(x.sizes(), 30 + dir), vw = test::random_f32(w.sizes(), 40 + dir, -0.3, 0.3);
    const double num_x = (loss(x + vx, w, b) - loss(x - vx, w, b)) / 2;
    const double num_w = (loss(x, w + vw, Tensor()) - loss(x, w - vw, Tensor())) / 2;
    const auto [ana_x, scale_x] = dot(xl.grad(), vx);
    const auto [ana_w, scale_w] = dot(wl.grad(), vw);
    INFO("direction " << dir << ": x " << num_x << " vs " << ana_x << ", w " << num_w << " vs " << ana_w);
    CHECK(std::fabs(num_x - ana_x) <= 1e-4 * scale_x);
    CHECK(std::fabs(num_w - ana_w) <= 1e-4 * scale_w);
  }
  const Tensor vb = test::random_f32(b.sizes(), 50);
  const double num_b = (loss(x, w, b + vb) - loss(x, w, b - vb)) / 2;
  const auto [ana_b, scale_b] = dot(bl.grad(), vb);
  CHECK(std::fabs(num_b - ana_b) <= 1e-5 * scale_b);
}

}  // namespace conv_path_test
