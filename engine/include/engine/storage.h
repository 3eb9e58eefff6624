// A Storage owns one block of bytes on one device. Tensors (and their views) share it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "engine/dtype.h"

namespace eng {

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  // pinned = true: CPU memory from cuda::pinned (page-locked when a CUDA device exists).
  Storage(size_t nbytes, Device device, bool pinned);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  bool pinned() const { return pinned_; }
  // Counts the in-place writes made through the Tensor API (copy_, fill_, relu_), so a cache
  // of values derived from a tensor (nn::FrozenBatchNorm2d's scale and shift) can tell that it
  // is stale. Kernels writing through raw pointers (optimizer steps) do not count.
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  bool pinned_ = false;
  uint64_t version_ = 0;
};

}  // namespace eng
