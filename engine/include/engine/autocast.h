// BF16 mixed precision ("autocast"), the engine's counterpart of
// torch.autocast(device_type="cuda", dtype=torch.bfloat16) for the ops our detectors run.
//
// Inside an autocast::Guard, on CUDA tensors:
//   - conv2d and conv2d_relu cast their f32 input, weight and bias to bf16 (a differentiable
//     Tensor::to, so the gradient flows back to the f32 master weights as f32) and compute on
//     BF16 tensor cores with FP32 accumulation; their output is bf16;
//   - the ops activations then pass through (relu, add, max/global pools, concat, views and
//     copies, L2Norm, batch norms, upsample) keep bf16 storage and compute in FP32 inside their
//     kernels; their f32 parameters (L2Norm scale, BN weight, bias and running statistics) stay
//     f32;
//   - everything else runs in FP32 as outside a guard: callers cast the heads to f32 before
//     the loss and post-processing (models::DetectionModel::forward_heads_f32), as torch's
//     autocast runs losses, softmax and reductions in float32.
// Backward runs outside the guard; the casts' backward nodes turn bf16 gradients into f32.
// CPU tensors are not cast (the CPU computes in f32; --precision bf16 is CUDA only), except
// under a Guard made with cpu_twin = true: then the CPU runs the same mixed precision on its
// bf16 twins (float maths on bf16 values, one rounding per result, as the CUDA kernels), so
// a test can train in "bf16" at CPU speed.
//
// No loss scaling: BF16 has FP32's 8-bit exponent, so gradients that FP16 would flush to zero
// (below 2^-24) stay representable down to about 1e-38; only the mantissa is short.
//
// The switch is thread-local (like torch's), so a loader or evaluation thread is unaffected.
#pragma once
#include "engine/dtype.h"

namespace eng {
class Tensor;

namespace autocast {

bool enabled();  // inside a Guard on this thread

// Turns BF16 autocast on (or off, with on = false) for the current thread until destroyed;
// guards nest and restore the previous state.
class Guard {
 public:
  explicit Guard(bool on = true, bool cpu_twin = false);
  ~Guard();
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

 private:
  bool previous_, previous_cpu_;
};

// t cast to bf16 when autocast is on and t is an f32 tensor on CUDA (or on the CPU under a
// cpu_twin guard); else t itself. Undefined tensors pass through.
Tensor to_compute(const Tensor& t);

}  // namespace autocast
}  // namespace eng
