#include "engine/storage.h"

#include "engine/allocator.h"

namespace eng {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cpu()) {
    data_ = cpu_alloc::allocate(nbytes);
  } else {
    ENGINE_CHECK(cuda::available(), "cannot allocate on ", device.str(), ": no CUDA device available");
    data_ = cuda::alloc::allocate(nbytes);
  }
}

Storage::~Storage() {
  if (device_.is_cpu()) {
    cpu_alloc::release(data_, nbytes_);
  } else {
    cuda::alloc::release(data_, nbytes_);
  }
}

}  // namespace eng
