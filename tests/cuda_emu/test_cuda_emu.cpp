// Self-tests of tools/cuda_emu, the CPU stand-in for the CUDA runtime that lets the [cuda]
// tests run the project's kernels without a GPU. Built only with -DENGINE_CUDA_EMULATOR=ON.
// They show that the emulator keeps CUDA's rules where a kernel bug would hide: barriers
// order the block, a missing barrier is visible, shuffles and ballots give CUDA's values,
// bad launches fail as on a GPU, a barrier not every thread reaches is reported (not hung),
// and the cub / cuBLAS stand-ins compute what the real libraries compute.
#include <catch2/catch.hpp>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

template <typename T>
T* device_array(size_t n) {
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
  return static_cast<T*>(p);
}

// ---- kernels (launched with emu::launch, which is what translate.pl makes of <<<>>>) --------

void neighbour_kernel(int* out, bool with_barrier) {
  int* s = static_cast<int*>(emu::dynamic_shared());  // poisoned: -1 until written
  const int t = threadIdx.x, n = blockDim.x;
  s[t] = t;
  if (with_barrier) __syncthreads();
  out[blockIdx.x * n + t] = s[(t + 1) % n];
}

void index_kernel(int* out) {
  const int tx = threadIdx.x, ty = threadIdx.y, bx = blockIdx.x, by = blockIdx.y;
  const int x = bx * blockDim.x + tx, y = by * blockDim.y + ty;
  out[y * (gridDim.x * blockDim.x) + x] = 1000 * y + x;
}

// Each lane writes what its shuffles return: xor 5, down 3, up 2, idx 7 (width 32), xor 1
// and down 3 inside width-8 sections, and the ballot of "lane is odd".
void shuffle_kernel(int* out) {
  const int lane = threadIdx.x % 32, v = 100 + static_cast<int>(threadIdx.x);
  int* o = out + 7 * threadIdx.x;
  o[0] = __shfl_xor_sync(0xffffffffu, v, 5);
  o[1] = __shfl_down_sync(0xffffffffu, v, 3);
  o[2] = __shfl_up_sync(0xffffffffu, v, 2);
  o[3] = __shfl_sync(0xffffffffu, v, 7);
  o[4] = __shfl_xor_sync(0xffffffffu, v, 1, 8);
  o[5] = __shfl_down_sync(0xffffffffu, v, 3, 8);
  o[6] = static_cast<int>(__ballot_sync(0xffffffffu, lane & 1));
}

void sum_kernel(const float* x, int n, float* out) {  // block reduction: shuffles + shared memory
  __shared__ float warp_sums[32];
  float v = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) v += x[i];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0;
    for (unsigned w = 0; w < blockDim.x / 32; ++w) s += warp_sums[w];
    *out = s;
  }
}

void divergent_barrier_kernel(int* out) {
  if (threadIdx.x == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

void deadlock_kernel(int* out) {  // lane 5 never joins the full-mask shuffle
  int v = static_cast<int>(threadIdx.x);
  if (threadIdx.x != 5) v = __shfl_xor_sync(0xffffffffu, v, 1);
  __syncthreads();
  out[threadIdx.x] = v;
}

void noop_kernel(int*) {}

// Runs `body` in a child process and returns its stderr; `aborted` says whether it died of
// SIGABRT (how the emulator stops a kernel it cannot go on with).
std::string run_in_child(const std::function<void()>& body, bool* aborted) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::signal(SIGABRT, SIG_DFL);  // not Catch's handler: the parent judges how it ended
    close(fds[0]);
    dup2(fds[1], 2);
    body();
    _exit(0);
  }
  close(fds[1]);
  std::string err;
  char buf[512];
  for (ssize_t r; (r = read(fds[0], buf, sizeof buf)) > 0;) err.append(buf, static_cast<size_t>(r));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  *aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
  return err;
}

}  // namespace

TEST_CASE("cuda_emu: __syncthreads orders the block and a missing one is visible", "[cuda_emu]") {
  const int n = 256, blocks = 3;
  int* out = device_array<int>(n * blocks);
  emu::launch(neighbour_kernel, blocks, n, n * sizeof(int))(out, true);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < n; ++t) REQUIRE(out[b * n + t] == (t + 1) % n);
  // Without the barrier thread t reads s[t + 1] before thread t + 1 has written it (the
  // poison), except the last thread, whose neighbour (thread 0) wrote first.
  emu::launch(neighbour_kernel, blocks, n, n * sizeof(int))(out, false);
  for (int t = 0; t < n - 1; ++t) REQUIRE(out[t] == -1);
  REQUIRE(out[n - 1] == 0);
  cudaFree(out);
}

