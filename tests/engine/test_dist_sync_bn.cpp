// SyncBatchNorm: ranks holding shards of a batch match BatchNorm2d on the whole batch
// (outputs, input gradients, summed weight/bias gradients, running stats); without a
// communicator of size > 1 it is BatchNorm2d exactly; double gradcheck across ranks.
#include <memory>

#include "engine/dist/sync_batch_norm.h"
#include "engine/dist_threads.h"
#include "engine/nn/layers.h"
#include "test_helpers.h"

using namespace eng;
using eng::dist::Communicator;

namespace {

std::shared_ptr<nn::BatchNorm2d> make_bn(DType dt, bool sync) {
  auto bn = std::make_shared<nn::BatchNorm2d>(3, 1e-5, 0.1);
  bn->to(Device::cpu());
  Generator gen(3);
  NoGradGuard g;
  // Non-trivial affine parameters and running stats, in the test's dtype.
  for (Tensor* t : {&bn->weight, &bn->bias, &bn->running_mean, &bn->running_var}) {
    Tensor v = add_scalar(rand({3}, gen, TensorOptions(DType::f64)), 0.5).to(dt);
    Tensor fresh = v.clone();
    if (t == &bn->weight || t == &bn->bias) fresh.set_requires_grad(true);
    t->impl()->storage = fresh.impl()->storage;  // keep the registered handles
    t->impl()->dtype = dt;
    t->impl()->offset = 0;
  }
  bn->sync = sync;
  return bn;
}

struct Shards {
  Tensor full, grad_out;          // [N, 3, 4, 5] and the loss weights
  std::vector<int64_t> starts, sizes;
};

Shards make_shards(DType dt, const std::vector<int64_t>& sizes) {
  Shards s;
  int64_t n = 0;
  for (int64_t k : sizes) {
    s.starts.push_back(n);
    n += k;
  }
  s.sizes = sizes;
  Generator gen(11);
  // A mean far from 0 and a small spread: the case that hurts E[x^2] - E[x]^2.
  s.full = add_scalar(mul_scalar(randn({n, 3, 4, 5}, gen, TensorOptions(DType::f64)), 0.5), 3.0).to(dt);
  s.grad_out = randn({n, 3, 4, 5}, gen, TensorOptions(DType::f64)).to(dt);
  return s;
}

void check_matches_full_batch(DType dt, const std::vector<int64_t>& shard_sizes, double atol, double rtol) {
  const int size = static_cast<int>(shard_sizes.size());
  const Shards s = make_shards(dt, shard_sizes);
  // Reference: one BatchNorm2d over the whole batch.
  auto ref = make_bn(dt, false);
  Tensor xf = s.full.clone().set_requires_grad(true);
  Tensor yf = ref->forward(xf);
  sum(mul(yf, s.grad_out)).backward();

  std::vector<std::shared_ptr<nn::BatchNorm2d>> bns;
  for (int r = 0; r < size; ++r) bns.push_back(make_bn(dt, true));
  std::vector<Tensor> y(size), gx(size);
  test::run_ranks(size, [&](Communicator& c) {
    const int r = c.rank();
    Tensor x = s.full.narrow(0, s.starts[r], s.sizes[r]).clone().set_requires_grad(true);
    y[r] = bns[r]->forward(x);
    sum(mul(y[r], s.grad_out.narrow(0, s.starts[r], s.sizes[r]))).backward();
    gx[r] = x.grad();
  });
  Tensor gw, gb;
  for (int r = 0; r < size; ++r) {
    INFO("rank " << r << " of " << size);
    REQUIRE_CLOSE(y[r], yf.narrow(0, s.starts[r], s.sizes[r]), atol, rtol);
    REQUIRE_CLOSE(gx[r], xf.grad().narrow(0, s.starts[r], s.sizes[r]), atol, rtol);
    REQUIRE_CLOSE(bns[r]->running_mean, ref->running_mean, atol, rtol);
    REQUIRE_CLOSE(bns[r]->running_var, ref->running_var, atol, rtol);
    REQUIRE(bns[r]->num_batches_tracked.item() == 1);
    // The same running stats on every rank, bit for bit.
    REQUIRE(bns[r]->running_var.to_vector<double>() == bns[0]->running_var.to_vector<double>());
    gw = r == 0 ? bns[r]->weight.grad() : add(gw, bns[r]->weight.grad());
    gb = r == 0 ? bns[r]->bias.grad() : add(gb, bns[r]->bias.grad());
  }
  // Data parallelism sums the parameter gradients over the ranks.
  REQUIRE_CLOSE(gw, ref->weight.grad(), atol, rtol);
  REQUIRE_CLOSE(gb, ref->bias.grad(), atol, rtol);
}

}  // namespace

TEST_CASE("SyncBatchNorm: 2 ranks with half batches each equal BatchNorm2d on the full batch (f64)", "[dist][sync_bn]") {
  check_matches_full_batch(DType::f64, {2, 2}, 1e-11, 1e-9);
}

TEST_CASE("SyncBatchNorm: 3 ranks with unequal shards equal BatchNorm2d on the full batch (f64)", "[dist][sync_bn]") {
  check_matches_full_batch(DType::f64, {3, 1, 2}, 1e-11, 1e-9);
}

TEST_CASE("SyncBatchNorm: f32 within float tolerance of BatchNorm2d on the full batch", "[dist][sync_bn]") {
  check_matches_full_batch(DType::f32, {4, 4}, 1e-5, 1e-4);
  check_matches_full_batch(DType::f32, {1, 2, 1}, 1e-5, 1e-4);
}

