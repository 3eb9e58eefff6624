#include "kernels/copy.h"

#include <cstring>
#include <type_traits>

#include "kernels/bf16.h"

namespace kern::cpu {
namespace {

// C++ conversions, except: to bool is v != 0; bf16 is read exactly as float and written
// with one round-to-nearest-even from the source value (ints and doubles included).
template <typename D, typename S>
inline D cast_value(S v) {
  if constexpr (std::is_same_v<S, bf16> && std::is_same_v<D, bf16>) return v;
  else if constexpr (std::is_same_v<S, bf16>) return cast_value<D>(bf16_to_float(v));
  else if constexpr (std::is_same_v<D, bf16>) {
    if constexpr (std::is_same_v<S, float>) return float_to_bf16_rne(v);
    else if constexpr (std::is_same_v<S, double>) return double_to_bf16_rne(v);
    else if constexpr (std::is_same_v<S, bool>) return bf16{static_cast<uint16_t>(v ? 0x3F80u : 0u)};
    else return int64_to_bf16_rne(static_cast<int64_t>(v));
  } else if constexpr (std::is_same_v<D, bool>) return v != S(0);
  else if constexpr (std::is_floating_point_v<S> && std::is_integral_v<D>) return float_to_int_saturate<D>(v);
  else return static_cast<D>(v);
}

template <typename S, typename D>
void copy_typed(const CopyDims& d, const S* src, D* dst) {
  int64_t n = 1;
  for (int i = 0; i < d.ndim; ++i) n *= d.sizes[i];
  if (n == 0) return;
  // Walk the index space with an odometer; the innermost dim is the tight loop.
  int64_t idx[kMaxDims] = {};
  const int last = d.ndim - 1;
  const int64_t inner = d.ndim ? d.sizes[last] : 1;
  const int64_t ss = d.ndim ? d.src_strides[last] : 0, ds = d.ndim ? d.dst_strides[last] : 0;
  for (int64_t done = 0; done < n; done += inner) {
    int64_t so = 0, doff = 0;
    for (int i = 0; i < last; ++i) {
      so += idx[i] * d.src_strides[i];
      doff += idx[i] * d.dst_strides[i];
    }
    for (int64_t j = 0; j < inner; ++j) dst[doff + j * ds] = cast_value<D>(src[so + j * ss]);
    for (int i = last - 1; i >= 0; --i) {
      if (++idx[i] < d.sizes[i]) break;
      idx[i] = 0;
    }
  }
}

template <typename S>
void copy_from(const CopyDims& d, const S* src, void* dst, ElemType dt) {
  switch (dt) {
    case ElemType::f32: return copy_typed(d, src, static_cast<float*>(dst));
    case ElemType::f64: return copy_typed(d, src, static_cast<double*>(dst));
    case ElemType::i32: return copy_typed(d, src, static_cast<int32_t*>(dst));
    case ElemType::i64: return copy_typed(d, src, static_cast<int64_t*>(dst));
    case ElemType::u8: return copy_typed(d, src, static_cast<uint8_t*>(dst));
    case ElemType::b8: return copy_typed(d, src, static_cast<bool*>(dst));
    case ElemType::bf16: return copy_typed(d, src, static_cast<bf16*>(dst));
  }
}

template <typename T>
void fill_typed(T* dst, int64_t n, double value) {
  const T v = cast_value<T>(value);
  for (int64_t i = 0; i < n; ++i) dst[i] = v;
}

}  // namespace

void strided_copy(const CopyDims& d, const void* src, ElemType st, void* dst, ElemType dt) {
  switch (st) {
    case ElemType::f32: return copy_from(d, static_cast<const float*>(src), dst, dt);
    case ElemType::f64: return copy_from(d, static_cast<const double*>(src), dst, dt);
    case ElemType::i32: return copy_from(d, static_cast<const int32_t*>(src), dst, dt);
    case ElemType::i64: return copy_from(d, static_cast<const int64_t*>(src), dst, dt);
    case ElemType::u8: return copy_from(d, static_cast<const uint8_t*>(src), dst, dt);
    case ElemType::b8: return copy_from(d, static_cast<const bool*>(src), dst, dt);
    case ElemType::bf16: return copy_from(d, static_cast<const bf16*>(src), dst, dt);
  }
}

void fill(void* dst, ElemType type, int64_t n, double value) {
  switch (type) {
    case ElemType::f32: return fill_typed(static_cast<float*>(dst), n, value);
    case ElemType::f64: return fill_typed(static_cast<double*>(dst), n, value);
    case ElemType::i32: return fill_typed(static_cast<int32_t*>(dst), n, value);
    case ElemType::i64: return fill_typed(static_cast<int64_t*>(dst), n, value);
    case ElemType::u8: return fill_typed(static_cast<uint8_t*>(dst), n, value);
    case ElemType::b8: return fill_typed(static_cast<bool*>(dst), n, value);
    case ElemType::bf16: return fill_typed(static_cast<bf16*>(dst), n, value);
  }
}

}  // namespace kern::cpu
