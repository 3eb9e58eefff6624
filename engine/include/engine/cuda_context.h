// The CUDA context: one compute stream, the cuBLAS handle, a reusable workspace.
// Created lazily on first use (never at static-init time) for device 0.
//
// Front-ends dispatch with ENGINE_IF_CUDA(...), which compiles the CUDA call only in a CUDA
// build; in a CPU-only build no CUDA tensor can exist, so the branch is never taken.
#pragma once
#include <cstddef>
#include <string>

#include "kernels/common.h"

namespace eng::cuda {

kern::Stream stream();            // the one compute stream
kern::BlasHandle blas();          // cuBLAS handle bound to stream(); TF32 off by default
void* workspace(size_t nbytes);   // grows on demand; valid until the next call
void synchronize();               // waits for the compute stream, throws on a sticky error
[[noreturn]] void fail_no_cuda();
bool tf32_enabled();
void set_tf32(bool on);           // TF32 tensor cores for float GEMMs (cuBLAS) and convs (cuDNN)
// Deterministic mode (like torch.use_deterministic_algorithms for what we run): cuDNN picks
// only deterministic algorithms, and kernels that would add floats with atomics in a
// run-dependent order (the L2Norm scale gradient) use their fixed-order variant. Off by
// default. A flag only: it needs no device and can be set before the first CUDA call.
bool deterministic();
void set_deterministic(bool on);

// What the device says of itself (for benchmarks' fraction-of-peak columns and logs).
struct DeviceInfo {
  std::string name;                // e.g. "NVIDIA H100 80GB HBM3"
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;
  size_t l2_bytes = 0;
  size_t total_memory = 0;
};
DeviceInfo device_info();         // device 0; throws without a device

}  // namespace eng::cuda

#ifdef ENGINE_WITH_CUDA
#define ENGINE_IF_CUDA(...) __VA_ARGS__
#else
#define ENGINE_IF_CUDA(...) ::eng::cuda::fail_no_cuda()
#endif
