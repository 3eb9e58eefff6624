// cuda-emu: a CPU stand-in for CUDA's <cuda_bf16.h> (the bfloat16 type and its intrinsics),
// for the emulated test build (see cuda_runtime.h here). Same names and semantics as the
// real header for the parts this project uses; written from CUDA's documented behaviour.
//
// bfloat16: 1 sign bit, 8 exponent bits (as float), 7 mantissa bits. A bf16 value is the
// upper half of a float's bits, so a bf16 -> float conversion is exact (shift left by 16)
// and float -> bf16 rounds the lower 16 bits away:
//   _rn (and the plain __float2bfloat16): round to nearest, ties to even mantissa;
//   _rz: truncate (toward zero);
//   a NaN becomes the canonical NaN 0x7FFF (sign dropped), as the real host and device
//   paths both do; +-Inf stay +-Inf; a finite value past the largest bf16 rounds to Inf
//   under _rn and to the largest finite bf16 under _rz.
// Arithmetic (__hadd, operators, ...) gives the exact result rounded once to bf16 (RNE),
// as sm_80+ hardware does. Computing a op b in float and then rounding to bf16 is exact for
// + - * / because float keeps more than 2*8+2 significand bits (double rounding is then
// innocuous); fma is computed in double (a*b exact there) and rounded via round-to-odd.
//
// Like the real one, <cuda_runtime.h> does NOT include this header: a kernel that uses
// __nv_bfloat16 includes <cuda_bf16.h> itself. (The real header also pulls in cuda_fp16.h;
// this emulator has no __half, so the __half conversions are absent.)
#pragma once
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

struct __nv_bfloat16;

