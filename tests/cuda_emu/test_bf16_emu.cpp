// Self-tests of tools/cuda_emu/include/cuda_bf16.h, the emulator's stand-in for CUDA's
// bfloat16 header. Expected values are worked out by hand from the bf16 format (1 sign,
// 8 exponent, 7 mantissa bits: 1.0 is 0x3F80 and the spacing just above 1 is 2^-7), so a
// conversion that truncates instead of rounding, rounds ties away from zero, rounds twice,
// or fuses nothing gives a different bit pattern and fails.
#include <catch2/catch.hpp>
#include <cuda_runtime.h>
// The real <cuda_runtime.h> does not bring in bfloat16; neither may the stand-in, or a
// kernel that forgets `#include <cuda_bf16.h>` would build here and fail under nvcc.
#ifdef CUDART_ONE_BF16
#error "cuda_runtime.h must not include cuda_bf16.h"
#endif
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

unsigned short bits(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }
__nv_bfloat16 bf(unsigned short u) { return __ushort_as_bfloat16(u); }
const float k2m8 = std::ldexp(1.0f, -8), k2m7 = std::ldexp(1.0f, -7);

// Each thread converts its float to bf16 into shared memory; after the barrier it adds its
// mirror partner's value (bf16 addition) and passes its own value one lane down a shuffle.
void mirror_kernel(const float* x, __nv_bfloat16* sum_out, __nv_bfloat16* shfl_out) {
  __shared__ __nv_bfloat16 tile[64];
  const int t = threadIdx.x, n = blockDim.x;
  tile[t] = __float2bfloat16(x[t]);
  __syncthreads();
  sum_out[t] = tile[t] + tile[n - 1 - t];
  shfl_out[t] = __shfl_down_sync(0xffffffffu, tile[t], 1);
}

}  // namespace

TEST_CASE("cuda_emu bf16: storage is 16 bits and trivially copyable", "[cuda_emu]") {
  STATIC_REQUIRE(sizeof(__nv_bfloat16) == 2);
  STATIC_REQUIRE(alignof(__nv_bfloat16) == 2);
  STATIC_REQUIRE(sizeof(__nv_bfloat162) == 4);
  STATIC_REQUIRE(std::is_trivially_copyable_v<__nv_bfloat16>);
  STATIC_REQUIRE(std::is_trivially_default_constructible_v<__nv_bfloat16>);
  // The bits are the upper half of the float's bits.
  REQUIRE(bits(__float2bfloat16(1.0f)) == 0x3F80);
  REQUIRE(bits(__float2bfloat16(-2.0f)) == 0xC000);
  REQUIRE(__bfloat162float(bf(0x3F81)) == 1.0f + k2m7);
  REQUIRE(__bfloat162float(bf(0x4049)) == 3.140625f);
}

TEST_CASE("cuda_emu bf16: float -> bf16 rounds to nearest, ties to even", "[cuda_emu]") {
  // 1 + 2^-8 is halfway between 1 (mantissa 0, even) and 1 + 2^-7 (odd): goes down.
  REQUIRE(bits(__float2bfloat16(1.0f + k2m8)) == 0x3F80);
  REQUIRE(bits(__float2bfloat16_rn(1.0f + k2m8)) == 0x3F80);
  // 1 + 3*2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): goes up.
  REQUIRE(bits(__float2bfloat16(1.0f + 3 * k2m8)) == 0x3F82);
  // Just above a tie rounds up, just below rounds down.
  REQUIRE(bits(__float2bfloat16(std::nextafter(1.0f + k2m8, 2.0f))) == 0x3F81);
  REQUIRE(bits(__float2bfloat16(std::nextafter(1.0f + 3 * k2m8, 0.0f))) == 0x3F81);
  // The sign does not change the rule.
  REQUIRE(bits(__float2bfloat16(-(1.0f + k2m8))) == 0xBF80);
  REQUIRE(bits(__float2bfloat16(-(1.0f + 3 * k2m8))) == 0xBF82);
  // A carry out of the mantissa moves to the next binade: 2 - 2^-9 rounds to 2.
  REQUIRE(bits(__float2bfloat16(2.0f - std::ldexp(1.0f, -9))) == 0x4000);
  // 1/3 = 0x3EAAAAAB: the dropped half 0xAAAB is above the midpoint.
  REQUIRE(bits(__float2bfloat16(1.0f / 3.0f)) == 0x3EAB);
  // Subnormals keep the same rule: 2^-133 is bf16's smallest, 2^-134 is a tie with 0.
  REQUIRE(bits(__float2bfloat16(std::ldexp(1.0f, -133))) == 0x0001);
  REQUIRE(bits(__float2bfloat16(std::ldexp(1.0f, -134))) == 0x0000);
  REQUIRE(bits(__float2bfloat16(std::ldexp(3.0f, -134))) == 0x0002);
}

