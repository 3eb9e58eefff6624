// The optimizers' split step for CUDA graphs (engine/optim.h): prepare_step() + launch_step()
// is step() bit for bit on the CPU and on CUDA, zero_grad(false) keeps the gradient tensors,
// and an update captured in a CUDA graph reads lr and the step count from device memory at
// each replay (a new lr between two replays changes the update; AdamW's bias correction
// follows the step count), with nothing read back and nothing allocated per replay.
#include <functional>
#include <memory>

#include "engine/counters.h"
#include "engine/cuda_context.h"
#include "engine/cuda_graph.h"
#include "engine/optim.h"
#include "test_helpers.h"

using namespace eng;
using optim::NamedTensors;

namespace {

NamedTensors make_params(Device dev) {
  NamedTensors ps;
  ps.emplace_back("w", test::random_f32({3000}, 11).to(dev).set_requires_grad(true));
  ps.emplace_back("conv.weight", test::random_f32({4, 3, 3, 3}, 12).to(dev).set_requires_grad(true));
  ps.emplace_back("conv.bias", test::random_f32({4}, 13).to(dev).set_requires_grad(true));
  return ps;
}

// Gives every parameter the gradient of step s (written in place when one exists).
void set_grads(NamedTensors& ps, int s) {
  NoGradGuard g;
  for (size_t k = 0; k < ps.size(); ++k) {
    Tensor& p = ps[k].second;
    const Tensor v = test::random_f32(p.sizes(), 100 + 7 * s + static_cast<int>(k)).to(p.device());
    if (p.grad().defined()) {
      p.grad().copy_(v);
    } else {
      p.set_grad(v.clone());
    }
  }
}

std::unique_ptr<optim::Optimizer> make_opt(const std::string& kind, const NamedTensors& ps) {
  if (kind == "sgd") {
    optim::SGDOptions o;
    o.lr = 0.05;
    o.momentum = 0.9;
    o.weight_decay = 1e-2;
    o.no_decay_bias_and_norm = true;
    return std::make_unique<optim::SGD>(ps, o);
  }
  optim::AdamOptions o;
  o.lr = 0.01;
  o.weight_decay = 0.1;
  return std::make_unique<optim::AdamW>(ps, o);
}

double lr_of(int s) { return 0.05 / (1 + s); }  // a schedule that changes every step

// Four steps with a changing lr: step() or prepare_step() + launch_step().
std::vector<Tensor> run_steps(const std::string& kind, Device dev, bool split) {
  NamedTensors ps = make_params(dev);
  auto opt = make_opt(kind, ps);
  for (int s = 0; s < 4; ++s) {
    set_grads(ps, s);
    opt->set_lr(lr_of(s));
    if (split) {
      opt->prepare_step();
      opt->launch_step();
    } else {
      opt->step();
    }
  }
  std::vector<Tensor> out;
  for (auto& [n, p] : ps) out.push_back(p.detach().cpu());
  for (auto& [n, t] : opt->state_tensors()) out.push_back(t.cpu());
  return out;
}

void require_identical(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("tensor " << i);
    REQUIRE(a[i].to_vector<double>() == b[i].to_vector<double>());
  }
}

}  // namespace

TEST_CASE("optim split step: prepare_step + launch_step is step() bit for bit on the cpu") {
  for (const std::string kind : {"sgd", "adamw"}) {
    INFO(kind);
    require_identical(run_steps(kind, Device::cpu(), true), run_steps(kind, Device::cpu(), false));
  }
}

TEST_CASE("optim split step: zero_grad(false) zeroes the grads in place, zero_grad() drops them") {
  NamedTensors ps = make_params(Device::cpu());
  auto opt = make_opt("sgd", ps);
  set_grads(ps, 0);
  ps[2].second.zero_grad();  // one parameter without a grad stays without one
  const void* addr = ps[0].second.grad().raw_data();
  opt->zero_grad(false);
  REQUIRE(ps[0].second.grad().defined());
  CHECK(ps[0].second.grad().raw_data() == addr);
  for (double v : ps[0].second.grad().to_vector<double>()) REQUIRE(v == 0.0);
  CHECK_FALSE(ps[2].second.grad().defined());
  opt->zero_grad();
  CHECK_FALSE(ps[0].second.grad().defined());
}

TEST_CASE("optim split step: launch_step without prepare_step is refused") {
  NamedTensors ps = make_params(Device::cpu());
  auto opt = make_opt("sgd", ps);
  set_grads(ps, 0);
  REQUIRE_THROWS_WITH(opt->launch_step(), Catch::Contains("launch_step() without a prepare_step()"));
  opt->prepare_step();
  opt->launch_step();
  REQUIRE_THROWS_WITH(opt->launch_step(), Catch::Contains("without a prepare_step()"));
}

