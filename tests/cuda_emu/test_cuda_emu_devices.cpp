// Self-tests of the emulator's device numbering (tools/cuda_emu/runtime.cpp): one device by
// default, CUDA_EMU_DEVICES=N shows N (so that each rank of an emulated data-parallel run
// finds the GPU of its local rank), and a device outside the count is refused as CUDA does.
// The engine's eng::cuda::set_device_index checks against the same count.
#include <catch2/catch.hpp>
#include <cuda_runtime.h>

#include <cstdlib>

#include "engine/allocator.h"
#include "engine/cuda_context.h"
#include "engine/error.h"

namespace {

struct DevicesEnv {  // sets CUDA_EMU_DEVICES for a scope
  explicit DevicesEnv(const char* v) {
    if (v) ::setenv("CUDA_EMU_DEVICES", v, 1);
    else ::unsetenv("CUDA_EMU_DEVICES");
  }
  ~DevicesEnv() { ::unsetenv("CUDA_EMU_DEVICES"); }
};

int count() {
  int n = -1;
  REQUIRE(cudaGetDeviceCount(&n) == cudaSuccess);
  return n;
}

}  // namespace

TEST_CASE("cuda_emu: one device by default, CUDA_EMU_DEVICES shows more", "[cuda_emu]") {
  {
    DevicesEnv e(nullptr);
    CHECK(count() == 1);
    CHECK(cudaSetDevice(0) == cudaSuccess);
    CHECK(cudaSetDevice(1) == cudaErrorInvalidDevice);
    CHECK(cudaGetLastError() == cudaErrorInvalidDevice);
    CHECK(cudaSetDevice(-1) == cudaErrorInvalidDevice);
    cudaGetLastError();
  }
  {
    DevicesEnv e("3");
    CHECK(count() == 3);
    REQUIRE(cudaSetDevice(2) == cudaSuccess);
    int d = -1;
    REQUIRE(cudaGetDevice(&d) == cudaSuccess);
    CHECK(d == 2);
    cudaDeviceProp prop{};
    CHECK(cudaGetDeviceProperties(&prop, 2) == cudaSuccess);
    CHECK(cudaGetDeviceProperties(&prop, 3) == cudaErrorInvalidDevice);
    CHECK(cudaSetDevice(3) == cudaErrorInvalidDevice);
    cudaGetLastError();
    REQUIRE(cudaSetDevice(0) == cudaSuccess);
  }
  // A malformed or out-of-range value shows the default single device.
  for (const char* bad : {"x", "0", "65", "2x", ""}) {
    DevicesEnv e(bad);
    CHECK(count() == 1);
  }
  int* none = nullptr;
  CHECK(cudaGetDeviceCount(none) == cudaErrorInvalidValue);
  cudaGetLastError();
}

TEST_CASE("cuda_emu: eng::cuda::set_device_index refuses a device the machine does not show", "[cuda_emu]") {
  DevicesEnv e("2");
  CHECK(eng::cuda::device_count() == 2);
  CHECK_THROWS_WITH(eng::cuda::set_device_index(2), Catch::Contains("CUDA device 2 does not exist (this machine shows 2 devices)"));
  CHECK_THROWS_AS(eng::cuda::set_device_index(-1), eng::Error);
  eng::cuda::set_device_index(1);
  CHECK(eng::cuda::device_index() == 1);
  int d = -1;
  REQUIRE(cudaGetDevice(&d) == cudaSuccess);
  CHECK(d == 1);
}
