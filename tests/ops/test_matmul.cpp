// GEMM kernels (BLAS path, built-in fallback) and the matmul / linear ops.
#include <random>

#include "kernels/gemm.h"
#include "test_helpers.h"

using namespace eng;

namespace {

// Reference: C = alpha op(A) op(B) + beta C, one dot product per element, in double.
template <typename T>
void naive_gemm(bool tA, bool tB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                int64_t ldb, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = tA ? A[k * lda + i] : A[i * lda + k];
        const double b = tB ? B[j * ldb + k] : B[k * ldb + j];
        s += a * b;
      }
      C[i * ldc + j] = static_cast<T>(alpha * s + (beta == T(0) ? 0.0 : beta * double(C[i * ldc + j])));
    }
}

template <typename T>
std::vector<T> random_vec(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(u(gen));
  return v;
}

// Runs `fn` and the naive loop on the same random problem (leading dims padded by `pad`)
// and returns the largest absolute difference over C, padding included (must stay untouched).
template <typename T, typename Fn>
double gemm_error(Fn fn, bool tA, bool tB, int64_t M, int64_t N, int64_t K, T alpha, T beta, int64_t pad) {
  const int64_t lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
  const int64_t a_rows = tA ? K : M, b_rows = tB ? N : K;
  std::vector<T> A = random_vec<T>(a_rows * lda, 1), B = random_vec<T>(b_rows * ldb, 2), C = random_vec<T>(M * ldc, 3);
  std::vector<T> ref = C;
  fn(tA, tB, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  naive_gemm<T>(tA, tB, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, ref.data(), ldc);
  double worst = 0;
  for (size_t i = 0; i < C.size(); ++i) worst = std::max(worst, std::fabs(double(C[i]) - double(ref[i])));
  return worst;
}

using test::cpu_leaf;
using test::cuda_leaf;

}  // namespace

TEST_CASE("gemm: built-in and BLAS paths match a naive loop on odd sizes") {
  INFO("cpu::gemm uses OpenBLAS: " << kern::cpu::gemm_uses_blas());
  for (bool tA : {false, true})
    for (bool tB : {false, true}) {
      INFO("transA " << tA << ", transB " << tB);
      for (int64_t pad : {0, 3}) {
        // 37 x 29 x 53 in double: exact up to rounding.
        REQUIRE(gemm_error<double>(kern::cpu::gemm_builtin<double>, tA, tB, 37, 29, 53, 0.75, -1.5, pad) < 1e-12);
        REQUIRE(gemm_error<double>(kern::cpu::gemm<double>, tA, tB, 37, 29, 53, 0.75, -1.5, pad) < 1e-12);
        // float against the double-accumulated reference.
        REQUIRE(gemm_error<float>(kern::cpu::gemm_builtin<float>, tA, tB, 37, 29, 53, 0.75f, -1.5f, pad) < 1e-4);
        REQUIRE(gemm_error<float>(kern::cpu::gemm<float>, tA, tB, 37, 29, 53, 0.75f, -1.5f, pad) < 1e-4);
      }
      // Larger than every cache block (MC 64, KC 256, NC 256) with ragged edges.
      REQUIRE(gemm_error<double>(kern::cpu::gemm_builtin<double>, tA, tB, 131, 301, 263, 1.0, 0.5, 1) < 1e-11);
    }
}

TEST_CASE("gemm: built-in agrees with the BLAS path") {
  const int64_t M = 37, N = 29, K = 53;
  for (bool tA : {false, true})
    for (bool tB : {false, true}) {
      std::vector<float> A = random_vec<float>(M * K, 4), B = random_vec<float>(K * N, 5);
      std::vector<float> C1 = random_vec<float>(M * N, 6), C2 = C1;
      kern::cpu::gemm<float>(tA, tB, M, N, K, 1.25f, A.data(), tA ? M : K, B.data(), tB ? K : N, 0.5f, C1.data(), N);
      kern::cpu::gemm_builtin<float>(tA, tB, M, N, K, 1.25f, A.data(), tA ? M : K, B.data(), tB ? K : N, 0.5f,
                                     C2.data(), N);
      for (size_t i = 0; i < C1.size(); ++i) REQUIRE(std::fabs(C1[i] - C2[i]) <= 1e-5f + 1e-5f * std::fabs(C1[i]));
    }
}

