// nn::Module structure: names, counts, params vs buffers, state_dict load, modes, placement.
// (Layer forward computations are tested in test_layers_forward.cpp.)
#include "test_helpers.h"

#include <cmath>

#include "engine/nn/layers.h"
#include "engine/nn/module.h"

using namespace eng;
using namespace eng::nn;

namespace {

std::vector<std::string> names_of(const NamedTensors& nt) {
  std::vector<std::string> out;
  for (const auto& kv : nt) out.push_back(kv.first);
  return out;
}

// A small model with a nested Sequential, like torchvision's `features` blocks.
struct TinyNet : Module {
  std::shared_ptr<Sequential> features;
  std::shared_ptr<Linear> head;
  TinyNet() : Module("TinyNet") {
    features = register_module("features", std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
                                               std::make_shared<Conv2d>(3, 8, 3, 1, 1),        // 0
                                               std::make_shared<BatchNorm2d>(8),               // 1
                                               std::make_shared<ReLU>(),                       // 2
                                               std::make_shared<MaxPool2d>(2),                 // 3
                                               std::make_shared<Conv2d>(8, 16, 3, 1, 1, 1, false)  // 4
                                           }));
    head = register_module("head", std::make_shared<Linear>(16, 10));
  }
};

// Sequential(Conv, ReLU, Conv): the torchvision-style key layout.
std::shared_ptr<Sequential> conv_relu_conv() {
  return std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      std::make_shared<Conv2d>(2, 4, 3), std::make_shared<ReLU>(), std::make_shared<Conv2d>(4, 2, 1)});
}

}  // namespace

