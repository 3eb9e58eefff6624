// The CPU kernels' fast loops (variant 1: vectorised, compiled per ISA level) against their
// reference loops (variant 0: kern::cpu::ref), under every ISA level this CPU has
// (kernels/cpu_isa.h): broadcasting binary ops, unary forward / in place / backward of every op, the dedicated ReLU
// and ReLU6 backward, max_pool2d forward / backward, batch norm. Inputs hold NaN, +-Inf, +-0
// and the ops' kinks; odd sizes exercise the vector tails; sizes above 2^16 the threads.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/batch_norm.h"
#include "kernels/bf16.h"
#include "kernels/cpu_isa.h"
#include "kernels/elementwise.h"
#include "kernels/pool2d.h"

using kern::bf16;
using kern::compute_t;
using kern::cpu::Isa;

namespace {

// Every level this CPU can run, lowest first, up to ENGINE_CPU_ISA's ceiling when it is set.
std::vector<Isa> levels() {
  const Isa prev = kern::cpu::set_isa_cap(Isa::Avx512);
  const Isa top = kern::cpu::isa_active();  // min(detected, ENGINE_CPU_ISA)
  kern::cpu::set_isa_cap(prev);
  std::vector<Isa> v;
  for (int i = 0; i <= static_cast<int>(top); ++i) v.push_back(static_cast<Isa>(i));
  return v;
}

// Runs f once per available level with the kernels capped at it (the cap restored after).
void for_each_isa(const std::function<void(Isa)>& f) {
  for (Isa isa : levels()) {
    const Isa prev = kern::cpu::set_isa_cap(isa);
    REQUIRE(kern::cpu::isa_active() == isa);
    try {
      f(isa);
    } catch (...) {
      kern::cpu::set_isa_cap(prev);
      throw;
    }
    kern::cpu::set_isa_cap(prev);
  }
}

template <typename T>
double as_double(T v) {
  return static_cast<double>(kern::to_compute(v));
}

// Same bits, or both NaN (a NaN's payload is not part of the contract).
template <typename T>
bool same(T a, T b) {
  if (std::isnan(as_double(a)) && std::isnan(as_double(b))) return true;
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <typename T>
void require_same(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (!same(got[i], want[i])) {
      FAIL(what << ": element " << i << " is " << as_double(got[i]) << ", the reference gives " << as_double(want[i]));
    }
  }
}

template <typename T>
T val(double v) {
  return kern::from_compute<T>(static_cast<compute_t<T>>(v));
}

// n values: random normals times 4, with the specials and kinks planted at fixed places.
template <typename T>
std::vector<T> sample(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> nd(0.0, 4.0);
  std::vector<T> v(n);
  for (auto& e : v) e = val<T>(nd(gen));
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const double special[] = {0.0, -0.0, nan, inf, -inf, 6.0, -3.0, 3.0, 1.0, -1.0, 1e-30};
  size_t k = 0;
  for (size_t i = seed % 5; i < n; i += 7) v[i] = val<T>(special[k++ % (sizeof special / sizeof special[0])]);
  return v;
}

const size_t kSizes[] = {1, 7, 33, 1000, 70001};  // tails, and one above the threads' threshold

const kern::UnaryOp kOps[] = {
    kern::UnaryOp::Neg,  kern::UnaryOp::AddScalar, kern::UnaryOp::MulScalar, kern::UnaryOp::RSubScalar,
    kern::UnaryOp::Relu, kern::UnaryOp::Sigmoid,   kern::UnaryOp::Exp,       kern::UnaryOp::Log,
    kern::UnaryOp::Sqrt, kern::UnaryOp::Square,    kern::UnaryOp::Abs,       kern::UnaryOp::Clamp,
    kern::UnaryOp::Relu6, kern::UnaryOp::Hardsigmoid, kern::UnaryOp::Hardswish};

template <typename T>
void check_unary() {
  namespace kc = kern::cpu;
  for_each_isa([](Isa isa) {
    for (size_t n : kSizes) {
      const auto x = sample<T>(n, 1), g = sample<T>(n, 2);
      for (kern::UnaryOp op : kOps) {
        const double p0 = op == kern::UnaryOp::Clamp ? -1.0 : 0.75, p1 = 2.5;
        const std::string what = std::string(kc::isa_name(isa)) + " op " + std::to_string(static_cast<int>(op)) +
                                 " n " + std::to_string(n);
        std::vector<T> y(n), y_ref(n);
        kc::unary_forward<T>(op, n, x.data(), y.data(), p0, p1);
        kc::ref::unary_forward<T>(op, n, x.data(), y_ref.data(), p0, p1);
        require_same(y, y_ref, "forward " + what);
        std::vector<T> z = x, z_ref = x;
        kc::unary_inplace<T>(op, n, z.data(), p0, p1);
        kc::ref::unary_inplace<T>(op, n, z_ref.data(), p0, p1);
        require_same(z, z_ref, "in place " + what);
        std::vector<T> w = x;  // unary_forward with x == y takes the in-place loop
        kc::unary_forward<T>(op, n, w.data(), w.data(), p0, p1);
        require_same(w, z_ref, "forward aliased " + what);
        // Backward as the engine calls it (Relu gets y as x), and with both given.
        const T* px = op == kern::UnaryOp::Relu ? y_ref.data() : x.data();
        std::vector<T> gx(n), gx_ref(n);
        kc::unary_backward<T>(op, n, px, y_ref.data(), g.data(), gx.data(), p0, p1);
        kc::ref::unary_backward<T>(op, n, px, y_ref.data(), g.data(), gx_ref.data(), p0, p1);
        require_same(gx, gx_ref, "backward " + what);
        // A pointer the op reads left null: the reference's rule (0 in its place).
        kc::unary_backward<T>(op, n, nullptr, nullptr, g.data(), gx.data(), p0, p1);
        kc::ref::unary_backward<T>(op, n, nullptr, nullptr, g.data(), gx_ref.data(), p0, p1);
        require_same(gx, gx_ref, "backward, no x / y, " + what);
      }
    }
  });
}

}  // namespace

