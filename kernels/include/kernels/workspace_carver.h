// Splitting one scratch allocation into several arrays (host code of the CUDA kernels).
// Run the same sequence of take() calls twice: first with a null base to measure the bytes
// needed (the front-end allocates that much), then with the real base to get the pointers.
#pragma once
#include <cstddef>

namespace kern {

// Hands out 256-byte aligned pieces of one workspace; with a null base it only measures.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename U>
  U* take(size_t count) {
    offset_ = (offset_ + 255) / 256 * 256;
    U* p = base_ ? reinterpret_cast<U*>(base_ + offset_) : nullptr;
    offset_ += count * sizeof(U);
    return p;
  }
  size_t bytes() const { return offset_; }

 private:
  char* base_;
  size_t offset_ = 0;
};

}  // namespace kern