namespace emu::bf16_detail {
inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// float -> bf16 bits, round to nearest even.
inline unsigned short rn(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN
  // Adding 0x7fff (+1 when the kept part is odd) carries into bit 16 exactly when the
  // dropped half is above the midpoint, or at it with an odd kept part. The carry may run
  // into the exponent: that is the right result (next binade, or Inf past the largest).
  const uint32_t lsb = (x >> 16) & 1u;
  return static_cast<unsigned short>((x + 0x7fffu + lsb) >> 16);
}
// float -> bf16 bits, toward zero.
inline unsigned short rz(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  return static_cast<unsigned short>(x >> 16);
}
inline unsigned short ru(float f) {  // toward +Inf
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  unsigned short r = static_cast<unsigned short>(x >> 16);
  if ((x & 0xffffu) != 0 && !(x >> 31)) ++r;
  return r;
}
inline unsigned short rd(float f) {  // toward -Inf
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  unsigned short r = static_cast<unsigned short>(x >> 16);
  if ((x & 0xffffu) != 0 && (x >> 31)) ++r;
  return r;
}
// double -> bf16 bits with one rounding: the double is first rounded to float toward zero
// with a sticky last bit ("round to odd"), which keeps every tie visible to the final RNE.
inline unsigned short from_double_rn(double d) {
  if (std::isnan(d)) return 0x7fffu;
  float f = static_cast<float>(d);
  if (std::isinf(f) && !std::isinf(d)) f = std::copysign(std::numeric_limits<float>::max(), f);
  if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
  if (static_cast<double>(f) != d) f = bits_float(float_bits(f) | 1u);
  return rn(f);
}
// An integer magnitude rounded to bf16 (8 significant bits), nearest even, exactly.
inline unsigned short from_u64_rn(uint64_t m, bool negative) {
  if (m == 0) return negative ? 0x8000u : 0u;
  int top = 63 - __builtin_clzll(m);
  uint64_t keep = m;
  int shift = 0;
  if (top > 7) {
    shift = top - 7;
    keep = m >> shift;
    const uint64_t rem = m & ((uint64_t{1} << shift) - 1), half = uint64_t{1} << (shift - 1);
    if (rem > half || (rem == half && (keep & 1))) ++keep;
  }
  const float v = std::ldexp(static_cast<float>(keep), shift);  // exact: keep <= 256
  return rn(negative ? -v : v);
}
inline uint64_t magnitude(long long v) {
  return v < 0 ? uint64_t{0} - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
}
// bf16 -> integer: NaN gives 0, out-of-range values saturate (cvt.rni / cvt.rzi semantics).
template <typename I>
I to_int(float f, bool nearest) {
  if (std::isnan(f)) return 0;
  const float r = nearest ? std::nearbyint(f) : std::trunc(f);
  if (r <= static_cast<float>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (r >= static_cast<float>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return static_cast<I>(r);
}
}  // namespace emu::bf16_detail

typedef struct __align__(2) {
  unsigned short x;
} __nv_bfloat16_raw;

typedef struct __align__(4) {
  unsigned short x;
  unsigned short y;
} __nv_bfloat162_raw;

__nv_bfloat16 __ushort_as_bfloat16(unsigned short u);
float __bfloat162float(__nv_bfloat16 a);
__nv_bfloat16 __short2bfloat16_rn(short v);
__nv_bfloat16 __ushort2bfloat16_rn(unsigned short v);
__nv_bfloat16 __int2bfloat16_rn(int v);
__nv_bfloat16 __uint2bfloat16_rn(unsigned int v);
__nv_bfloat16 __ll2bfloat16_rn(long long v);
__nv_bfloat16 __ull2bfloat16_rn(unsigned long long v);

// 16-bit storage; trivially copyable and trivially default-constructible (so it can live in
// __shared__ arrays and go through shuffles), sizeof 2, alignment 2.
struct __align__(2) __nv_bfloat16 {
  unsigned short __x;

  __nv_bfloat16() = default;
  constexpr __nv_bfloat16(const __nv_bfloat16_raw& r) : __x(r.x) {}
  __nv_bfloat16& operator=(const __nv_bfloat16_raw& r) {
    __x = r.x;
    return *this;
  }
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }

  // The real header's implicit conversions (round to nearest even).
  __nv_bfloat16(float f) : __x(emu::bf16_detail::rn(f)) {}
  __nv_bfloat16(double d) : __x(emu::bf16_detail::from_double_rn(d)) {}
  __nv_bfloat16(short v) : __x(__short2bfloat16_rn(v).__x) {}
  __nv_bfloat16(unsigned short v) : __x(__ushort2bfloat16_rn(v).__x) {}
  __nv_bfloat16(int v) : __x(__int2bfloat16_rn(v).__x) {}
  __nv_bfloat16(unsigned int v) : __x(__uint2bfloat16_rn(v).__x) {}
  __nv_bfloat16(long v) : __x(__ll2bfloat16_rn(v).__x) {}
  __nv_bfloat16(unsigned long v) : __x(__ull2bfloat16_rn(v).__x) {}
  __nv_bfloat16(long long v) : __x(__ll2bfloat16_rn(v).__x) {}
  __nv_bfloat16(unsigned long long v) : __x(__ull2bfloat16_rn(v).__x) {}
  __nv_bfloat16& operator=(float f) { return *this = __nv_bfloat16(f); }
  __nv_bfloat16& operator=(double d) { return *this = __nv_bfloat16(d); }

  operator float() const { return emu::bf16_detail::bits_float(static_cast<uint32_t>(__x) << 16); }
  // Integer conversions truncate toward zero, as for float (saturating; NaN gives 0).
  operator signed char() const { return emu::bf16_detail::to_int<signed char>(float(*this), false); }
  operator unsigned char() const { return emu::bf16_detail::to_int<unsigned char>(float(*this), false); }
  operator char() const { return emu::bf16_detail::to_int<char>(float(*this), false); }
  operator short() const { return emu::bf16_detail::to_int<short>(float(*this), false); }
  operator unsigned short() const { return emu::bf16_detail::to_int<unsigned short>(float(*this), false); }
  operator int() const { return emu::bf16_detail::to_int<int>(float(*this), false); }
  operator unsigned int() const { return emu::bf16_detail::to_int<unsigned int>(float(*this), false); }
  operator long() const { return emu::bf16_detail::to_int<long>(float(*this), false); }
  operator unsigned long() const { return emu::bf16_detail::to_int<unsigned long>(float(*this), false); }
  operator long long() const { return emu::bf16_detail::to_int<long long>(float(*this), false); }
  operator unsigned long long() const { return emu::bf16_detail::to_int<unsigned long long>(float(*this), false); }
  constexpr operator bool() const { return (__x & 0x7fffu) != 0u; }
};

struct __align__(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
  __nv_bfloat162() = default;
  constexpr __nv_bfloat162(const __nv_bfloat16& a, const __nv_bfloat16& b) : x(a), y(b) {}
  __nv_bfloat162(const __nv_bfloat162_raw& r) : x(__nv_bfloat16_raw{r.x}), y(__nv_bfloat16_raw{r.y}) {}
  operator __nv_bfloat162_raw() const { return __nv_bfloat162_raw{x.__x, y.__x}; }
};

static_assert(sizeof(__nv_bfloat16) == 2 && alignof(__nv_bfloat16) == 2, "bf16 is 2 bytes");
static_assert(sizeof(__nv_bfloat162) == 4 && alignof(__nv_bfloat162) == 4, "bf16x2 is 4 bytes");
static_assert(std::is_trivially_copyable_v<__nv_bfloat16> && std::is_trivially_copyable_v<__nv_bfloat162>,
              "bf16 must be trivially copyable");

typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;

// ---- bit reinterpretation ----------------------------------------------------------------------
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16(__nv_bfloat16_raw{u}); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 a) { return a.__x; }
inline __nv_bfloat16 __short_as_bfloat16(short s) { return __ushort_as_bfloat16(static_cast<unsigned short>(s)); }
inline short __bfloat16_as_short(__nv_bfloat16 a) { return static_cast<short>(a.__x); }

