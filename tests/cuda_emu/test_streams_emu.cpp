// Self-tests of the emulator's streams and events (tools/cuda_emu/streams.cpp): streams are
// in-order queues that run lazily, independent streams run in the order that exposes a
// missing event (a consumer synchronised first reads what its producer has not written), a
// cudaStreamWaitEvent orders them, synchronisation drains, cudaEventQuery reports deferred
// work as not ready, and copies follow CUDA's pageable / pinned rules.
#include <catch2/catch.hpp>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <vector>

namespace {

template <typename T>
T* device_array(size_t n) {
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
  return static_cast<T*>(p);
}

void fill_kernel(int* out, int n, int value) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = value;
}
void copy_kernel(const int* in, int* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i];
}
void scale_add_kernel(int* x, int n, int mul, int add) {  // x = x * mul + add: order-sensitive
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] = x[i] * mul + add;
}

// Two non-blocking streams, destroyed at the end of a test (after draining the device).
struct Streams {
  cudaStream_t producer = nullptr, consumer = nullptr;
  Streams() {
    REQUIRE(cudaStreamCreateWithFlags(&producer, cudaStreamNonBlocking) == cudaSuccess);
    REQUIRE(cudaStreamCreateWithFlags(&consumer, cudaStreamNonBlocking) == cudaSuccess);
  }
  ~Streams() {
    cudaDeviceSynchronize();
    cudaStreamDestroy(producer);
    cudaStreamDestroy(consumer);
  }
};

std::vector<int> read(const int* p, int n) {  // after the writer has been synchronised
  std::vector<int> h(n);
  REQUIRE(cudaMemcpy(h.data(), p, n * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
  return h;
}

constexpr int kN = 64;

}  // namespace

TEST_CASE("cuda_emu streams: a consumer without an event reads stale data, with the event the produced data",
          "[cuda_emu]") {
  Streams st;
  int* buf = device_array<int>(kN);
  int* out = device_array<int>(kN);
  REQUIRE(cudaMemset(buf, 0, kN * sizeof(int)) == cudaSuccess);

  // Missing event: the producer's fill is still queued when the consumer runs.
  emu::launch(fill_kernel, 1, kN, 0, st.producer)(buf, kN, 7);
  emu::launch(copy_kernel, 1, kN, 0, st.consumer)(buf, out, kN);
  REQUIRE(cudaStreamSynchronize(st.consumer) == cudaSuccess);
  CHECK(read(out, kN) == std::vector<int>(kN, 0));  // stale: the bug shows up
  CHECK(emu::pending(st.producer) == 1);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  CHECK(read(buf, kN) == std::vector<int>(kN, 7));

  // With the event: the consumer's wait runs the producer up to the record first.
  cudaEvent_t ready = nullptr;
  REQUIRE(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming) == cudaSuccess);
  emu::launch(fill_kernel, 1, kN, 0, st.producer)(buf, kN, 9);
  REQUIRE(cudaEventRecord(ready, st.producer) == cudaSuccess);
  emu::launch(fill_kernel, 1, kN, 0, st.producer)(buf, kN, 11);  // after the event: not waited for
  REQUIRE(cudaStreamWaitEvent(st.consumer, ready, 0) == cudaSuccess);
  emu::launch(copy_kernel, 1, kN, 0, st.consumer)(buf, out, kN);
  REQUIRE(cudaStreamSynchronize(st.consumer) == cudaSuccess);
  CHECK(read(out, kN) == std::vector<int>(kN, 9));
  CHECK(emu::pending(st.producer) == 1);  // only what the event covers was run
  REQUIRE(cudaEventDestroy(ready) == cudaSuccess);
  cudaFree(buf);
  cudaFree(out);
}

TEST_CASE("cuda_emu streams: one stream runs its work in issue order, and only when needed", "[cuda_emu]") {
  Streams st;
  int* x = device_array<int>(kN);
  int* y = device_array<int>(kN);
  REQUIRE(cudaMemset(x, 0, kN * sizeof(int)) == cudaSuccess);
  REQUIRE(cudaMemset(y, 0, kN * sizeof(int)) == cudaSuccess);
  cudaStream_t s = st.producer;
  REQUIRE(cudaMemsetAsync(x, 0, kN * sizeof(int), s) == cudaSuccess);
  emu::launch(scale_add_kernel, 1, kN, 0, s)(x, kN, 10, 1);  // 1
  emu::launch(scale_add_kernel, 1, kN, 0, s)(x, kN, 10, 2);  // 12
  REQUIRE(cudaMemcpyAsync(y, x, kN * sizeof(int), cudaMemcpyDeviceToDevice, s) == cudaSuccess);
  emu::launch(scale_add_kernel, 1, kN, 0, s)(x, kN, 10, 3);  // 123, after the copy
  CHECK(emu::pending(s) == 5);
  CHECK(read(x, kN) == std::vector<int>(kN, 0));  // nothing has run yet
  REQUIRE(cudaStreamQuery(s) == cudaErrorNotReady);
  REQUIRE(cudaStreamQuery(s) == cudaSuccess);  // the query let the work run
  CHECK(read(x, kN) == std::vector<int>(kN, 123));
  CHECK(read(y, kN) == std::vector<int>(kN, 12));
  cudaFree(x);
  cudaFree(y);
}