TEST_CASE("cpu ISA levels: detection, the cap, ENGINE_CPU_ISA's parser", "[cpu_isa]") {
  using namespace kern::cpu;
  INFO("detected " << isa_name(isa_detected()) << ", active " << isa_name(isa_active()));
  REQUIRE(isa_active() <= isa_detected());
  const Isa prev = set_isa_cap(Isa::Baseline);
  REQUIRE(isa_active() == Isa::Baseline);
  set_isa_cap(Isa::Avx512);  // a cap above the CPU gives the CPU's level
  REQUIRE(isa_active() <= isa_detected());
  set_isa_cap(prev);
  REQUIRE(isa_cap_from_string(nullptr) == Isa::Avx512);
  REQUIRE(isa_cap_from_string("") == Isa::Avx512);
  REQUIRE(isa_cap_from_string("baseline") == Isa::Baseline);
  REQUIRE(isa_cap_from_string("avx2") == Isa::Avx2);
  REQUIRE(isa_cap_from_string("avx512") == Isa::Avx512);
  try {
    isa_cap_from_string("sse9");
    FAIL("no error for ENGINE_CPU_ISA=sse9");
  } catch (const std::runtime_error& e) {
    REQUIRE(std::string(e.what()) == "ENGINE_CPU_ISA: 'sse9' is not one of baseline, avx2, avx512");
  }
  // Levels above the CPU's are not run by the tests below: say so instead of passing silently.
  if (levels().back() < Isa::Avx512) WARN("skipped: no AVX-512 here (CPU or ENGINE_CPU_ISA); its path is not exercised");
  if (levels().back() < Isa::Avx2) WARN("skipped: no AVX2 here (CPU or ENGINE_CPU_ISA); its path is not exercised");
}

TEST_CASE("unary kernels: the per-op loops match the reference bit for bit, every ISA, f32 f64 bf16",
          "[cpu_isa][elementwise]") {
  check_unary<float>();
  check_unary<double>();
  check_unary<bf16>();
}

