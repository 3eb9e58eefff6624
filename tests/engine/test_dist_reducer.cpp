// GradReducer (bucketed gradient all-reduce from backward's hooks) and broadcast_module,
// on thread groups of 2 and 3 ranks.
#include <memory>

#include "engine/dist/grad_reducer.h"
#include "engine/dist_threads.h"
#include "engine/error.h"
#include "engine/nn/layers.h"
#include "test_helpers.h"

using namespace eng;
using eng::dist::Communicator;
using eng::dist::GradReducer;

namespace {

// Parameters in registration order: 0.weight [4,2,3,3] (288 B), 0.bias [4] (16 B),
// 2.weight [3,4,3,3] (432 B), 2.bias [3] (12 B).
std::shared_ptr<nn::Sequential> make_model(uint64_t seed = 1) {
  manual_seed(seed);
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv2d>(2, 4, 3, 1, 1), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Conv2d>(4, 3, 3, 1, 1)});
}

Tensor rank_input(int rank, int micro = 0) {
  Generator gen(100 + 10 * rank + micro);
  return randn({2, 2, 5, 5}, gen);
}

Tensor loss_of(nn::Module& m, const Tensor& x) { return sum(square(m.forward(x))); }

// scale * sum over ranks of each rank's local gradient (rank order), for each parameter.
std::vector<Tensor> reference_grads(int size, double scale, int micro_steps = 1) {
  std::vector<Tensor> total;
  for (int r = 0; r < size; ++r) {
    auto m = make_model();
    for (int k = 0; k < micro_steps; ++k) loss_of(*m, rank_input(r, k)).backward();
    const auto params = m->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      if (r == 0) total.push_back(params[i].grad().clone());
      else total[i] = add(total[i], params[i].grad());
    }
  }
  for (Tensor& t : total) t = mul_scalar(t, scale);
  return total;
}

}  // namespace

TEST_CASE("GradReducer: buckets in reverse registration order, cut at bucket_bytes", "[dist]") {
  auto comms = dist::make_thread_group(1);
  auto m = make_model();
  {
    GradReducer red(*comms[0], m->named_parameters(), {450, 1.0});
    REQUIRE(red.buckets() == 2);
    REQUIRE(red.bucket_names() == std::vector<std::vector<std::string>>{{"2.bias", "2.weight"}, {"0.bias", "0.weight"}});
    REQUIRE(red.bucket_bytes() == std::vector<int64_t>{444, 304});
    REQUIRE(red.bytes_per_step() == 748);
  }
  {
    GradReducer red(*comms[0], m->named_parameters(), {1, 1.0});  // each parameter alone
    REQUIRE(red.buckets() == 4);
    REQUIRE(red.bucket_names().front() == std::vector<std::string>{"2.bias"});
    REQUIRE(red.bucket_names().back() == std::vector<std::string>{"0.weight"});
  }
  {
    GradReducer red(*comms[0], m->named_parameters());  // 25 MiB: one bucket
    REQUIRE(red.buckets() == 1);
    REQUIRE(red.bucket_names()[0].size() == 4);
  }
  // Another dtype goes to a bucket of its own.
  Tensor a = zeros({4}).set_requires_grad(true), b = zeros({4}, DType::f64).set_requires_grad(true),
         c = zeros({4}).set_requires_grad(true);
  Tensor frozen = zeros({4});
  GradReducer mixed(*comms[0], {{"a", a}, {"b", b}, {"frozen", frozen}, {"c", c}});
  REQUIRE(mixed.bucket_names() == std::vector<std::vector<std::string>>{{"c", "a"}, {"b"}});  // frozen left out
}