TEST_CASE("cuda_emu streams: a wait captures the event's record at the call", "[cuda_emu]") {
  Streams st;
  int* buf = device_array<int>(kN);
  int* out = device_array<int>(kN);
  cudaEvent_t e = nullptr;
  REQUIRE(cudaEventCreate(&e) == cudaSuccess);
  emu::launch(fill_kernel, 1, kN, 0, st.producer)(buf, kN, 1);
  REQUIRE(cudaEventRecord(e, st.producer) == cudaSuccess);
  REQUIRE(cudaStreamWaitEvent(st.consumer, e, 0) == cudaSuccess);
  emu::launch(fill_kernel, 1, kN, 0, st.producer)(buf, kN, 2);
  REQUIRE(cudaEventRecord(e, st.producer) == cudaSuccess);  // re-recorded: the wait above keeps the first
  emu::launch(copy_kernel, 1, kN, 0, st.consumer)(buf, out, kN);
  REQUIRE(cudaStreamSynchronize(st.consumer) == cudaSuccess);
  CHECK(read(out, kN) == std::vector<int>(kN, 1));
  // An event recorded on a stream with nothing queued, or never recorded, is complete.
  cudaEvent_t idle = nullptr;
  REQUIRE(cudaEventCreate(&idle) == cudaSuccess);
  CHECK(cudaEventQuery(idle) == cudaSuccess);
  REQUIRE(cudaStreamSynchronize(st.producer) == cudaSuccess);
  REQUIRE(cudaEventRecord(idle, st.producer) == cudaSuccess);
  CHECK(cudaEventQuery(idle) == cudaSuccess);
  cudaEventDestroy(idle);
  cudaEventDestroy(e);
  cudaFree(buf);
  cudaFree(out);
}

TEST_CASE("cuda_emu streams: cudaEventQuery reports deferred work as not ready, synchronisation drains",
          "[cuda_emu]") {
  Streams st;
  int* buf = device_array<int>(kN);
  REQUIRE(cudaMemset(buf, 0, kN * sizeof(int)) == cudaSuccess);
  cudaEvent_t done = nullptr;
  REQUIRE(cudaEventCreate(&done) == cudaSuccess);
  emu::launch(fill_kernel, 1, kN, 0, st.producer)(buf, kN, 5);
  REQUIRE(cudaEventRecord(done, st.producer) == cudaSuccess);
  CHECK(cudaEventQuery(done) == cudaErrorNotReady);
  CHECK(cudaGetLastError() == cudaSuccess);  // not-ready is an answer, not a sticky error
  CHECK(cudaEventQuery(done) == cudaSuccess);  // a polling loop ends
  CHECK(read(buf, kN) == std::vector<int>(kN, 5));

  float ms = -1;
  cudaEvent_t start = nullptr;
  REQUIRE(cudaEventCreate(&start) == cudaSuccess);
  REQUIRE(cudaEventRecord(start, st.producer) == cudaSuccess);
  emu::launch(fill_kernel, 1, kN, 0, st.producer)(buf, kN, 6);
  REQUIRE(cudaEventRecord(done, st.producer) == cudaSuccess);
  CHECK(cudaEventElapsedTime(&ms, start, done) == cudaErrorNotReady);
  REQUIRE(cudaEventSynchronize(done) == cudaSuccess);
  CHECK(read(buf, kN) == std::vector<int>(kN, 6));
  CHECK(cudaEventElapsedTime(&ms, start, done) == cudaSuccess);
  cudaEvent_t untimed = nullptr;  // created with cudaEventDisableTiming: no elapsed time
  REQUIRE(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming) == cudaSuccess);
  REQUIRE(cudaEventRecord(untimed, st.producer) == cudaSuccess);
  CHECK(cudaEventElapsedTime(&ms, start, untimed) == cudaErrorInvalidResourceHandle);
  CHECK(cudaGetLastError() == cudaErrorInvalidResourceHandle);  // a refused call sets the last error
  cudaEventDestroy(untimed);

  // Stream synchronisation drains that stream only; the device synchronisation drains all.
  emu::launch(fill_kernel, 1, kN, 0, st.producer)(buf, kN, 8);
  emu::launch(fill_kernel, 1, kN, 0, st.consumer)(buf + kN / 2, kN / 2, 9);
  REQUIRE(cudaStreamSynchronize(st.consumer) == cudaSuccess);
  CHECK(emu::pending(st.producer) == 1);
  CHECK(emu::pending(st.consumer) == 0);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  CHECK(emu::pending(st.producer) == 0);
  CHECK(read(buf, kN)[0] == 8);
  // A stream's work may also be drained by freeing memory (cudaFree synchronises).
  emu::launch(fill_kernel, 1, kN, 0, st.producer)(buf, kN, 4);
  int* other = device_array<int>(1);
  cudaFree(other);
  CHECK(emu::pending(st.producer) == 0);
  cudaEventDestroy(start);
  cudaEventDestroy(done);
  cudaFree(buf);
}

