// The copy stream, events and the stream rule of the allocators (engine/allocator.h).
// On a GPU these check that uploads and events deliver the right values. On the emulator,
// whose streams run lazily in an adversarial order (tools/cuda_emu/streams.cpp), each rule
// test also runs with the rule switched off (eng::cuda::testing) and must then see the
// wrong value: so the rule, not luck in the ordering, is what keeps the data correct.
#include "engine/cuda_context.h"
#include "test_helpers.h"
#ifdef ENGINE_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/copy.h"
#endif

using eng::Device;
using eng::DType;
using eng::Tensor;

namespace {

#ifdef ENGINE_WITH_CUDA
bool emulated() { return eng::cuda::device_info().name.find("cuda-emu") != std::string::npos; }

Tensor pinned_full(int64_t n, float value) {
  Tensor h = eng::empty_pinned({n}, DType::f32);
  float* p = h.data<float>();
  for (int64_t i = 0; i < n; ++i) p[i] = value;
  return h;
}

// Restores the rule whatever the test does.
struct RuleOff {
  RuleOff() { eng::cuda::testing::set_stream_rule(false); }
  ~RuleOff() { eng::cuda::testing::set_stream_rule(true); }
};

#endif

constexpr int64_t kN = 4096;

}  // namespace

TEST_CASE("streams: upload delivers pinned and pageable tensors to the compute stream", "[engine][streams][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (bool pinned : {true, false}) {
    Tensor h = pinned ? eng::empty_pinned({3, 5}, DType::f32) : eng::empty({3, 5}, DType::f32);
    for (int i = 0; i < 15; ++i) h.data<float>()[i] = static_cast<float>(i) - 4.5f;
    Tensor d = eng::cuda::upload(h);
    CHECK(d.is_cuda());
    CHECK(d.sizes() == h.sizes());
    Tensor y = eng::mul(d, eng::full({3, 5}, 2.0, Device::cuda()));  // on the compute stream
    std::vector<float> want(15);
    for (int i = 0; i < 15; ++i) want[i] = 2.0f * (static_cast<float>(i) - 4.5f);
    CHECK(y.cpu().to_vector<float>() == want);
  }
  Tensor u8 = eng::empty_pinned({2, 3}, DType::u8);
  for (int i = 0; i < 6; ++i) u8.data<uint8_t>()[i] = static_cast<uint8_t>(250 + i);
  Tensor du8 = eng::cuda::upload(u8);
  CHECK(du8.dtype() == DType::u8);
  CHECK(du8.cpu().to_vector<int>() == std::vector<int>{250, 251, 252, 253, 254, 255});
  CHECK(eng::cuda::upload(eng::empty({0}, DType::f32)).numel() == 0);
}

TEST_CASE("streams: upload refuses what it cannot copy with a one-line error", "[engine][streams][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  CHECK_THROWS_WITH(eng::cuda::upload(eng::zeros({2}, Device::cuda())),
                    Catch::Contains("upload") && Catch::Contains("CPU tensor"));
  CHECK_THROWS_WITH(eng::cuda::upload(eng::zeros({2, 3}).transpose(0, 1)),
                    Catch::Contains("upload") && Catch::Contains("contiguous") && Catch::Contains("[3, 2]"));
}

#ifdef ENGINE_WITH_CUDA
TEST_CASE("streams: an event orders the copy stream before the compute stream", "[engine][streams][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  eng::cuda::Event e;
  CHECK_FALSE(e.recorded());
  CHECK(e.query());  // nothing recorded: nothing to wait for
  Tensor d = eng::zeros({kN}, Device::cuda());
  eng::cuda::synchronize();
  kern::cuda::fill(d.raw_data(), kern::ElemType::f32, kN, 3.0, eng::cuda::copy_stream());
  e.record(eng::cuda::copy_stream());
  if (emulated()) CHECK_FALSE(e.query());  // the fill is still queued
  e.wait_on(eng::cuda::stream());
  Tensor y = eng::add(d, eng::full({kN}, 1.0, Device::cuda()));
  CHECK(y.cpu().to_vector<float>() == std::vector<float>(kN, 4.0f));
  e.synchronize();
  CHECK(e.query());
  eng::cuda::Event moved = std::move(e);
  CHECK(moved.recorded());
  CHECK_FALSE(e.recorded());  // NOLINT(bugprone-use-after-move): a moved-from event is empty
}

