// cuda-emu NCCL: element types and the reductions of ncclAllReduce, done on the host in rank
// order so that every rank computes the same bits.
#include <cstdint>
#include <cstring>

#include "nccl_internal.h"

namespace emu::nccl_detail {
namespace {
// bfloat16 as its bits: the upper half of a float; float -> bf16 rounds to nearest even.
float bf16_to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

template <typename T>
T combine(T a, T b, ncclRedOp_t op) {
  switch (op) {
    case ncclProd: return static_cast<T>(a * b);
    case ncclMax: return b > a ? b : a;
    case ncclMin: return b < a ? b : a;
    default: return static_cast<T>(a + b);  // ncclSum, ncclAvg
  }
}
// out[i] = rank 0's [i] (op) rank 1's [i] (op) ... in that order; Avg divides by nranks.
template <typename T>
void reduce_typed(void* out, const char* all, size_t count, int nranks, ncclRedOp_t op) {
  const size_t stride = count * sizeof(T);
  for (size_t i = 0; i < count; ++i) {
    T acc;
    std::memcpy(&acc, all + i * sizeof(T), sizeof(T));
    for (int r = 1; r < nranks; ++r) {
      T v;
      std::memcpy(&v, all + r * stride + i * sizeof(T), sizeof(T));
      acc = combine(acc, v, op);
    }
    if (op == ncclAvg) acc = static_cast<T>(acc / static_cast<T>(nranks));
    std::memcpy(static_cast<char*>(out) + i * sizeof(T), &acc, sizeof(T));
  }
}
void reduce_bf16(void* out, const char* all, size_t count, int nranks, ncclRedOp_t op) {
  auto at = [&](int r, size_t i) {
    uint16_t b;
    std::memcpy(&b, all + (r * count + i) * 2, 2);
    return bf16_to_float(b);
  };
  for (size_t i = 0; i < count; ++i) {
    float acc = at(0, i);
    for (int r = 1; r < nranks; ++r) acc = bf16_to_float(float_to_bf16(combine(acc, at(r, i), op)));
    if (op == ncclAvg) acc = acc / static_cast<float>(nranks);
    const uint16_t b = float_to_bf16(acc);
    std::memcpy(static_cast<char*>(out) + i * 2, &b, 2);
  }
}
}  // namespace

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    case ncclBfloat16: return 2;
    default: return 0;  // not emulated
  }
}
const char* type_name(int t) {
  static const char* names[] = {"ncclInt8", "ncclUint8", "ncclInt32", "ncclUint32", "ncclInt64", "ncclUint64",
                                "ncclFloat16", "ncclFloat32", "ncclFloat64", "ncclBfloat16", "ncclFloat8e4m3",
                                "ncclFloat8e5m2"};
  return t >= 0 && t < ncclNumTypes ? names[t] : "an invalid type";
}
const char* op_name(int op) {
  static const char* names[] = {"ncclSum", "ncclProd", "ncclMax", "ncclMin", "ncclAvg"};
  return op >= 0 && op < ncclNumOps ? names[op] : "an invalid op";
}

void reduce(void* out, const char* all, size_t count, int nranks, ncclDataType_t t, ncclRedOp_t op) {
  switch (t) {
    case ncclInt8: return reduce_typed<int8_t>(out, all, count, nranks, op);
    case ncclUint8: return reduce_typed<uint8_t>(out, all, count, nranks, op);
    case ncclInt32: return reduce_typed<int32_t>(out, all, count, nranks, op);
    case ncclUint32: return reduce_typed<uint32_t>(out, all, count, nranks, op);
    case ncclInt64: return reduce_typed<int64_t>(out, all, count, nranks, op);
    case ncclUint64: return reduce_typed<uint64_t>(out, all, count, nranks, op);
    case ncclFloat32: return reduce_typed<float>(out, all, count, nranks, op);
    case ncclFloat64: return reduce_typed<double>(out, all, count, nranks, op);
    case ncclBfloat16: return reduce_bf16(out, all, count, nranks, op);
    default: return;
  }
}


}  // namespace emu::nccl_detail
