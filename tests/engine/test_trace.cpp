// engine/trace.h: what a traced forward records (SSA values over TensorImpl identity).
#include <catch2/catch.hpp>

#include "engine/error.h"
#include "engine/nn/layers.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/trace.h"

using namespace eng;

namespace {
std::vector<std::string> kinds(const trace::Recorder& r) {
  std::vector<std::string> k;
  for (const auto& op : r.ops()) k.push_back(op.kind);
  return k;
}
}  // namespace

TEST_CASE("trace: ops record kinds, attributes and SSA values", "[trace]") {
  Generator gen(3);
  Tensor x = randn({1, 2, 4, 4}, gen), w = randn({3, 2, 3, 3}, gen), b = randn({3}, gen);
  trace::Recorder rec;
  Tensor y;
  {
    trace::Scope s(rec);
    y = relu(conv2d(x, w, b, Conv2dParams::square(2, 1, 1))).reshape({1, -1});
  }
  CHECK(kinds(rec) == std::vector<std::string>{"conv2d", "relu", "reshape"});
  const trace::Op& conv = rec.ops()[0];
  CHECK(conv.attr_ints("stride") == std::vector<int64_t>{2, 2});
  CHECK(conv.attr_ints("pad") == std::vector<int64_t>{1, 1});
  CHECK(conv.attr_int("groups") == 1);
  CHECK_THROWS_WITH(conv.attr("no_such"), Catch::Contains("no attribute 'no_such'"));
  // x, w, b are external; every output is produced by the op that made it.
  CHECK(rec.is_external(conv.inputs[0]));
  CHECK(rec.producer(rec.ops()[1].inputs[0]) == 0);
  CHECK(rec.producer(rec.value_of(y)) == 2);
  CHECK(rec.ops()[2].attr_ints("shape") == std::vector<int64_t>{1, 3 * 2 * 2});
  // Nothing is recorded outside a scope.
  relu(x);
  CHECK(rec.ops().size() == 3);
}

TEST_CASE("trace: an in-place op gives its tensor a new value", "[trace]") {
  Generator gen(4);
  Tensor x = randn({2, 3}, gen);
  trace::Recorder rec;
  Tensor a, c;
  {
    trace::Scope s(rec);
    a = add_scalar(x, 1.0);
    const int before = rec.value_of(a);
    relu_(a);
    const int after = rec.value_of(a);
    CHECK(before != after);
    CHECK(rec.producer(after) == 1);
    c = mul(a, a);
    CHECK(rec.ops().back().inputs == std::vector<int>{after, after});
  }
  // (mul's broadcasting records inner expands first; the outer op is recorded last.)
  const auto k = kinds(rec);
  CHECK(k.front() == "add_scalar");
  CHECK(k[1] == "relu");
  CHECK(k.back() == "mul");
  CHECK(rec.ops()[0].attr_float("p0") == 1.0);
}

TEST_CASE("trace: scopes do not nest, and end with their object", "[trace]") {
  trace::Recorder a, b;
  {
    trace::Scope s(a);
    CHECK(trace::active() == &a);
    CHECK_THROWS_WITH(trace::Scope(b), Catch::Contains("already active"));
  }
  CHECK(trace::active() == nullptr);
}

TEST_CASE("trace: a module forward records its ops with the module's tensors", "[trace]") {
  Generator gen(5);
  nn::Sequential seq;
  auto conv = std::make_shared<nn::Conv2d>(2, 4, 3, 1, 1);
  seq.push_back(conv);
  seq.push_back(std::make_shared<nn::ReLU>());
  seq.eval();
  Tensor x = randn({1, 2, 5, 5}, gen);
  trace::Recorder rec;
  {
    trace::Scope s(rec);
    seq.forward(x);
  }
  // Sequential fuses Conv2d + ReLU into one op.
  REQUIRE(!rec.ops().empty());
  const trace::Op& op = rec.ops().back();
  CHECK(op.kind == "conv2d_relu");
  CHECK(rec.values()[static_cast<size_t>(op.inputs[1])].same(conv->weight));
}