TEST_CASE("module: Sequential names count parameterless layers") {
  auto seq = conv_relu_conv();
  REQUIRE(names_of(seq->named_parameters()) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  REQUIRE(seq->named_parameters()[2].second.sizes() == Shape{2, 4, 1, 1});
  REQUIRE(seq->size() == 3);
  REQUIRE((*seq)[1]->type_name() == "ReLU");
  REQUIRE_THROWS_WITH((*seq)[3], Catch::Contains("index 3 out of range"));

  ModuleList list{std::make_shared<ReLU>(), std::make_shared<Linear>(3, 2, false)};
  REQUIRE(names_of(list.named_parameters()) == std::vector<std::string>{"1.weight"});
  REQUIRE_THROWS_WITH(list.forward(zeros({1, 3})), Catch::Contains("forward not implemented for ModuleList"));
}

TEST_CASE("module: nested modules give dotted names in PyTorch order") {
  TinyNet net;
  REQUIRE(names_of(net.named_parameters()) ==
          std::vector<std::string>{"features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
                                   "features.4.weight", "head.weight", "head.bias"});
  REQUIRE(names_of(net.named_buffers()) ==
          std::vector<std::string>{"features.1.running_mean", "features.1.running_var",
                                   "features.1.num_batches_tracked"});
  // state_dict: per module, its parameters then its buffers, modules in pre-order.
  REQUIRE(names_of(net.state_dict()) ==
          std::vector<std::string>{"features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
                                   "features.1.running_mean", "features.1.running_var",
                                   "features.1.num_batches_tracked", "features.4.weight", "head.weight",
                                   "head.bias"});
  auto mods = net.named_modules();
  REQUIRE(mods.size() == 8);  // net, features, its 5 layers, head
  REQUIRE(mods[0].first.empty());
  REQUIRE(mods[3].first == "features.1");
  REQUIRE(mods[3].second->type_name() == "BatchNorm2d");
  REQUIRE(net.find("features.4.weight").same(std::static_pointer_cast<Conv2d>((*net.features)[4])->weight));
  REQUIRE_THROWS_WITH(net.find("features.4.bias"), Catch::Contains("'features.4.bias'"));
}

TEST_CASE("module: parameter count of a small network") {
  TinyNet net;
  // conv 3->8 3x3 + bias: 8*3*3*3 + 8 = 224
  // batchnorm 8:          weight 8 + bias 8 = 16      (running stats are buffers)
  // conv 8->16 3x3 no bias: 16*8*3*3 = 1152
  // linear 16->10:        16*10 + 10 = 170
  // total:                224 + 16 + 1152 + 170 = 1562
  REQUIRE(net.num_parameters() == 1562);
  int64_t sum = 0;
  for (const Tensor& p : net.parameters()) {
    REQUIRE(p.requires_grad());
    REQUIRE(p.is_leaf());
    sum += p.numel();
  }
  REQUIRE(sum == 1562);
  REQUIRE(net.buffers().size() == 3);
}

TEST_CASE("module: BatchNorm2d and FrozenBatchNorm2d parameters vs buffers") {
  BatchNorm2d bn(5);
  REQUIRE(names_of(bn.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  REQUIRE(names_of(bn.named_buffers()) ==
          std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"});
  REQUIRE(bn.weight.to_vector<float>() == std::vector<float>(5, 1.0f));
  REQUIRE(bn.bias.to_vector<float>() == std::vector<float>(5, 0.0f));
  REQUIRE(bn.running_mean.to_vector<float>() == std::vector<float>(5, 0.0f));
  REQUIRE(bn.running_var.to_vector<float>() == std::vector<float>(5, 1.0f));
  REQUIRE(bn.num_batches_tracked.dtype() == DType::i64);
  REQUIRE(bn.num_batches_tracked.dim() == 0);
  REQUIRE(bn.num_batches_tracked.item() == 0.0);
  for (const Tensor& b : bn.buffers()) REQUIRE(!b.requires_grad());
  REQUIRE(bn.num_parameters() == 10);

  FrozenBatchNorm2d fbn(4);
  REQUIRE(fbn.named_parameters().empty());
  REQUIRE(fbn.num_parameters() == 0);
  REQUIRE(names_of(fbn.named_buffers()) ==
          std::vector<std::string>{"weight", "bias", "running_mean", "running_var"});
  REQUIRE(names_of(fbn.state_dict()) == names_of(fbn.named_buffers()));
  REQUIRE(fbn.weight.to_vector<float>() == std::vector<float>(4, 1.0f));
  REQUIRE(fbn.running_var.to_vector<float>() == std::vector<float>(4, 1.0f));
  for (const Tensor& b : fbn.buffers()) REQUIRE(!b.requires_grad());
}

TEST_CASE("module: default initialisation follows PyTorch and is seeded") {
  manual_seed(11);
  Conv2d a(64, 32, 3);  // fan_in 576 -> bound 1/24
  manual_seed(11);
  Conv2d b(64, 32, 3);
  manual_seed(12);
  Conv2d c(64, 32, 3);
  auto wa = a.weight.to_vector<double>();
  REQUIRE(wa == b.weight.to_vector<double>());
  REQUIRE(a.bias.to_vector<double>() == b.bias.to_vector<double>());
  REQUIRE(wa != c.weight.to_vector<double>());

  const double bound = 1.0 / 24.0;
  double lo = 1, hi = -1, sq = 0;
  for (double v : wa) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    sq += v * v;
  }
  REQUIRE(lo >= -bound);
  REQUIRE(hi <= bound);
  REQUIRE(lo < -0.95 * bound);  // the whole range is used
  REQUIRE(hi > 0.95 * bound);
  // U(-b, b) has mean square b^2 / 3 (18432 samples: within 3%).
  REQUIRE(std::fabs(sq / wa.size() / (bound * bound / 3) - 1.0) < 0.03);
  for (double v : a.bias.to_vector<double>()) REQUIRE(std::fabs(v) <= bound);

  Linear l(100, 7);  // bound 0.1
  for (double v : l.weight.to_vector<double>()) REQUIRE(std::fabs(v) <= 0.1);
  for (double v : l.bias.to_vector<double>()) REQUIRE(std::fabs(v) <= 0.1);
  REQUIRE(l.weight.sizes() == Shape{7, 100});
  REQUIRE(Linear(3, 2, false).named_parameters().size() == 1);
  REQUIRE(!Conv2d(3, 2, 1, 1, 0, 1, false).bias.defined());
}

TEST_CASE("module: state_dict round trip between independently initialised modules") {
  manual_seed(1);
  TinyNet a;
  manual_seed(2);
  TinyNet b;
  REQUIRE(a.find("head.weight").to_vector<float>() != b.find("head.weight").to_vector<float>());
  {
    NoGradGuard g;
    a.find("features.1.running_mean").fill_(0.25);
    a.find("features.1.num_batches_tracked").fill_(7);
  }
  LoadReport r = b.load_state_dict(a.state_dict());
  REQUIRE(r.complete());
  REQUIRE(r.loaded.size() == 10);
  auto sa = a.state_dict(), sb = b.state_dict();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    INFO(sa[i].first);
    REQUIRE(sa[i].first == sb[i].first);
    REQUIRE(sa[i].second.dtype() == sb[i].second.dtype());
    REQUIRE(sa[i].second.to_vector<double>() == sb[i].second.to_vector<double>());
    REQUIRE(sa[i].second.storage() != sb[i].second.storage());  // copied, not shared
  }
  REQUIRE(b.find("features.1.num_batches_tracked").item() == 7.0);
  // b's parameters are still its own leaves that need grad.
  for (const Tensor& p : b.parameters()) REQUIRE(p.requires_grad());

  // Values are cast to the module's dtype (here f64 -> f32) through the map overload.
  std::map<std::string, Tensor> as_f64;
  for (auto& kv : a.state_dict()) as_f64[kv.first] = kv.second.to(DType::f64);
  as_f64["head.bias"] = full({10}, 0.5, DType::f64);
  b.load_state_dict(as_f64);
  REQUIRE(b.find("head.bias").dtype() == DType::f32);
  REQUIRE(b.find("head.bias").to_vector<float>() == std::vector<float>(10, 0.5f));
}

TEST_CASE("module: strict load names every missing, unexpected and mis-shaped key") {
  auto seq = conv_relu_conv();  // 0.weight [4,2,3,3], 0.bias [4], 2.weight [2,4,1,1], 2.bias [2]
  auto before = seq->find("2.bias").to_vector<float>();
  NamedTensors given = {
      {"0.weight", zeros({4, 2, 3, 3})},
      {"2.weight", zeros({2, 4, 3, 3})},  // wrong shape
      {"2.bias", full({2}, 9.0)},
      {"3.weight", zeros({1})},           // unexpected
      {"extra", zeros({1})},              // unexpected
  };
  REQUIRE_THROWS_WITH(seq->load_state_dict(given), Catch::Contains("missing keys: 0.bias") &&
                                                       Catch::Contains("unexpected keys: 3.weight, extra") &&
                                                       Catch::Contains("2.weight (module [2, 4, 1, 1], given [2, 4, 3, 3])"));
  // Nothing was copied by the failed load.
  REQUIRE(seq->find("2.bias").to_vector<float>() == before);

  // Shape mismatches throw in non-strict mode too, without listing missing/unexpected keys.
  try {
    seq->load_state_dict(given, false);
    FAIL("expected a shape mismatch error");
  } catch (const Error& e) {
    std::string msg = e.what();
    REQUIRE(msg.find("shape mismatches: 2.weight") != std::string::npos);
    REQUIRE(msg.find("missing") == std::string::npos);
  }

  NamedTensors twice = {{"0.bias", zeros({4})}, {"0.bias", zeros({4})}};
  REQUIRE_THROWS_WITH(seq->load_state_dict(twice, false), Catch::Contains("'0.bias' is given twice"));
  NamedTensors undefined_value = {{"0.bias", Tensor()}};
  REQUIRE_THROWS_WITH(seq->load_state_dict(undefined_value, false), Catch::Contains("'0.bias' is undefined"));
}

TEST_CASE("module: non-strict load reports what it did") {
  auto seq = conv_relu_conv();
  NamedTensors given = {{"2.bias", full({2}, 3.0)}, {"0.bias", full({4}, -1.0)}, {"head.weight", zeros({3})}};
  LoadReport r = seq->load_state_dict(given, false);
  REQUIRE(r.loaded == std::vector<std::string>{"0.bias", "2.bias"});  // module order
  REQUIRE(r.missing == std::vector<std::string>{"0.weight", "2.weight"});
  REQUIRE(r.unexpected == std::vector<std::string>{"head.weight"});
  REQUIRE(r.mismatched.empty());
  REQUIRE(!r.complete());
  REQUIRE(seq->find("2.bias").to_vector<float>() == std::vector<float>{3.0f, 3.0f});
  REQUIRE(seq->find("0.bias").to_vector<float>() == std::vector<float>(4, -1.0f));
}

TEST_CASE("module: train and eval propagate to every child") {
  TinyNet net;
  for (auto& m : net.named_modules()) REQUIRE(m.second->is_training());
  net.eval();
  for (auto& m : net.named_modules()) {
    INFO(m.first);
    REQUIRE(!m.second->is_training());
  }
  net.features->train();
  REQUIRE(!net.is_training());
  REQUIRE(net.features->is_training());
  REQUIRE((*net.features)[1]->is_training());
  REQUIRE(!net.head->is_training());
  net.train();
  for (auto& m : net.named_modules()) REQUIRE(m.second->is_training());
}

TEST_CASE("module: registration errors and the default forward") {
  struct Custom : Module {
    Custom() : Module("Custom") {
      register_parameter("w", zeros({2}));
      register_buffer("b", zeros({2}));
    }
    void add_param(const std::string& n, Tensor t) { register_parameter(n, t); }
    void add_buffer(const std::string& n, Tensor t) { register_buffer(n, t); }
  };
  Custom m;
  REQUIRE(m.named_parameters()[0].second.requires_grad());
  REQUIRE_THROWS_WITH(m.add_param("w", zeros({1})), Catch::Contains("Custom: name 'w' is already registered"));
  REQUIRE_THROWS_WITH(m.add_buffer("w", zeros({1})), Catch::Contains("'w' is already registered"));
  REQUIRE_THROWS_WITH(m.register_module("b", std::make_shared<ReLU>()), Catch::Contains("'b' is already registered"));
  REQUIRE_THROWS_WITH(m.add_param("a.b", zeros({1})), Catch::Contains("must not contain '.'"));
  REQUIRE_THROWS_WITH(m.add_param("", zeros({1})), Catch::Contains("empty name"));
  REQUIRE_THROWS_WITH(m.add_param("i", zeros({1}, DType::i64)), Catch::Contains("must be a float tensor"));
  REQUIRE_THROWS_WITH(m.forward(zeros({1})), Catch::Contains("forward not implemented for Custom"));
  // A buffer given with requires_grad is stored detached.
  m.add_buffer("g", ones({1}, TensorOptions().requires_grad()));
  REQUIRE(!m.find("g").requires_grad());
}

TEST_CASE("module: zero_grad drops gradients, to(cpu) keeps handles") {
  Linear l(3, 2);
  Tensor w = l.parameters()[0];
  w.set_grad(ones({2, 3}));
  l.bias.set_grad(ones({2}));
  l.zero_grad();
  REQUIRE(!w.grad().defined());
  REQUIRE(!l.bias.grad().defined());
  auto storage = w.storage();
  l.to(Device::cpu());  // already there: nothing moves
  REQUIRE(w.storage() == storage);
  REQUIRE(l.parameters()[0].same(w));
}

TEST_CASE("module: to(cuda) moves parameters, buffers and grads in place", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  manual_seed(3);
  TinyNet net;
  Tensor w = net.find("features.0.weight");
  auto values = w.to_vector<float>();
  w.set_grad(full(w.sizes(), 2.0));
  net.to(Device::cuda());
  for (auto& kv : net.state_dict()) {
    INFO(kv.first);
    REQUIRE(kv.second.is_cuda());
  }
  REQUIRE(w.is_cuda());  // the old handle followed the move
  REQUIRE(w.requires_grad());
  REQUIRE(w.to_vector<float>() == values);
  REQUIRE(w.grad().is_cuda());
  REQUIRE(w.grad().to_vector<float>() == std::vector<float>(values.size(), 2.0f));
  // Loading from CPU tensors keeps the module on the GPU.
  NamedTensors cpu_bias = {{"head.bias", full({10}, 4.0)}};
  net.load_state_dict(cpu_bias, false);
  REQUIRE(net.head->bias.is_cuda());
  REQUIRE(net.head->bias.to_vector<float>() == std::vector<float>(10, 4.0f));
  net.to(Device::cpu());
  REQUIRE(!w.is_cuda());
  REQUIRE(w.to_vector<float>() == values);
}
