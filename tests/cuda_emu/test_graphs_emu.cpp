// Self-tests of the emulator's CUDA graphs (tools/cuda_emu/graphs.cpp): captured work is
// recorded, not run; each launch replays it in order on its stream; a forked stream must
// join back; and every call that is illegal while capturing fails with CUDA's error code
// and invalidates the capture, so that cudaStreamEndCapture fails too.
#include <catch2/catch.hpp>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <vector>

namespace {

constexpr int kN = 64;

void add_kernel(int* x, int n, int v) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += v;
}
void scale_add_kernel(int* x, int n, int mul, int add) {  // order-sensitive
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] = x[i] * mul + add;
}

struct Fixture {
  cudaStream_t s = nullptr;
  int* d = nullptr;
  Fixture() {
    REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    REQUIRE(cudaMalloc(reinterpret_cast<void**>(&d), kN * sizeof(int)) == cudaSuccess);
    REQUIRE(cudaMemset(d, 0, kN * sizeof(int)) == cudaSuccess);
  }
  ~Fixture() {
    cudaStreamCaptureStatus st;
    if (cudaStreamIsCapturing(s, &st) == cudaSuccess && st != cudaStreamCaptureStatusNone) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(s, &g);
      if (g) cudaGraphDestroy(g);
    }
    cudaGetLastError();
    cudaDeviceSynchronize();
    cudaFree(d);
    cudaStreamDestroy(s);
  }
  std::vector<int> read() {
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    std::vector<int> h(kN);
    REQUIRE(cudaMemcpy(h.data(), d, kN * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
    return h;
  }
  // Ends the capture that an illegal call must have invalidated.
  void expect_invalidated() {
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    REQUIRE(cudaStreamIsCapturing(s, &st) == cudaSuccess);
    CHECK(st == cudaStreamCaptureStatusInvalidated);
    cudaGraph_t g = reinterpret_cast<cudaGraph_t>(1);
    CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated);
    CHECK(g == nullptr);
    cudaGetLastError();
  }
};

}  // namespace

