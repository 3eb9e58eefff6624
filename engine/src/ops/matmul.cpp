// Matrix products: matmul (plain, flattened-leading-dims, batched) and linear.
// Every product, forward and backward, is one call of the gemm kernels (kernels/gemm.h).
//
//   matmul   Y = A B                 gA = G B^T          gB = A^T G
//   linear   Y = X W^T + b           gX = G W            gW = G^T X      gb = sum_rows G
#include <algorithm>

#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "engine/trace.h"
#include "kernels/gemm.h"

namespace eng {
using namespace detail;

namespace {

// C[b] = op(A[b]) op(B[b]) + beta C[b] for b < batch, on contiguous tightly packed
// matrices: op(A) is M x K, op(B) is K x N, C is M x N (see kernels/gemm.h for trans).
void gemm_tensors(const char* op, bool tA, bool tB, int64_t batch, int64_t M, int64_t N, int64_t K, const Tensor& A,
                  const Tensor& B, const Tensor& C, double beta) {
  if (batch == 0 || M == 0 || N == 0) return;
  const int64_t lda = std::max<int64_t>(1, tA ? M : K), ldb = std::max<int64_t>(1, tB ? K : N), ldc = N;
  dispatch_float(C, op, [&](auto tag) {
    using T = decltype(tag);
    const T* a = static_cast<const T*>(A.raw_data());
    const T* b = static_cast<const T*>(B.raw_data());
    T* c = C.data<T>();
    const T one = 1, bt = static_cast<T>(beta);
    if (C.is_cuda()) {
      if (batch == 1) {
        ENGINE_IF_CUDA(kern::cuda::gemm<T>(tA, tB, M, N, K, one, a, lda, b, ldb, bt, c, ldc, cuda::blas(),
                                           cuda::stream()));
      } else {
        ENGINE_IF_CUDA(kern::cuda::gemm_strided_batched<T>(tA, tB, M, N, K, one, a, lda, M * K, b, ldb, K * N, bt,
                                                           c, ldc, M * N, batch, cuda::blas(), cuda::stream()));
      }
    } else {
      kern::cpu::gemm_strided_batched<T>(tA, tB, M, N, K, one, a, lda, M * K, b, ldb, K * N, bt, c, ldc, M * N,
                                         batch);
    }
  });
}

// ---- matmul ----

struct MatmulBackward : Node {
  Tensor a, b;             // contiguous, detached; a saved only when b needs grad and vice versa
  Shape a_shape, b_shape;  // the caller's shapes, for the returned gradients
  int64_t batch, M, N, K;
  MatmulBackward(Tensor a_, Tensor b_, Shape as, Shape bs, int64_t bt, int64_t m, int64_t n, int64_t k)
      : Node("MatmulBackward"), a(std::move(a_)), b(std::move(b_)), a_shape(std::move(as)), b_shape(std::move(bs)),
        batch(bt), M(m), N(n), K(k) {}

  std::vector<Tensor> apply(const Tensor& g_in) override {
    Tensor g = g_in.contiguous();
    Tensor ga, gb;
    if (next_edges()[0].fn) {  // gA [batch, M, K] = G [batch, M, N] x B^T
      ga = new_empty(a_shape, g);
      gemm_tensors("matmul", false, true, batch, M, K, N, g, b, ga, 0.0);
    }
    if (next_edges()[1].fn) {  // gB [batch, K, N] = A^T x G
      gb = new_empty(b_shape, g);
      gemm_tensors("matmul", true, false, batch, K, N, M, a, g, gb, 0.0);
    }
    return {ga, gb};
  }
  void release_saved() override {
    a = Tensor();
    b = Tensor();
  }
};

}  // namespace

static Tensor matmul_untraced(const Tensor& a, const Tensor& b) {
  ENGINE_CHECK(a.defined() && b.defined(), "matmul: undefined input");
  check_same_device_dtype("matmul", {a, b});
  check_floating("matmul", a);
  ENGINE_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: expected tensors of at least 2 dims, got ",
               shape_str(a.sizes()), " @ ", shape_str(b.sizes()));
  const int64_t K = a.size(-1);
  ENGINE_CHECK(b.size(-2) == K, "matmul: inner dims differ: ", shape_str(a.sizes()), " @ ", shape_str(b.sizes()),
               " (", K, " != ", b.size(-2), ")");
  const int64_t N = b.size(-1);