TEST_CASE("SyncBatchNorm without a communicator of size > 1, or in eval mode, is BatchNorm2d exactly", "[dist][sync_bn]") {
  const Shards s = make_shards(DType::f32, {3});
  auto run = [&](bool sync, bool training) {
    auto bn = make_bn(DType::f32, sync);
    bn->train(training);
    Tensor x = s.full.clone().set_requires_grad(true);
    Tensor y = bn->forward(x);
    sum(mul(y, s.grad_out)).backward();
    std::vector<std::vector<float>> out{y.to_vector<float>(), x.grad().to_vector<float>(),
                                        bn->running_mean.to_vector<float>(), bn->running_var.to_vector<float>()};
    if (training) {
      out.push_back(bn->weight.grad().to_vector<float>());
      out.push_back(bn->bias.grad().to_vector<float>());
    }
    return out;
  };
  for (const bool training : {true, false}) {
    const auto plain = run(false, training);
    REQUIRE(run(true, training) == plain);  // no communicator
    auto one = dist::make_thread_group(1);
    {
      dist::CurrentScope scope(one[0].get());
      REQUIRE(run(true, training) == plain);  // size 1
    }
    if (!training) {  // eval: the running stats, no collective even on 2 ranks
      std::vector<std::vector<std::vector<float>>> got(2);
      test::run_ranks(2, [&](Communicator& c) { got[c.rank()] = run(true, false); });
      REQUIRE(got[0] == plain);
      REQUIRE(got[1] == plain);
    }
  }
}

TEST_CASE("sync_batch_norm2d: double gradcheck across 2 ranks (x, weight, bias)", "[dist][sync_bn]") {
  std::vector<std::string> result(2);
  test::run_ranks(2, [&](Communicator& c) {
    Generator gen(40 + c.rank());
    Tensor x = add_scalar(randn({2, 2, 2, 3}, gen, DType::f64), 1.0).set_requires_grad(true);
    Tensor w = add_scalar(rand({2}, gen, DType::f64), 0.5).set_requires_grad(true);
    Tensor b = rand({2}, gen, DType::f64).set_requires_grad(true);
    auto f = [](const std::vector<Tensor>& in) {
      return dist::sync_batch_norm2d(in[0], in[1], in[2], Tensor(), Tensor(), true, 0.1, 1e-5);
    };
    result[c.rank()] = test::dist_gradcheck(c, f, {x, w, b});
  });
  for (const auto& r : result) {
    INFO(r);
    REQUIRE(r.empty());
  }
}

TEST_CASE("convert_sync_batchnorm switches every BatchNorm2d, bad inputs give one line", "[dist][sync_bn]") {
  nn::Sequential m{std::make_shared<nn::Conv2d>(2, 3, 1), std::make_shared<nn::BatchNorm2d>(3),
                   std::make_shared<nn::ReLU>(), std::make_shared<nn::BatchNorm2d>(3)};
  REQUIRE(dist::convert_sync_batchnorm(m) == 2);
  REQUIRE(std::dynamic_pointer_cast<nn::BatchNorm2d>(m[1])->sync);
  REQUIRE(std::dynamic_pointer_cast<nn::BatchNorm2d>(m[3])->sync);
  auto errors = test::run_ranks_collect(2, [](Communicator&) {
    dist::sync_batch_norm2d(zeros({2, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true);
  });
  REQUIRE_THAT(errors[0], Catch::Contains("sync_batch_norm2d: expected a 4-d"));
  errors = test::run_ranks_collect(2, [](Communicator&) {
    dist::sync_batch_norm2d(zeros({2, 3, 2, 2}), ones({4}), Tensor(), Tensor(), Tensor(), true);
  });
  REQUIRE_THAT(errors[1], Catch::Contains("must be f32 [3]"));
  // Ranks with different channel counts: the reduction refuses, on every rank.
  errors = test::run_ranks_collect(2, [](Communicator& c) {
    dist::sync_batch_norm2d(ones({2, 2 + c.rank(), 2, 2}), Tensor(), Tensor(), Tensor(), Tensor(), true);
  });
  REQUIRE_THAT(errors[0], Catch::Contains("shape"));
  REQUIRE_THAT(errors[1], Catch::Contains("shape"));
}

TEST_CASE("SyncBatchNorm on CUDA, 2 ranks: cuda matches cpu BatchNorm2d on the full batch", "[dist][sync_bn][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const Shards s = make_shards(DType::f32, {2, 3});
  auto ref = make_bn(DType::f32, false);
  Tensor xf = s.full.clone().set_requires_grad(true);
  sum(mul(ref->forward(xf), s.grad_out)).backward();
  std::vector<std::shared_ptr<nn::BatchNorm2d>> bns{make_bn(DType::f32, true), make_bn(DType::f32, true)};
  for (auto& b : bns) b->to(Device::cuda());
  std::vector<Tensor> gx(2);
  test::run_ranks(2, [&](Communicator& c) {
    const int r = c.rank();
    Tensor x = s.full.narrow(0, s.starts[r], s.sizes[r]).cuda().set_requires_grad(true);
    Tensor y = bns[r]->forward(x);
    sum(mul(y, s.grad_out.narrow(0, s.starts[r], s.sizes[r]).cuda())).backward();
    gx[r] = x.grad().cpu();
  });
  for (int r = 0; r < 2; ++r) {
    REQUIRE_CLOSE(gx[r], xf.grad().narrow(0, s.starts[r], s.sizes[r]), 1e-5, 1e-4);
    REQUIRE_CLOSE(bns[r]->running_var.cpu(), ref->running_var, 1e-5, 1e-4);
  }
  REQUIRE_CLOSE(add(bns[0]->weight.grad(), bns[1]->weight.grad()).cpu(), ref->weight.grad(), 1e-5, 1e-4);
}