TEST_CASE("cuda_emu graphs: captured work does not run at capture, each replay runs it in order", "[cuda_emu]") {
  Fixture f;
  REQUIRE(cudaStreamBeginCapture(f.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  REQUIRE(cudaStreamIsCapturing(f.s, &st) == cudaSuccess);
  CHECK(st == cudaStreamCaptureStatusActive);
  emu::launch(scale_add_kernel, 1, kN, 0, f.s)(f.d, kN, 2, 1);  // x = 2x + 1
  emu::launch(add_kernel, 1, kN, 0, f.s)(f.d, kN, 3);           // x = x + 3
  CHECK(emu::pending(f.s) == 0);                                // recorded, not queued
  cudaGraph_t g = nullptr;
  REQUIRE(cudaStreamEndCapture(f.s, &g) == cudaSuccess);
  REQUIRE(g != nullptr);
  CHECK(emu::graph_nodes(g) == 2);
  REQUIRE(cudaStreamIsCapturing(f.s, &st) == cudaSuccess);
  CHECK(st == cudaStreamCaptureStatusNone);
  CHECK(f.read() == std::vector<int>(kN, 0));  // nothing ran at capture

  cudaGraphExec_t exec = nullptr;
  REQUIRE(cudaGraphInstantiate(&exec, g, 0) == cudaSuccess);
  REQUIRE(cudaGraphLaunch(exec, f.s) == cudaSuccess);
  CHECK(f.read() == std::vector<int>(kN, 4));   // 2*0+1+3
  REQUIRE(cudaGraphLaunch(exec, f.s) == cudaSuccess);
  CHECK(f.read() == std::vector<int>(kN, 12));  // 2*4+1+3: twice, in order
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(cudaGraphExecDestroy(exec) == cudaSuccess);
  CHECK(cudaGraphDestroy(g) == cudaSuccess);
}

TEST_CASE("cuda_emu graphs: async copies from pinned memory, memsets and cuBLAS are captured and replayed",
          "[cuda_emu]") {
  Fixture f;
  int* pinned = nullptr;
  REQUIRE(cudaMallocHost(reinterpret_cast<void**>(&pinned), kN * sizeof(int)) == cudaSuccess);
  float *a = nullptr, *c = nullptr;
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&a), 4 * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&c), 4 * sizeof(float)) == cudaSuccess);
  const std::vector<float> ha = {1, 2, 3, 4};  // 2x2 column-major
  REQUIRE(cudaMemcpy(a, ha.data(), sizeof(float) * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  cublasHandle_t h = nullptr;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSetStream(h, f.s) == CUBLAS_STATUS_SUCCESS);

  REQUIRE(cudaStreamBeginCapture(f.s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
  REQUIRE(cudaMemsetAsync(f.d, 0, kN * sizeof(int), f.s) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(f.d, pinned, kN * sizeof(int), cudaMemcpyHostToDevice, f.s) == cudaSuccess);
  emu::launch(add_kernel, 1, kN, 0, f.s)(f.d, kN, 1);
  const float one = 1.0f, zero = 0.0f;
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, a, 2, a, 2, &zero, c, 2) == CUBLAS_STATUS_SUCCESS);
  cudaGraph_t g = nullptr;
  REQUIRE(cudaStreamEndCapture(f.s, &g) == cudaSuccess);
  CHECK(emu::graph_nodes(g) == 4);
  cudaGraphExec_t exec = nullptr;
  REQUIRE(cudaGraphInstantiate(&exec, g) == cudaSuccess);

  // The pinned source is read when the graph runs: new data in it gives a new result.
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < kN; ++i) pinned[i] = 10 * round + i;
    REQUIRE(cudaGraphLaunch(exec, f.s) == cudaSuccess);
    const std::vector<int> got = f.read();
    for (int i = 0; i < kN; ++i) CHECK(got[i] == 10 * round + i + 1);
  }
  std::vector<float> hc(4);
  REQUIRE(cudaMemcpy(hc.data(), c, sizeof(float) * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(hc == std::vector<float>{7, 10, 15, 22});  // A*A
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(g);
  cublasDestroy(h);
  cudaFree(a);
  cudaFree(c);
  cudaFreeHost(pinned);
}

TEST_CASE("cuda_emu graphs: a forked stream is captured and must join back", "[cuda_emu]") {
  Fixture f;
  cudaStream_t side = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking) == cudaSuccess);
  cudaEvent_t fork = nullptr, join = nullptr;
  REQUIRE(cudaEventCreate(&fork) == cudaSuccess);
  REQUIRE(cudaEventCreate(&join) == cudaSuccess);

  REQUIRE(cudaStreamBeginCapture(f.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  emu::launch(add_kernel, 1, kN, 0, f.s)(f.d, kN, 1);
  REQUIRE(cudaEventRecord(fork, f.s) == cudaSuccess);
  REQUIRE(cudaStreamWaitEvent(side, fork, 0) == cudaSuccess);  // side joins the capture
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  REQUIRE(cudaStreamIsCapturing(side, &st) == cudaSuccess);
  CHECK(st == cudaStreamCaptureStatusActive);
  emu::launch(scale_add_kernel, 1, kN, 0, side)(f.d, kN, 10, 0);
  CHECK(emu::pending(side) == 0);

  SECTION("joined: the graph holds both streams' work in issue order") {
    REQUIRE(cudaEventRecord(join, side) == cudaSuccess);
    REQUIRE(cudaStreamWaitEvent(f.s, join, 0) == cudaSuccess);
    emu::launch(add_kernel, 1, kN, 0, f.s)(f.d, kN, 2);
    cudaGraph_t g = nullptr;
    REQUIRE(cudaStreamEndCapture(f.s, &g) == cudaSuccess);
    REQUIRE(cudaStreamIsCapturing(side, &st) == cudaSuccess);
    CHECK(st == cudaStreamCaptureStatusNone);
    CHECK(emu::graph_nodes(g) == 3);
    cudaGraphExec_t exec = nullptr;
    REQUIRE(cudaGraphInstantiate(&exec, g) == cudaSuccess);
    REQUIRE(cudaGraphLaunch(exec, f.s) == cudaSuccess);
    CHECK(f.read() == std::vector<int>(kN, 12));  // (0+1)*10+2
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g);
  }
  SECTION("not joined: cudaErrorStreamCaptureUnjoined") {
    cudaGraph_t g = nullptr;
    CHECK(cudaStreamEndCapture(f.s, &g) == cudaErrorStreamCaptureUnjoined);
    CHECK(g == nullptr);
  }
  SECTION("a wait on work outside the capture: cudaErrorStreamCaptureIsolation") {
    cudaStream_t other = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking) == cudaSuccess);
    cudaEvent_t outside = nullptr;
    REQUIRE(cudaEventCreate(&outside) == cudaSuccess);
    REQUIRE(cudaEventRecord(outside, other) == cudaSuccess);
    CHECK(cudaStreamWaitEvent(f.s, outside, 0) == cudaErrorStreamCaptureIsolation);
    f.expect_invalidated();
    cudaEventDestroy(outside);
    cudaStreamDestroy(other);
  }
  cudaEventDestroy(fork);
  cudaEventDestroy(join);
  cudaStreamDestroy(side);
}

