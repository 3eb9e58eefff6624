// Shared test utilities: the gradient check, the CUDA skip, tensor comparisons.
//
// Tolerances (docs/testing.md):
//   gradcheck (double, CPU): central differences, h = 1e-6,
//       pass if |num - ana| <= 1e-5 + 1e-3 |num|; loss = sum(r * y) with a fixed random r.
//   CUDA vs CPU (float): elementwise 1e-6 + 1e-5|ref|; reductions/losses 1e-5 + 1e-4|ref|;
//       GEMM/conv (TF32 off) 1e-4 + 1e-3|ref|.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace test {

// At the top of every [cuda] test: without a device, report the skip and leave.
// CTest turns the "SKIPPED: no CUDA device" line into a skipped test.
#define REQUIRE_CUDA_OR_SKIP()                                  \
  do {                                                          \
    if (!::eng::cuda::available()) {                            \
      WARN("SKIPPED: no CUDA device");                          \
      return;                                                   \
    }                                                           \
  } while (0)

constexpr double kElementwiseAtol = 1e-6, kElementwiseRtol = 1e-5;
constexpr double kReductionAtol = 1e-5, kReductionRtol = 1e-4;
constexpr double kGemmAtol = 1e-4, kGemmRtol = 1e-3;

// Returns "" when every element satisfies |a - b| <= atol + rtol |b| (b is the reference),
// else a description of the worst element.
inline std::string compare(const eng::Tensor& actual, const eng::Tensor& reference, double atol, double rtol) {
  if (actual.sizes() != reference.sizes())
    return "shape " + eng::shape_str(actual.sizes()) + " vs reference " + eng::shape_str(reference.sizes());
  std::vector<double> a = actual.to_vector<double>(), b = reference.to_vector<double>();
  double worst = 0;
  size_t worst_i = 0;
  bool bad = false;
  for (size_t i = 0; i < a.size(); ++i) {
    double err = std::fabs(a[i] - b[i]);
    double excess = err - (atol + rtol * std::fabs(b[i]));
    if (!(excess <= 0)) {  // also catches NaN
      if (!bad || excess > worst || std::isnan(excess)) {
        worst = excess;
        worst_i = i;
      }
      bad = true;
    }
  }
  if (!bad) return "";
  std::ostringstream os;
  os << "element " << worst_i << ": got " << a[worst_i] << ", reference " << b[worst_i] << " (atol " << atol
     << ", rtol " << rtol << ")";
  return os.str();
}

#define REQUIRE_CLOSE(actual, reference, atol, rtol)                          \
  do {                                                                        \
    std::string cmp_msg_ = ::test::compare((actual), (reference), atol, rtol); \
    INFO(cmp_msg_);                                                           \
    REQUIRE(cmp_msg_.empty());                                                \
  } while (0)

// Central-difference gradient check in double on the CPU.
//   f: the op under test, mapping the inputs to one output tensor.
//   inputs: double CPU tensors; those with requires_grad are checked.
// Loss = sum(r * f(inputs)) with r fixed random in [-1, 1) (seed `seed`).
// Returns "" on success, else the first failing element.
inline std::string gradcheck(const std::function<eng::Tensor(const std::vector<eng::Tensor>&)>& f,
                             std::vector<eng::Tensor> inputs, double h = 1e-6, double atol = 1e-5,
                             double rtol = 1e-3, uint64_t seed = 1234) {
  using namespace eng;
  for (auto& t : inputs)
    if (t.defined() && t.requires_grad()) t.zero_grad();
  Tensor y = f(inputs);
  if (!y.requires_grad()) return "output does not require grad";
  Generator gen(seed);
  Tensor r = rand(y.sizes(), gen, TensorOptions(DType::f64)) * 2.0 - 1.0;
  Tensor loss = sum(mul(y, r));
  loss.backward();

  auto eval = [&]() {
    NoGradGuard g;
    return sum(mul(f(inputs), r)).item();
  };
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    if (!x.grad().defined()) return "input " + std::to_string(k) + " got no gradient";
    std::vector<double> ana = x.grad().to_vector<double>();
    double* p = x.data<double>();  // leaves are contiguous here
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double orig = p[i];
      p[i] = orig + h;
      double lp = eval();
      p[i] = orig - h;
      double lm = eval();
      p[i] = orig;
      double num = (lp - lm) / (2 * h);
      if (!(std::fabs(num - ana[i]) <= atol + rtol * std::fabs(num))) {
        std::ostringstream os;
        os << "input " << k << " element " << i << ": numeric " << num << ", analytic " << ana[i];
        return os.str();
      }
    }
  }
  return "";
}

#define REQUIRE_GRADCHECK(...)                           \
  do {                                                   \
    std::string gc_msg_ = ::test::gradcheck(__VA_ARGS__); \
    INFO(gc_msg_);                                       \
    REQUIRE(gc_msg_.empty());                            \
  } while (0)

// A double CPU leaf with values drawn U[lo, hi) from `seed`, requiring grad.
inline eng::Tensor leaf(const eng::Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  eng::Generator gen(seed);
  eng::Tensor t;
  {
    eng::NoGradGuard g;
    t = eng::rand(shape, gen, eng::TensorOptions(eng::DType::f64)) * (hi - lo) + lo;
  }
  t.set_requires_grad(true);
  return t;
}

// Fresh leaves requiring grad holding t's values, on the CUDA device / on the CPU (a copy),
// for running one computation on both devices and comparing the gradients.
inline eng::Tensor cuda_leaf(const eng::Tensor& t) {
  eng::Tensor c = t.detach().cuda();
  c.set_requires_grad(true);
  return c;
}
inline eng::Tensor cpu_leaf(const eng::Tensor& t) {
  eng::Tensor c = t.detach().clone();
  c.set_requires_grad(true);
  return c;
}

// The three loss reductions, and their names for INFO messages.
inline const eng::Reduction kAllReductions[] = {eng::Reduction::None, eng::Reduction::Sum, eng::Reduction::Mean};
inline const char* reduction_name(eng::Reduction r) {
  return r == eng::Reduction::None ? "none" : (r == eng::Reduction::Sum ? "sum" : "mean");
}

// An i64 label tensor.
inline eng::Tensor labels(const std::vector<int64_t>& v, const eng::Shape& shape) {
  return eng::from_vector<int64_t>(v, shape);
}

// IoU of two corner boxes written out independently of the kernels (test reference).
inline double iou_by_hand(const double* a, const double* b) {
  const double iw = std::min(a[2], b[2]) - std::max(a[0], b[0]);
  const double ih = std::min(a[3], b[3]) - std::max(a[1], b[1]);
  const double inter = (iw > 0 && ih > 0) ? iw * ih : 0.0;
  const double uni = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return uni > 0 ? inter / uni : 0.0;
}

// Float tensor with values U[lo, hi) for CUDA-vs-CPU tests.
inline eng::Tensor random_f32(const eng::Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  eng::Generator gen(seed);
  eng::NoGradGuard g;
  return (eng::rand(shape, gen, eng::TensorOptions(eng::DType::f64)) * (hi - lo) + lo).to(eng::DType::f32);
}

}  // namespace test