TEST_CASE("streams: a device block a queued copy still writes is not given to the compute stream",
          "[engine][streams][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // A block used by the copy stream is released while its copy is queued; the compute stream
  // then allocates the same size and fills it. Read back once, then again after the device
  // has drained: with the rule the value stays, without it the late copy overwrites it.
  // Each run has its own size, so that blocks cached by an earlier run cannot stand in.
  auto run = [](int64_t n) {
    Tensor h = pinned_full(n, 1.0f);
    {
      eng::cuda::alloc::StreamGuard guard(eng::cuda::copy_stream());
      Tensor d = eng::empty({n}, Device::cuda());
      kern::cuda::memcpy_h2d_async(d.raw_data(), h.raw_data(), n * sizeof(float), eng::cuda::copy_stream());
      eng::cuda::pinned::record_stream(h.storage()->data(), eng::cuda::copy_stream());
    }  // d released here, its copy still queued
    Tensor t = eng::full({n}, 5.0, Device::cuda());
    const std::vector<float> first = t.cpu().to_vector<float>();
    cudaDeviceSynchronize();
    const std::vector<float> later = t.cpu().to_vector<float>();
    return std::make_pair(first, later);
  };
  const int64_t n1 = kN + 1024, n2 = kN + 2048;
  const auto [first, later] = run(n1);
  CHECK(first == std::vector<float>(n1, 5.0f));
  CHECK(later == std::vector<float>(n1, 5.0f));
  if (emulated()) {
    RuleOff off;
    const auto [f2, l2] = run(n2);
    CHECK(f2 == std::vector<float>(n2, 5.0f));
    CHECK(l2 == std::vector<float>(n2, 1.0f));  // clobbered by the copy that ran late
  }
}

TEST_CASE("streams: a device block the compute stream still reads is not refilled by the copy stream",
          "[engine][streams][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // Upload a batch, queue a kernel that reads it, drop it, upload the next batch of the same
  // size, and let the host wait for the copy stream (as a loader would): the second copy
  // must not land in the block the queued kernel has yet to read.
  auto run = [](int64_t n) {
    Tensor h1 = pinned_full(n, 1.0f), h2 = pinned_full(n, 3.0f);
    Tensor d1 = eng::cuda::upload(h1);
    Tensor y = eng::mul(d1, eng::full({n}, 2.0, Device::cuda()));
    d1 = Tensor();
    Tensor d2 = eng::cuda::upload(h2);
    cudaStreamSynchronize(eng::cuda::copy_stream());
    return y.cpu().to_vector<float>();
  };
  const int64_t n1 = kN + 3072, n2 = kN + 4096;
  CHECK(run(n1) == std::vector<float>(n1, 2.0f));
  if (emulated()) {
    RuleOff off;
    CHECK(run(n2) == std::vector<float>(n2, 6.0f));  // the mul read the second batch
  }
}

TEST_CASE("streams: a pinned block a queued copy still reads is not handed out again", "[engine][streams][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  auto run = [](int64_t n) {
    Tensor d = eng::empty({n}, Device::cuda());
    {
      Tensor h = pinned_full(n, 1.0f);
      kern::cuda::memcpy_h2d_async(d.raw_data(), h.raw_data(), n * sizeof(float), eng::cuda::copy_stream());
      eng::cuda::pinned::record_stream(h.storage()->data(), eng::cuda::copy_stream());
    }  // released while the copy is queued on the copy stream
    Tensor h2 = pinned_full(n, 7.0f);  // the next batch, same size
    cudaStreamSynchronize(eng::cuda::copy_stream());
    return d.cpu().to_vector<float>();
  };
  const int64_t n1 = kN + 5, n2 = 2 * kN + 7;  // different rounded pinned sizes
  CHECK(run(n1) == std::vector<float>(n1, 1.0f));
  if (emulated()) {
    RuleOff off;
    CHECK(run(n2) == std::vector<float>(n2, 7.0f));  // the copy read the refilled block
  }
}
#endif  // ENGINE_WITH_CUDA
