// max_pool2d and concat on bf16 tensors. max_pool2d: bf16 storage, comparisons in float,
// the chosen element copied unchanged, gradients summed in float and rounded once. concat:
// the strided copy, bits unchanged. CPU hand values, the bf16 paths against the f32 ones,
// and the CUDA kernels against their CPU twins.
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/bf16.h"
#include "bf16_helpers.h"
#include "test_helpers.h"

using namespace eng;
using test::bits_of;
using test::random_bf16;

namespace {

Tensor bf16_of(const std::vector<float>& v, const Shape& shape) { return from_vector(v, shape).to(DType::bf16); }

// Coarse random values (many exact ties inside a window) in bf16.
Pool2dParams pool(int64_t k, int64_t s, int64_t p, bool ceil) {
  Pool2dParams q;
  q.kernel_h = q.kernel_w = k;
  q.stride_h = q.stride_w = s;
  q.pad_h = q.pad_w = p;
  q.ceil_mode = ceil;
  return q;
}

}  // namespace

TEST_CASE("bf16 max_pool2d: forward picks the same elements as f32", "[bf16]") {
  Tensor x = random_bf16({2, 3, 9, 11}, 1);
  for (const Pool2dParams& p : {pool(2, 2, 0, false), pool(3, 2, 1, true), pool(3, 1, 1, false)}) {
    Tensor y = max_pool2d(x, p);
    REQUIRE(y.dtype() == DType::bf16);
    REQUIRE(bits_of(y) == bits_of(max_pool2d(x.to(DType::f32), p).to(DType::bf16)));
  }
  // A NaN in a window wins, as for f32.
  Tensor n = bf16_of({1, NAN, 3, 4}, {1, 1, 2, 2});
  REQUIRE(std::isnan(max_pool2d(n, pool(2, 2, 0, false)).item()));
}

TEST_CASE("bf16 max_pool2d: backward sums in float and rounds once", "[bf16]") {
  // 3x3 input with its maximum in the centre: all four 2x2 / stride-1 windows pick it, so
  // its gradient is 1 + 3 * 2^-8 = 1.01171875, a tie that rounds up to 0x3F82. Summed in
  // bf16 step by step it would stay at 1 (each 1 + 2^-8 is a tie that rounds down).
  Tensor x = bf16_of({1, 2, 3, 4, 9, 5, 6, 7, 8}, {1, 1, 3, 3}).set_requires_grad(true);
  Tensor y = max_pool2d(x, pool(2, 1, 0, false));
  REQUIRE(y.to_vector<float>() == std::vector<float>{9, 9, 9, 9});
  const float e = std::ldexp(1.0f, -8);
  y.backward(bf16_of({1, e, e, e}, {1, 1, 2, 2}));
  REQUIRE(x.grad().dtype() == DType::bf16);
  REQUIRE(bits_of(x.grad()) == std::vector<uint16_t>{0, 0, 0, 0, 0x3F82, 0, 0, 0, 0});
}

TEST_CASE("bf16 concat: bits unchanged, backward slices", "[bf16]") {
  Tensor a = random_bf16({2, 3, 4}, 2), b = random_bf16({2, 5, 4}, 3);
  Tensor c = concat({a, b}, 1);
  REQUIRE(c.dtype() == DType::bf16);
  REQUIRE(c.sizes() == Shape{2, 8, 4});
  REQUIRE(bits_of(c.narrow(1, 0, 3)) == bits_of(a));
  REQUIRE(bits_of(c.narrow(1, 3, 5)) == bits_of(b));
  REQUIRE_THROWS_WITH(concat({a, a.to(DType::f32)}, 1), Catch::Contains("concat: dtype mismatch (bf16 and f32)"));
  Tensor ga = a.detach().set_requires_grad(true), gb = b.detach().set_requires_grad(true);
  Tensor g = random_bf16({2, 8, 4}, 4);
  concat({ga, gb}, 1).backward(g);
  REQUIRE(bits_of(ga.grad()) == bits_of(g.narrow(1, 0, 3)));
  REQUIRE(bits_of(gb.grad()) == bits_of(g.narrow(1, 3, 5)));
}

TEST_CASE("bf16 max_pool2d and concat: cuda matches the cpu twin", "[cuda][bf16]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = random_bf16({2, 3, 17, 19}, 5);
  for (const Pool2dParams& p : {pool(2, 2, 0, true), pool(3, 2, 1, true), pool(3, 1, 1, false)}) {
    Tensor xc = x.detach().set_requires_grad(true);
    Tensor xg = x.to(Device::cuda()).detach().set_requires_grad(true);
    Tensor yc = max_pool2d(xc, p), yg = max_pool2d(xg, p);
    REQUIRE(yg.is_cuda());
    REQUIRE(bits_of(yg) == bits_of(yc));
    Tensor g = random_bf16(yc.sizes(), 6);
    yc.backward(g);
    yg.backward(g.to(Device::cuda()));
    REQUIRE(bits_of(xg.grad()) == bits_of(xc.grad()));
  }
  Tensor a = random_bf16({3, 4, 5}, 7), b = random_bf16({3, 2, 5}, 8);
  REQUIRE(bits_of(concat({a.to(Device::cuda()), b.to(Device::cuda())}, 1)) == bits_of(concat({a, b}, 1)));
  REQUIRE(bits_of(concat({a.to(Device::cuda()), a.to(Device::cuda())}, 2)) == bits_of(concat({a, a}, 2)));
}
