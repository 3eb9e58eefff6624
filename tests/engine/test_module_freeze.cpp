// Module::requires_grad_ (parameter freezing, as torch's module.requires_grad_(False)):
// frozen parameters stay parameters, get no gradient, are never updated by the optimizers
// (no state either), and are left out of named_trainable_parameters().
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/nn/layers.h"
#include "engine/optim.h"
#include "test_helpers.h"

using namespace eng;

namespace {
struct TwoConv : nn::Module {
  std::shared_ptr<nn::Conv2d> a, b;
  TwoConv() : Module("TwoConv") {
    a = register_module("a", std::make_shared<nn::Conv2d>(2, 3, 3, 1, 1));
    b = register_module("b", std::make_shared<nn::Conv2d>(3, 2, 1, 1, 0));
  }
  Tensor forward(const Tensor& x) override { return b->forward(relu(a->forward(x))); }
};
}  // namespace

TEST_CASE("module freeze: requires_grad_ is recursive and named_trainable_parameters follows it") {
  TwoConv m;
  CHECK(m.named_trainable_parameters().size() == 4);
  m.a->requires_grad_(false);
  CHECK_FALSE(m.a->weight.requires_grad());
  CHECK_FALSE(m.a->bias.requires_grad());
  CHECK(m.b->weight.requires_grad());
  std::vector<std::string> names;
  for (auto& [n, t] : m.named_trainable_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"b.weight", "b.bias"});
  // Still parameters: counted, saved.
  CHECK(m.named_parameters().size() == 4);
  CHECK(m.num_parameters() == 2 * 3 * 9 + 3 + 3 * 2 + 2);
  CHECK(m.state_dict().size() == 4);
  m.requires_grad_(true);
  CHECK(m.named_trainable_parameters().size() == 4);
}

TEST_CASE("module freeze: backward gives no gradient to frozen parameters, SGD and AdamW leave them alone") {
  for (int which = 0; which < 2; ++which) {
    manual_seed(3);
    TwoConv m;
    m.a->requires_grad_(false);
    const std::vector<float> a_before = m.a->weight.to_vector<float>();
    const std::vector<float> b_before = m.b->weight.to_vector<float>();
    Tensor x = randn({2, 2, 5, 5});
    std::unique_ptr<optim::Optimizer> opt;
    // Given every parameter (as a user might): the frozen ones must still stay put.
    if (which == 0) {
      optim::SGDOptions o;
      o.lr = 0.1;
      o.momentum = 0.9;
      o.weight_decay = 0.01;  // decay would move a frozen weight if it were visited
      opt = std::make_unique<optim::SGD>(m.named_parameters(), o);
    } else {
      opt = std::make_unique<optim::AdamW>(m.named_parameters());
    }
    for (int step = 0; step < 2; ++step) {
      opt->zero_grad();
      sum(square(m.forward(x))).backward();
      CHECK_FALSE(m.a->weight.grad().defined());
      CHECK(m.b->weight.grad().defined());
      opt->step();
    }
    CHECK(m.a->weight.to_vector<float>() == a_before);
    CHECK(m.b->weight.to_vector<float>() != b_before);
    // No optimizer state for the frozen tensors.
    const nn::NamedTensors state = opt->state_tensors();
    CHECK_FALSE(state.empty());
    for (auto& [name, t] : state) CHECK(name.find(".a.") == std::string::npos);
  }
}