TEST_CASE("cuda_emu bf16: NaN, Inf and overflow", "[cuda_emu]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  REQUIRE(bits(__float2bfloat16(nan)) == 0x7FFF);  // canonical NaN
  REQUIRE(bits(__float2bfloat16(-nan)) == 0x7FFF);
  // A NaN whose payload sits only in the dropped bits must not become Inf.
  float low_nan;
  const uint32_t low_nan_bits = 0x7F800001u;
  std::memcpy(&low_nan, &low_nan_bits, 4);
  REQUIRE(__hisnan(__float2bfloat16(low_nan)));
  REQUIRE(__hisnan(__float2bfloat16_rz(low_nan)));
  REQUIRE(std::isnan(__bfloat162float(CUDART_NAN_BF16)));
  REQUIRE(bits(__float2bfloat16(inf)) == 0x7F80);
  REQUIRE(bits(__float2bfloat16(-inf)) == 0xFF80);
  REQUIRE(__hisinf(bf(0x7F80)) == 1);
  REQUIRE(__hisinf(bf(0xFF80)) == -1);
  REQUIRE(__hisinf(bf(0x7F7F)) == 0);
  // The largest float is past bf16's largest finite value (0x7F7F) by more than half a step.
  const float fmax = std::numeric_limits<float>::max();
  REQUIRE(bits(__float2bfloat16_rn(fmax)) == 0x7F80);
  REQUIRE(bits(__float2bfloat16_rz(fmax)) == 0x7F7F);
  REQUIRE(bits(__float2bfloat16_rz(-fmax)) == 0xFF7F);
}

TEST_CASE("cuda_emu bf16: rz truncates, ru / rd round outward by sign", "[cuda_emu]") {
  const float up = 1.0f + 3 * k2m8;  // rn gives 0x3F82
  REQUIRE(bits(__float2bfloat16_rz(up)) == 0x3F81);
  REQUIRE(bits(__float2bfloat16_rz(-up)) == 0xBF81);
  REQUIRE(bits(__float2bfloat16_rz(std::nextafter(2.0f, 0.0f))) == 0x3FFF);
  REQUIRE(bits(__float2bfloat16_ru(1.0f + std::ldexp(1.0f, -20))) == 0x3F81);
  REQUIRE(bits(__float2bfloat16_rd(1.0f + std::ldexp(1.0f, -20))) == 0x3F80);
  REQUIRE(bits(__float2bfloat16_ru(-(1.0f + std::ldexp(1.0f, -20)))) == 0xBF80);
  REQUIRE(bits(__float2bfloat16_rd(-(1.0f + std::ldexp(1.0f, -20)))) == 0xBF81);
}

