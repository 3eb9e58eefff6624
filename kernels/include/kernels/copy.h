// Strided copy with dtype conversion, and fill.
//
//   strided_copy: for every index i over `sizes`,
//       dst[sum_d i_d * dst_strides[d]] = cast<dst_type>(src[sum_d i_d * src_strides[d]])
//   (strides in elements; a stride of 0 broadcasts). Casting to bool gives v != 0.
//   Floating point to an integer type truncates toward zero and SATURATES: NaN gives 0,
//   values past the type's range give its minimum or maximum (uint8: -1.0 -> 0,
//   300.0 -> 255). C++ leaves out-of-range conversions undefined; this is what the GPU's
//   cvt.rzi instruction does, so both backends agree (torch's CPU wraps instead).
//   This one kernel serves contiguous(), to(dtype), copy_() and expand materialisation.
//   fill: dst[0..n) = cast<type>(value).
#pragma once
#include "kernels/common.h"

#include <cstdint>
#include <type_traits>

#ifdef __CUDACC__
#define KERN_COPY_HD __host__ __device__ __forceinline__
#else
#define KERN_COPY_HD inline
#endif

namespace kern {

// Floating point -> uint8 / int32 / int64, saturating as described above.
template <typename D, typename S>
KERN_COPY_HD D float_to_int_saturate(S v) {
  static_assert(std::is_floating_point_v<S> && std::is_integral_v<D>, "float -> int only");
  // Bounds as doubles: lo is exact; hi is 2^bits (exact), the first value past the range.
  constexpr double lo = std::is_same_v<D, uint8_t> ? 0.0 : std::is_same_v<D, int32_t> ? -2147483648.0 : -9223372036854775808.0;
  constexpr double hi = std::is_same_v<D, uint8_t> ? 256.0 : std::is_same_v<D, int32_t> ? 2147483648.0 : 9223372036854775808.0;
  static_assert(std::is_same_v<D, uint8_t> || std::is_same_v<D, int32_t> || std::is_same_v<D, int64_t>,
                "an integer dtype of the engine");
  const double x = static_cast<double>(v);
  if (!(x == x)) return D(0);
  if (x <= lo) return static_cast<D>(lo);
  if (x >= hi) return std::is_same_v<D, uint8_t> ? D(255) : std::is_same_v<D, int32_t> ? D(2147483647) : D(9223372036854775807LL);
  return static_cast<D>(x);  // in range: truncation toward zero is defined
}

struct CopyDims {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t src_strides[kMaxDims] = {};
  int64_t dst_strides[kMaxDims] = {};
};

namespace cpu {
void strided_copy(const CopyDims& d, const void* src, ElemType src_type, void* dst, ElemType dst_type);
void fill(void* dst, ElemType type, int64_t n, double value);
}  // namespace cpu

namespace cuda {
void strided_copy(const CopyDims& d, const void* src, ElemType src_type, void* dst, ElemType dst_type,
                  Stream stream);
void fill(void* dst, ElemType type, int64_t n, double value, Stream stream);
// Host <-> device and device <-> device byte copies on `stream` (synchronous for host ends).
void memcpy_h2d(void* dst, const void* src, size_t nbytes, Stream stream);
void memcpy_d2h(void* dst, const void* src, size_t nbytes, Stream stream);
// Host -> device without waiting: `src` must be page-locked (pinned) memory that stays
// untouched until the stream has passed this copy (engine's pinned allocator ensures it).
void memcpy_h2d_async(void* dst, const void* src, size_t nbytes, Stream stream);
void memcpy_d2d(void* dst, const void* src, size_t nbytes, Stream stream);
}  // namespace cuda

}  // namespace kern
