#include "common/precision.h"

#include "engine/cuda_context.h"
#include "engine/error.h"

namespace app {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::fp32: return "fp32";
    case Precision::tf32: return "tf32";
    case Precision::bf16: return "bf16";
  }
  return "?";
}

Precision resolve_precision(const std::string& flag, eng::Device device) {
  if (flag.empty()) return device.is_cuda() ? Precision::bf16 : Precision::fp32;
  Precision p;
  if (flag == "fp32") p = Precision::fp32;
  else if (flag == "tf32") p = Precision::tf32;
  else if (flag == "bf16") p = Precision::bf16;
  else ENGINE_FAIL("--precision must be fp32, tf32 or bf16, got '", flag, "'");
  ENGINE_CHECK(device.is_cuda() || p == Precision::fp32, "--precision ", flag,
               " needs --device cuda (the CPU computes in fp32 only)");
  return p;
}

PrecisionScope::PrecisionScope(Precision p, eng::Device device, bool deterministic, bool cpu_twin)
    : cuda_(device.is_cuda()), autocast_((device.is_cuda() || cpu_twin) && p == Precision::bf16, cpu_twin) {
  deterministic_before_ = eng::cuda::deterministic();
  eng::cuda::set_deterministic(deterministic);
  if (!cuda_) return;
  tf32_before_ = eng::cuda::tf32_enabled();
  eng::cuda::set_tf32(p == Precision::tf32);
}

PrecisionScope::~PrecisionScope() {
  eng::cuda::set_deterministic(deterministic_before_);
  if (cuda_) eng::cuda::set_tf32(tf32_before_);
}

}  // namespace app
