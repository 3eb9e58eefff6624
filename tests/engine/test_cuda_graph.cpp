// cuda::Graph and the graph rule of the caching allocator (engine/cuda_graph.h,
// engine/allocator.h rules 4 and 5): a captured computation replays to the eager result,
// reads new data put into its static input, does not reach the driver, keeps its blocks out
// of reach of eager allocations while it lives, and a capture that would allocate from the
// driver or wait on the host fails with a one-line error and leaves the stream usable.
#include "engine/cuda_graph.h"

#include "engine/cuda_context.h"
#include "test_helpers.h"

using eng::Device;
using eng::DType;
using eng::Tensor;

namespace {

Tensor ramp(int64_t rows, int64_t cols, float scale, Device dev) {
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < v.size(); ++i) v[i] = scale * (static_cast<float>(i % 13) - 6.0f);
  return eng::from_vector(v, {rows, cols}).to(dev);
}

// A few ops: relu(x @ w + b) * 2 + 1, summed over columns.
Tensor compute(const Tensor& x, const Tensor& w, const Tensor& b) {
  Tensor y = eng::relu(eng::add(eng::matmul(x, w), b));
  return eng::sum(eng::add_scalar(eng::mul_scalar(y, 2.0), 1.0), {1});
}

}  // namespace

TEST_CASE("cuda graph: a captured computation replays to the eager result and reads new static input",
          "[engine][cuda_graph][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  eng::NoGradGuard no_grad;
  const Device dev = Device::cuda();
  Tensor x = ramp(8, 16, 0.25f, dev);  // the static input
  const Tensor w = ramp(16, 4, 0.1f, dev), b = ramp(1, 4, 0.5f, dev);
  Tensor out;
  auto step = [&] { out = compute(x, w, b); };

  step();  // warm-up: the allocator now caches every size the step asks for
  const std::vector<float> want1 = compute(x.cpu(), w.cpu(), b.cpu()).to_vector<float>();
  out = Tensor();
  eng::cuda::synchronize();
  const size_t driver_allocs = eng::cuda::alloc::stats().num_device_allocs;

  eng::cuda::Graph g;
  CHECK_FALSE(g.captured());
  g.capture(step);
  REQUIRE(g.captured());
  CHECK_FALSE(eng::cuda::alloc::capturing());
  CHECK(eng::cuda::alloc::graph_pools() >= 1);
  CHECK(eng::cuda::alloc::stats().num_device_allocs == driver_allocs);  // rule 4
  REQUIRE(out.defined());

  g.replay();
  CHECK(test::compare(out.cpu(), eng::from_vector(want1, {8}), test::kGemmAtol, test::kGemmRtol) == "");
  g.replay();  // idempotent: no state carried between replays
  CHECK(test::compare(out.cpu(), eng::from_vector(want1, {8}), test::kGemmAtol, test::kGemmRtol) == "");

  // New data into the same address, then a replay: the new result.
  const Tensor x2 = ramp(8, 16, -0.75f, Device::cpu());
  x.copy_(x2);
  const std::vector<float> want2 = compute(x2, w.cpu(), b.cpu()).to_vector<float>();
  REQUIRE(want2 != want1);
  const size_t after_copy = eng::cuda::alloc::stats().num_device_allocs;  // copy_ may stage
  g.replay();
  CHECK(test::compare(out.cpu(), eng::from_vector(want2, {8}), test::kGemmAtol, test::kGemmRtol) == "");
  CHECK(eng::cuda::alloc::stats().num_device_allocs == after_copy);  // replays allocate nothing
}

