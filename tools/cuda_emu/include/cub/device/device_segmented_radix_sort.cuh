// cuda-emu: cub::DeviceSegmentedRadixSort as a stable host sort of each segment on the key
// bits [begin_bit, end_bit), which is what cub's LSD radix sort computes. Like cub it asks
// for temporary storage first (returns its size when d_temp_storage is null) and refuses a
// call whose storage is too small; with a DoubleBuffer it leaves the result in the other
// buffer, so callers must read Current() as they must with cub.
#pragma once
#include <algorithm>
#include <cstddef>
#include <numeric>
#include <vector>

#include "../../cuda_runtime.h"

namespace cub {

template <typename T>
struct DoubleBuffer {
  T* d_buffers[2] = {nullptr, nullptr};
  int selector = 0;
  DoubleBuffer() = default;
  DoubleBuffer(T* current, T* alternate) : d_buffers{current, alternate} {}
  T* Current() const { return d_buffers[selector]; }
  T* Alternate() const { return d_buffers[selector ^ 1]; }
};

namespace emu_detail {
inline size_t temp_bytes(int num_segments) { return 256 + 16 * static_cast<size_t>(num_segments > 0 ? num_segments : 0); }

template <typename K>
K digits(K key, int begin_bit, int end_bit) {
  const int bits = static_cast<int>(8 * sizeof(K));
  K v = begin_bit >= bits ? K(0) : static_cast<K>(key >> begin_bit);
  const int width = end_bit - begin_bit;
  if (width < bits) v &= static_cast<K>((K(1) << width) - 1);
  return v;
}

// The sort itself, run on the stream: a stable sort of each segment on the key bits.
template <typename K, typename V, typename Off>
void run_sort(const K* keys_in, K* keys_out, const V* values_in, V* values_out, int num_items, int num_segments,
              Off begin_offsets, Off end_offsets, int begin_bit, int end_bit) {
  std::vector<int> order;
  std::vector<K> keys;
  std::vector<V> values;
  for (int s = 0; s < num_segments; ++s) {
    const int b = begin_offsets[s], e = end_offsets[s];
    if (e <= b) continue;
    if (b < 0 || e > num_items) emu::detail::kernel_fatal("cub::DeviceSegmentedRadixSort: a segment lies outside the items");
    order.resize(e - b);
    std::iota(order.begin(), order.end(), b);
    std::stable_sort(order.begin(), order.end(), [&](int x, int y) {
      return digits(keys_in[x], begin_bit, end_bit) < digits(keys_in[y], begin_bit, end_bit);
    });
    keys.resize(e - b);
    for (int i = 0; i < e - b; ++i) keys[i] = keys_in[order[i]];
    if (values_in) {
      values.resize(e - b);
      for (int i = 0; i < e - b; ++i) values[i] = values_in[order[i]];
      std::copy(values.begin(), values.end(), values_out + b);
    }
    std::copy(keys.begin(), keys.end(), keys_out + b);
  }
}

// values_in / values_out may be null (keys only). The arguments are checked at the call; the
// sort is queued on `stream` (the offsets are device data, read when it runs).
template <typename K, typename V, typename Off>
cudaError_t sort(void* temp, size_t& temp_bytes_io, const K* keys_in, K* keys_out, const V* values_in, V* values_out,
                 int num_items, int num_segments, Off begin_offsets, Off end_offsets, int begin_bit, int end_bit,
                 cudaStream_t stream) {
  const size_t need = temp_bytes(num_segments);
  if (temp == nullptr) {
    temp_bytes_io = need;
    return cudaSuccess;
  }
  if (temp_bytes_io < need || num_items < 0 || num_segments < 0 || begin_bit < 0 || end_bit > int(8 * sizeof(K)) ||
      begin_bit >= end_bit)
    return cudaErrorInvalidValue;
  emu::enqueue(stream, [=] {
    run_sort(keys_in, keys_out, values_in, values_out, num_items, num_segments, begin_offsets, end_offsets, begin_bit,
             end_bit);
  });
  return cudaSuccess;
}
}  // namespace emu_detail

struct DeviceSegmentedRadixSort {
  template <typename K, typename V, typename Off>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out, const V* values_in,
                               V* values_out, int num_items, int num_segments, Off begin_offsets, Off end_offsets,
                               int begin_bit = 0, int end_bit = int(8 * sizeof(K)), cudaStream_t stream = nullptr) {
    return emu_detail::sort(temp, temp_bytes, keys_in, keys_out, values_in, values_out, num_items, num_segments,
                            begin_offsets, end_offsets, begin_bit, end_bit, stream);
  }
  template <typename K, typename Off>
  static cudaError_t SortKeys(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out, int num_items,
                              int num_segments, Off begin_offsets, Off end_offsets, int begin_bit = 0,
                              int end_bit = int(8 * sizeof(K)), cudaStream_t stream = nullptr) {
    return emu_detail::sort(temp, temp_bytes, keys_in, keys_out, static_cast<const int*>(nullptr),
                            static_cast<int*>(nullptr), num_items, num_segments, begin_offsets, end_offsets,
                            begin_bit, end_bit, stream);
  }
  template <typename K, typename Off>
  static cudaError_t SortKeys(void* temp, size_t& temp_bytes, DoubleBuffer<K>& keys, int num_items, int num_segments,
                              Off begin_offsets, Off end_offsets, int begin_bit = 0, int end_bit = int(8 * sizeof(K)),
                              cudaStream_t stream = nullptr) {
    const cudaError_t err = emu_detail::sort(temp, temp_bytes, keys.Current(), keys.Alternate(),
                                             static_cast<const int*>(nullptr), static_cast<int*>(nullptr), num_items,
                                             num_segments, begin_offsets, end_offsets, begin_bit, end_bit, stream);
    if (err == cudaSuccess && temp != nullptr) keys.selector ^= 1;
    return err;
  }
};

}  // namespace cub
