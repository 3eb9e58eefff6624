// The "threads" communicator (make_thread_group) on every call, current() / CurrentScope,
// and the differentiable all_reduce_sum (forward, backward, gradcheck across ranks).
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "engine/dist_threads.h"
#include "test_helpers.h"

using namespace eng;
using eng::dist::Communicator;

namespace {
// Rank r's values: distinct per rank and element, not exactly representable sums in f32.
std::vector<double> rank_values(int r, int n) {
  std::vector<double> v(n);
  for (int i = 0; i < n; ++i) v[i] = 0.1 * (r + 1) + 0.37 * i - 0.013 * r * i;
  return v;
}
}  // namespace

TEST_CASE("thread group: all_reduce sums in rank order, bit-identical on every rank", "[dist]") {
  for (const int size : {2, 3}) {
    for (const DType dt : {DType::f32, DType::f64, DType::i64, DType::i32}) {
      const double scale = (dt == DType::f32 || dt == DType::f64) ? 1.0 / size : 1.0;
      std::vector<std::vector<double>> got(size);
      test::run_ranks(size, [&](Communicator& c) {
        Tensor t = from_vector(rank_values(c.rank(), 7), {7}, TensorOptions(dt));
        c.all_reduce(t, scale);
        got[c.rank()] = t.to_vector<double>();
      });
      // The expected value, summed in rank order in the dtype (from the dtype's values).
      std::vector<double> expect(7, 0.0);
      for (int i = 0; i < 7; ++i) {
        float f = 0;
        double d = 0;
        for (int r = 0; r < size; ++r) {
          const double v = from_vector(rank_values(r, 7), {7}, TensorOptions(dt)).to_vector<double>()[i];
          f += static_cast<float>(v);
          d += v;
        }
        expect[i] = dt == DType::f32 ? static_cast<float>(static_cast<double>(f) * scale) : d * scale;
      }
      INFO("size " << size << " dtype " << dtype_name(dt));
      for (int r = 0; r < size; ++r) REQUIRE(got[r] == got[0]);
      REQUIRE(got[0] == expect);  // exactly: the same order of additions
    }
  }
}

TEST_CASE("thread group: async all-reduces complete in issue order and leave other tensors alone", "[dist]") {
  std::vector<std::vector<double>> a(3), b(3);
  test::run_ranks(3, [&](Communicator& c) {
    Tensor ta = full({4}, c.rank() + 1.0, DType::f64);
    Tensor tb = full({2, 2}, 10.0 * (c.rank() + 1), DType::f32);
    auto wa = c.all_reduce_async(ta, 1.0);
    auto wb = c.all_reduce_async(tb, 0.5);
    wb->wait();  // waiting for the later one first is allowed
    wa->wait();
    wa->wait();  // twice: a no-op
    a[c.rank()] = ta.to_vector<double>();
    b[c.rank()] = tb.to_vector<double>();
  });
  for (int r = 0; r < 3; ++r) {
    REQUIRE(a[r] == std::vector<double>(4, 6.0));
    REQUIRE(b[r] == std::vector<double>(4, 30.0));
  }
}