TEST_CASE("GradReducer: after finish() every rank holds scale x the sum of the ranks' gradients", "[dist]") {
  for (const int size : {2, 3}) {
    for (const int64_t bucket_bytes : {int64_t{1}, int64_t{450}, int64_t{25} << 20}) {
      const double scale = 1.0 / size;
      const std::vector<Tensor> ref = reference_grads(size, scale);
      std::vector<std::shared_ptr<nn::Sequential>> models;
      for (int r = 0; r < size; ++r) models.push_back(make_model());
      std::vector<int> during_backward(size);
      std::vector<std::vector<int>> launched(size);
      std::vector<size_t> launched_after_finish(size);
      test::run_ranks(size, [&](Communicator& c) {
        nn::Module& m = *models[c.rank()];
        GradReducer red(c, m.named_parameters(), {bucket_bytes, scale});
        loss_of(m, rank_input(c.rank())).backward();
        during_backward[c.rank()] = red.launched_during_backward();
        launched[c.rank()] = red.launched();
        red.finish();
        launched_after_finish[c.rank()] = red.launched().size();
      });
      INFO("size " << size << " bucket_bytes " << bucket_bytes);
      const int64_t nb = bucket_bytes == 1 ? 4 : bucket_bytes == 450 ? 2 : 1;
      for (int r = 0; r < size; ++r) {
        // Every parameter got its gradient in backward: every bucket left during backward, in order.
        REQUIRE(during_backward[r] == nb);
        REQUIRE(launched_after_finish[r] == 0);  // reset for the next step
        std::vector<int> order(static_cast<size_t>(nb));
        for (int k = 0; k < nb; ++k) order[k] = k;
        REQUIRE(launched[r] == order);
        const auto params = models[r]->parameters();
        for (size_t i = 0; i < params.size(); ++i) {
          REQUIRE_CLOSE(params[i].grad(), ref[i], 1e-6, 1e-5);
          // Bit-identical on every rank.
          REQUIRE(params[i].grad().to_vector<float>() == models[0]->parameters()[i].grad().to_vector<float>());
        }
      }
    }
  }
}

TEST_CASE("GradReducer: a later bucket that is ready first waits for the earlier ones", "[dist]") {
  // Registered p0, p1, p2 -> buckets [p2], [p1], [p0]. The forward uses p2 first, so backward
  // completes p0 (bucket 2) and p1 (bucket 1) before p2 (bucket 0): nothing may leave before p2.
  std::vector<std::vector<int>> at_p0(2), at_p1(2), final_order(2);
  std::vector<std::vector<double>> g0(2);
  test::run_ranks(2, [&](Communicator& c) {
    const int r = c.rank();
    Tensor p0 = full({2}, 1.0).set_requires_grad(true), p1 = full({2}, 2.0).set_requires_grad(true),
           p2 = full({2}, 3.0).set_requires_grad(true);
    GradReducer red(c, {{"p0", p0}, {"p1", p1}, {"p2", p2}}, {1, 1.0});
    // Registered after the reducer's hooks: they see what the reducer did at that point.
    register_post_accumulate_grad_hook(p0, [&](const Tensor&) { at_p0[r] = red.launched(); });
    register_post_accumulate_grad_hook(p1, [&](const Tensor&) { at_p1[r] = red.launched(); });
    Tensor x = full({2}, 1.0 + r);
    Tensor y = mul(mul(mul(x, p2), p1), p0);  // backward pops p0, then p1, then p2
    sum(y).backward();
    final_order[r] = red.launched();
    red.finish();
    g0[r] = p0.grad().to_vector<double>();
  });
  for (int r = 0; r < 2; ++r) {
    REQUIRE(at_p0[r].empty());
    REQUIRE(at_p1[r].empty());
    REQUIRE(final_order[r] == std::vector<int>{0, 1, 2});
    REQUIRE(g0[r] == std::vector<double>{2 * 3 * 1 + 2 * 3 * 2, 2 * 3 * 1 + 2 * 3 * 2});
  }
}

TEST_CASE("GradReducer: a parameter without a gradient contributes zeros", "[dist]") {
  const std::vector<Tensor> ref = reference_grads(2, 1.0);
  std::vector<std::vector<double>> unused_grad(2);
  std::vector<int> during(2);
  std::vector<std::shared_ptr<nn::Sequential>> models{make_model(), make_model()};
  test::run_ranks(2, [&](Communicator& c) {
    nn::Module& m = *models[c.rank()];
    Tensor unused = full({3}, 7.0).set_requires_grad(true);
    nn::NamedTensors params{{"unused", unused}};  // registered first: the last bucket
    for (auto& p : m.named_parameters()) params.push_back(p);
    GradReducer red(c, params, {1, 1.0});
    loss_of(m, rank_input(c.rank())).backward();
    during[c.rank()] = red.launched_during_backward();
    red.finish();
    unused_grad[c.rank()] = unused.grad().to_vector<double>();
  });
  for (int r = 0; r < 2; ++r) {
    REQUIRE(during[r] == 4);  // the unused parameter's bucket left in finish()
    REQUIRE(unused_grad[r] == std::vector<double>{0, 0, 0});
    const auto params = models[r]->parameters();
    for (size_t i = 0; i < params.size(); ++i) REQUIRE_CLOSE(params[i].grad(), ref[i], 1e-6, 1e-5);
  }
}