  // [.., M, K] @ [K, N]: all leading dims of a become rows of one plain GEMM.
  // [.., M, K] @ [.., K, N] with equal leading dims: a strided-batched GEMM.
  int64_t batch = 1, M = 1;
  Shape out_shape(a.sizes().begin(), a.sizes().end() - 1);
  out_shape.push_back(N);
  if (b.dim() == 2) {
    for (int64_t i = 0; i + 1 < a.dim(); ++i) M *= a.size(i);
  } else {
    const Shape a_lead(a.sizes().begin(), a.sizes().end() - 2), b_lead(b.sizes().begin(), b.sizes().end() - 2);
    ENGINE_CHECK(a_lead == b_lead, "matmul: batch dims differ (no broadcasting): ", shape_str(a.sizes()), " @ ",
                 shape_str(b.sizes()));
    batch = shape_numel(a_lead);
    M = a.size(-2);
  }

  Tensor A = a.detach().contiguous(), B = b.detach().contiguous();
  Tensor out = new_empty(out_shape, A);
  gemm_tensors("matmul", false, false, batch, M, N, K, A, B, out, 0.0);

  if (any_requires_grad({a, b})) {
    auto node = std::make_shared<MatmulBackward>(b.requires_grad() ? A : Tensor(), a.requires_grad() ? B : Tensor(),
                                                 a.sizes(), b.sizes(), batch, M, N, K);
    attach(out, node, {a, b});
  }
  return out;
}

// ---- linear ----

namespace {

struct LinearBackward : Node {
  Tensor x, w;    // x as [rows, in] (saved when w needs grad), w [out, in] (saved when x needs grad)
  Shape x_shape;
  int64_t rows, in, out;
  LinearBackward(Tensor x_, Tensor w_, Shape xs, int64_t r, int64_t i, int64_t o)
      : Node("LinearBackward"), x(std::move(x_)), w(std::move(w_)), x_shape(std::move(xs)), rows(r), in(i), out(o) {}

  std::vector<Tensor> apply(const Tensor& g_in) override {
    Tensor g = g_in.contiguous().view({rows, out});
    Tensor gx, gw, gb;
    if (next_edges()[0].fn) {  // gX [rows, in] = G [rows, out] x W [out, in]
      gx = new_empty({rows, in}, g);
      gemm_tensors("linear", false, false, 1, rows, in, out, g, w, gx, 0.0);
      gx = gx.view(x_shape);
    }
    if (next_edges()[1].fn) {  // gW [out, in] = G^T [out, rows] x X [rows, in]
      gw = new_empty({out, in}, g);
      gemm_tensors("linear", true, false, 1, out, in, rows, g, x, gw, 0.0);
    }
    if (next_edges().size() > 2 && next_edges()[2].fn) gb = sum(g, {0});
    return {gx, gw, gb};
  }
  void release_saved() override {
    x = Tensor();
    w = Tensor();
  }
};

}  // namespace

static Tensor linear_untraced(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  ENGINE_CHECK(x.defined() && weight.defined(), "linear: undefined input or weight");
  check_same_device_dtype("linear", {x, weight, bias});
  check_floating("linear", x);
  ENGINE_CHECK(weight.dim() == 2, "linear: weight must be [out, in], got ", shape_str(weight.sizes()));
  const int64_t out = weight.size(0), in = weight.size(1);
  ENGINE_CHECK(x.dim() >= 1 && x.size(-1) == in, "linear: input ", shape_str(x.sizes()),
               " does not end in in_features ", in, " of weight ", shape_str(weight.sizes()));
  if (bias.defined())
    ENGINE_CHECK(bias.dim() == 1 && bias.size(0) == out, "linear: bias must be [", out, "], got ",
                 shape_str(bias.sizes()));
  int64_t rows = 1;
  for (int64_t i = 0; i + 1 < x.dim(); ++i) rows *= x.size(i);
  Shape out_shape(x.sizes().begin(), x.sizes().end() - 1);
  out_shape.push_back(out);

  Tensor X = x.detach().contiguous().view({rows, in}), W = weight.detach().contiguous();
  Tensor y = new_empty({rows, out}, X);
  // Bias: start every row at b, then the GEMM accumulates x W^T onto it (beta = 1).
  if (bias.defined()) y.copy_(bias.detach());
  gemm_tensors("linear", false, true, 1, rows, out, in, X, W, y, bias.defined() ? 1.0 : 0.0);
  y = y.view(out_shape);

  if (any_requires_grad({x, weight, bias})) {
    auto node = std::make_shared<LinearBackward>(weight.requires_grad() ? X : Tensor(),
                                                 x.requires_grad() ? W : Tensor(), x.sizes(), rows, in, out);
    attach(y, node, {x, weight, bias});
  }
  return y;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor y = matmul_untraced(a, b);
  if (auto* r = trace::active()) r->record("matmul", {a, b}, {y}, {});
  return y;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  Tensor y = linear_untraced(x, weight, bias);
  if (auto* r = trace::active()) r->record("linear", {x, weight, bias}, {y}, {});
  return y;
}

}  // namespace eng
