// 32-bit index maths for the elementwise, copy and pool CUDA kernels.
//
// Their grid-stride loops form i = blockIdx.x * blockDim.x + threadIdx.x, then i += gridDim.x *
// blockDim.x while i < n, and from i memory offsets (unravelled coordinates times strides).
// 64-bit division and modulo cost several times their 32-bit forms on a GPU, so each kernel has
// a 32-bit instantiation, chosen when every value it forms fits a signed 32-bit int:
//   - i never exceeds n - 1 + gridDim.x * blockDim.x  <=  n + kMaxLaunchThreads, and
//   - every memory offset is at most max_offset (the caller's bound: numel - 1 for a contiguous
//     array, sum over dims of (size - 1) * stride for a strided view);
// so index32_fits(n, max_offset) asks n, max_offset <= kIndex32Limit. Anything larger takes the
// 64-bit instantiation (same code, int64_t).
//
// Test hook: while a ForceIndex64 object lives, index32_fits answers false, so the tests run
// the 64-bit instantiations on small tensors (a tensor of 2^31 elements is too large for them).
#pragma once
#include <atomic>
#include <cstdint>

namespace kern {

// kern_grid_1d caps a 1-d grid at 65535 * 8 blocks; a block has at most 1024 threads.
constexpr int64_t kMaxLaunchThreads = 65535LL * 8 * 1024;
constexpr int64_t kIndex32Limit = INT32_MAX - kMaxLaunchThreads;  // 1,610,620,927

inline std::atomic<int>& force_index64_count() {
  static std::atomic<int> count{0};
  return count;
}

class ForceIndex64 {
 public:
  ForceIndex64() { ++force_index64_count(); }
  ~ForceIndex64() { --force_index64_count(); }
  ForceIndex64(const ForceIndex64&) = delete;
  ForceIndex64& operator=(const ForceIndex64&) = delete;
};

inline bool index32_fits(int64_t n, int64_t max_offset) {
  return force_index64_count().load() == 0 && n >= 0 && max_offset >= 0 && n <= kIndex32Limit &&
         max_offset <= kIndex32Limit;
}

// Largest element offset of a strided view (sizes[d] >= 1 assumed for a non-empty view);
// -1 (never fits) when a stride is negative.
inline int64_t max_strided_offset(int ndim, const int64_t* sizes, const int64_t* strides) {
  int64_t off = 0;
  for (int d = 0; d < ndim; ++d) {
    if (strides[d] < 0) return -1;
    if (sizes[d] > 0) off += (sizes[d] - 1) * strides[d];
  }
  return off;
}

}  // namespace kern