TEST_CASE("cuda_emu: 2-D blocks and grids give CUDA's indices", "[cuda_emu]") {
  const dim3 block(8, 4), grid(3, 2);
  const int W = 24, H = 8;
  int* out = device_array<int>(W * H);
  emu::launch(index_kernel, grid, block)(out);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) REQUIRE(out[y * W + x] == 1000 * y + x);
  cudaFree(out);
}

TEST_CASE("cuda_emu: warp shuffles and ballot follow CUDA's lane rules", "[cuda_emu]") {
  const int n = 64;
  int* out = device_array<int>(7 * n);
  emu::launch(shuffle_kernel, 1, n)(out);
  for (int t = 0; t < n; ++t) {
    const int lane = t % 32, base = t - lane, v = 100 + t;
    const int* o = out + 7 * t;
    CAPTURE(t);
    REQUIRE(o[0] == 100 + base + (lane ^ 5));
    REQUIRE(o[1] == (lane + 3 < 32 ? v + 3 : v));   // no source above the warp: own value
    REQUIRE(o[2] == (lane >= 2 ? v - 2 : v));        // none below: own value
    REQUIRE(o[3] == 100 + base + 7);
    REQUIRE(o[4] == 100 + base + (lane ^ 1));
    REQUIRE(o[5] == (lane % 8 + 3 < 8 ? v + 3 : v));  // stays inside its 8-lane section
    REQUIRE(static_cast<unsigned>(o[6]) == 0xAAAAAAAAu);
  }
  cudaFree(out);
}

TEST_CASE("cuda_emu: a partial warp reads poison from lanes that do not exist", "[cuda_emu]") {
  const int n = 40;  // the second warp has 8 lanes
  int* out = device_array<int>(7 * n);
  emu::launch(shuffle_kernel, 1, n)(out);
  // Thread 37 is lane 5 of the second warp. Its xor-5 source, lane 0, exists; its down-3
  // source, lane 8, does not, so it reads the poison (all bits set: -1).
  REQUIRE(out[7 * 37 + 1] == -1);
  REQUIRE(out[7 * 37 + 0] == 100 + 32 + (5 ^ 5));
  REQUIRE(static_cast<unsigned>(out[7 * 39 + 6]) == 0xAAu);  // ballot over the 8 live lanes
  cudaFree(out);
}

TEST_CASE("cuda_emu: a block reduction with shared memory and shuffles", "[cuda_emu]") {
  const int n = 5000;
  std::vector<float> h(n);
  double expect = 0;
  for (int i = 0; i < n; ++i) expect += h[i] = static_cast<float>(i % 17) * 0.25f;
  float* x = device_array<float>(n);
  float* out = device_array<float>(1);
  cudaMemcpy(x, h.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  emu::launch(sum_kernel, 1, 256)(x, n, out);
  float got = 0;
  cudaMemcpy(&got, out, sizeof got, cudaMemcpyDeviceToHost);
  REQUIRE(got == Approx(expect).epsilon(1e-6));
  cudaFree(x);
  cudaFree(out);
}

TEST_CASE("cuda_emu: bad launches fail as on a GPU", "[cuda_emu]") {
  int* out = device_array<int>(1);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  emu::launch(noop_kernel, 1, 2048)(out);  // more than 1024 threads
  REQUIRE(cudaGetLastError() == cudaErrorInvalidConfiguration);
  REQUIRE(cudaGetLastError() == cudaSuccess);  // reading the error clears it
  emu::launch(noop_kernel, 0, 32)(out);  // empty grid
  REQUIRE(cudaGetLastError() == cudaErrorInvalidConfiguration);
  // More than 48 KiB of dynamic shared memory needs the opt-in attribute first.
  emu::launch(noop_kernel, 1, 32, 64 * 1024)(out);
  REQUIRE(cudaGetLastError() == cudaErrorInvalidValue);
  REQUIRE(cudaFuncSetAttribute(noop_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) == cudaSuccess);
  emu::launch(noop_kernel, 1, 32, 64 * 1024)(out);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  REQUIRE(cudaFuncSetAttribute(noop_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 * 1024) ==
          cudaErrorInvalidValue);
  cudaFree(out);
}

TEST_CASE("cuda_emu: a divergent __syncthreads and a shuffle a lane skips are reported", "[cuda_emu]") {
  bool aborted = false;
  std::string err = run_in_child(
      [] {
        int* out = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&out), 64 * sizeof(int));
        emu::launch(divergent_barrier_kernel, 1, 64)(out);
      },
      &aborted);
  CHECK(aborted);
  CHECK(err.find("divergent __syncthreads") != std::string::npos);

  err = run_in_child(
      [] {
        int* out = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&out), 32 * sizeof(int));
        emu::launch(deadlock_kernel, 1, 32)(out);
      },
      &aborted);
  CHECK(aborted);
  CHECK(err.find("deadlock") != std::string::npos);
}

