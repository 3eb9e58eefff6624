// bfloat16 as a storage type for the CPU kernels (and a bit-compatible view for CUDA ones).
//
// bf16 = the upper 16 bits of an IEEE float: 1 sign, 8 exponent, 7 mantissa bits. It has
// float's range with ~3 significant decimal digits. In this project bf16 is STORAGE only:
// kernels load bf16, compute in float and store the float result rounded back to bf16.
//
//   bf16_to_float       exact (the bits shifted left by 16)
//   float_to_bf16_rne   round to nearest, ties to even mantissa; NaN -> canonical 0x7FFF
//                       (sign dropped); +-Inf stay; finite values past the largest bf16
//                       (0x7F7F ~ 3.39e38) round to Inf
//   float_to_bf16_rz    truncation toward zero (NaN -> 0x7FFF)
//   double_to_bf16_rne  one rounding from double (not double -> float -> bf16, which can
//                       round twice and miss a tie), host only
//   int64_to_bf16_rne   one rounding from an integer, host only
// These give the same bits as CUDA's __float2bfloat16_rn, __double2bfloat16 and
// __ll2bfloat16_rn, and kern::bf16 has __nv_bfloat16's layout (2 bytes, the same bits), so a
// buffer of one can be read as the other.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__CUDACC__)
#define KERN_BF16_HD __host__ __device__ __forceinline__
#else
#define KERN_BF16_HD inline
#endif

namespace kern {

// A bf16 value: just its bits. Trivially copyable, sizeof 2, no arithmetic on purpose
// (convert to float, compute, convert back).
struct alignas(2) bf16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2 && alignof(bf16) == 2, "bf16 is 2 bytes");
static_assert(std::is_trivially_copyable_v<bf16>, "bf16 is plain bits");

namespace bf16_detail {
KERN_BF16_HD uint32_t float_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}
KERN_BF16_HD float bits_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}
}  // namespace bf16_detail

KERN_BF16_HD float bf16_to_float(bf16 v) { return bf16_detail::bits_float(static_cast<uint32_t>(v.bits) << 16); }

KERN_BF16_HD bf16 float_to_bf16_rne(float f) {
  const uint32_t x = bf16_detail::float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return bf16{0x7fffu};  // NaN
  // Adding 0x7FFF, plus 1 when the kept part is odd, carries into bit 16 exactly when the
  // dropped half is above the midpoint, or on it with an odd kept part (ties to even). A
  // carry into the exponent is the right answer (next binade; Inf past the largest).
  const uint32_t odd = (x >> 16) & 1u;
  return bf16{static_cast<uint16_t>((x + 0x7fffu + odd) >> 16)};
}

KERN_BF16_HD bf16 float_to_bf16_rz(float f) {
  const uint32_t x = bf16_detail::float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return bf16{0x7fffu};
  return bf16{static_cast<uint16_t>(x >> 16)};
}

// double -> bf16 with a single rounding: the double is first narrowed to float toward zero
// with the last bit set when anything was dropped ("round to odd"), which keeps every tie
// and near-tie visible to the final float -> bf16 RNE (float has > 2*8+1 bits to spare).
inline bf16 double_to_bf16_rne(double d) {
  if (d != d) return bf16{0x7fffu};
  float f = static_cast<float>(d);  // nearest; may have rounded away from zero
  uint32_t u = bf16_detail::float_bits(f);
  const double back = static_cast<double>(f);
  if ((d > 0 && back > d) || (d < 0 && back < d)) --u;  // step back toward zero (Inf -> max)
  if (static_cast<double>(bf16_detail::bits_float(u)) != d) u |= 1u;
  return float_to_bf16_rne(bf16_detail::bits_float(u));
}

// An integer rounded once to bf16's 8 significant bits (nearest, ties to even).
inline bf16 int64_to_bf16_rne(int64_t v) {
  if (v == 0) return bf16{0};
  const bool neg = v < 0;
  uint64_t m = neg ? uint64_t{0} - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  int shift = 0;
  while ((m >> shift) >= 256u) ++shift;  // keep 8 significant bits
  if (shift > 0) {
    uint64_t keep = m >> shift;
    const uint64_t rem = m & ((uint64_t{1} << shift) - 1), half = uint64_t{1} << (shift - 1);
    if (rem > half || (rem == half && (keep & 1u))) ++keep;  // may become 256: still exact
    m = keep;
  }
  // m <= 256 and 2^shift are exact in float, and so is their product (|v| < 2^64).
  float f = static_cast<float>(m);
  for (int i = 0; i < shift; ++i) f *= 2.0f;
  return float_to_bf16_rne(neg ? -f : f);
}

// For CPU kernels templated on a STORAGE type S (float, double or bf16): compute_t<S> is the
// type the maths runs in (S itself, or float for bf16); to_compute() widens an element to it
// and from_compute<S>() narrows a result back (bf16: round to nearest even).
//   out[i] = from_compute<S>(f(to_compute(a[i]), to_compute(b[i])));
template <typename S> struct compute_type { using type = S; };
template <> struct compute_type<bf16> { using type = float; };
template <typename S> using compute_t = typename compute_type<S>::type;

template <typename S>
KERN_BF16_HD compute_t<S> to_compute(S v) {
  if constexpr (std::is_same_v<S, bf16>) return bf16_to_float(v);
  else return v;
}
template <typename S>
KERN_BF16_HD S from_compute(compute_t<S> v) {
  if constexpr (std::is_same_v<S, bf16>) return float_to_bf16_rne(v);
  else return v;
}

}  // namespace kern