#define CUDART_INF_BF16 __ushort_as_bfloat16((unsigned short)0x7F80U)
#define CUDART_NAN_BF16 __ushort_as_bfloat16((unsigned short)0x7FFFU)
#define CUDART_MIN_DENORM_BF16 __ushort_as_bfloat16((unsigned short)0x0001U)
#define CUDART_MAX_NORMAL_BF16 __ushort_as_bfloat16((unsigned short)0x7F7FU)
#define CUDART_NEG_ZERO_BF16 __ushort_as_bfloat16((unsigned short)0x8000U)
#define CUDART_ZERO_BF16 __ushort_as_bfloat16((unsigned short)0x0000U)
#define CUDART_ONE_BF16 __ushort_as_bfloat16((unsigned short)0x3F80U)

// ---- float / double conversions -------------------------------------------------------------
inline float __bfloat162float(__nv_bfloat16 a) { return emu::bf16_detail::bits_float(static_cast<uint32_t>(a.__x) << 16); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __ushort_as_bfloat16(emu::bf16_detail::rn(f)); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __ushort_as_bfloat16(emu::bf16_detail::rn(f)); }
inline __nv_bfloat16 __float2bfloat16_rz(float f) { return __ushort_as_bfloat16(emu::bf16_detail::rz(f)); }
inline __nv_bfloat16 __float2bfloat16_ru(float f) { return __ushort_as_bfloat16(emu::bf16_detail::ru(f)); }
inline __nv_bfloat16 __float2bfloat16_rd(float f) { return __ushort_as_bfloat16(emu::bf16_detail::rd(f)); }
inline __nv_bfloat16 __double2bfloat16(double d) { return __ushort_as_bfloat16(emu::bf16_detail::from_double_rn(d)); }

inline __nv_bfloat162 __float2bfloat162_rn(float a) { return __nv_bfloat162(__float2bfloat16_rn(a), __float2bfloat16_rn(a)); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return __nv_bfloat162(__float2bfloat16_rn(a), __float2bfloat16_rn(b));
}
inline __nv_bfloat162 __float22bfloat162_rn(float2 f) { return __floats2bfloat162_rn(f.x, f.y); }
inline float2 __bfloat1622float2(__nv_bfloat162 a) { return make_float2(__bfloat162float(a.x), __bfloat162float(a.y)); }
inline float __low2float(__nv_bfloat162 a) { return __bfloat162float(a.x); }
inline float __high2float(__nv_bfloat162 a) { return __bfloat162float(a.y); }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 a) { return a.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 a) { return a.y; }
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 lo, __nv_bfloat16 hi) { return __nv_bfloat162(lo, hi); }
inline __nv_bfloat162 __bfloat162bfloat162(__nv_bfloat16 a) { return __nv_bfloat162(a, a); }
inline __nv_bfloat162 __lowhigh2highlow(__nv_bfloat162 a) { return __nv_bfloat162(a.y, a.x); }

