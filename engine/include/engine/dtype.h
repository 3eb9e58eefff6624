// Element types and devices.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/error.h"
#include "kernels/bf16.h"

namespace eng {

// f32 computes; f64 serves CPU tests; i32/i64 hold indices and labels; u8/b8 masks, images.
// bf16 (kern::bf16, 16-bit bfloat16) is a storage type: ops that support it load bf16 and
// compute in float; every other op rejects it with an error naming op, shape and dtype.
// The order matches kern::ElemType (engine/detail/op_utils.h casts one to the other).
enum class DType : uint8_t { f32, f64, i32, i64, u8, b8, bf16 };

size_t dtype_size(DType dt);
const char* dtype_name(DType dt);
bool is_floating(DType dt);

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::b8; };
template <> struct dtype_of<kern::bf16> { static constexpr DType value = DType::bf16; };

// Calls f(float{}) or f(double{}) by dtype; any other dtype (bf16 included: these kernels
// compute in T) is an error naming `op`. engine/detail/op_utils.h has overloads taking the
// tensor, whose error also names the shape.
//   dispatch_float(x.dtype(), "relu", [&](auto tag) { using T = decltype(tag); ... });
template <typename F>
decltype(auto) dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    default:
      ENGINE_FAIL(op, ": expected a f32 or f64 tensor, got ", dtype_name(dt), " (no ", dtype_name(dt), " kernel)");
  }
}

// For kernels that take bf16 as storage (load bf16, compute in float, store bf16): calls
// f(float{}), f(double{}) or f(kern::bf16{}); T is then the STORAGE type. Others: error.
template <typename F>
decltype(auto) dispatch_float_or_bf16(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(kern::bf16{});
    default: ENGINE_FAIL(op, ": expected a f32, f64 or bf16 tensor, got ", dtype_name(dt));
  }
}

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
};

// Parses "cpu", "cuda", "cuda:1".
Device parse_device(const std::string& s);

}  // namespace eng