TEST_CASE("cuda_emu streams: pageable copies are staged or synchronous, pinned copies read at run time",
          "[cuda_emu]") {
  Streams st;
  cudaStream_t s = st.producer;
  int* dev = device_array<int>(kN);
  std::vector<int> pageable(kN, 3);
  REQUIRE(cudaMemcpyAsync(dev, pageable.data(), kN * sizeof(int), cudaMemcpyHostToDevice, s) == cudaSuccess);
  std::fill(pageable.begin(), pageable.end(), 4);  // after the call: the staged copy keeps 3
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(read(dev, kN) == std::vector<int>(kN, 3));

  int* pinned = nullptr;
  REQUIRE(cudaHostAlloc(reinterpret_cast<void**>(&pinned), kN * sizeof(int), cudaHostAllocDefault) == cudaSuccess);
  CHECK(emu::is_pinned_host(pinned + 5));
  CHECK_FALSE(emu::is_pinned_host(pageable.data()));
  std::fill(pinned, pinned + kN, 5);
  REQUIRE(cudaMemcpyAsync(dev, pinned, kN * sizeof(int), cudaMemcpyHostToDevice, s) == cudaSuccess);
  std::fill(pinned, pinned + kN, 6);  // too early: DMA reads the block when the copy runs
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(read(dev, kN) == std::vector<int>(kN, 6));

  // Into pageable memory the call returns with the data; into pinned memory only after a sync.
  emu::launch(fill_kernel, 1, kN, 0, s)(dev, kN, 7);
  REQUIRE(cudaMemcpyAsync(pageable.data(), dev, kN * sizeof(int), cudaMemcpyDeviceToHost, s) == cudaSuccess);
  CHECK(pageable == std::vector<int>(kN, 7));
  emu::launch(fill_kernel, 1, kN, 0, s)(dev, kN, 8);
  REQUIRE(cudaMemcpyAsync(pinned, dev, kN * sizeof(int), cudaMemcpyDeviceToHost, s) == cudaSuccess);
  CHECK(pinned[0] == 6);
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(std::vector<int>(pinned, pinned + kN) == std::vector<int>(kN, 8));
  CHECK_FALSE(emu::is_pinned_host(dev));
  cudaFreeHost(pinned);
  CHECK_FALSE(emu::is_pinned_host(pinned));
  cudaFree(dev);
}

TEST_CASE("cuda_emu streams: the legacy stream is eager and waits only for blocking streams", "[cuda_emu]") {
  Streams st;  // non-blocking
  cudaStream_t blocking = nullptr;
  REQUIRE(cudaStreamCreate(&blocking) == cudaSuccess);
  int* a = device_array<int>(kN);
  int* b = device_array<int>(kN);
  emu::launch(fill_kernel, 1, kN, 0, blocking)(a, kN, 1);
  emu::launch(fill_kernel, 1, kN, 0, st.producer)(b, kN, 2);
  int* out = device_array<int>(kN);
  emu::launch(copy_kernel, 1, kN)(a, out, kN);  // legacy stream: runs now, after `blocking`
  CHECK(emu::pending(blocking) == 0);
  CHECK(emu::pending(st.producer) == 1);
  CHECK(std::vector<int>(out, out + kN) == std::vector<int>(kN, 1));
  // A synchronous copy is legacy-stream work too: it does not wait for a non-blocking stream.
  std::vector<int> h(kN, -5);
  REQUIRE(cudaMemcpy(h.data(), b, kN * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(h != std::vector<int>(kN, 2));
  CHECK(emu::pending(st.producer) == 1);
  REQUIRE(cudaStreamDestroy(blocking) == cudaSuccess);
  cudaFree(a);
  cudaFree(b);
  cudaFree(out);
}

TEST_CASE("cuda_emu streams: a bad launch on a stream fails at the launch, cuBLAS runs on its stream",
          "[cuda_emu]") {
  Streams st;
  int* buf = device_array<int>(kN);
  emu::launch(fill_kernel, 1, 2048, 0, st.producer)(buf, kN, 1);  // 2048 threads per block
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK(emu::pending(st.producer) == 0);

  float* A = device_array<float>(4);
  float* C = device_array<float>(4);
  const float a_host[4] = {1, 2, 3, 4};
  REQUIRE(cudaMemcpy(A, a_host, sizeof a_host, cudaMemcpyHostToDevice) == cudaSuccess);
  cublasHandle_t h = nullptr;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSetStream(h, st.consumer) == CUBLAS_STATUS_SUCCESS);
  float one = 1, zero = 0;
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, A, 2, A, 2, &zero, C, 2) == CUBLAS_STATUS_SUCCESS);
  one = 100;  // alpha was read at the call
  CHECK(emu::pending(st.consumer) == 1);
  REQUIRE(cudaStreamSynchronize(st.consumer) == cudaSuccess);
  CHECK(std::vector<float>(C, C + 4) == std::vector<float>{7, 10, 15, 22});
  cublasDestroy(h);
  cudaFree(buf);
  cudaFree(A);
  cudaFree(C);
}

