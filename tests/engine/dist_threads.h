// Test helpers for data-parallel code: a thread group run (one std::thread per rank, each
// with its communicator as dist::current()) and a gradient check across ranks.
// Catch2's assertions are not thread-safe: rank functions return or store results, and
// the test asserts after run_ranks joined the threads.
#pragma once
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/autograd.h"
#include "engine/dist/communicator.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace test {

// Runs fn(comm) on `size` threads, rank r with communicator r; returns each rank's error
// message ("" when it returned normally).
inline std::vector<std::string> run_ranks_collect(int size, const std::function<void(eng::dist::Communicator&)>& fn) {
  auto comms = eng::dist::make_thread_group(size);
  std::vector<std::string> errors(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      try {
        eng::dist::CurrentScope scope(comms[r].get());
        fn(*comms[r]);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

// The same, requiring that no rank threw.
inline void run_ranks(int size, const std::function<void(eng::dist::Communicator&)>& fn) {
  const std::vector<std::string> errors = run_ranks_collect(size, fn);
  for (int r = 0; r < size; ++r) {
    INFO("rank " << r << ": " << errors[r]);
    REQUIRE(errors[r].empty());
  }
}

// Gradient check of a computation spread over the ranks (call from every rank's thread).
// Each rank maps its own double CPU inputs to y_r = f(inputs) (f may reduce over ranks);
// the checked loss is L = sum over ranks of sum(R_r * y_r) with fixed random R_r. The
// analytic gradient of rank r's input is what backward of its own sum(R_r * y_r) leaves in
// .grad (the reductions' backward brings the other ranks' terms); the numeric one perturbs
// one element of one rank at a time (all ranks evaluate L together). Returns "" or the
// first failure on this rank.
inline std::string dist_gradcheck(eng::dist::Communicator& comm,
                                  const std::function<eng::Tensor(const std::vector<eng::Tensor>&)>& f,
                                  std::vector<eng::Tensor> inputs, double h = 1e-6, double atol = 1e-5,
                                  double rtol = 1e-3) {
  using namespace eng;
  Tensor y = f(inputs);
  Generator gen(77 + static_cast<uint64_t>(comm.rank()));
  Tensor R = rand(y.sizes(), gen, TensorOptions(DType::f64)) * 2.0 - 1.0;
  sum(mul(y, R)).backward();
  auto total = [&]() {
    NoGradGuard g;
    Tensor l = sum(mul(f(inputs), R)).reshape({1}).contiguous().clone();
    comm.all_reduce(l);
    return l.item();
  };
  std::string failure;
  for (int p = 0; p < comm.size(); ++p) {
    for (size_t k = 0; k < inputs.size(); ++k) {
      Tensor& x = inputs[k];
      if (!x.defined() || !x.requires_grad()) continue;  // the same on every rank
      const bool mine = p == comm.rank();
      if (mine && !x.grad().defined() && failure.empty()) failure = "input " + std::to_string(k) + " got no gradient";
      double* ptr = x.data<double>();
      for (int64_t i = 0; i < x.numel(); ++i) {
        const double orig = ptr[i];
        if (mine) ptr[i] = orig + h;
        const double lp = total();
        if (mine) ptr[i] = orig - h;
        const double lm = total();
        if (mine) ptr[i] = orig;
        if (!mine || !failure.empty() || !x.grad().defined()) continue;
        const double num = (lp - lm) / (2 * h), ana = x.grad().to_vector<double>()[static_cast<size_t>(i)];
        if (!(std::fabs(num - ana) <= atol + rtol * std::fabs(num))) {
          std::ostringstream os;
          os << "rank " << comm.rank() << " input " << k << " element " << i << ": numeric " << num << ", analytic "
             << ana;
          failure = os.str();
        }
      }
    }
  }
  return failure;
}

}  // namespace test