namespace {

// Output sizes `out`; a and b read through strides made from their own shapes (size 1 ->
// stride 0: broadcast), optionally with a's last two dims swapped (a transposed view).
template <typename T>
void check_binary(const std::vector<int64_t>& out, const std::vector<int64_t>& ash,
                  const std::vector<int64_t>& bsh, bool a_transposed) {
  namespace kc = kern::cpu;
  kern::BroadcastDims d;
  d.ndim = static_cast<int>(out.size());
  auto strides = [&](const std::vector<int64_t>& sh, int64_t* st, bool transposed) {
    int64_t m = 1;
    std::vector<int64_t> dense(sh.size());
    for (int i = static_cast<int>(sh.size()) - 1; i >= 0; --i) dense[i] = m, m *= sh[i];
    if (transposed && sh.size() >= 2) {  // storage [.., W, H], viewed as [.., H, W]
      const size_t k = sh.size();
      dense[k - 1] = sh[k - 2];
      dense[k - 2] = 1;
    }
    for (size_t i = 0; i < sh.size(); ++i) st[i] = sh[i] == 1 ? 0 : dense[i];
    return m;
  };
  for (int i = 0; i < d.ndim; ++i) d.sizes[i] = out[i];
  const int64_t na = strides(ash, d.a_strides, a_transposed), nb = strides(bsh, d.b_strides, false);
  int64_t n = 1;
  for (int64_t v : out) n *= v;
  const auto a = sample<T>(na, 11), b = sample<T>(nb, 12);
  std::string what;
  for (int64_t v : out) what += std::to_string(v) + " ";
  for_each_isa([&](Isa isa) {
    for (kern::BinaryOp op : {kern::BinaryOp::Add, kern::BinaryOp::Sub, kern::BinaryOp::Mul, kern::BinaryOp::Div}) {
      std::vector<T> o(n), o_ref(n);
      kc::binary_forward<T>(op, d, a.data(), b.data(), o.data());
      kc::ref::binary_forward<T>(op, d, a.data(), b.data(), o_ref.data());
      require_same(o, o_ref, "binary " + std::to_string(static_cast<int>(op)) + " " + kc::isa_name(isa) + " " +
                                 what + (a_transposed ? "a transposed" : ""));
    }
  });
}

template <typename T>
void check_binaries() {
  check_binary<T>({3, 5, 7}, {3, 5, 7}, {3, 5, 7}, false);           // same shape: one merged row
  check_binary<T>({4, 16, 9, 11}, {4, 16, 9, 11}, {1, 16, 1, 1}, false);  // per-channel (bias-like)
  check_binary<T>({4, 16, 9, 11}, {1, 16, 1, 1}, {4, 16, 9, 11}, false);  // broadcast on the left
  check_binary<T>({2, 3, 40, 1000}, {2, 3, 40, 1000}, {2, 3, 40, 1}, false);  // a row constant, threads
  check_binary<T>({2, 300, 257}, {2, 300, 257}, {1, 1, 257}, false);      // threads, broadcast rows
  check_binary<T>({5, 6, 7}, {5, 6, 7}, {5, 6, 7}, true);                 // a transposed: strided rows
  check_binary<T>({1}, {1}, {1}, false);
  check_binary<T>({80000}, {80000}, {80000}, false);                      // one long row, split
  check_binary<T>({1, 1, 1}, {1, 1, 1}, {1, 1, 1}, false);
}

}  // namespace

TEST_CASE("binary_forward: merged dims and per-pattern rows match the reference bit for bit, every ISA",
          "[cpu_isa][elementwise]") {
  check_binaries<float>();
  check_binaries<double>();
  check_binaries<bf16>();
}

TEST_CASE("relu_backward: 0 at y = 0 and -0, 0 where y is NaN, gy unchanged (NaN, Inf) where y > 0",
          "[cpu_isa][elementwise]") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> y = {0.0f, -0.0f, nan, 2.0f, 3.0f, 1e-38f, -1.0f, 0.0f, 5.0f, 7.0f, 6.0f};
  const std::vector<float> g = {1.0f, 1.0f, 1.0f, nan, inf, -2.0f, inf, inf, -0.0f, 1.0f, 1.0f};
  for_each_isa([&](Isa isa) {
    INFO(kern::cpu::isa_name(isa));
    std::vector<float> gx(y.size());
    kern::cpu::relu_backward<float>(y.size(), y.data(), g.data(), gx.data());
    const std::vector<float> want = {0.0f, 0.0f, 0.0f, nan, inf, -2.0f, 0.0f, 0.0f, -0.0f, 1.0f, 1.0f};
    require_same(gx, want, "relu_backward");
    kern::cpu::relu6_backward<float>(y.size(), y.data(), g.data(), gx.data());
    const std::vector<float> want6 = {0.0f, 0.0f, 0.0f, nan, inf, -2.0f, 0.0f, 0.0f, -0.0f, 0.0f, 0.0f};
    require_same(gx, want6, "relu6_backward");
  });
}