// ---- integer conversions ----------------------------------------------------------------------
inline __nv_bfloat16 __short2bfloat16_rn(short v) { return __ll2bfloat16_rn(v); }
inline __nv_bfloat16 __ushort2bfloat16_rn(unsigned short v) { return __ull2bfloat16_rn(v); }
inline __nv_bfloat16 __int2bfloat16_rn(int v) { return __ll2bfloat16_rn(v); }
inline __nv_bfloat16 __uint2bfloat16_rn(unsigned int v) { return __ull2bfloat16_rn(v); }
inline __nv_bfloat16 __ll2bfloat16_rn(long long v) {
  return __ushort_as_bfloat16(emu::bf16_detail::from_u64_rn(emu::bf16_detail::magnitude(v), v < 0));
}
inline __nv_bfloat16 __ull2bfloat16_rn(unsigned long long v) {
  return __ushort_as_bfloat16(emu::bf16_detail::from_u64_rn(v, false));
}
inline int __bfloat162int_rn(__nv_bfloat16 a) { return emu::bf16_detail::to_int<int>(__bfloat162float(a), true); }
inline int __bfloat162int_rz(__nv_bfloat16 a) { return emu::bf16_detail::to_int<int>(__bfloat162float(a), false); }
inline long long __bfloat162ll_rn(__nv_bfloat16 a) { return emu::bf16_detail::to_int<long long>(__bfloat162float(a), true); }
inline long long __bfloat162ll_rz(__nv_bfloat16 a) { return emu::bf16_detail::to_int<long long>(__bfloat162float(a), false); }
inline unsigned int __bfloat162uint_rn(__nv_bfloat16 a) { return emu::bf16_detail::to_int<unsigned int>(__bfloat162float(a), true); }
inline unsigned int __bfloat162uint_rz(__nv_bfloat16 a) { return emu::bf16_detail::to_int<unsigned int>(__bfloat162float(a), false); }

// ---- classification ---------------------------------------------------------------------------
inline bool __hisnan(__nv_bfloat16 a) { return (a.__x & 0x7fffu) > 0x7f80u; }
inline int __hisinf(__nv_bfloat16 a) { return a.__x == 0xff80u ? -1 : (a.__x == 0x7f80u ? 1 : 0); }

// ---- arithmetic: the exact result rounded once to bf16 (nearest even) -----------------------
inline __nv_bfloat16 __hadd(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16_rn(__bfloat162float(a) + __bfloat162float(b)); }
inline __nv_bfloat16 __hsub(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16_rn(__bfloat162float(a) - __bfloat162float(b)); }
inline __nv_bfloat16 __hmul(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16_rn(__bfloat162float(a) * __bfloat162float(b)); }
inline __nv_bfloat16 __hdiv(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16_rn(__bfloat162float(a) / __bfloat162float(b)); }
inline __nv_bfloat16 __hadd_rn(__nv_bfloat16 a, __nv_bfloat16 b) { return __hadd(a, b); }
inline __nv_bfloat16 __hsub_rn(__nv_bfloat16 a, __nv_bfloat16 b) { return __hsub(a, b); }
inline __nv_bfloat16 __hmul_rn(__nv_bfloat16 a, __nv_bfloat16 b) { return __hmul(a, b); }
inline __nv_bfloat16 __hfma(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
  // a*b is exact in double (8 + 8 significand bits); one rounding of the sum, then round to odd.
  return __double2bfloat16(static_cast<double>(__bfloat162float(a)) * __bfloat162float(b) + __bfloat162float(c));
}
inline __nv_bfloat16 __hneg(__nv_bfloat16 a) { return __ushort_as_bfloat16(static_cast<unsigned short>(a.__x ^ 0x8000u)); }
inline __nv_bfloat16 __habs(__nv_bfloat16 a) { return __ushort_as_bfloat16(static_cast<unsigned short>(a.__x & 0x7fffu)); }
inline __nv_bfloat16 __hfma_relu(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
  const __nv_bfloat16 r = __hfma(a, b, c);
  return __hisnan(r) ? CUDART_NAN_BF16 : (__bfloat162float(r) < 0.0f ? CUDART_ZERO_BF16 : r);
}

