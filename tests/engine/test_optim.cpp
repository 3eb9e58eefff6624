// Optimizers (SGD, Adam, AdamW) and learning-rate schedules.
//
// SGD values are worked out by hand (exact decimals, derivations in the comments); Adam and
// AdamW are checked against a plain double loop written from the published algorithm
// (Kingma & Ba, Algorithm 1; Loshchilov & Hutter for the decoupled decay).
#include <cmath>
#include <map>

#include "engine/optim.h"
#include "test_helpers.h"

using namespace eng;
using optim::NamedTensors;

namespace {

// A 1-D double leaf that requires grad.
Tensor param_f64(const std::vector<double>& v) {
  Tensor t = from_vector<double>(v, {static_cast<int64_t>(v.size())});
  t.set_requires_grad(true);
  return t;
}

void require_values(const std::vector<double>& got, const std::vector<double>& want, double tol = 1e-12) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    REQUIRE(std::fabs(got[i] - want[i]) <= tol + tol * std::fabs(want[i]));
  }
}

// The same fixed gradients for every 3-step SGD test: step k gives kGrads[k].
const std::vector<std::vector<double>> kGrads = {{0.5, -1.0}, {0.25, 2.0}, {-1.0, 0.5}};
const std::vector<double> kStart = {1.0, -2.0};

// Runs three steps of `opt` on p with kGrads and returns p after each step.
std::vector<std::vector<double>> run3(optim::Optimizer& opt, Tensor& p) {
  std::vector<std::vector<double>> out;
  for (const auto& g : kGrads) {
    p.set_grad(from_vector<double>(g, p.sizes()));
    opt.step();
    out.push_back(p.to_vector<double>());
  }
  return out;
}

Tensor state_of(const optim::Optimizer& opt, const std::string& key) {
  for (const auto& [k, t] : opt.state_tensors())
    if (k == key) return t;
  return Tensor();
}