TEST_CASE("cuda_emu bf16: double and integer conversions round once", "[cuda_emu]") {
  // Through float first, 1 + 2^-8 + 2^-40 would become the tie 1 + 2^-8 and round down.
  REQUIRE(bits(__double2bfloat16(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40))) == 0x3F81);
  REQUIRE(bits(__double2bfloat16(1.0 + std::ldexp(1.0, -8))) == 0x3F80);
  REQUIRE(bits(__double2bfloat16(1e300)) == 0x7F80);
  REQUIRE(bits(__nv_bfloat16(1.0 + 3 * std::ldexp(1.0, -8))) == 0x3F82);  // the double constructor
  // 257 = 256 (1 + 2^-8): a tie, to even (256); 259 goes up to 260.
  REQUIRE(__bfloat162float(__int2bfloat16_rn(257)) == 256.0f);
  REQUIRE(__bfloat162float(__int2bfloat16_rn(259)) == 260.0f);
  REQUIRE(__bfloat162float(__int2bfloat16_rn(-259)) == -260.0f);
  REQUIRE(__bfloat162float(__nv_bfloat16(259)) == 260.0f);  // the int constructor
  // 2^40 + 2^32 + 1: through float the +1 is lost, leaving a tie that rounds down.
  const long long big = (1LL << 40) + (1LL << 32) + 1;
  REQUIRE(__bfloat162float(__ll2bfloat16_rn(big)) == std::ldexp(1.0f + k2m7, 40));
  REQUIRE(__bfloat162float(__ull2bfloat16_rn(~0ULL)) == std::ldexp(1.0f, 64));
  // bf16 -> int: rn to even, rz truncates, NaN gives 0, large values saturate.
  REQUIRE(__bfloat162int_rn(__float2bfloat16(2.5f)) == 2);
  REQUIRE(__bfloat162int_rn(__float2bfloat16(3.5f)) == 4);
  REQUIRE(__bfloat162int_rz(__float2bfloat16(-2.5f)) == -2);
  REQUIRE(__bfloat162int_rz(CUDART_NAN_BF16) == 0);
  REQUIRE(__bfloat162int_rz(CUDART_INF_BF16) == std::numeric_limits<int>::max());
  REQUIRE(static_cast<int>(__float2bfloat16(-7.75f)) == -7);
}

TEST_CASE("cuda_emu bf16: bf16x2 conversions keep the halves in order", "[cuda_emu]") {
  const __nv_bfloat162 p = __float22bfloat162_rn(make_float2(1.0f + k2m8, 1.0f + 3 * k2m8));
  REQUIRE(bits(p.x) == 0x3F80);
  REQUIRE(bits(p.y) == 0x3F82);
  REQUIRE(bits(__low2bfloat16(p)) == 0x3F80);
  REQUIRE(bits(__high2bfloat16(p)) == 0x3F82);
  const float2 f = __bfloat1622float2(__floats2bfloat162_rn(0.5f, -3.0f));
  REQUIRE(f.x == 0.5f);
  REQUIRE(f.y == -3.0f);
  REQUIRE(__high2float(__halves2bfloat162(bf(0x3F80), bf(0x4000))) == 2.0f);
}

TEST_CASE("cuda_emu bf16: arithmetic rounds the exact result once", "[cuda_emu]") {
  const __nv_bfloat16 one = CUDART_ONE_BF16, a = bf(0x3F81);  // a = 1 + 2^-7
  // 1 + 2^-8: a tie, down to 1. 1 + 3*2^-8: a tie, up to 1 + 2^-6.
  REQUIRE(bits(__hadd(one, __float2bfloat16(k2m8))) == 0x3F80);
  REQUIRE(bits(__hadd(one, __float2bfloat16(3 * k2m8))) == 0x3F82);
  REQUIRE(bits(one + __float2bfloat16(3 * k2m8)) == 0x3F82);
  REQUIRE(bits(__hsub(a, one)) == bits(__float2bfloat16(k2m7)));
  // (1 + 2^-7) * 1.5 = 1.51171875, halfway between 0x3FC1 and 0x3FC2 (even).
  REQUIRE(bits(__hmul(a, __float2bfloat16(1.5f))) == 0x3FC2);
  REQUIRE(bits(a * __float2bfloat16(1.5f)) == 0x3FC2);
  REQUIRE(bits(__hdiv(one, __float2bfloat16(3.0f))) == 0x3EAB);
  // fma rounds once: a*a - (1 + 2^-6) is exactly 2^-14; a separate multiply would round
  // a*a to 1 + 2^-6 first and give 0.
  const __nv_bfloat16 c = __float2bfloat16(-(1.0f + 4 * k2m8));
  REQUIRE(bits(__hfma(a, a, c)) == bits(__float2bfloat16(std::ldexp(1.0f, -14))));
  REQUIRE(bits(__hadd(__hmul(a, a), c)) == 0x0000);
  REQUIRE(bits(__hfma_relu(a, a, __float2bfloat16(-4.0f))) == 0x0000);
  // Compound assignment, increment, negation.
  __nv_bfloat16 s = one;
  s += __float2bfloat16(3 * k2m8);
  REQUIRE(bits(s) == 0x3F82);
  ++s;
  REQUIRE(__bfloat162float(s) == 2.015625f);
  REQUIRE(bits(-one) == 0xBF80);
  REQUIRE(bits(__habs(bf(0xBF80))) == 0x3F80);
  // bf16x2 arithmetic acts per half.
  const __nv_bfloat162 h = __hadd2(__floats2bfloat162_rn(1.0f, 2.0f), __floats2bfloat162_rn(3 * k2m8, 0.5f));
  REQUIRE(bits(h.x) == 0x3F82);
  REQUIRE(__bfloat162float(h.y) == 2.5f);
}