namespace {

kern::Pool2dDims pool_dims(int64_t planes, int64_t h, int64_t w, int64_t k, int64_t s, int64_t pad, bool ceil) {
  kern::Pool2dDims d;
  d.planes = planes, d.in_h = h, d.in_w = w, d.kernel_h = d.kernel_w = k, d.stride_h = d.stride_w = s;
  d.pad_h = d.pad_w = pad;
  auto out = [&](int64_t in) {
    const int64_t span = in + 2 * pad - k;
    int64_t o = (ceil ? (span + s - 1) / s : span / s) + 1;
    if (ceil && (o - 1) * s >= in + pad) --o;  // torch: the last window starts inside the input or left pad
    return o;
  };
  d.out_h = out(h), d.out_w = out(w);
  return d;
}

template <typename T, typename J>
void check_pool(const kern::Pool2dDims& d, const std::string& what) {
  namespace kc = kern::cpu;
  const size_t in_n = d.planes * d.in_h * d.in_w, out_n = d.planes * d.out_h * d.out_w;
  auto x = sample<T>(in_n, 3);
  for (size_t i = 5; i < in_n; i += 11) x[i] = x[i - 1];  // ties: the first maximum wins
  const auto gy = sample<T>(out_n, 4);
  for_each_isa([&](Isa isa) {
    const std::string w = what + " " + kc::isa_name(isa);
    std::vector<T> y(out_n), y_ref(out_n), y2(out_n);
    std::vector<J> idx(out_n), idx_ref(out_n);
    kc::max_pool2d_forward<T, J>(d, x.data(), y.data(), idx.data());
    kc::ref::max_pool2d_forward<T, J>(d, x.data(), y_ref.data(), idx_ref.data());
    require_same(y, y_ref, "max_pool2d forward " + w);
    REQUIRE(idx == idx_ref);
    kc::max_pool2d_forward<T, J>(d, x.data(), y2.data(), static_cast<J*>(nullptr));
    require_same(y2, y_ref, "max_pool2d forward without indices " + w);
    std::vector<T> gx(in_n, val<T>(123.0)), gx_ref(in_n);  // every element must be written
    kc::max_pool2d_backward<T, J>(d, idx_ref.data(), gy.data(), gx.data());
    kc::ref::max_pool2d_backward<T, J>(d, idx_ref.data(), gy.data(), gx_ref.data());
    require_same(gx, gx_ref, "max_pool2d backward " + w);
  });
}

template <typename T>
void check_pools() {
  struct Case {
    int64_t planes, h, w, k, s, pad;
    bool ceil;
  };
  const Case cases[] = {{3, 8, 10, 2, 2, 0, false}, {2, 7, 9, 2, 2, 0, false}, {2, 7, 9, 2, 2, 0, true},
                        {2, 75, 75, 2, 2, 0, true}, {2, 5, 6, 3, 1, 1, false}, {2, 9, 10, 3, 3, 0, true},
                        {2, 6, 7, 2, 2, 1, false},  {40, 64, 66, 2, 2, 0, false}, {2, 9, 11, 3, 2, 1, false},
                        {2, 8, 8, 1, 1, 0, false},  {2, 10, 10, 4, 2, 1, true},   {1, 2, 2, 3, 1, 1, false},
                        {40, 38, 38, 3, 1, 1, false}, {2, 9, 9, 2, 1, 0, false},  {2, 13, 7, 3, 2, 0, true}};
  for (const Case& c : cases) {
    const auto d = pool_dims(c.planes, c.h, c.w, c.k, c.s, c.pad, c.ceil);
    const std::string what = std::to_string(c.h) + "x" + std::to_string(c.w) + " k" + std::to_string(c.k) + " s" +
                             std::to_string(c.s) + " p" + std::to_string(c.pad) + (c.ceil ? " ceil" : "");
    check_pool<T, int32_t>(d, what + " int32");
    check_pool<T, int64_t>(d, what + " int64");
  }
}

}  // namespace