TEST_CASE("cuda_emu streams: cuDNN and cub work runs on the handle's / call's stream", "[cuda_emu]") {
  Streams st;
  // cuDNN: C += A (4 floats), queued on the handle's stream.
  float* A = device_array<float>(4);
  float* C = device_array<float>(4);
  for (int i = 0; i < 4; ++i) A[i] = static_cast<float>(i + 1), C[i] = 10.0f;
  cudnnHandle_t h = nullptr;
  REQUIRE(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetStream(h, st.producer) == CUDNN_STATUS_SUCCESS);
  cudnnTensorDescriptor_t d = nullptr;
  REQUIRE(cudnnCreateTensorDescriptor(&d) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 4, 1, 1) == CUDNN_STATUS_SUCCESS);
  const float one = 1;
  REQUIRE(cudnnAddTensor(h, &one, d, A, &one, d, C) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnDestroyTensorDescriptor(d) == CUDNN_STATUS_SUCCESS);  // read at the call
  CHECK(emu::pending(st.producer) == 1);
  CHECK(C[0] == 10.0f);
  REQUIRE(cudaStreamSynchronize(st.producer) == cudaSuccess);
  CHECK(std::vector<float>(C, C + 4) == std::vector<float>{11, 12, 13, 14});
  cudnnDestroy(h);

  // cub: the sort reads keys and offsets when the stream runs it.
  int* keys_in = device_array<int>(4);
  int* keys_out = device_array<int>(4);
  int* offsets = device_array<int>(2);
  offsets[0] = 0;
  offsets[1] = 4;
  for (int i = 0; i < 4; ++i) keys_in[i] = 0;
  size_t bytes = 0;
  REQUIRE(cub::DeviceSegmentedRadixSort::SortKeys(nullptr, bytes, keys_in, keys_out, 4, 1, offsets, offsets + 1) ==
          cudaSuccess);
  std::vector<char> temp(bytes);
  emu::launch(fill_kernel, 1, 4, 0, st.consumer)(keys_in, 4, 0);  // queued before the sort
  REQUIRE(cub::DeviceSegmentedRadixSort::SortKeys(temp.data(), bytes, keys_in, keys_out, 4, 1, offsets, offsets + 1,
                                                  0, 32, st.consumer) == cudaSuccess);
  for (int i = 0; i < 4; ++i) keys_in[i] = 4 - i;  // the host writes now (too early) ...
  CHECK(emu::pending(st.consumer) == 2);
  CHECK(keys_out[0] == -1);  // nothing sorted yet (fresh memory is 0xFF bytes)
  REQUIRE(cudaStreamSynchronize(st.consumer) == cudaSuccess);
  // ... and the fill queued before the sort runs first: the sort sorted its zeros.
  CHECK(std::vector<int>(keys_out, keys_out + 4) == std::vector<int>{0, 0, 0, 0});
  for (int i = 0; i < 4; ++i) keys_in[i] = 4 - i;
  REQUIRE(cub::DeviceSegmentedRadixSort::SortKeys(temp.data(), bytes, keys_in, keys_out, 4, 1, offsets, offsets + 1,
                                                  0, 32, st.consumer) == cudaSuccess);
  REQUIRE(cudaStreamSynchronize(st.consumer) == cudaSuccess);
  CHECK(std::vector<int>(keys_out, keys_out + 4) == std::vector<int>{1, 2, 3, 4});
  for (void* p : {static_cast<void*>(A), static_cast<void*>(C), static_cast<void*>(keys_in),
                  static_cast<void*>(keys_out), static_cast<void*>(offsets)})
    cudaFree(p);
}
