// Post-accumulate-grad hooks on leaves (engine/autograd.h): when they run, what they see,
// removal, and refusals.
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/error.h"
#include "test_helpers.h"

using namespace eng;

TEST_CASE("post-accumulate-grad hook runs once, after the leaf's gradient is written", "[dist][autograd]") {
  Tensor w = from_vector<double>({1, 2, 3}, {3}).set_requires_grad(true);
  Tensor x = from_vector<double>({4, 5, 6}, {3});
  std::vector<std::vector<double>> seen;
  HookHandle h = register_post_accumulate_grad_hook(w, [&](const Tensor& leaf) {
    REQUIRE_FALSE(grad_enabled());
    seen.push_back(leaf.grad().to_vector<double>());
  });
  REQUIRE(h.active());
  sum(mul(w, x)).backward();
  REQUIRE(seen.size() == 1);
  REQUIRE(seen[0] == std::vector<double>{4, 5, 6});
  // A second backward accumulates, and the hook sees the accumulated value.
  sum(mul(w, x)).backward();
  REQUIRE(seen.size() == 2);
  REQUIRE(seen[1] == std::vector<double>{8, 10, 12});
}

TEST_CASE("a leaf used by several ops: the hook waits for the last accumulation", "[dist][autograd]") {
  // Like a head shared by pyramid levels: w is used three times, so backward has three
  // AccumulateGrad nodes for it; the hook runs once, with the full gradient.
  Tensor w = from_vector<double>({1, 2}, {2}).set_requires_grad(true);
  Tensor a = from_vector<double>({1, 1}, {2}), b = from_vector<double>({2, 3}, {2}), c = from_vector<double>({5, 7}, {2});
  int calls = 0;
  std::vector<double> at_hook;
  register_post_accumulate_grad_hook(w, [&](const Tensor& leaf) {
    ++calls;
    at_hook = leaf.grad().to_vector<double>();
  });
  Tensor loss = add(add(sum(mul(w, a)), sum(mul(w, b))), sum(square(mul(w, c))));
  loss.backward();
  REQUIRE(calls == 1);
  // d/dw: a + b + 2 c^2 w
  REQUIRE(at_hook == std::vector<double>{1 + 2 + 2 * 25 * 1, 1 + 3 + 2 * 49 * 2});
  REQUIRE(w.grad().to_vector<double>() == at_hook);
}

TEST_CASE("hooks run in registration order, per leaf, as each leaf becomes ready", "[dist][autograd]") {
  // y = relu(w1 * x) . w2 + b: b's gradient is complete before w1's.
  Tensor w1 = full({2}, 2.0, DType::f64).set_requires_grad(true);
  Tensor w2 = full({2}, 3.0, DType::f64).set_requires_grad(true);
  Tensor b = full({1}, 0.5, DType::f64).set_requires_grad(true);
  Tensor x = full({1, 2}, 1.0, DType::f64);
  std::vector<std::string> log;
  register_post_accumulate_grad_hook(w1, [&](const Tensor&) { log.push_back("w1.a"); });
  register_post_accumulate_grad_hook(w1, [&](const Tensor&) { log.push_back("w1.b"); });
  register_post_accumulate_grad_hook(b, [&](const Tensor& leaf) {
    log.push_back("b");
    REQUIRE_FALSE(w1.grad().defined());  // not reached yet
    REQUIRE(leaf.grad().to_vector<double>() == std::vector<double>{1.0});
  });
  sum(linear(relu(mul(w1, x)), w2.reshape({1, 2}), b)).backward();
  REQUIRE(log == std::vector<std::string>{"b", "w1.a", "w1.b"});
}

TEST_CASE("hook handles remove their hook, a hook may remove itself", "[dist][autograd]") {
  Tensor w = full({2}, 1.0, DType::f64).set_requires_grad(true);
  int a = 0, b = 0;
  HookHandle ha = register_post_accumulate_grad_hook(w, [&](const Tensor&) { ++a; });
  HookHandle hb;
  hb = register_post_accumulate_grad_hook(w, [&](const Tensor&) {
    ++b;
    hb.remove();  // one-shot
  });
  sum(square(w)).backward();
  sum(square(w)).backward();
  REQUIRE(a == 2);
  REQUIRE(b == 1);
  REQUIRE_FALSE(hb.active());
  ha.remove();
  ha.remove();  // twice: a no-op
  REQUIRE_FALSE(ha.active());
  sum(square(w)).backward();
  REQUIRE(a == 2);
  // A handle outliving its leaf is inert.
  HookHandle orphan;
  {
    Tensor t = full({1}, 1.0).set_requires_grad(true);
    orphan = register_post_accumulate_grad_hook(t, [](const Tensor&) {});
    REQUIRE(orphan.active());
  }
  REQUIRE_FALSE(orphan.active());
  orphan.remove();
}

TEST_CASE("hooks are on the tensor itself: every handle of it shares them, a leaf root fires too", "[dist][autograd]") {
  Tensor w = full({3}, 1.0, DType::f64).set_requires_grad(true);
  Tensor alias = w;  // same TensorImpl
  int calls = 0;
  register_post_accumulate_grad_hook(alias, [&](const Tensor& leaf) {
    ++calls;
    REQUIRE(leaf.same(w));
  });
  w.backward(full({3}, 2.0, DType::f64));
  REQUIRE(calls == 1);
  REQUIRE(w.grad().to_vector<double>() == std::vector<double>{2, 2, 2});
  // No hook: backward as before (nothing tracked).
  Tensor v = full({2}, 1.0, DType::f64).set_requires_grad(true);
  sum(v).backward();
  REQUIRE(v.grad().to_vector<double>() == std::vector<double>{1, 1});
}

TEST_CASE("post-accumulate-grad hooks are refused on non-leaves and tensors without grad", "[dist][autograd]") {
  Tensor w = full({2}, 1.0).set_requires_grad(true);
  Tensor y = mul_scalar(w, 2.0);
  REQUIRE_THROWS_WITH(register_post_accumulate_grad_hook(y, [](const Tensor&) {}), Catch::Contains("must be a leaf"));
  REQUIRE_THROWS_WITH(register_post_accumulate_grad_hook(full({2}, 1.0), [](const Tensor&) {}),
                      Catch::Contains("does not require grad"));
  REQUIRE_THROWS_WITH(register_post_accumulate_grad_hook(Tensor(), [](const Tensor&) {}), Catch::Contains("undefined"));
  REQUIRE_THROWS_WITH(register_post_accumulate_grad_hook(w, nullptr), Catch::Contains("empty hook"));
}