TEST_CASE("cuda_emu: cub segmented radix sort is stable and sorts only the asked bits", "[cuda_emu]") {
  // Two segments and an empty one; bits 8.. are ignored (end_bit 8), so keys that differ only
  // there keep their input order.
  std::vector<uint32_t> keys = {0x305, 0x102, 0x205, 0x101, 7, 3, 0x900, 5};
  std::vector<int> vals = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<int> begin = {0, 4, 4}, end = {4, 4, 8};
  uint32_t* k_in = device_array<uint32_t>(8);
  uint32_t* k_out = device_array<uint32_t>(8);
  int* v_in = device_array<int>(8);
  int* v_out = device_array<int>(8);
  std::copy(keys.begin(), keys.end(), k_in);
  std::copy(vals.begin(), vals.end(), v_in);
  size_t bytes = 0;
  REQUIRE(cub::DeviceSegmentedRadixSort::SortPairs(nullptr, bytes, k_in, k_out, v_in, v_out, 8, 3, begin.data(),
                                                   end.data(), 0, 8) == cudaSuccess);
  REQUIRE(bytes > 0);
  std::vector<char> temp(bytes);
  size_t too_small = bytes - 1;
  REQUIRE(cub::DeviceSegmentedRadixSort::SortPairs(temp.data(), too_small, k_in, k_out, v_in, v_out, 8, 3,
                                                   begin.data(), end.data(), 0, 8) == cudaErrorInvalidValue);
  REQUIRE(cub::DeviceSegmentedRadixSort::SortPairs(temp.data(), bytes, k_in, k_out, v_in, v_out, 8, 3, begin.data(),
                                                   end.data(), 0, 8) == cudaSuccess);
  REQUIRE(std::vector<int>(v_out, v_out + 8) == std::vector<int>{3, 1, 0, 2, 6, 5, 7, 4});
  REQUIRE(std::vector<uint32_t>(k_out, k_out + 8) ==
          std::vector<uint32_t>{0x101, 0x102, 0x305, 0x205, 0x900, 3, 5, 7});

  // The DoubleBuffer form leaves the result in the other buffer.
  std::copy(keys.begin(), keys.end(), k_in);
  cub::DoubleBuffer<uint32_t> db(k_in, k_out);
  REQUIRE(cub::DeviceSegmentedRadixSort::SortKeys(temp.data(), bytes, db, 8, 3, begin.data(), end.data(), 0, 32) ==
          cudaSuccess);
  REQUIRE(db.Current() == k_out);
  REQUIRE(std::vector<uint32_t>(k_out, k_out + 4) == std::vector<uint32_t>{0x101, 0x102, 0x205, 0x305});
  for (auto* p : {static_cast<void*>(k_in), static_cast<void*>(k_out), static_cast<void*>(v_in), static_cast<void*>(v_out)})
    cudaFree(p);
}

TEST_CASE("cuda_emu: cuBLAS gemm is column-major and ignores C when beta is 0", "[cuda_emu]") {
  // Column-major A (2 x 3), B (3 x 2): C = A B.
  const float A[6] = {1, 4, 2, 5, 3, 6};   // [[1,2,3],[4,5,6]]
  const float B[6] = {7, 9, 11, 8, 10, 12};  // [[7,8],[9,10],[11,12]]
  float C[4] = {NAN, NAN, NAN, NAN};
  cublasHandle_t h = nullptr;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  const float one = 1, zero = 0;
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, A, 2, B, 3, &zero, C, 2) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(std::vector<float>(C, C + 4) == std::vector<float>{58, 139, 64, 154});
  // C = A^T^T B^T^T through the transposed operands: (B^T A^T)^T = A B, here as C' = B^T A^T.
  float Ct[4];
  REQUIRE(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_T, 2, 2, 3, &one, B, 3, A, 2, &zero, Ct, 2) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(std::vector<float>(Ct, Ct + 4) == std::vector<float>{58, 64, 139, 154});
  const float two = 2;
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, A, 2, B, 3, &two, C, 2) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(std::vector<float>(C, C + 4) == std::vector<float>{174, 417, 192, 462});
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, A, 1, B, 3, &zero, C, 2) ==
          CUBLAS_STATUS_INVALID_VALUE);  // lda < m
  cublasDestroy(h);
}