// Comparisons: ordered ones are false when either operand is NaN, the "u" ones true.
inline bool __heq(__nv_bfloat16 a, __nv_bfloat16 b) { return __bfloat162float(a) == __bfloat162float(b); }
inline bool __hne(__nv_bfloat16 a, __nv_bfloat16 b) { return !__hisnan(a) && !__hisnan(b) && !__heq(a, b); }
inline bool __hlt(__nv_bfloat16 a, __nv_bfloat16 b) { return __bfloat162float(a) < __bfloat162float(b); }
inline bool __hle(__nv_bfloat16 a, __nv_bfloat16 b) { return __bfloat162float(a) <= __bfloat162float(b); }
inline bool __hgt(__nv_bfloat16 a, __nv_bfloat16 b) { return __bfloat162float(a) > __bfloat162float(b); }
inline bool __hge(__nv_bfloat16 a, __nv_bfloat16 b) { return __bfloat162float(a) >= __bfloat162float(b); }
inline bool __hequ(__nv_bfloat16 a, __nv_bfloat16 b) { return !(__hlt(a, b) || __hgt(a, b)); }
inline bool __hneu(__nv_bfloat16 a, __nv_bfloat16 b) { return !__heq(a, b); }
inline bool __hltu(__nv_bfloat16 a, __nv_bfloat16 b) { return !__hge(a, b); }
inline bool __hleu(__nv_bfloat16 a, __nv_bfloat16 b) { return !__hgt(a, b); }
inline bool __hgtu(__nv_bfloat16 a, __nv_bfloat16 b) { return !__hle(a, b); }
inline bool __hgeu(__nv_bfloat16 a, __nv_bfloat16 b) { return !__hlt(a, b); }

// max / min: a NaN operand yields the other one (both NaN: canonical NaN); +0 > -0.
inline __nv_bfloat16 __hmax(__nv_bfloat16 a, __nv_bfloat16 b) {
  if (__hisnan(a) && __hisnan(b)) return CUDART_NAN_BF16;
  if (__hisnan(a)) return b;
  if (__hisnan(b)) return a;
  if (__heq(a, b)) return (a.__x & 0x8000u) ? b : a;
  return __hgt(a, b) ? a : b;
}
inline __nv_bfloat16 __hmin(__nv_bfloat16 a, __nv_bfloat16 b) {
  if (__hisnan(a) && __hisnan(b)) return CUDART_NAN_BF16;
  if (__hisnan(a)) return b;
  if (__hisnan(b)) return a;
  if (__heq(a, b)) return (a.__x & 0x8000u) ? a : b;
  return __hlt(a, b) ? a : b;
}
// The _nan variants propagate NaN.
inline __nv_bfloat16 __hmax_nan(__nv_bfloat16 a, __nv_bfloat16 b) {
  return (__hisnan(a) || __hisnan(b)) ? CUDART_NAN_BF16 : __hmax(a, b);
}
inline __nv_bfloat16 __hmin_nan(__nv_bfloat16 a, __nv_bfloat16 b) {
  return (__hisnan(a) || __hisnan(b)) ? CUDART_NAN_BF16 : __hmin(a, b);
}

// ---- bf16x2: the same operation on both halves -----------------------------------------------
inline __nv_bfloat162 __hadd2(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(__hadd(a.x, b.x), __hadd(a.y, b.y)); }
inline __nv_bfloat162 __hsub2(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(__hsub(a.x, b.x), __hsub(a.y, b.y)); }
inline __nv_bfloat162 __hmul2(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(__hmul(a.x, b.x), __hmul(a.y, b.y)); }
inline __nv_bfloat162 __h2div(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(__hdiv(a.x, b.x), __hdiv(a.y, b.y)); }
inline __nv_bfloat162 __hfma2(__nv_bfloat162 a, __nv_bfloat162 b, __nv_bfloat162 c) {
  return __nv_bfloat162(__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y));
}
inline __nv_bfloat162 __hmax2(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(__hmax(a.x, b.x), __hmax(a.y, b.y)); }
inline __nv_bfloat162 __hmin2(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(__hmin(a.x, b.x), __hmin(a.y, b.y)); }
inline __nv_bfloat162 __hneg2(__nv_bfloat162 a) { return __nv_bfloat162(__hneg(a.x), __hneg(a.y)); }
inline __nv_bfloat162 __habs2(__nv_bfloat162 a) { return __nv_bfloat162(__habs(a.x), __habs(a.y)); }