TEST_CASE("cuda graph: blocks of a live graph are never handed to eager allocations", "[engine][cuda_graph][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  eng::NoGradGuard no_grad;
  const Device dev = Device::cuda();
  constexpr int64_t kRows = 1000, kCols = 37;  // a size no other test uses
  Tensor x = ramp(kRows, kCols, 0.5f, dev);
  Tensor out;
  void* tmp_addr = nullptr;
  auto step = [&] {
    Tensor tmp = eng::mul_scalar(x, 3.0);  // released inside the capture
    tmp_addr = tmp.raw_data();
    out = eng::add_scalar(tmp, 1.0);
  };
  step();
  out = Tensor();
  eng::cuda::synchronize();
  {
    eng::cuda::Graph g;
    g.capture(step);
    void* out_addr = out.raw_data();
    out = Tensor();  // released after the capture: back to the graph's pool (rule 5)
    // Eager allocations of the same size get neither the temporary nor the output block.
    std::vector<Tensor> eager;
    for (int i = 0; i < 4; ++i) {
      eager.push_back(eng::empty({kRows, kCols}, eng::TensorOptions(DType::f32).device(dev)));
      CHECK(eager.back().raw_data() != out_addr);
      CHECK(eager.back().raw_data() != tmp_addr);
    }
  }
  // With the graph gone its blocks are ordinary cached blocks again.
  bool reused = false;
  std::vector<Tensor> eager;
  for (int i = 0; i < 4; ++i) {
    eager.push_back(eng::empty({kRows, kCols}, eng::TensorOptions(DType::f32).device(dev)));
    reused = reused || eager.back().raw_data() == tmp_addr;
  }
  CHECK(reused);
}

TEST_CASE("cuda graph: a capture that needs a driver allocation fails with a one-line error",
          "[engine][cuda_graph][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  eng::NoGradGuard no_grad;
  const Device dev = Device::cuda();
  Tensor x = ramp(777, 11, 0.5f, dev);  // this size: never warmed up
  Tensor out;
  eng::cuda::synchronize();
  eng::cuda::alloc::empty_cache();  // nothing cached: the capture would have to call cudaMalloc
  const size_t driver_allocs = eng::cuda::alloc::stats().num_device_allocs;
  eng::cuda::Graph g;
  try {
    g.capture([&] { out = eng::mul_scalar(x, 2.0); });
    FAIL("the capture should have failed");
  } catch (const eng::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("would call cudaMalloc during the capture") != std::string::npos);
    CHECK(msg.find("warm-up") != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
  CHECK_FALSE(g.captured());
  CHECK_FALSE(eng::cuda::alloc::capturing());
  CHECK(eng::cuda::alloc::stats().num_device_allocs == driver_allocs);
  // The stream is usable at once, eagerly.
  CHECK(eng::mul_scalar(x, 2.0).cpu().to_vector<float>() == eng::mul_scalar(x.cpu(), 2.0).to_vector<float>());
}

TEST_CASE("cuda graph: a host synchronisation inside the capture fails it and leaves the stream usable",
          "[engine][cuda_graph][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  eng::NoGradGuard no_grad;
  const Device dev = Device::cuda();
  Tensor x = ramp(4, 4, 1.0f, dev);
  auto step = [&] { (void)eng::sum(x).item(); };
  step();  // warm-up: the allocation is cached, only the sync is wrong
  eng::cuda::Graph g;
  try {
    g.capture(step);
    FAIL("the capture should have failed");
  } catch (const eng::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("Graph::capture") != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
  CHECK_FALSE(g.captured());
  CHECK_THROWS_WITH(g.replay(), Catch::Contains("nothing was captured"));
  CHECK(eng::sum(x).item() == Approx(eng::sum(x.cpu()).item()));
}

TEST_CASE("cuda graph: a pinned block released during a capture is cached after it, not lost to the graph",
          "[engine][cuda_graph][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  eng::NoGradGuard no_grad;
  const Device dev = Device::cuda();
  Tensor x = ramp(3, 5, 1.0f, dev);
  Tensor out;
  Tensor host = eng::empty_pinned({5555555}, DType::f32);  // a rounded size (24 MiB) no other test pins
  void* const host_addr = host.raw_data();
  auto step = [&] { out = eng::mul_scalar(x, 2.0); };
  step();
  out = Tensor();  // warm-up done: its block is cached for the capture
  eng::cuda::Graph g;
  g.capture([&] {
    host = Tensor();  // released in the capture: an event recorded now would join the graph
    step();
  });
  REQUIRE(g.captured());
  g.replay();
  eng::cuda::synchronize();
  // The first allocation after the capture records the deferred events; the stream is idle,
  // so the block is free again at once.
  Tensor again = eng::empty_pinned({5555555}, DType::f32);
  CHECK(again.raw_data() == host_addr);
}
