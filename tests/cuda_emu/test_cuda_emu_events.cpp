// Self-tests of the emulator's events: cudaEventElapsedTime measures the host time between
// two records (the emulator finishes every call before it returns, so a record is the moment
// all earlier work is done) and refuses what CUDA refuses. Built only with
// -DENGINE_CUDA_EMULATOR=ON.
#include <catch2/catch.hpp>
#include <cuda_runtime.h>

#include <chrono>
#include <string>
#include <thread>

namespace {

struct Events {
  cudaEvent_t a = nullptr, b = nullptr;
  explicit Events(unsigned int flags_b = cudaEventDefault) {
    REQUIRE(cudaEventCreate(&a) == cudaSuccess);
    REQUIRE(cudaEventCreateWithFlags(&b, flags_b) == cudaSuccess);
  }
  ~Events() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
};

}  // namespace

TEST_CASE("cuda_emu: cudaEventElapsedTime gives the time between two records", "[cuda_emu]") {
  Events e;
  REQUIRE(cudaEventRecord(e.a) == cudaSuccess);
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  const double host_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(cudaEventRecord(e.b) == cudaSuccess);
  REQUIRE(cudaEventSynchronize(e.b) == cudaSuccess);
  float ms = -1;
  REQUIRE(cudaEventElapsedTime(&ms, e.a, e.b) == cudaSuccess);
  CHECK(ms >= 30.0f);
  CHECK(ms <= host_ms + 50.0);  // the sleep, plus the two calls around it
  float back = 0;
  REQUIRE(cudaEventElapsedTime(&back, e.b, e.a) == cudaSuccess);
  CHECK(back == Approx(-ms));  // end before start: negative, as in CUDA
  // A later record moves the event.
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(cudaEventRecord(e.b) == cudaSuccess);
  float later = 0;
  REQUIRE(cudaEventElapsedTime(&later, e.a, e.b) == cudaSuccess);
  CHECK(later >= ms + 5.0f);
  CHECK(cudaGetLastError() == cudaSuccess);
}

TEST_CASE("cuda_emu: cudaEventElapsedTime refuses what CUDA refuses", "[cuda_emu]") {
  float ms = 0;
  SECTION("an event never recorded") {
    Events e;
    REQUIRE(cudaEventRecord(e.a) == cudaSuccess);
    CHECK(cudaEventElapsedTime(&ms, e.a, e.b) == cudaErrorInvalidResourceHandle);
    CHECK(cudaGetLastError() == cudaErrorInvalidResourceHandle);  // also the last error
    CHECK(cudaGetLastError() == cudaSuccess);
    CHECK(cudaEventElapsedTime(&ms, e.b, e.a) == cudaErrorInvalidResourceHandle);
    cudaGetLastError();
  }
  SECTION("an event created with cudaEventDisableTiming") {
    Events e(cudaEventDisableTiming);
    REQUIRE(cudaEventRecord(e.a) == cudaSuccess);
    REQUIRE(cudaEventRecord(e.b) == cudaSuccess);
    CHECK(cudaEventQuery(e.b) == cudaSuccess);  // usable for ordering, not for timing
    CHECK(cudaEventElapsedTime(&ms, e.a, e.b) == cudaErrorInvalidResourceHandle);
    cudaGetLastError();
  }
  SECTION("null arguments") {
    Events e;
    REQUIRE(cudaEventRecord(e.a) == cudaSuccess);
    REQUIRE(cudaEventRecord(e.b) == cudaSuccess);
    CHECK(cudaEventElapsedTime(nullptr, e.a, e.b) == cudaErrorInvalidValue);
    CHECK(cudaEventElapsedTime(&ms, nullptr, e.b) == cudaErrorInvalidResourceHandle);
    CHECK(cudaEventRecord(nullptr) == cudaErrorInvalidResourceHandle);
    cudaGetLastError();
  }
  CHECK(std::string(cudaGetErrorString(cudaErrorInvalidResourceHandle)) == "invalid resource handle");
}