TEST_CASE("max_pool2d: the 2x2 s2 and any-window row loops and the direct backward match the reference, every ISA",
          "[cpu_isa][pool]") {
  check_pools<float>();
  check_pools<double>();
  check_pools<bf16>();
}

namespace {

// rel. distance of a per-channel sum from the reference's (the lanes reorder a double sum).
template <typename F>
void require_close(const std::vector<F>& got, const std::vector<F>& want, double rtol, const std::string& what) {
  for (size_t i = 0; i < got.size(); ++i) {
    const double a = got[i], b = want[i];
    if (std::isnan(a) && std::isnan(b)) continue;
    if (std::isinf(a) || std::isinf(b)) {
      if (a != b) FAIL(what << "[" << i << "]: " << a << " vs " << b);
      continue;
    }
    if (std::fabs(a - b) > rtol * std::max(1.0, std::fabs(b))) FAIL(what << "[" << i << "]: " << a << " vs " << b);
  }
}

template <typename T>
void check_batch_norm(int64_t N, int64_t C, int64_t HW, bool with_nan) {
  namespace kc = kern::cpu;
  using F = compute_t<T>;
  const kern::BatchNormDims d{N, C, HW};
  const size_t n = N * C * HW;
  std::vector<T> x = sample<T>(n, 5), gy = sample<T>(n, 6);
  if (!with_nan) {  // finite values, so the statistics are finite and comparable
    std::mt19937 gen(7);
    std::normal_distribution<double> nd(0.5, 2.0);
    for (auto& e : x) e = val<T>(nd(gen));
    for (auto& e : gy) e = val<T>(nd(gen));
  }
  std::vector<F> w(C), b(C);
  for (int64_t c = 0; c < C; ++c) w[c] = F(0.5) + F(c) / F(4), b[c] = F(c) / F(3) - F(1);
  const double rtol = std::is_same_v<F, double> ? 1e-12 : 2e-6;
  for_each_isa([&](Isa isa) {
    const std::string what = std::string(kc::isa_name(isa)) + " " + std::to_string(N) + "x" + std::to_string(C) +
                             "x" + std::to_string(HW);
    std::vector<F> mean(C), var(C), mean_ref(C), var_ref(C);
    kc::batch_norm_stats<T>(d, x.data(), mean.data(), var.data());
    kc::ref::batch_norm_stats<T>(d, x.data(), mean_ref.data(), var_ref.data());
    require_close(mean, mean_ref, rtol, "mean " + what);
    require_close(var, var_ref, rtol, "var " + what);
    // Everything below from the reference's statistics, so the elementwise kernels compare bitwise.
    std::vector<T> y(n), y_ref(n);
    kc::batch_norm_forward<T>(d, x.data(), mean_ref.data(), var_ref.data(), w.data(), b.data(), 1e-5, y.data());
    kc::ref::batch_norm_forward<T>(d, x.data(), mean_ref.data(), var_ref.data(), w.data(), b.data(), 1e-5,
                                   y_ref.data());
    require_same(y, y_ref, "forward " + what);
    kc::batch_norm_forward<T>(d, x.data(), mean_ref.data(), var_ref.data(), nullptr, nullptr, 1e-5, y.data());
    kc::ref::batch_norm_forward<T>(d, x.data(), mean_ref.data(), var_ref.data(), nullptr, nullptr, 1e-5, y_ref.data());
    require_same(y, y_ref, "forward without affine " + what);
    std::vector<F> sdy(C), sdx(C), sdy_ref(C), sdx_ref(C);
    kc::batch_norm_backward_reduce<T>(d, x.data(), mean_ref.data(), var_ref.data(), 1e-5, gy.data(), sdy.data(),
                                      sdx.data());
    kc::ref::batch_norm_backward_reduce<T>(d, x.data(), mean_ref.data(), var_ref.data(), 1e-5, gy.data(),
                                           sdy_ref.data(), sdx_ref.data());
    require_close(sdy, sdy_ref, rtol, "sum_dy " + what);
    require_close(sdx, sdx_ref, rtol, "sum_dy_xhat " + what);
    for (bool training : {true, false}) {
      std::vector<T> gx(n), gx_ref(n);
      kc::batch_norm_backward_input<T>(d, x.data(), mean_ref.data(), var_ref.data(), w.data(), 1e-5, training,
                                       gy.data(), sdy_ref.data(), sdx_ref.data(), gx.data());
      kc::ref::batch_norm_backward_input<T>(d, x.data(), mean_ref.data(), var_ref.data(), w.data(), 1e-5, training,
                                            gy.data(), sdy_ref.data(), sdx_ref.data(), gx_ref.data());
      require_same(gx, gx_ref, std::string("backward input ") + (training ? "train " : "eval ") + what);
    }
    {  // variant 2, one pass per channel: the same bits as reduce + backward_input(training)
      std::vector<F> sdy2(C), sdx2(C), sdy3(C), sdx3(C);
      std::vector<T> gx(n), gx2(n);
      kc::batch_norm_backward_input<T>(d, x.data(), mean_ref.data(), var_ref.data(), w.data(), 1e-5, true,
                                       gy.data(), sdy.data(), sdx.data(), gx.data());
      kc::batch_norm_backward_train<T>(d, x.data(), mean_ref.data(), var_ref.data(), w.data(), 1e-5, gy.data(),
                                       sdy2.data(), sdx2.data(), gx2.data());
      require_same(sdy2, sdy, "fused sum_dy " + what);
      require_same(sdx2, sdx, "fused sum_dy_xhat " + what);
      require_same(gx2, gx, "fused backward " + what);
      kc::batch_norm_backward_train<T>(d, x.data(), mean_ref.data(), var_ref.data(), nullptr, 1e-5, gy.data(),
                                       sdy3.data(), sdx3.data(), nullptr);  // sums only, no affine weight
      require_same(sdy3, sdy, "fused sums only " + what);
    }
    kc::channel_affine<T>(d, x.data(), w.data(), b.data(), y.data());
    kc::ref::channel_affine<T>(d, x.data(), w.data(), b.data(), y_ref.data());
    require_same(y, y_ref, "channel_affine " + what);
    kc::channel_affine<T>(d, x.data(), w.data(), nullptr, y.data());
    kc::ref::channel_affine<T>(d, x.data(), w.data(), nullptr, y_ref.data());
    require_same(y, y_ref, "channel_affine without shift " + what);
  });
}

}  // namespace