TEST_CASE("thread group: broadcast, all_gather, barrier, all_gather_bytes", "[dist]") {
  for (const int size : {2, 3}) {
    const int root = size - 1;
    std::vector<std::vector<double>> bc(size), gathered(size);
    std::vector<Shape> gshape(size);
    std::vector<std::vector<std::vector<uint8_t>>> bytes(size);
    std::vector<int> seen_after_barrier(size);
    std::vector<std::string> backend(size);
    std::atomic<int> arrived{0};
    test::run_ranks(size, [&](Communicator& c) {
      const int r = c.rank();
      backend[r] = c.backend();
      Tensor t = from_vector(rank_values(r, 5), {5}, DType::f32);
      c.broadcast(t, root);
      bc[r] = t.to_vector<double>();
      Tensor g = c.all_gather(from_vector(rank_values(r, 6), {2, 3}, DType::i64));
      gshape[r] = g.sizes();
      gathered[r] = g.to_vector<double>();
      if (r == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      ++arrived;
      c.barrier();
      seen_after_barrier[r] = arrived.load();
      std::vector<uint8_t> mine(static_cast<size_t>(r) * 3, static_cast<uint8_t>(r + 1));  // rank 0: empty
      bytes[r] = c.all_gather_bytes(mine);
    });
    for (int r = 0; r < size; ++r) {
      INFO("size " << size << " rank " << r);
      REQUIRE(backend[r] == "threads");
      REQUIRE(bc[r] == Tensor(from_vector(rank_values(root, 5), {5}, DType::f32)).to_vector<double>());
      REQUIRE(gshape[r] == Shape{size, 2, 3});
      std::vector<double> expect;
      for (int q = 0; q < size; ++q) {
        auto v = from_vector(rank_values(q, 6), {6}, DType::i64).to_vector<double>();
        expect.insert(expect.end(), v.begin(), v.end());
      }
      REQUIRE(gathered[r] == expect);
      REQUIRE(seen_after_barrier[r] == size);
      REQUIRE(bytes[r].size() == static_cast<size_t>(size));
      for (int q = 0; q < size; ++q)
        REQUIRE(bytes[r][q] == std::vector<uint8_t>(static_cast<size_t>(q) * 3, static_cast<uint8_t>(q + 1)));
    }
  }
}

TEST_CASE("thread group: mismatched calls between ranks are errors on every rank", "[dist]") {
  SECTION("shapes") {
    auto errors = test::run_ranks_collect(2, [](Communicator& c) {
      Tensor t = zeros({c.rank() + 2});
      c.all_reduce(t);
    });
    for (const auto& e : errors) REQUIRE_THAT(e, Catch::Contains("all_reduce") && Catch::Contains("shape [3]"));
  }
  SECTION("collectives") {
    auto errors = test::run_ranks_collect(2, [](Communicator& c) {
      Tensor t = zeros({2});
      if (c.rank() == 0) c.broadcast(t, 0);
      else c.all_reduce(t);
    });
    for (const auto& e : errors) REQUIRE_THAT(e, Catch::Contains("broadcast") && Catch::Contains("all_reduce"));
  }
  SECTION("dtypes and broadcast roots") {
    auto errors = test::run_ranks_collect(2, [](Communicator& c) {
      Tensor t = zeros({2}, c.rank() == 0 ? DType::f32 : DType::f64);
      c.broadcast(t, 0);
    });
    for (const auto& e : errors) REQUIRE_THAT(e, Catch::Contains("dtype f64"));
    errors = test::run_ranks_collect(2, [](Communicator& c) {
      Tensor t = zeros({2});
      c.broadcast(t, c.rank());
    });
    for (const auto& e : errors) REQUIRE_THAT(e, Catch::Contains("root 1 differs"));
  }
}

TEST_CASE("thread group: bad tensors are refused with one line", "[dist]") {
  auto comms = dist::make_thread_group(1);
  Communicator& c = *comms[0];
  Tensor u8 = zeros({3}, DType::u8);
  REQUIRE_THROWS_WITH(c.all_reduce(u8), Catch::Contains("rank 0: all_reduce: dtype u8"));
  Tensor nc = zeros({3, 4}).transpose(0, 1);
  REQUIRE_THROWS_WITH(c.all_reduce(nc), Catch::Contains("contiguous"));
  Tensor t = zeros({3});
  REQUIRE_THROWS_WITH(c.broadcast(t, 1), Catch::Contains("root 1"));
  Tensor undefined;
  REQUIRE_THROWS_WITH(c.all_reduce(undefined), Catch::Contains("undefined"));
  REQUIRE_THROWS_AS(dist::make_thread_group(0), Error);
  // Size 1 works: the sum of one rank, scaled.
  Tensor one = full({2}, 3.0);
  c.all_reduce(one, 2.0);
  REQUIRE(one.to_vector<double>() == std::vector<double>{6.0, 6.0});
}

TEST_CASE("thread group: a rank that never comes times out, naming the rank and the collective", "[dist]") {
  auto errors = test::run_ranks_collect(2, [](Communicator& c) {
    if (c.rank() == 0) {
      c.set_timeout(0.2);
      Tensor t = zeros({2});
      c.all_reduce(t);  // rank 1 never joins
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      c.barrier();  // after rank 0 gave up: fails at once instead of waiting
    }
  });
  REQUIRE_THAT(errors[0], Catch::Contains("rank 0: all_reduce waited 0.2 s for the other ranks"));
  REQUIRE_THAT(errors[1], Catch::Contains("rank 1: barrier: the group failed earlier: rank 0: all_reduce waited"));
}

TEST_CASE("dist::current: null by default, set by CurrentScope per thread, restored", "[dist]") {
  REQUIRE(dist::current() == nullptr);
  auto comms = dist::make_thread_group(2);
  {
    dist::CurrentScope scope(comms[1].get());
    REQUIRE(dist::current() == comms[1].get());
    Communicator* other = comms[0].get();
    std::thread([&] { other = dist::current(); }).join();
    REQUIRE(other == nullptr);  // thread-local
  }
  REQUIRE(dist::current() == nullptr);
  dist::set_current(comms[0].get());
  REQUIRE(dist::current() == comms[0].get());
  dist::set_current(nullptr);
}

TEST_CASE("all_reduce_sum returns its input without a communicator of size > 1", "[dist]") {
  Tensor x = from_vector<double>({1, 2, 3}, {3}).set_requires_grad(true);
  REQUIRE(dist::all_reduce_sum(x).same(x));
  auto one = dist::make_thread_group(1);
  dist::CurrentScope scope(one[0].get());
  REQUIRE(dist::all_reduce_sum(x).same(x));
}

TEST_CASE("all_reduce_sum: forward sums over ranks, backward sums the gradients", "[dist]") {
  std::vector<std::vector<double>> y(3), gx(3);
  test::run_ranks(3, [&](Communicator& c) {
    const int r = c.rank();
    Tensor x = from_vector<double>({1.0 + r, 10.0 * r}, {2}).set_requires_grad(true);
    Tensor s = dist::all_reduce_sum(x);
    y[r] = s.to_vector<double>();
    // Rank r's loss weights the sum by (r + 1): dL/dx_q = sum over r of (r + 1) = 6.
    sum(mul_scalar(s, r + 1.0)).backward();
    gx[r] = x.grad().to_vector<double>();
  });
  for (int r = 0; r < 3; ++r) {
    REQUIRE(y[r] == std::vector<double>{6.0, 30.0});
    REQUIRE(gx[r] == std::vector<double>{6.0, 6.0});
  }
}

TEST_CASE("all_reduce_sum: double-precision gradcheck across 2 and 3 ranks", "[dist]") {
  for (const int size : {2, 3}) {
    std::vector<std::string> result(size);
    test::run_ranks(size, [&](Communicator& c) {
      Generator gen(5 + c.rank());
      Tensor x = randn({2, 3}, gen, DType::f64).set_requires_grad(true);
      // A nonlinear use on both sides of the reduction.
      auto f = [](const std::vector<Tensor>& in) {
        Tensor s = dist::all_reduce_sum(square(in[0]));
        return mul(s, in[0]);
      };
      result[c.rank()] = test::dist_gradcheck(c, f, {x});
    });
    for (int r = 0; r < size; ++r) {
      INFO("size " << size << ": " << result[r]);
      REQUIRE(result[r].empty());
    }
  }
}