TEST_CASE("gemm: hand-checked 2x2, beta = 0 ignores C, K = 0 scales C") {
  const double A[] = {1, 2, 3, 4}, B[] = {5, 6, 7, 8};
  for (auto fn : {kern::cpu::gemm<double>, kern::cpu::gemm_builtin<double>}) {
    double C[] = {NAN, NAN, NAN, NAN};
    fn(false, false, 2, 2, 2, 1.0, A, 2, B, 2, 0.0, C, 2);  // beta 0: the NaNs must not leak
    REQUIRE(std::vector<double>(C, C + 4) == std::vector<double>{19, 22, 43, 50});
    fn(true, false, 2, 2, 2, 2.0, A, 2, B, 2, 1.0, C, 2);   // C += 2 A^T B, A^T B = [[26,30],[38,44]]
    REQUIRE(std::vector<double>(C, C + 4) == std::vector<double>{71, 82, 119, 138});
    double D[] = {1, 2, 3, 4};
    fn(false, false, 2, 2, 0, 1.0, A, 1, B, 2, 3.0, D, 2);  // K = 0: C = beta C
    REQUIRE(std::vector<double>(D, D + 4) == std::vector<double>{3, 6, 9, 12});
  }
  double C[4];
  REQUIRE_THROWS(kern::cpu::gemm_builtin<double>(false, false, 2, 2, 2, 1.0, A, 1, B, 2, 0.0, C, 2));  // lda < K
}

TEST_CASE("matmul: hand-checked values and shapes") {
  Tensor a = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = from_vector<double>({7, 8, 9, 10, 11, 12}, {3, 2});
  Tensor y = matmul(a, b);
  REQUIRE(y.sizes() == Shape{2, 2});
  REQUIRE(y.to_vector<double>() == std::vector<double>{58, 64, 139, 154});

  // [2, 2, 3] @ [3, 2]: leading dims flattened into rows.
  Tensor a3 = from_vector<double>({1, 2, 3, 4, 5, 6, 0, 1, 0, -1, 0, 2}, {2, 2, 3});
  Tensor y3 = matmul(a3, b);
  REQUIRE(y3.sizes() == Shape{2, 2, 2});
  REQUIRE(y3.to_vector<double>() == std::vector<double>{58, 64, 139, 154, 9, 10, 15, 16});

  // Batched [2, 2, 3] @ [2, 3, 1]: a different right-hand matrix per batch entry.
  Tensor bb = from_vector<double>({1, 0, 1, 2, 2, 2}, {2, 3, 1});
  Tensor yb = matmul(a3, bb);
  REQUIRE(yb.sizes() == Shape{2, 2, 1});
  REQUIRE(yb.to_vector<double>() == std::vector<double>{4, 10, 2, 2});

  // Non-contiguous input (a transposed view) is handled.
  Tensor at = from_vector<double>({1, 4, 2, 5, 3, 6}, {3, 2}).transpose(0, 1);
  REQUIRE(matmul(at, b).to_vector<double>() == std::vector<double>{58, 64, 139, 154});
}

TEST_CASE("matmul: hand-checked gradients of sum(A B)") {
  // d sum(AB) / dA[i,k] = sum_j B[k,j];  d sum(AB) / dB[k,j] = sum_i A[i,k].
  Tensor a = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = from_vector<double>({7, 8, 9, 10, 11, 12}, {3, 2});
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  sum(matmul(a, b)).backward();
  REQUIRE(a.grad().to_vector<double>() == std::vector<double>{15, 19, 23, 15, 19, 23});
  REQUIRE(b.grad().to_vector<double>() == std::vector<double>{5, 5, 7, 7, 9, 9});
}

TEST_CASE("matmul: gradcheck", "[gradcheck]") {
  auto f = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
  REQUIRE_GRADCHECK(f, {test::leaf({3, 4}, 1), test::leaf({4, 5}, 2)});
  REQUIRE_GRADCHECK(f, {test::leaf({2, 3, 4}, 3), test::leaf({4, 5}, 4)});     // flattened leading dims
  REQUIRE_GRADCHECK(f, {test::leaf({2, 3, 4}, 5), test::leaf({2, 4, 5}, 6)});  // batched
  Tensor fixed = test::leaf({4, 2}, 7).detach();                                // only a needs grad
  REQUIRE_GRADCHECK(f, {test::leaf({3, 4}, 8), fixed});
}

TEST_CASE("matmul: bad input throws") {
  REQUIRE_THROWS_WITH(matmul(zeros({2, 3}), zeros({4, 5})), Catch::Contains("matmul: inner dims differ: [2, 3] @ [4, 5]"));
  REQUIRE_THROWS_WITH(matmul(zeros({3}), zeros({3, 2})), Catch::Contains("at least 2 dims"));
  REQUIRE_THROWS_WITH(matmul(zeros({2, 2, 3}), zeros({3, 3, 4})), Catch::Contains("batch dims differ"));
  REQUIRE_THROWS_WITH(matmul(zeros({2, 3}), zeros({3, 2}, DType::f64)), Catch::Contains("matmul: dtype mismatch"));
  REQUIRE_THROWS_WITH(matmul(zeros({2, 3}, DType::i64), zeros({3, 2}, DType::i64)), Catch::Contains("f32 or f64"));
}

