// Element types and devices.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/error.h"

namespace eng {

// f32 computes; f64 serves CPU tests; i32/i64 hold indices and labels; u8/b8 masks, images.
enum class DType : uint8_t { f32, f64, i32, i64, u8, b8 };

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

// Calls f(float{}) or f(double{}) by dtype; any other dtype is an error naming `op`.
//   dispatch_float(x.dtype(), "relu", [&](auto tag) { using T = decltype(tag); ... });
template <typename F>
decltype(auto) dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    default: ENGINE_FAIL(op, ": expected a f32 or f64 tensor, got ", dtype_name(dt));
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