TEST_CASE("batch norm: per-plane loops bitwise, lane sums within double rounding of the reference, every ISA",
          "[cpu_isa][batch_norm]") {
  for (bool nan : {false, true}) {
    check_batch_norm<float>(2, 3, 37, nan);
    check_batch_norm<float>(3, 5, 1, nan);
    check_batch_norm<float>(4, 16, 1089, nan);  // above the threads' threshold
    check_batch_norm<double>(2, 3, 37, nan);
    check_batch_norm<double>(4, 16, 1089, nan);
    check_batch_norm<bf16>(2, 3, 37, nan);
  }
}

TEST_CASE("the ISA levels agree with each other bit for bit (batch norm's lane sums included)", "[cpu_isa]") {
  namespace kc = kern::cpu;
  const kern::BatchNormDims d{3, 4, 333};
  const auto x = sample<float>(3 * 4 * 333, 9);
  std::vector<float> mean0(4), var0(4);
  bool first = true;
  for_each_isa([&](Isa isa) {
    std::vector<float> mean(4), var(4);
    kc::batch_norm_stats<float>(d, x.data(), mean.data(), var.data());
    if (first) {
      mean0 = mean, var0 = var, first = false;
      return;
    }
    INFO(kc::isa_name(isa));
    require_same(mean, mean0, "mean");
    require_same(var, var0, "var");
  });
}