// Adam / AdamW written straight from the papers, in double, one element at a time.
struct AdamReference {
  std::vector<double> p, m, v;
  int t = 0;
  explicit AdamReference(std::vector<double> start) : p(start), m(start.size(), 0.0), v(start.size(), 0.0) {}
  void step(const std::vector<double>& grad, double lr, double beta1, double beta2, double eps, double wd,
            bool decoupled) {
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      double g = grad[i];
      if (decoupled) {
        p[i] = p[i] - lr * wd * p[i];
      } else {
        g = g + wd * p[i];
      }
      m[i] = beta1 * m[i] + (1 - beta1) * g;
      v[i] = beta2 * v[i] + (1 - beta2) * g * g;
      const double m_hat = m[i] / (1 - std::pow(beta1, t));
      const double v_hat = v[i] / (1 - std::pow(beta2, t));
      p[i] = p[i] - lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

}  // namespace

// ---------------------------------------------------------------- SGD, hand-computed

TEST_CASE("sgd: plain steps") {
  Tensor p = param_f64(kStart);
  optim::SGDOptions o;
  o.lr = 0.1;
  optim::SGD opt({{"w", p}}, o);
  auto h = run3(opt, p);
  // p -= 0.1 g:  1 - 0.05 = 0.95;  0.95 - 0.025 = 0.925;  0.925 + 0.1 = 1.025
  require_values(h[0], {0.95, -1.9});
  require_values(h[1], {0.925, -2.1});
  require_values(h[2], {1.025, -2.15});
  REQUIRE(opt.step_count() == 3);
  REQUIRE(state_of(opt, "momentum_buffer.w").defined() == false);  // no momentum, no buffer
}

TEST_CASE("sgd: momentum") {
  Tensor p = param_f64(kStart);
  optim::SGDOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  optim::SGD opt({{"w", p}}, o);
  auto h = run3(opt, p);
  // step 1: buf = g = 0.5 (not 0.1 * g)          p = 1 - 0.05 = 0.95
  // step 2: buf = 0.9 * 0.5 + 0.25 = 0.7          p = 0.95 - 0.07 = 0.88
  // step 3: buf = 0.9 * 0.7 - 1 = -0.37           p = 0.88 + 0.037 = 0.917
  require_values(h[0], {0.95, -1.9});
  require_values(h[1], {0.88, -2.01});
  require_values(h[2], {0.917, -2.159});
  require_values(state_of(opt, "momentum_buffer.w").to_vector<double>(), {-0.37, 1.49});
}

TEST_CASE("sgd: nesterov") {
  Tensor p = param_f64(kStart);
  optim::SGDOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.nesterov = true;
  optim::SGD opt({{"w", p}}, o);
  auto h = run3(opt, p);
  // step 1: buf = 0.5, g = 0.5 + 0.9 * 0.5 = 0.95    p = 1 - 0.095 = 0.905
  // step 2: buf = 0.7, g = 0.25 + 0.63 = 0.88        p = 0.905 - 0.088 = 0.817
  // step 3: buf = -0.37, g = -1 - 0.333 = -1.333     p = 0.817 + 0.1333 = 0.9503
  require_values(h[0], {0.905, -1.81});
  require_values(h[1], {0.817, -2.109});
  require_values(h[2], {0.9503, -2.2931});
}

TEST_CASE("sgd: weight decay") {
  SECTION("without momentum") {
    Tensor p = param_f64(kStart);
    optim::SGDOptions o;
    o.lr = 0.1;
    o.weight_decay = 0.1;
    optim::SGD opt({{"w", p}}, o);
    auto h = run3(opt, p);
    // step 1: g = 0.5 + 0.1 * 1 = 0.6           p = 0.94
    // step 2: g = 0.25 + 0.094 = 0.344          p = 0.9056
    // step 3: g = -1 + 0.09056 = -0.90944       p = 0.996544
    require_values(h[0], {0.94, -1.88});
    require_values(h[1], {0.9056, -2.0612});
    require_values(h[2], {0.996544, -2.090588});
  }
  SECTION("with momentum: the decayed gradient enters the buffer") {
    Tensor p = param_f64(kStart);
    optim::SGDOptions o;
    o.lr = 0.1;
    o.momentum = 0.9;
    o.weight_decay = 0.1;
    optim::SGD opt({{"w", p}}, o);
    auto h = run3(opt, p);
    // step 1: g = 0.6, buf = 0.6                         p = 0.94
    // step 2: g = 0.344, buf = 0.54 + 0.344 = 0.884      p = 0.8516
    require_values(h[0], {0.94, -1.88});
    require_values(h[1], {0.8516, -1.9532});
    require_values(h[2], {0.863524, -2.049548});
    require_values(state_of(opt, "momentum_buffer.w").to_vector<double>(), {-0.11924, 0.96348});
  }
}

TEST_CASE("sgd: dampening") {
  Tensor p = param_f64(kStart);
  optim::SGDOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.dampening = 0.5;
  optim::SGD opt({{"w", p}}, o);
  auto h = run3(opt, p);
  // step 1: buf = g = 0.5 (dampening not applied on creation)   p = 0.95
  // step 2: buf = 0.9 * 0.5 + 0.5 * 0.25 = 0.575                 p = 0.8925
  // step 3: buf = 0.9 * 0.575 - 0.5 = 0.0175                     p = 0.89075
  require_values(h[0], {0.95, -1.9});
  require_values(h[1], {0.8925, -1.91});
  require_values(h[2], {0.89075, -1.944});
  require_values(state_of(opt, "momentum_buffer.w").to_vector<double>(), {0.0175, 0.34});
}

TEST_CASE("sgd: float parameters follow the same maths") {
  Tensor p = from_vector<float>({1.0f, -2.0f}, {2});
  p.set_requires_grad(true);
  optim::SGDOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  optim::SGD opt(std::vector<Tensor>{p}, o);
  for (const auto& g : kGrads) {
    p.set_grad(from_vector<double>(g, {2}).to(DType::f32));
    opt.step();
  }
  require_values(p.to_vector<double>(), {0.917, -2.159}, 1e-6);
  REQUIRE(state_of(opt, "momentum_buffer.0").defined());  // plain lists are named "0", "1", ...
}

TEST_CASE("sgd: no_decay_bias_and_norm") {
  // Zero gradients, lr 0.1, weight decay 0.5: a decayed parameter shrinks by 1 - 0.05.
  auto make = [] {
    NamedTensors ps;
    ps.emplace_back("conv.weight", from_vector<double>({2.0, 4.0}, {2, 1}));  // 2-D, decays
    ps.emplace_back("head.bias", from_vector<double>({2.0, 4.0}, {1, 2}));    // name ends in bias
    ps.emplace_back("bn.weight", from_vector<double>({2.0, 4.0}, {2}));       // 1-D (a norm weight)
    ps.emplace_back("scale", from_vector<double>({2.0}, {}));                 // 0-D
    for (auto& [n, t] : ps) {
      t.set_requires_grad(true);
      t.set_grad(zeros_like(t));
    }
    return ps;
  };
  optim::SGDOptions o;
  o.lr = 0.1;
  o.weight_decay = 0.5;
  SECTION("on") {
    o.no_decay_bias_and_norm = true;
    NamedTensors ps = make();
    optim::SGD opt(ps, o);
    opt.step();
    require_values(ps[0].second.to_vector<double>(), {1.9, 3.8});
    require_values(ps[1].second.to_vector<double>(), {2.0, 4.0});
    require_values(ps[2].second.to_vector<double>(), {2.0, 4.0});
    require_values(ps[3].second.to_vector<double>(), {2.0});
  }
  SECTION("off: everything decays") {
    NamedTensors ps = make();
    optim::SGD opt(ps, o);
    opt.step();
    for (auto& [n, t] : ps) REQUIRE(t.to_vector<double>()[0] == Approx(1.9).epsilon(1e-12));
  }
  SECTION("adamw honours it too") {
    optim::AdamOptions a;
    a.lr = 0.1;
    a.weight_decay = 0.5;
    a.no_decay_bias_and_norm = true;
    NamedTensors ps = make();
    optim::AdamW opt(ps, a);
    opt.step();  // zero gradient: only the decoupled decay moves p
    require_values(ps[0].second.to_vector<double>(), {1.9, 3.8});
    require_values(ps[1].second.to_vector<double>(), {2.0, 4.0});
  }
}

TEST_CASE("sgd: parameters without grad are skipped") {
  Tensor a = param_f64({1.0, 2.0}), b = param_f64({3.0, 4.0});
  optim::SGDOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  optim::SGD opt({{"a", a}, {"b", b}}, o);
  a.set_grad(from_vector<double>({1.0, 1.0}, {2}));
  opt.step();
  require_values(a.to_vector<double>(), {0.9, 1.9});
  require_values(b.to_vector<double>(), {3.0, 4.0});
  REQUIRE(state_of(opt, "momentum_buffer.a").defined());
  REQUIRE_FALSE(state_of(opt, "momentum_buffer.b").defined());
  // b's first update (at group step 2) creates its buffer from its gradient: buf = g.
  b.set_grad(from_vector<double>({2.0, 2.0}, {2}));
  a.zero_grad();
  opt.step();
  require_values(b.to_vector<double>(), {2.8, 3.8});
  require_values(state_of(opt, "momentum_buffer.b").to_vector<double>(), {2.0, 2.0});
  REQUIRE(state_of(opt, "step.b").item() == 1);
  REQUIRE(state_of(opt, "step.a").item() == 1);
  // zero_grad drops every grad.
  opt.zero_grad();
  REQUIRE_FALSE(a.grad().defined());
  REQUIRE_FALSE(b.grad().defined());
}

TEST_CASE("sgd: bad options and inputs are refused") {
  Tensor p = param_f64({1.0});
  optim::SGDOptions o;
  o.lr = 0.1;
  SECTION("nesterov without momentum") {
    o.nesterov = true;
    REQUIRE_THROWS_WITH(optim::SGD({{"w", p}}, o), Catch::Contains("Nesterov"));
  }
  SECTION("nesterov with dampening") {
    o.nesterov = true;
    o.momentum = 0.9;
    o.dampening = 0.1;
    REQUIRE_THROWS_WITH(optim::SGD({{"w", p}}, o), Catch::Contains("zero dampening"));
  }
  SECTION("negative values") {
    o.lr = -1;
    REQUIRE_THROWS_WITH(optim::SGD({{"w", p}}, o), Catch::Contains("learning rate"));
    o.lr = 0.1;
    o.momentum = -0.5;
    REQUIRE_THROWS_WITH(optim::SGD({{"w", p}}, o), Catch::Contains("momentum"));
    o.momentum = 0;
    o.weight_decay = -1;
    REQUIRE_THROWS_WITH(optim::SGD({{"w", p}}, o), Catch::Contains("weight_decay"));
  }
  SECTION("parameter lists") {
    REQUIRE_THROWS_WITH(optim::SGD(NamedTensors{}, o), Catch::Contains("empty parameter list"));
    REQUIRE_THROWS_WITH(optim::SGD({{"a", p}, {"b", p}}, o), Catch::Contains("same tensor"));
    Tensor q = param_f64({1.0});
    REQUIRE_THROWS_WITH(optim::SGD({{"a", p}, {"a", q}}, o), Catch::Contains("appears twice"));
    Tensor not_leaf = mul_scalar(p, 2.0);
    REQUIRE_THROWS_WITH(optim::SGD({{"a", not_leaf}}, o), Catch::Contains("not a leaf"));
    Tensor f = from_vector<float>({1.0f}, {1});
    REQUIRE_THROWS_WITH(optim::SGD({{"a", p}, {"f", f}}, o), Catch::Contains("one dtype and device"));
  }
  SECTION("a grad of the wrong shape, before anything changes") {
    optim::SGD opt({{"w", p}}, o);
    p.set_grad(zeros({2}, DType::f64));
    REQUIRE_THROWS_WITH(opt.step(), Catch::Contains("grad of 'w' has shape"));
    REQUIRE(opt.step_count() == 0);
    REQUIRE(p.to_vector<double>() == std::vector<double>{1.0});
  }
  SECTION("set_lr") {
    optim::SGD opt({{"w", p}}, o);
    opt.set_lr(0.5);
    REQUIRE(opt.lr() == 0.5);
    REQUIRE_THROWS_WITH(opt.set_lr(-0.1), Catch::Contains("learning rate"));
  }
}

// ---------------------------------------------------------------- Adam / AdamW

TEST_CASE("adam: first step moves each element by about lr") {
  // t = 1: m_hat = g, v_hat = g^2, so p -= lr * g / (|g| + eps).
  Tensor p = param_f64(kStart);
  optim::AdamOptions o;
  o.lr = 0.1;
  optim::Adam opt({{"w", p}}, o);
  p.set_grad(from_vector<double>({0.5, -1.0}, {2}));
  opt.step();
  require_values(p.to_vector<double>(), {1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 1.0 / (1.0 + 1e-8)});
  // exp_avg = 0.1 g, exp_avg_sq = 0.001 g^2
  require_values(state_of(opt, "exp_avg.w").to_vector<double>(), {0.05, -0.1});
  require_values(state_of(opt, "exp_avg_sq.w").to_vector<double>(), {0.00025, 0.001});
}

TEST_CASE("adam: three steps match the published formulas") {
  const double wd = GENERATE(0.0, 0.1);
  INFO("weight_decay " << wd);
  Tensor p = param_f64(kStart);
  optim::AdamOptions o;
  o.lr = 0.01;
  o.beta1 = 0.8;
  o.beta2 = 0.95;
  o.eps = 1e-3;  // large enough that its place (after the sqrt) matters
  o.weight_decay = wd;
  optim::Adam opt({{"w", p}}, o);
  AdamReference ref(kStart);
  for (const auto& g : kGrads) {
    p.set_grad(from_vector<double>(g, {2}));
    opt.step();
    ref.step(g, 0.01, 0.8, 0.95, 1e-3, wd, false);
    require_values(p.to_vector<double>(), ref.p);
  }
  require_values(state_of(opt, "exp_avg.w").to_vector<double>(), ref.m);
  require_values(state_of(opt, "exp_avg_sq.w").to_vector<double>(), ref.v);
  REQUIRE(state_of(opt, "step.w").item() == 3);
}

TEST_CASE("adamw: three steps match the published formulas") {
  Tensor p = param_f64(kStart);
  optim::AdamOptions o;
  o.lr = 0.01;
  o.beta1 = 0.8;
  o.beta2 = 0.95;
  o.eps = 1e-3;
  o.weight_decay = 0.5;
  optim::AdamW opt({{"w", p}}, o);
  AdamReference ref(kStart), coupled(kStart);
  for (const auto& g : kGrads) {
    p.set_grad(from_vector<double>(g, {2}));
    opt.step();
    ref.step(g, 0.01, 0.8, 0.95, 1e-3, 0.5, true);
    coupled.step(g, 0.01, 0.8, 0.95, 1e-3, 0.5, false);
    require_values(p.to_vector<double>(), ref.p);
  }
  require_values(state_of(opt, "exp_avg.w").to_vector<double>(), ref.m);
  require_values(state_of(opt, "exp_avg_sq.w").to_vector<double>(), ref.v);
  // The decoupled decay really differs from Adam's L2 penalty here.
  REQUIRE(std::fabs(ref.p[0] - coupled.p[0]) > 1e-4);
}

// torch.optim.AdamW(params) defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay
// 1e-2; Adam's weight_decay default stays 0.
TEST_CASE("adamw: the defaults are torch's (weight decay 1e-2)") {
  CHECK(optim::AdamWOptions().weight_decay == 0.01);
  CHECK(optim::AdamWOptions().lr == 1e-3);
  CHECK(optim::AdamOptions().weight_decay == 0.0);
  Tensor p = param_f64(kStart);
  optim::AdamW opt({{"w", p}});
  AdamReference ref(kStart);
  for (const auto& g : kGrads) {
    p.set_grad(from_vector<double>(g, {2}));
    opt.step();
    ref.step(g, 1e-3, 0.9, 0.999, 1e-8, 0.01, true);
    require_values(p.to_vector<double>(), ref.p);
  }
}

TEST_CASE("adam: a parameter without grad keeps its own step count") {
  Tensor a = param_f64({1.0, -1.0}), b = param_f64({0.5, 2.0});
  optim::AdamOptions o;
  o.lr = 0.01;
  o.beta1 = 0.5;
  o.beta2 = 0.7;
  optim::Adam opt({{"a", a}, {"b", b}}, o);
  AdamReference ra({1.0, -1.0}), rb({0.5, 2.0});
  // b has no grad at step 2, so its bias corrections use t = 1, 2 at group steps 1, 3.
  const std::vector<std::vector<double>> ga = {{0.3, -0.2}, {1.0, 0.5}, {-0.4, 0.9}};
  const std::vector<std::vector<double>> gb = {{2.0, -1.0}, {}, {0.1, 0.7}};
  for (int s = 0; s < 3; ++s) {
    a.set_grad(from_vector<double>(ga[s], {2}));
    ra.step(ga[s], 0.01, 0.5, 0.7, 1e-8, 0, false);
    if (gb[s].empty()) {
      b.zero_grad();
    } else {
      b.set_grad(from_vector<double>(gb[s], {2}));
      rb.step(gb[s], 0.01, 0.5, 0.7, 1e-8, 0, false);
    }
    opt.step();
  }
  require_values(a.to_vector<double>(), ra.p);
  require_values(b.to_vector<double>(), rb.p);
  REQUIRE(state_of(opt, "step.a").item() == 3);
  REQUIRE(state_of(opt, "step.b").item() == 2);
}

TEST_CASE("adam: bad options are refused") {
  Tensor p = param_f64({1.0});
  optim::AdamOptions o;
  o.beta1 = 1.0;
  REQUIRE_THROWS_WITH(optim::Adam({{"w", p}}, o), Catch::Contains("beta1"));
  o.beta1 = 0.9;
  o.beta2 = -0.1;
  REQUIRE_THROWS_WITH(optim::AdamW({{"w", p}}, o), Catch::Contains("AdamW: invalid beta2"));
  o.beta2 = 0.999;
  o.eps = -1;
  REQUIRE_THROWS_WITH(optim::Adam({{"w", p}}, o), Catch::Contains("eps"));
}

// ---------------------------------------------------------------- convergence

namespace {

// Minimises sum((p - target)^2) from p = 0 with `opt`; returns the final loss.
double minimise(optim::Optimizer& opt, Tensor& p, const Tensor& target, int iters,
                const optim::LrSchedule* schedule = nullptr) {
  double loss_value = 0;
  for (int it = 0; it < iters; ++it) {
    if (schedule) opt.set_lr(schedule->lr_at(it));
    opt.zero_grad();
    Tensor loss = sum(square(sub(p, target)));
    loss_value = loss.item();
    loss.backward();
    opt.step();
  }
  return loss_value;
}

}  // namespace

TEST_CASE("sgd: minimises a quadratic") {
  Tensor target = from_vector<float>({1.5f, -2.0f, 0.25f, 3.0f, -0.75f}, {5});
  Tensor p = zeros({5}).set_requires_grad(true);
  optim::SGDOptions o;
  o.lr = 0.05;
  o.momentum = 0.9;
  optim::SGD opt({{"p", p}}, o);
  const double start = sum(square(target)).item();
  const double end = minimise(opt, p, target, 300);
  REQUIRE(start > 10);
  REQUIRE(end < 1e-8);
}

TEST_CASE("adam: minimises a quadratic") {
  Tensor target = from_vector<float>({1.5f, -2.0f, 0.25f, 3.0f, -0.75f}, {5});
  Tensor p = zeros({5}).set_requires_grad(true);
  optim::AdamOptions o;
  o.lr = 0.1;
  optim::Adam opt({{"p", p}}, o);
  optim::Cosine schedule(0.1, 1000, 0.0);
  REQUIRE(minimise(opt, p, target, 1000, &schedule) < 1e-6);
}

TEST_CASE("adamw: minimises a quadratic") {
  Tensor target = from_vector<float>({1.5f, -2.0f, 0.25f, 3.0f, -0.75f}, {5});
  Tensor p = zeros({5}).set_requires_grad(true);
  optim::AdamOptions o;
  o.lr = 0.1;
  o.weight_decay = 1e-4;
  optim::AdamW opt({{"p", p}}, o);
  optim::Cosine schedule(0.1, 1000, 0.0);
  REQUIRE(minimise(opt, p, target, 1000, &schedule) < 1e-5);
}

// ---------------------------------------------------------------- checkpoint state

namespace {

NamedTensors make_params(uint64_t seed) {
  NamedTensors ps;
  ps.emplace_back("layer.weight", test::random_f32({4, 3}, seed));
  ps.emplace_back("layer.bias", test::random_f32({4}, seed + 1));
  for (auto& [n, t] : ps) t.set_requires_grad(true);
  return ps;
}

NamedTensors clone_params(const NamedTensors& ps) {
  NamedTensors out;
  for (const auto& [n, t] : ps) {
    Tensor c = t.detach().clone();
    c.set_requires_grad(true);
    out.emplace_back(n, c);
  }
  return out;
}

// Step s gives every parameter a fixed pseudo-random grad; "layer.bias" gets none at s == 1.
void set_grads(NamedTensors& ps, int s) {
  for (size_t k = 0; k < ps.size(); ++k) {
    Tensor& t = ps[k].second;
    if (k == 1 && s == 1) {
      t.zero_grad();
    } else {
      t.set_grad(test::random_f32(t.sizes(), 1000 + 10 * s + k).to(t.device()));
    }
  }
}

template <typename Opt, typename Options>
void check_resume(const Options& options) {
  NamedTensors ps = make_params(7);
  Opt first(ps, options);
  for (int s = 0; s < 3; ++s) {
    set_grads(ps, s);
    first.step();
  }
  // Save: a deep copy of the state (a checkpoint written to disk) and of the parameters.
  NamedTensors saved;
  for (const auto& [k, t] : first.state_tensors()) saved.emplace_back(k, t.clone());
  REQUIRE(!saved.empty());
  NamedTensors resumed_params = clone_params(ps), fresh_params = clone_params(ps);
  Opt resumed(resumed_params, options), fresh(fresh_params, options);
  resumed.load_state(saved, first.step_count());
  REQUIRE(resumed.step_count() == 3);
  for (int s = 3; s < 6; ++s) {
    set_grads(ps, s);
    set_grads(resumed_params, s);
    set_grads(fresh_params, s);
    first.step();
    resumed.step();
    fresh.step();
  }
  // Without the saved state the run goes elsewhere: the state mattered.
  REQUIRE(ps[0].second.to_vector<float>() != fresh_params[0].second.to_vector<float>());
  for (size_t k = 0; k < ps.size(); ++k)
    REQUIRE(ps[k].second.to_vector<float>() == resumed_params[k].second.to_vector<float>());
  NamedTensors s1 = first.state_tensors(), s2 = resumed.state_tensors();
  REQUIRE(s1.size() == s2.size());
  for (size_t i = 0; i < s1.size(); ++i) {
    REQUIRE(s1[i].first == s2[i].first);
    REQUIRE(s1[i].second.to_vector<double>() == s2[i].second.to_vector<double>());
  }
}

}  // namespace

TEST_CASE("sgd: state_tensors and load_state resume bit for bit") {
  optim::SGDOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.weight_decay = 1e-2;
  o.nesterov = true;
  check_resume<optim::SGD>(o);
}

TEST_CASE("adam: state_tensors and load_state resume bit for bit") {
  optim::AdamOptions o;
  o.lr = 0.01;
  o.weight_decay = 1e-2;
  check_resume<optim::Adam>(o);
}

TEST_CASE("adamw: state_tensors and load_state resume bit for bit") {
  optim::AdamOptions o;
  o.lr = 0.01;
  o.weight_decay = 1e-2;
  check_resume<optim::AdamW>(o);
}

TEST_CASE("adam: state_tensors names and load_state checks") {
  NamedTensors ps = make_params(3);
  optim::AdamOptions o;
  optim::Adam opt(ps, o);
  REQUIRE(opt.state_tensors().empty());  // nothing before the first step
  set_grads(ps, 0);
  opt.step();
  std::vector<std::string> keys;
  for (const auto& [k, t] : opt.state_tensors()) keys.push_back(k);
  REQUIRE(keys == std::vector<std::string>{"exp_avg.layer.weight", "exp_avg_sq.layer.weight", "step.layer.weight",
                                           "exp_avg.layer.bias", "exp_avg_sq.layer.bias", "step.layer.bias"});
  NamedTensors state = opt.state_tensors();

  optim::Adam other(clone_params(ps), o);
  NamedTensors bad = state;
  bad.emplace_back("momentum_buffer.layer.bias", zeros({4}));
  REQUIRE_THROWS_WITH(other.load_state(bad, 1), Catch::Contains("unexpected key 'momentum_buffer.layer.bias'"));
  bad = state;
  bad[0].second = zeros({3, 4});
  REQUIRE_THROWS_WITH(other.load_state(bad, 1), Catch::Contains("has shape"));
  bad = state;
  bad.erase(bad.begin());
  REQUIRE_THROWS_WITH(other.load_state(bad, 1), Catch::Contains("incomplete"));
  bad = state;
  bad.emplace_back("exp_avg.nope", zeros({4}));
  REQUIRE_THROWS_WITH(other.load_state(bad, 1), Catch::Contains("names no parameter"));
  REQUIRE_THROWS_WITH(other.load_state(state, 0), Catch::Contains("step_count"));
  other.load_state(state, 1);
  REQUIRE(other.step_count() == 1);
}

// ---------------------------------------------------------------- LR schedules

TEST_CASE("lr schedule: multistep") {
  optim::MultiStep s(0.1, {3, 6}, 0.1);
  REQUIRE(s.lr_at(0) == Approx(0.1).epsilon(1e-12));
  REQUIRE(s.lr_at(2) == Approx(0.1).epsilon(1e-12));
  REQUIRE(s.lr_at(3) == Approx(0.01).epsilon(1e-12));  // the decay applies at the milestone itself
  REQUIRE(s.lr_at(5) == Approx(0.01).epsilon(1e-12));
  REQUIRE(s.lr_at(6) == Approx(0.001).epsilon(1e-12));
  REQUIRE(s.lr_at(1000) == Approx(0.001).epsilon(1e-12));
  REQUIRE_THROWS_WITH(optim::MultiStep(0.1, {6, 3}), Catch::Contains("increasing"));
  REQUIRE_THROWS_WITH(optim::MultiStep(0.1, {3}, 0.0), Catch::Contains("gamma"));
}

TEST_CASE("lr schedule: cosine") {
  optim::Cosine s(1.0, 100, 0.0);
  REQUIRE(s.lr_at(0) == Approx(1.0).epsilon(1e-12));
  REQUIRE(s.lr_at(25) == Approx((1 + std::sqrt(0.5)) / 2).epsilon(1e-12));  // cos(pi/4)
  REQUIRE(s.lr_at(50) == Approx(0.5).epsilon(1e-12));
  REQUIRE(s.lr_at(100) == Approx(0.0).margin(1e-15));
  REQUIRE(s.lr_at(150) == Approx(0.0).margin(1e-15));
  optim::Cosine m(1.0, 100, 0.1);
  REQUIRE(m.lr_at(50) == Approx(0.55).epsilon(1e-12));
  REQUIRE(m.lr_at(75) == Approx(0.1 + 0.9 * (1 - std::sqrt(0.5)) / 2).epsilon(1e-12));
  REQUIRE(m.lr_at(200) == Approx(0.1).epsilon(1e-12));
  REQUIRE_THROWS_WITH(optim::Cosine(1.0, 0), Catch::Contains("total_iters"));
}

TEST_CASE("lr schedule: linear warmup") {
  optim::LinearWarmup s(optim::MultiStep(0.02, {10}, 0.1), 5, 0.001);
  // f(i) = 0.001 + 0.999 * i / 5 for i < 5, then 1
  REQUIRE(s.lr_at(0) == Approx(0.02 * 0.001).epsilon(1e-12));
  REQUIRE(s.lr_at(1) == Approx(0.02 * 0.2008).epsilon(1e-12));
  REQUIRE(s.lr_at(4) == Approx(0.02 * 0.8002).epsilon(1e-12));
  REQUIRE(s.lr_at(5) == Approx(0.02).epsilon(1e-12));
  REQUIRE(s.lr_at(10) == Approx(0.002).epsilon(1e-12));
  optim::LinearWarmup c(optim::Cosine(1.0, 100), 10, 0.5);
  REQUIRE(c.lr_at(5) == Approx(0.75 * (1 + std::cos(std::acos(-1.0) * 0.05)) / 2).epsilon(1e-12));
  optim::LinearWarmup none(optim::ConstantLr(0.3), 0, 0.001);
  REQUIRE(none.lr_at(0) == 0.3);
  REQUIRE_THROWS_WITH(optim::LinearWarmup(optim::ConstantLr(0.3), 5, 0.0), Catch::Contains("warmup_factor"));
  REQUIRE_THROWS_WITH(s.lr_at(-1), Catch::Contains(">= 0"));
}

// ---------------------------------------------------------------- CUDA vs CPU

namespace {

// Five parameters (1 element, small, > 100k elements, a 1-D "bias" and a 3-D tensor),
// three steps with fixed random grads; "c.bias" has no grad at the second step. The
// parameters and every state tensor must agree within 1e-6 + 1e-5 |cpu|.
template <typename Opt, typename Options>
void check_cuda_matches_cpu(const Options& options) {
  const std::vector<std::pair<std::string, Shape>> shapes = {
      {"a.scale", {1}}, {"b.weight", {3, 5}}, {"big.weight", {300, 400}}, {"c.bias", {64}}, {"d.weight", {17, 3, 3}}};
  NamedTensors cpu_params, gpu_params;
  for (size_t k = 0; k < shapes.size(); ++k) {
    Tensor c = test::random_f32(shapes[k].second, 100 + k);
    Tensor g = c.cuda();
    c.set_requires_grad(true);
    g.set_requires_grad(true);
    cpu_params.emplace_back(shapes[k].first, c);
    gpu_params.emplace_back(shapes[k].first, g);
  }
  Opt cpu_opt(cpu_params, options), gpu_opt(gpu_params, options);
  for (int s = 0; s < 3; ++s) {
    for (size_t k = 0; k < shapes.size(); ++k) {
      if (k == 3 && s == 1) {
        cpu_params[k].second.zero_grad();
        gpu_params[k].second.zero_grad();
        continue;
      }
      Tensor g = test::random_f32(shapes[k].second, 500 + 10 * s + k);
      cpu_params[k].second.set_grad(g);
      gpu_params[k].second.set_grad(g.cuda());
    }
    cpu_opt.step();
    gpu_opt.step();
  }
  for (size_t k = 0; k < shapes.size(); ++k) {
    INFO(shapes[k].first);
    REQUIRE_CLOSE(gpu_params[k].second.cpu(), cpu_params[k].second, test::kElementwiseAtol, test::kElementwiseRtol);
  }
  NamedTensors sc = cpu_opt.state_tensors(), sg = gpu_opt.state_tensors();
  REQUIRE(sc.size() == sg.size());
  for (size_t i = 0; i < sc.size(); ++i) {
    INFO(sc[i].first);
    REQUIRE(sc[i].first == sg[i].first);
    REQUIRE_CLOSE(sg[i].second.cpu(), sc[i].second, test::kElementwiseAtol, test::kElementwiseRtol);
  }
}

}  // namespace

TEST_CASE("sgd: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  optim::SGDOptions o;
  o.lr = 0.05;
  o.momentum = 0.9;
  o.dampening = 0.1;
  o.weight_decay = 1e-2;
  o.no_decay_bias_and_norm = true;
  check_cuda_matches_cpu<optim::SGD>(o);
  o.dampening = 0;
  o.nesterov = true;
  check_cuda_matches_cpu<optim::SGD>(o);
  check_cuda_matches_cpu<optim::SGD>(optim::SGDOptions{});  // plain, no momentum
}

TEST_CASE("adam: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  optim::AdamOptions o;
  o.lr = 0.01;
  o.weight_decay = 1e-2;
  o.no_decay_bias_and_norm = true;
  check_cuda_matches_cpu<optim::Adam>(o);
}

TEST_CASE("adamw: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  optim::AdamOptions o;
  o.lr = 0.01;
  o.weight_decay = 0.1;
  check_cuda_matches_cpu<optim::AdamW>(o);
}

TEST_CASE("sgd: cuda descriptors are uploaded once while pointers stay", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  NamedTensors ps;
  ps.emplace_back("w", test::random_f32({1000}, 1).cuda().set_requires_grad(true));
  ps.emplace_back("b", test::random_f32({10}, 2).cuda().set_requires_grad(true));
  for (auto& [n, t] : ps) t.set_grad(zeros(t.sizes(), TensorOptions().device(Device::cuda())));
  optim::SGDOptions o;
  o.momentum = 0.9;
  optim::SGD opt(ps, o);
  for (int s = 0; s < 3; ++s) {
    NoGradGuard g;
    for (auto& [n, t] : ps) t.grad().copy_(test::random_f32(t.sizes(), 50 + s));  // same grad storage
    opt.step();
  }
  REQUIRE(opt.descriptor_uploads() == 1);
  ps[0].second.set_grad(zeros({1000}, TensorOptions().device(Device::cuda())));  // new grad tensor
  ps[1].second.zero_grad();  // and one parameter without grad: a different list
  opt.step();
  REQUIRE(opt.descriptor_uploads() == 2);
}
