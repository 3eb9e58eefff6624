// Self-tests of the emulator's <mma.h> stand-in (tools/cuda_emu/include/mma.h): the products
// match a host loop, row- and column-major loads and stores put elements where CUDA's
// documentation says, the load/store rules (256-bit aligned pointer, ldm a multiple of 16
// bytes) are enforced, the lane mapping is scrambled (a kernel that assumes one gets a wrong
// answer) and every warp-collective call must be reached by all 32 lanes.
#include <catch2/catch.hpp>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <mma.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace nvcuda;

namespace {

// Runs `body` in a child process and returns its stderr; `aborted` says whether it died of
// SIGABRT (how the emulator stops a kernel it cannot go on with).
std::string run_in_child(const std::function<void()>& body, bool* aborted) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::signal(SIGABRT, SIG_DFL);
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

template <typename T>
T* device_array(size_t n) {
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
  return static_cast<T*>(p);
}

float tf32_truncate(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u &= 0xffffe000u;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---- kernels ----------------------------------------------------------------------------------

// D (16x16, row-major, ldm 16) = A (16x8) B (8x16) + C, A and B in the given layouts with
// ldm lda / ldb; the operands are rounded with __float_to_tf32 after the load when `convert`.
template <typename LA, typename LB>
void tf32_kernel(const float* a, unsigned lda, const float* b, unsigned ldb, const float* c, float* d, bool convert,
                 wmma::layout_t c_layout, wmma::layout_t d_layout) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LA> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LB> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> fc;
  wmma::load_matrix_sync(fa, a, lda);
  wmma::load_matrix_sync(fb, b, ldb);
  wmma::load_matrix_sync(fc, c, 16, c_layout);
  if (convert) {
    for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
    for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
  }
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(d, fc, 16, d_layout);
}

// acc = 0, acc = A B, then every element scaled by 2 (uniform element-wise ops are valid).
void fill_scale_kernel(const float* a, const float* b, float* d) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, a, 8);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  for (int i = 0; i < acc.num_elements; ++i) acc.x[i] *= 2.0f;
  wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// A kernel with a bug: it writes the accumulator itself, assuming lane l holds row l / 2,
// columns 8 * (l % 2) + i (a natural guess, and no mapping CUDA promises).
void assumed_mapping_kernel(const float* a, const float* b, float* d) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, a, 8);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  const int lane = threadIdx.x % 32;
  for (int i = 0; i < acc.num_elements; ++i) d[(lane / 2) * 16 + 8 * (lane % 2) + i] = acc.x[i];
}

void bad_ldm_kernel(const float* a) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::load_matrix_sync(fa, a, 10);  // 40 bytes: not a multiple of 16
}

void misaligned_kernel(const float* a) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::load_matrix_sync(fa, a + 4, 8);  // 16 bytes past a 256-byte boundary: not 32-byte aligned
}

// Lane 5 returns before the product: the others wait in mma_sync for a lane that is gone.
void missing_lane_kernel(const float* a, const float* b, float* d) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, a, 8);
  wmma::load_matrix_sync(fb, b, 16);
  if (threadIdx.x == 5) return;
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// Lane 3 waits at a __syncthreads while the rest of its warp is in load_matrix_sync.
void stuck_lane_kernel(const float* a) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  if (threadIdx.x == 3) __syncthreads();
  else wmma::load_matrix_sync(fa, a, 8);
}

// Each lane passes its own row: the pointer must be the same for the whole warp.
void lane_pointer_kernel(const float* a) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::load_matrix_sync(fa, a + 8 * (threadIdx.x % 2), 16);
}

// Lane 0 shuffles while the others load a fragment.
void mixed_calls_kernel(const float* a, float* out) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  if (threadIdx.x == 0) out[0] = __shfl_sync(0xffffffffu, 1.0f, 0);
  else wmma::load_matrix_sync(fa, a, 8);
}

void bf16_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, float* d) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 1.0f);
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 24);  // column-major, padded columns
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = u(gen);
  return v;
}

}  // namespace

TEST_CASE("cuda_emu: __float_to_tf32 rounds to 10 mantissa bits, ties away from zero", "[cuda_emu]") {
  CHECK(wmma::__float_to_tf32(1.0f) == 1.0f);
  const float ulp = std::ldexp(1.0f, -10);  // tf32 spacing in [1, 2)
  CHECK(wmma::__float_to_tf32(1.0f + 0.49f * ulp) == 1.0f);
  CHECK(wmma::__float_to_tf32(1.0f + 0.51f * ulp) == 1.0f + ulp);
  CHECK(wmma::__float_to_tf32(1.0f + 0.5f * ulp) == 1.0f + ulp);      // tie: away from zero
  CHECK(wmma::__float_to_tf32(-1.0f - 0.5f * ulp) == -1.0f - ulp);
  CHECK(std::isinf(wmma::__float_to_tf32(INFINITY)));
  CHECK(std::isnan(wmma::__float_to_tf32(NAN)));
}