TEST_CASE("matmul: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  struct Case { Shape a, b; };
  for (const Case& c : {Case{{37, 29}, {29, 53}}, Case{{2, 5, 17}, {17, 9}}, Case{{3, 7, 16}, {3, 16, 11}}}) {
    Tensor a = test::random_f32(c.a, 11), b = test::random_f32(c.b, 12);
    Tensor ca = cpu_leaf(a), cb = cpu_leaf(b), ga = cuda_leaf(a), gb = cuda_leaf(b);
    Tensor yc = matmul(ca, cb), yg = matmul(ga, gb);
    Tensor seed = test::random_f32(yc.sizes(), 13);
    yc.backward(seed);
    yg.backward(seed.cuda());
    REQUIRE(yg.is_cuda());
    REQUIRE_CLOSE(yg.cpu(), yc, test::kGemmAtol, test::kGemmRtol);
    REQUIRE_CLOSE(ga.grad().cpu(), ca.grad(), test::kGemmAtol, test::kGemmRtol);
    REQUIRE_CLOSE(gb.grad().cpu(), cb.grad(), test::kGemmAtol, test::kGemmRtol);
  }
}

TEST_CASE("linear: hand-checked values, bias and leading dims") {
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = from_vector<double>({1, 0, -1, 2, 1, 0}, {2, 3});  // out = 2, in = 3
  Tensor b = from_vector<double>({10, 20}, {2});
  // x W^T = [[1-3, 2+2], [4-6, 8+5]] = [[-2, 4], [-2, 13]]
  REQUIRE(linear(x, w).to_vector<double>() == std::vector<double>{-2, 4, -2, 13});
  REQUIRE(linear(x, w, b).to_vector<double>() == std::vector<double>{8, 24, 8, 33});
  Tensor y3 = linear(x.view({2, 1, 3}), w, b);
  REQUIRE(y3.sizes() == Shape{2, 1, 2});
  REQUIRE(y3.to_vector<double>() == std::vector<double>{8, 24, 8, 33});

  // Gradients of sum(linear): gx[n, i] = sum_o W[o, i], gW[o, i] = sum_n x[n, i], gb[o] = N.
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  sum(linear(x, w, b)).backward();
  REQUIRE(x.grad().to_vector<double>() == std::vector<double>{3, 1, -1, 3, 1, -1});
  REQUIRE(w.grad().to_vector<double>() == std::vector<double>{5, 7, 9, 5, 7, 9});
  REQUIRE(b.grad().to_vector<double>() == std::vector<double>{2, 2});
}

TEST_CASE("linear: gradcheck", "[gradcheck]") {
  auto with_bias = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); };
  auto no_bias = [](const std::vector<Tensor>& in) { return linear(in[0], in[1]); };
  REQUIRE_GRADCHECK(with_bias, {test::leaf({4, 5}, 21), test::leaf({3, 5}, 22), test::leaf({3}, 23)});
  REQUIRE_GRADCHECK(with_bias, {test::leaf({2, 3, 5}, 24), test::leaf({4, 5}, 25), test::leaf({4}, 26)});
  REQUIRE_GRADCHECK(no_bias, {test::leaf({4, 5}, 27), test::leaf({3, 5}, 28)});
}

TEST_CASE("linear: bad input throws") {
  REQUIRE_THROWS_WITH(linear(zeros({4, 5}), zeros({3, 6})), Catch::Contains("linear: input [4, 5] does not end in in_features 6"));
  REQUIRE_THROWS_WITH(linear(zeros({4, 5}), zeros({15})), Catch::Contains("linear: weight must be [out, in]"));
  REQUIRE_THROWS_WITH(linear(zeros({4, 5}), zeros({3, 5}), zeros({4})), Catch::Contains("linear: bias must be [3], got [4]"));
}

TEST_CASE("linear: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = test::random_f32({2, 13, 64}, 31), w = test::random_f32({33, 64}, 32), b = test::random_f32({33}, 33);
  Tensor cx = cpu_leaf(x), cw = cpu_leaf(w), cb = cpu_leaf(b);
  Tensor gx = cuda_leaf(x), gw = cuda_leaf(w), gb = cuda_leaf(b);
  Tensor yc = linear(cx, cw, cb), yg = linear(gx, gw, gb);
  Tensor seed = test::random_f32(yc.sizes(), 34);
  yc.backward(seed);
  yg.backward(seed.cuda());
  REQUIRE_CLOSE(yg.cpu(), yc, test::kGemmAtol, test::kGemmRtol);
  REQUIRE_CLOSE(gx.grad().cpu(), cx.grad(), test::kGemmAtol, test::kGemmRtol);
  REQUIRE_CLOSE(gw.grad().cpu(), cw.grad(), test::kGemmAtol, test::kGemmRtol);
  REQUIRE_CLOSE(gb.grad().cpu(), cb.grad(), test::kGemmAtol, test::kGemmRtol);
}