TEST_CASE("GradReducer: set_enabled(false) accumulates locally, the enabled step reduces the sum", "[dist]") {
  const std::vector<Tensor> ref = reference_grads(2, 0.5, 2);  // two micro-batches per rank
  std::vector<std::shared_ptr<nn::Sequential>> models{make_model(), make_model()};
  std::vector<int> launched_disabled(2);
  std::vector<std::vector<float>> local_after_first(2), local_expected(2);
  test::run_ranks(2, [&](Communicator& c) {
    const int r = c.rank();
    nn::Module& m = *models[r];
    GradReducer red(c, m.named_parameters(), {450, 0.5});
    red.set_enabled(false);
    loss_of(m, rank_input(r, 0)).backward();
    launched_disabled[r] = static_cast<int>(red.launched().size());
    red.finish();  // no-op while disabled
    local_after_first[r] = m.parameters()[0].grad().to_vector<float>();
    red.set_enabled(true);
    loss_of(m, rank_input(r, 1)).backward();
    red.finish();
  });
  for (int r = 0; r < 2; ++r) {
    REQUIRE(launched_disabled[r] == 0);
    // The disabled step left the local gradient alone.
    auto single = make_model();
    loss_of(*single, rank_input(r, 0)).backward();
    REQUIRE(local_after_first[r] == single->parameters()[0].grad().to_vector<float>());
    const auto params = models[r]->parameters();
    for (size_t i = 0; i < params.size(); ++i) REQUIRE_CLOSE(params[i].grad(), ref[i], 1e-6, 1e-5);
  }
}

TEST_CASE("GradReducer: misuse is refused with one line", "[dist]") {
  auto comms = dist::make_thread_group(1);
  Communicator& c = *comms[0];
  Tensor w = full({2}, 1.0).set_requires_grad(true);
  REQUIRE_THROWS_WITH(GradReducer(c, {{"w", w}}, {0, 1.0}), Catch::Contains("bucket_bytes 0"));
  REQUIRE_THROWS_WITH(GradReducer(c, {{"w", w}, {"w2", w}}), Catch::Contains("w2 is listed twice"));
  REQUIRE_THROWS_WITH(GradReducer(c, {{"y", mul_scalar(w, 2.0)}}), Catch::Contains("y must be a leaf"));
  REQUIRE_THROWS_WITH(GradReducer(c, {{"z", Tensor()}}), Catch::Contains("z is undefined"));
  {
    Tensor v = full({2}, 1.0).set_requires_grad(true);
    GradReducer red(c, {{"w", w}, {"v", v}}, {1, 1.0});  // buckets [v], [w]
    sum(square(w)).backward();  // w ready, its bucket waits for v's: nothing launched yet
    REQUIRE(red.launched().empty());
    REQUIRE_THROWS_WITH(red.set_enabled(false), Catch::Contains("call finish() first"));
    REQUIRE_THROWS_WITH(sum(square(w)).backward(), Catch::Contains("w got a gradient twice in one step"));
  }
  // The reducer is gone: its hooks too.
  w.zero_grad();
  sum(square(w)).backward();
  sum(square(w)).backward();
  REQUIRE(w.grad().to_vector<double>() == std::vector<double>{4, 4});
}

