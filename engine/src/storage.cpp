#include "engine/storage.h"

#include "engine/allocator.h"

namespace eng {

Storage::Storage(size_t nbytes, Device device) : Storage(nbytes, device, false) {}

Storage::Storage(size_t nbytes, Device device, bool pinned) : nbytes_(nbytes), device_(device), pinned_(pinned) {
  ENGINE_CHECK(!pinned || device.is_cpu(), "pinned memory is host memory (asked for ", device.str(), ")");
  if (pinned) {
    data_ = cuda::pinned::allocate(nbytes);
  } else if (device.is_cpu()) {
    data_ = cpu_alloc::allocate(nbytes);
  } else {
    ENGINE_CHECK(cuda::available(), "cannot allocate on ", device.str(), ": no CUDA device available");
    data_ = cuda::alloc::allocate(nbytes);
  }
}

Storage::~Storage() {
  if (pinned_) {
    cuda::pinned::release(data_, nbytes_);
  } else if (device_.is_cpu()) {
    cpu_alloc::release(data_, nbytes_);
  } else {
    cuda::alloc::release(data_, nbytes_);
  }
}

}  // namespace eng
