// Helpers of the CPU convolution path tests (Winograd, regions): run conv2d with
// ENGINE_CPU_CONV forced, and the scaled error of a result against the f64 im2col reference:
//   max |e_f32 - e_f64| / max(S), S = the same computation on absolute values in f64.
#pragma once
#include <cstdlib>

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

}  // namespace conv_path_test