TEST_CASE("cuda_emu bf16: comparisons, max and min follow IEEE rules", "[cuda_emu]") {
  const __nv_bfloat16 one = CUDART_ONE_BF16, two = __float2bfloat16(2.0f), nan = CUDART_NAN_BF16;
  REQUIRE(one < two);
  REQUIRE(two >= one);
  REQUIRE_FALSE(one == two);
  REQUIRE(__hmul(one, two) == two);
  REQUIRE_FALSE(nan == nan);
  REQUIRE(nan != nan);
  REQUIRE_FALSE(nan < one);
  REQUIRE_FALSE(__hne(nan, one));
  REQUIRE(__hneu(nan, one));
  REQUIRE(__hltu(nan, one));
  REQUIRE(CUDART_ZERO_BF16 == CUDART_NEG_ZERO_BF16);
  REQUIRE(bits(__hmax(one, nan)) == 0x3F80);
  REQUIRE(bits(__hmin(nan, two)) == 0x4000);
  REQUIRE(__hisnan(__hmax_nan(one, nan)));
  REQUIRE(bits(__hmax(CUDART_ZERO_BF16, CUDART_NEG_ZERO_BF16)) == 0x0000);
  REQUIRE(bits(__hmin(CUDART_ZERO_BF16, CUDART_NEG_ZERO_BF16)) == 0x8000);
  REQUIRE(bits(__hmax(one, two)) == 0x4000);
}

TEST_CASE("cuda_emu bf16: a kernel keeps bf16 in shared memory and shuffles it", "[cuda_emu]") {
  const int n = 64;
  std::vector<float> h(n);
  for (int i = 0; i < n; ++i) h[i] = 1.0f + static_cast<float>(i) * k2m8;  // odd i: ties
  float* x = nullptr;
  __nv_bfloat16 *sum = nullptr, *sh = nullptr;
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&x), n * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&sum), n * sizeof(__nv_bfloat16)) == cudaSuccess);
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&sh), n * sizeof(__nv_bfloat16)) == cudaSuccess);
  cudaMemcpy(x, h.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  emu::launch(mirror_kernel, 1, n)(x, sum, sh);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  std::vector<__nv_bfloat16> got_sum(n), got_sh(n);
  cudaMemcpy(got_sum.data(), sum, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost);
  cudaMemcpy(got_sh.data(), sh, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost);
  for (int t = 0; t < n; ++t) {
    CAPTURE(t);
    const __nv_bfloat16 mine = __float2bfloat16(h[t]), other = __float2bfloat16(h[n - 1 - t]);
    REQUIRE(bits(got_sum[t]) == bits(__hadd(mine, other)));
    const int lane = t % 32;
    REQUIRE(bits(got_sh[t]) == bits(lane < 31 ? __float2bfloat16(h[t + 1]) : mine));
  }
  // By hand: thread 1 holds 1 + 2^-8 -> 1 (tie to even), thread 62 holds
  // 1 + 62*2^-8 = 1.2421875 exactly; their sum 2.2421875 is halfway between 2.234375
  // (odd mantissa) and 2.25 (even, 0x4010).
  REQUIRE(bits(got_sum[1]) == 0x4010);
  REQUIRE(bits(got_sh[0]) == 0x3F80);
  cudaFree(x);
  cudaFree(sum);
  cudaFree(sh);
}