TEST_CASE("optim split step: cuda matches the eager cuda step bit for bit", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (const std::string kind : {"sgd", "adamw"}) {
    INFO(kind);
    require_identical(run_steps(kind, Device::cuda(), true), run_steps(kind, Device::cuda(), false));
  }
}

namespace {

// Steps 1..4 with lr_of(s) and the gradients of step s, where steps 2..4 replay a graph
// captured at step 2 (step 1 is the eager warm-up, as in ssd_train --cuda-graph). The
// gradients are written into the same tensors before each replay.
std::vector<Tensor> run_graphed(const std::string& kind, eng::cuda::Counters* replay_cost) {
  const Device dev = Device::cuda();
  NamedTensors ps = make_params(dev);
  auto opt = make_opt(kind, ps);
  set_grads(ps, 0);
  opt->set_lr(lr_of(0));
  opt->step();  // warm-up, eager: creates the state and uploads the descriptors
  eng::cuda::Graph g;
  for (int s = 1; s < 4; ++s) {
    set_grads(ps, s);
    opt->set_lr(lr_of(s));
    eng::cuda::synchronize();
    const eng::cuda::Counters before = eng::cuda::counters();
    opt->prepare_step();  // outside the capture: writes lr and step to the device
    if (!g.captured()) g.capture([&] { opt->launch_step(); });
    g.replay();
    if (s == 3 && replay_cost) *replay_cost = eng::cuda::counters() - before;
  }
  REQUIRE(opt->step_count() == 4);
  std::vector<Tensor> out;
  for (auto& [n, p] : ps) out.push_back(p.detach().cpu());
  for (auto& [n, t] : opt->state_tensors()) out.push_back(t.cpu());
  return out;
}

}  // namespace

TEST_CASE("optim split step: a captured update reads lr and step at each replay", "[cuda][cuda_graph]") {
  REQUIRE_CUDA_OR_SKIP();
  for (const std::string kind : {"sgd", "adamw"}) {
    INFO(kind);
    eng::cuda::Counters cost;
    const std::vector<Tensor> graphed = run_graphed(kind, &cost);
    // The same schedule, every step eager: identical (the replay runs the same kernel on the
    // same values, read from device memory instead of launch arguments).
    require_identical(graphed, run_steps(kind, Device::cuda(), false));
    // A replay: one 16-byte upload of lr and step, no host sync, no driver allocation.
    CHECK(cost.host_syncs == 0);
    CHECK(cost.driver_allocs() == 0);
    CHECK(cost.bytes_h2d == sizeof(kern::OptimScalars));
  }
}

TEST_CASE("optim split step: changing the lr between two replays changes the update", "[cuda][cuda_graph]") {
  REQUIRE_CUDA_OR_SKIP();
  // Plain SGD: p -= lr * g, so each replay's move is lr * g with that replay's lr.
  NamedTensors ps;
  ps.emplace_back("w", test::random_f32({5000}, 3).cuda().set_requires_grad(true));
  optim::SGDOptions o;
  o.lr = 0.5;
  optim::SGD opt(ps, o);
  set_grads(ps, 0);
  opt.step();
  eng::cuda::Graph g;
  opt.prepare_step();
  g.capture([&] { opt.launch_step(); });
  const Tensor grad = ps[0].second.grad().cpu();
  for (const double lr : {0.25, 0.0, 2.0}) {
    INFO("lr " << lr);
    const Tensor before = ps[0].second.detach().cpu();
    opt.set_lr(lr);
    opt.prepare_step();
    g.replay();
    const std::vector<float> p0 = before.to_vector<float>(), p1 = ps[0].second.detach().cpu().to_vector<float>();
    const std::vector<float> gv = grad.to_vector<float>();
    const float lr_f = static_cast<float>(lr);
    for (size_t i = 0; i < p0.size(); ++i) REQUIRE(p1[i] == p0[i] - lr_f * gv[i]);
  }
}

TEST_CASE("optim split step: prepare_step during a capture is refused with one line", "[cuda][cuda_graph]") {
  REQUIRE_CUDA_OR_SKIP();
  NamedTensors ps = make_params(Device::cuda());
  auto opt = make_opt("adamw", ps);
  set_grads(ps, 0);
  opt->step();
  eng::cuda::Graph g;
  REQUIRE_THROWS_WITH(g.capture([&] { opt->step(); }), Catch::Contains("during a CUDA graph capture"));
  CHECK_FALSE(g.captured());
  opt->step();  // the stream and the optimizer are still usable
  CHECK(opt->step_count() == 2);
}