TEST_CASE("cuda_emu: wmma tf32 m16n16k8 product matches a host loop in every layout", "[cuda_emu]") {
  // A stored in a 16 x 12 (row-major) or 8 x 20 (column-major) buffer: ldm larger than the
  // tile, to see that ldm is the stride of the right dimension.
  const std::vector<float> A = random_floats(16 * 8, 1), B = random_floats(8 * 16, 2), C = random_floats(256, 3);
  float* a = device_array<float>(16 * 24);
  float* b = device_array<float>(16 * 24);
  float* c = device_array<float>(256);
  float* d = device_array<float>(256);
  std::memcpy(c, C.data(), 256 * sizeof(float));
  for (int convert = 0; convert < 2; ++convert)
    for (int la = 0; la < 2; ++la)
      for (int lb = 0; lb < 2; ++lb)
        for (int lc = 0; lc < 2; ++lc) {
          const unsigned lda = la ? 20 : 12, ldb = lb ? 12 : 20;
          for (int r = 0; r < 16; ++r)
            for (int k = 0; k < 8; ++k) (la ? a[k * lda + r] : a[r * lda + k]) = A[r * 8 + k];
          for (int k = 0; k < 8; ++k)
            for (int n = 0; n < 16; ++n) (lb ? b[n * ldb + k] : b[k * ldb + n]) = B[k * 16 + n];
          // C given in the layout lc: the host copy is row-major, so transpose for col-major.
          for (int r = 0; r < 16; ++r)
            for (int n = 0; n < 16; ++n) c[lc ? n * 16 + r : r * 16 + n] = C[r * 16 + n];
          const auto cl = lc ? wmma::mem_col_major : wmma::mem_row_major;
          const auto dl = lc ? wmma::mem_row_major : wmma::mem_col_major;
          if (!la && !lb)
            emu::launch(tf32_kernel<wmma::row_major, wmma::row_major>, 1, 32)(a, lda, b, ldb, c, d, convert != 0, cl, dl);
          else if (!la && lb)
            emu::launch(tf32_kernel<wmma::row_major, wmma::col_major>, 1, 32)(a, lda, b, ldb, c, d, convert != 0, cl, dl);
          else if (la && !lb)
            emu::launch(tf32_kernel<wmma::col_major, wmma::row_major>, 1, 32)(a, lda, b, ldb, c, d, convert != 0, cl, dl);
          else
            emu::launch(tf32_kernel<wmma::col_major, wmma::col_major>, 1, 32)(a, lda, b, ldb, c, d, convert != 0, cl, dl);
          REQUIRE(cudaGetLastError() == cudaSuccess);
          INFO("convert " << convert << " layouts " << la << lb << lc);
          for (int r = 0; r < 16; ++r)
            for (int n = 0; n < 16; ++n) {
              // Same operands as the stand-in's contract: rounded (or truncated) to tf32,
              // products exact, summed in float in increasing k onto C.
              float acc = C[r * 16 + n];
              for (int k = 0; k < 8; ++k) {
                const float x = convert ? wmma::__float_to_tf32(A[r * 8 + k]) : tf32_truncate(A[r * 8 + k]);
                const float y = convert ? wmma::__float_to_tf32(B[k * 16 + n]) : tf32_truncate(B[k * 16 + n]);
                acc += x * y;
              }
              const float got = dl == wmma::mem_row_major ? d[r * 16 + n] : d[n * 16 + r];
              REQUIRE(got == acc);
            }
        }
  // And the operands really are reduced to tf32: the exact float product differs.
  double max_diff = 0;
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 16; ++n) {
      double exact = C[r * 16 + n];
      for (int k = 0; k < 8; ++k) exact += double(A[r * 8 + k]) * B[k * 16 + n];
      max_diff = std::max(max_diff, std::abs(exact - d[r * 16 + n]));  // last run: row-major D
    }
  CHECK(max_diff > 1e-5);
  cudaFree(a), cudaFree(b), cudaFree(c), cudaFree(d);
}

TEST_CASE("cuda_emu: wmma fill_fragment and uniform element-wise ops are valid", "[cuda_emu]") {
  const std::vector<float> A = random_floats(128, 4), B = random_floats(128, 5);
  float* a = device_array<float>(128);
  float* b = device_array<float>(128);
  float* d = device_array<float>(256);
  std::memcpy(a, A.data(), 128 * sizeof(float));
  std::memcpy(b, B.data(), 128 * sizeof(float));
  emu::launch(fill_scale_kernel, 1, 64)(a, b, d);  // two warps, each computes the same tile
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 16; ++n) {
      float acc = 0;
      for (int k = 0; k < 8; ++k) acc += tf32_truncate(A[r * 8 + k]) * tf32_truncate(B[k * 16 + n]);
      REQUIRE(d[r * 16 + n] == 2.0f * acc);
    }
  cudaFree(a), cudaFree(b), cudaFree(d);
}

