// Strided copy with dtype conversion, and fill.
//
//   strided_copy: for every index i over `sizes`,
//       dst[sum_d i_d * dst_strides[d]] = cast<dst_type>(src[sum_d i_d * src_strides[d]])
//   (strides in elements; a stride of 0 broadcasts). Casting to bool gives v != 0.
//   This one kernel serves contiguous(), to(dtype), copy_() and expand materialisation.
//   fill: dst[0..n) = cast<type>(value).
#pragma once
#include "kernels/common.h"

namespace kern {

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