// ---- operators (as the real header declares them for __nv_bfloat16 / __nv_bfloat162) ---------
inline __nv_bfloat16 operator+(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hadd(a, b); }
inline __nv_bfloat16 operator-(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hsub(a, b); }
inline __nv_bfloat16 operator*(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hmul(a, b); }
inline __nv_bfloat16 operator/(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hdiv(a, b); }
inline __nv_bfloat16& operator+=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hadd(a, b); }
inline __nv_bfloat16& operator-=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hsub(a, b); }
inline __nv_bfloat16& operator*=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hmul(a, b); }
inline __nv_bfloat16& operator/=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hdiv(a, b); }
inline __nv_bfloat16& operator++(__nv_bfloat16& a) { return a = __hadd(a, CUDART_ONE_BF16); }
inline __nv_bfloat16& operator--(__nv_bfloat16& a) { return a = __hsub(a, CUDART_ONE_BF16); }
inline __nv_bfloat16 operator++(__nv_bfloat16& a, int) {
  const __nv_bfloat16 old = a;
  a = __hadd(a, CUDART_ONE_BF16);
  return old;
}
inline __nv_bfloat16 operator--(__nv_bfloat16& a, int) {
  const __nv_bfloat16 old = a;
  a = __hsub(a, CUDART_ONE_BF16);
  return old;
}
inline __nv_bfloat16 operator+(const __nv_bfloat16& a) { return a; }
inline __nv_bfloat16 operator-(const __nv_bfloat16& a) { return __hneg(a); }
inline bool operator==(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __heq(a, b); }
inline bool operator!=(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hneu(a, b); }
inline bool operator>(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hgt(a, b); }
inline bool operator<(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hlt(a, b); }
inline bool operator>=(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hge(a, b); }
inline bool operator<=(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hle(a, b); }

inline __nv_bfloat162 operator+(const __nv_bfloat162& a, const __nv_bfloat162& b) { return __hadd2(a, b); }
inline __nv_bfloat162 operator-(const __nv_bfloat162& a, const __nv_bfloat162& b) { return __hsub2(a, b); }
inline __nv_bfloat162 operator*(const __nv_bfloat162& a, const __nv_bfloat162& b) { return __hmul2(a, b); }
inline __nv_bfloat162 operator/(const __nv_bfloat162& a, const __nv_bfloat162& b) { return __h2div(a, b); }
inline __nv_bfloat162& operator+=(__nv_bfloat162& a, const __nv_bfloat162& b) { return a = __hadd2(a, b); }
inline __nv_bfloat162& operator-=(__nv_bfloat162& a, const __nv_bfloat162& b) { return a = __hsub2(a, b); }
inline __nv_bfloat162& operator*=(__nv_bfloat162& a, const __nv_bfloat162& b) { return a = __hmul2(a, b); }
inline __nv_bfloat162& operator/=(__nv_bfloat162& a, const __nv_bfloat162& b) { return a = __h2div(a, b); }
inline __nv_bfloat162 operator-(const __nv_bfloat162& a) { return __hneg2(a); }
inline bool operator==(const __nv_bfloat162& a, const __nv_bfloat162& b) { return __heq(a.x, b.x) && __heq(a.y, b.y); }
inline bool operator!=(const __nv_bfloat162& a, const __nv_bfloat162& b) { return __hneu(a.x, b.x) && __hneu(a.y, b.y); }

// ---- read-only loads ----------------------------------------------------------------------------
inline __nv_bfloat16 __ldg(const __nv_bfloat16* p) { return *p; }
inline __nv_bfloat162 __ldg(const __nv_bfloat162* p) { return *p; }