TEST_CASE("cuda_emu: a kernel that assumes a wmma lane mapping gets a wrong answer", "[cuda_emu]") {
  const std::vector<float> A = random_floats(128, 6), B = random_floats(128, 7);
  float* a = device_array<float>(128);
  float* b = device_array<float>(128);
  float* d = device_array<float>(256);
  std::memcpy(a, A.data(), 128 * sizeof(float));
  std::memcpy(b, B.data(), 128 * sizeof(float));
  emu::launch(assumed_mapping_kernel, 1, 32)(a, b, d);
  int wrong = 0;
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 16; ++n) {
      float acc = 0;
      for (int k = 0; k < 8; ++k) acc += tf32_truncate(A[r * 8 + k]) * tf32_truncate(B[k * 16 + n]);
      wrong += d[r * 16 + n] != acc;
    }
  CHECK(wrong > 200);  // of 256: a permutation leaves about one element in place
  cudaFree(a), cudaFree(b), cudaFree(d);
}

TEST_CASE("cuda_emu: wmma load/store rules and all-lanes rule are reported", "[cuda_emu]") {
  bool aborted = false;
  std::string err = run_in_child(
      [] {
        float* a = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&a), 512 * sizeof(float));
        emu::launch(bad_ldm_kernel, 1, 32)(a);
      },
      &aborted);
  CHECK(aborted);
  CHECK(err.find("ldm = 10 elements is not a multiple of 16 bytes") != std::string::npos);

  err = run_in_child(
      [] {
        float* a = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&a), 512 * sizeof(float));
        emu::launch(misaligned_kernel, 1, 32)(a);
      },
      &aborted);
  CHECK(aborted);
  CHECK(err.find("256-bit (32-byte) aligned") != std::string::npos);

  err = run_in_child(
      [] {
        float* a = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&a), 512 * sizeof(float));
        emu::launch(missing_lane_kernel, 1, 32)(a, a, a);
      },
      &aborted);
  CHECK(aborted);
  CHECK(err.find("wmma::mma_sync must be reached by all 32 lanes of the warp; lane 5") != std::string::npos);

  err = run_in_child(  // a warp of 16 threads: lanes 16..31 do not exist
      [] {
        float* a = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&a), 512 * sizeof(float));
        emu::launch(fill_scale_kernel, 1, 16)(a, a, a);
      },
      &aborted);
  CHECK(aborted);
  CHECK(err.find("all 32 lanes of the warp; lane 16") != std::string::npos);

  err = run_in_child(
      [] {
        float* a = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&a), 512 * sizeof(float));
        emu::launch(lane_pointer_kernel, 1, 32)(a);
      },
      &aborted);
  CHECK(aborted);
  CHECK(err.find("different pointers") != std::string::npos);

  err = run_in_child(
      [] {
        float* a = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&a), 512 * sizeof(float));
        emu::launch(mixed_calls_kernel, 1, 32)(a, a + 256);
      },
      &aborted);
  CHECK(aborted);
  CHECK(err.find("meet in different calls") != std::string::npos);

  err = run_in_child(
      [] {
        float* a = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&a), 512 * sizeof(float));
        emu::launch(stuck_lane_kernel, 1, 32)(a);
      },
      &aborted);
  CHECK(aborted);
  CHECK(err.find("deadlock") != std::string::npos);
}

TEST_CASE("cuda_emu: wmma bf16 m16n16k16 product is exact products summed in float", "[cuda_emu]") {
  const std::vector<float> A = random_floats(256, 8), B = random_floats(256, 9);
  __nv_bfloat16* a = device_array<__nv_bfloat16>(256);
  __nv_bfloat16* b = device_array<__nv_bfloat16>(16 * 24);
  float* d = device_array<float>(256);
  for (int i = 0; i < 256; ++i) a[i] = __float2bfloat16(A[i]);
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < 16; ++n) b[n * 24 + k] = __float2bfloat16(B[k * 16 + n]);  // column-major
  emu::launch(bf16_kernel, 1, 32)(a, b, d);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 16; ++n) {
      float acc = 1.0f;
      for (int k = 0; k < 16; ++k) acc += __bfloat162float(a[r * 16 + k]) * __bfloat162float(b[n * 24 + k]);
      REQUIRE(d[r * 16 + n] == acc);
    }
  cudaFree(a), cudaFree(b), cudaFree(d);
}