TEST_CASE("broadcast_module: every rank gets the root's parameters and buffers", "[dist]") {
  std::vector<std::shared_ptr<nn::Sequential>> models;
  for (int r = 0; r < 3; ++r) {
    manual_seed(10 + r);
    models.push_back(std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Conv2d>(2, 3, 3), std::make_shared<nn::BatchNorm2d>(3)}));
    models[r]->find("1.running_mean").fill_(r + 0.5);
  }
  test::run_ranks(3, [&](Communicator& c) { dist::broadcast_module(c, *models[c.rank()], 1); });
  for (int r = 0; r < 3; ++r) {
    const auto mine = models[r]->state_dict(), root = models[1]->state_dict();
    for (size_t i = 0; i < mine.size(); ++i) {
      INFO(mine[i].first);
      REQUIRE(mine[i].second.to_vector<double>() == root[i].second.to_vector<double>());
    }
    REQUIRE(models[r]->find("1.running_mean").to_vector<double>() == std::vector<double>(3, 1.5));
    REQUIRE(models[r]->find("0.weight").requires_grad());
  }
  // Different models: one line naming the first difference, on every rank.
  auto errors = test::run_ranks_collect(2, [](Communicator& c) {
    nn::Linear m(3, c.rank() == 0 ? 2 : 4);
    dist::broadcast_module(c, m, 0);
  });
  REQUIRE_THAT(errors[0], Catch::Contains("broadcast_module: rank 0 has 'weight [2, 3] f32' where rank 1 has "
                                          "'weight [4, 3] f32' (the ranks built different models)"));
  REQUIRE_THAT(errors[1], Catch::Contains("the ranks built different models"));
}

TEST_CASE("GradReducer on CUDA tensors through the thread group: cuda matches cpu", "[dist][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const std::vector<Tensor> ref = reference_grads(2, 0.5);
  std::vector<std::shared_ptr<nn::Sequential>> models{make_model(), make_model()};
  for (auto& m : models) m->to(Device::cuda());
  std::vector<Device> gdev(2);
  std::vector<int> gathered_on_cuda(2);
  test::run_ranks(2, [&](Communicator& c) {
    nn::Module& m = *models[c.rank()];
    GradReducer red(c, m.named_parameters(), {450, 0.5});
    loss_of(m, rank_input(c.rank()).cuda()).backward();
    red.finish();
    gdev[c.rank()] = m.parameters()[0].grad().device();
    // The thread group's other calls on CUDA tensors keep the device.
    Tensor g = c.all_gather(full({2}, 1.0 * c.rank()).cuda());
    gathered_on_cuda[c.rank()] = g.is_cuda();
  });
  for (int r = 0; r < 2; ++r) {
    REQUIRE(gdev[r].is_cuda());
    REQUIRE(gathered_on_cuda[r]);
    const auto params = models[r]->parameters();
    for (size_t i = 0; i < params.size(); ++i) REQUIRE_CLOSE(params[i].grad().cpu(), ref[i], 1e-5, 1e-4);
  }
}

TEST_CASE("GradReducer: a parameter used several times is reduced once, with its whole gradient", "[dist]") {
  // Like a detection head shared by pyramid levels: w is used three times per forward.
  std::vector<std::vector<double>> got(2);
  std::vector<int> during(2);
  test::run_ranks(2, [&](Communicator& c) {
    const double r = c.rank();
    Tensor w = from_vector<double>({1, 2}, {2}).set_requires_grad(true);
    Tensor other = from_vector<double>({3}, {1}).set_requires_grad(true);
    GradReducer red(c, {{"other", other}, {"w", w}}, {1, 1.0});  // buckets [w], [other]
    Tensor x = full({2}, 1.0 + r, DType::f64);
    Tensor loss = add(add(sum(mul(w, x)), sum(mul(w, mul_scalar(x, 2.0)))), sum(mul(sum(square(w)), other)));
    loss.backward();
    during[c.rank()] = red.launched_during_backward();
    red.finish();
    got[c.rank()] = w.grad().to_vector<double>();
  });
  // Per rank: dL/dw = 3 x + 2 w other = 3 (1 + r) + 6 w; summed over ranks r = 0, 1.
  for (int r = 0; r < 2; ++r) {
    REQUIRE(during[r] == 2);
    REQUIRE(got[r] == std::vector<double>{3 * 1 + 3 * 2 + 2 * 6 * 1, 3 * 1 + 3 * 2 + 2 * 6 * 2});
  }
}
