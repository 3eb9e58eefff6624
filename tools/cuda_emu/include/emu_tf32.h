// cuda-emu: the number formats the emulated tensor-core libraries (cuBLAS, cuDNN) round to.
//
// TF32 keeps float's sign and 8-bit exponent but only 10 explicit mantissa bits (of 23).
// Tensor cores read FP32 operands as TF32, rounded to nearest with ties away from zero
// (PTX cvt.rna.tf32.f32): add half of the dropped range (bit 12) to the magnitude bits, then
// clear the 13 dropped bits. A carry out of the mantissa bumps the exponent, which is the
// correct rounding (up to infinity past the largest TF32 value). Inf and NaN pass unchanged.
//
// BF16 is the top half of a float (8 exponent bits, 7 mantissa bits); stored as uint16_t.
// Float -> bf16 rounds to nearest, ties to even (as __float2bfloat16_rn); NaN stays a NaN.
#pragma once
#include <cstdint>
#include <cstring>

namespace emu {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline float round_tf32(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7f800000u) == 0x7f800000u) return f;  // inf / NaN
  u += 0x1000u;                                    // half of the 13 dropped bits: ties go up in magnitude
  u &= 0xffffe000u;
  return bits_float(u);
}

inline float bf16_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu))
    return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  const uint32_t lsb = (u >> 16) & 1u;                  // ties to even: round up a tie only when the kept lsb is odd
  return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);
}

}  // namespace emu