TEST_CASE("cuda_emu graphs: every call that is illegal while capturing fails and invalidates the capture",
          "[cuda_emu]") {
  Fixture f;
  REQUIRE(cudaStreamBeginCapture(f.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  emu::launch(add_kernel, 1, kN, 0, f.s)(f.d, kN, 5);
  std::vector<int> host(kN, 0);
  void* p = nullptr;

  SECTION("cudaStreamSynchronize") { CHECK(cudaStreamSynchronize(f.s) == cudaErrorStreamCaptureUnsupported); }
  SECTION("cudaStreamQuery") { CHECK(cudaStreamQuery(f.s) == cudaErrorStreamCaptureUnsupported); }
  SECTION("cudaDeviceSynchronize") { CHECK(cudaDeviceSynchronize() == cudaErrorStreamCaptureUnsupported); }
  SECTION("cudaEventSynchronize and cudaEventQuery of captured work") {
    cudaEvent_t e = nullptr;
    REQUIRE(cudaEventCreate(&e) == cudaSuccess);
    REQUIRE(cudaEventRecord(e, f.s) == cudaSuccess);
    CHECK(cudaEventQuery(e) == cudaErrorCapturedEvent);
    CHECK(cudaEventSynchronize(e) == cudaErrorCapturedEvent);
    cudaEventDestroy(e);
  }
  SECTION("a synchronous cudaMemcpy") {
    CHECK(cudaMemcpy(host.data(), f.d, kN * sizeof(int), cudaMemcpyDeviceToHost) == cudaErrorStreamCaptureUnsupported);
  }
  SECTION("cudaMemcpyAsync from pageable host memory") {
    CHECK(cudaMemcpyAsync(f.d, host.data(), kN * sizeof(int), cudaMemcpyHostToDevice, f.s) ==
          cudaErrorStreamCaptureUnsupported);
  }
  SECTION("cudaMemcpyAsync to pageable host memory") {
    CHECK(cudaMemcpyAsync(host.data(), f.d, kN * sizeof(int), cudaMemcpyDeviceToHost, f.s) ==
          cudaErrorStreamCaptureUnsupported);
  }
  SECTION("cudaMalloc") {
    CHECK(cudaMalloc(&p, 256) == cudaErrorStreamCaptureUnsupported);
    CHECK(p == nullptr);
  }
  SECTION("cudaHostAlloc") { CHECK(cudaHostAlloc(&p, 256, cudaHostAllocDefault) == cudaErrorStreamCaptureUnsupported); }
  SECTION("cudaFree") { CHECK(cudaFree(f.d) == cudaErrorStreamCaptureUnsupported); }
  SECTION("cudaMemset") { CHECK(cudaMemset(f.d, 0, 4) == cudaErrorStreamCaptureUnsupported); }

  // After the illegal call, work on the capture is dropped with the error and nothing runs.
  emu::launch(add_kernel, 1, kN, 0, f.s)(f.d, kN, 7);
  CHECK(cudaGetLastError() == cudaErrorStreamCaptureInvalidated);
  f.expect_invalidated();
  CHECK(f.read() == std::vector<int>(kN, 0));
}

TEST_CASE("cuda_emu graphs: relaxed capture allows cudaMalloc, not a sync of the capturing stream", "[cuda_emu]") {
  Fixture f;
  REQUIRE(cudaStreamBeginCapture(f.s, cudaStreamCaptureModeRelaxed) == cudaSuccess);
  void* p = nullptr;
  CHECK(cudaMalloc(&p, 256) == cudaSuccess);
  emu::launch(add_kernel, 1, kN, 0, f.s)(f.d, kN, 5);
  cudaGraph_t g = nullptr;
  SECTION("no sync: the capture succeeds") {
    REQUIRE(cudaStreamEndCapture(f.s, &g) == cudaSuccess);
    CHECK(emu::graph_nodes(g) == 1);
    cudaGraphDestroy(g);
  }
  SECTION("a sync of the stream still fails") {
    CHECK(cudaStreamSynchronize(f.s) == cudaErrorStreamCaptureUnsupported);
    f.expect_invalidated();
  }
  CHECK(cudaFree(p) == cudaSuccess);
}

TEST_CASE("cuda_emu graphs: wrong calls fail", "[cuda_emu]") {
  Fixture f;
  cudaGraph_t g = nullptr;
  CHECK(cudaStreamEndCapture(f.s, &g) == cudaErrorStreamCaptureUnmatched);  // not capturing
  CHECK(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal) == cudaErrorStreamCaptureUnsupported);
  REQUIRE(cudaStreamBeginCapture(f.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  CHECK(cudaStreamBeginCapture(f.s, cudaStreamCaptureModeGlobal) == cudaErrorIllegalState);  // twice
  REQUIRE(cudaStreamEndCapture(f.s, &g) == cudaSuccess);
  CHECK(emu::graph_nodes(g) == 0);
  cudaGraphExec_t exec = nullptr;
  CHECK(cudaGraphInstantiate(&exec, nullptr) == cudaErrorInvalidValue);
  CHECK(cudaGraphLaunch(nullptr, f.s) == cudaErrorInvalidValue);
  REQUIRE(cudaGraphInstantiate(&exec, g) == cudaSuccess);
  REQUIRE(cudaGraphLaunch(exec, f.s) == cudaSuccess);  // an empty graph does nothing
  CHECK(f.read() == std::vector<int>(kN, 0));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(g);
}
