// --precision fp32|tf32|bf16 for ssd_train, ssd_detect and bench_kernels.
//
//   fp32  FP32 everywhere: cuBLAS and cuDNN with TF32 off (FMA maths). The CPU's only choice.
//   tf32  FP32 tensors, convolutions and GEMMs on TF32 tensor cores (operands rounded to 10
//         mantissa bits, FP32 accumulation), as PyTorch does for cuDNN convolutions by default.
//   bf16  mixed precision (engine/autocast.h, docs/training.md#precision): FP32 master weights
//         and optimizer state; the forward's convolutions and activations in BF16 on tensor
//         cores; loss, reductions, statistics, box coding, NMS and the optimizer in FP32.
//         The default on CUDA (it passed the accuracy bar: docs/training.md).
//
// A PrecisionScope sets the switches for the run and restores them when it ends (the tests
// run several trainings in one process).
#pragma once
#include <memory>
#include <string>

#include "engine/autocast.h"
#include "engine/dtype.h"

namespace app {

enum class Precision { fp32, tf32, bf16 };

const char* precision_name(Precision p);

// Parses a --precision value for `device`; "" gives the device's default (CUDA: bf16, CPU:
// fp32). A name that is not one of the three, or tf32 / bf16 on the CPU, is an eng::Error
// naming the flag and the value.
Precision resolve_precision(const std::string& flag, eng::Device device);

// While it lives: TF32 math in cuBLAS/cuDNN for tf32 (process-wide), BF16 autocast for bf16
// (on the constructing thread, the one that runs the model), and cuDNN's deterministic
// algorithms when `deterministic`. Nothing changes on the CPU.
class PrecisionScope {
 public:
  // cpu_twin (tests): bf16 on the CPU through its bf16 twins (engine/autocast.h).
  PrecisionScope(Precision p, eng::Device device, bool deterministic = false, bool cpu_twin = false);
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  bool cuda_ = false, tf32_before_ = false, deterministic_before_ = false;
  eng::autocast::Guard autocast_;
};

}  // namespace app
