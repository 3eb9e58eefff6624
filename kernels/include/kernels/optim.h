// Optimizer updates: SGD (momentum, dampening, Nesterov, weight decay) and Adam / AdamW,
// applied in place to a list of parameter tensors in one call.
//
// Every parameter tensor of the list is described by one OptimTensor (raw pointers, all
// contiguous, all of the element type T of the call). For each element of each tensor,
// with p the parameter, g its gradient, wd the tensor's weight decay and t the tensor's own
// step number (t = step - step_lag, t >= 1; it counts the updates this tensor received,
// this one included):
//
// SGD (exactly torch.optim.SGD, maximize=False):
//   g = g + wd * p                                  (only when wd != 0)
//   if momentum != 0:
//     buf = g                                       when t == 1 (the buffer is created)
//     buf = momentum * buf + (1 - dampening) * g    otherwise
//     g   = nesterov ? g + momentum * buf : buf
//   p = p - lr * g
//   buf1 is the momentum buffer (unused, may be null, when momentum == 0); buf2 is unused.
//
// Adam / AdamW (exactly torch.optim.Adam / AdamW, amsgrad=False, maximize=False):
//   AdamW (decoupled): p = p * (1 - lr * wd)
//   Adam:              g = g + wd * p               (only when wd != 0)
//   m = beta1 * m + (1 - beta1) * g                 (buf1 = exp_avg, starts at 0)
//   v = beta2 * v + (1 - beta2) * g * g             (buf2 = exp_avg_sq, starts at 0)
//   bc1 = 1 - beta1^t,  bc2 = 1 - beta2^t
//   p = p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)      (eps after the sqrt)
//
// Scalars that depend only on the tensor (bc1, bc2, lr / bc1, 1 - lr * wd, ...) are
// computed in double once per tensor and then rounded to T; the per-element arithmetic
// is done in T.
//
// The per-step values (the learning rate and the group step) come in an OptimScalars that
// the update READS FROM MEMORY (host memory for the CPU loops, device memory for CUDA), not
// as launch arguments: a launch recorded in a CUDA graph then uses whatever the caller wrote
// there before each replay (the current schedule value), not the value at capture.
//
// CPU: loops tensor by tensor over a host array of descriptors.
// CUDA: ONE launch for the whole list. `tensors` is then a DEVICE array of descriptors
// whose first_chunk fields were filled by plan_chunks(): each tensor is cut into chunks of
// kOptimChunk elements, one thread block per chunk, and a block finds its tensor by a
// binary search over first_chunk. The descriptors hold no per-step value, so the caller
// can keep the device copy while pointers do not change.
#pragma once
#include "kernels/common.h"

namespace kern {

struct OptimTensor {
  void* param = nullptr;        // T[numel], updated in place
  const void* grad = nullptr;   // T[numel]
  void* buf1 = nullptr;         // SGD: momentum buffer; Adam: exp_avg
  void* buf2 = nullptr;         // Adam: exp_avg_sq; SGD: unused
  int64_t numel = 0;
  double weight_decay = 0;      // this tensor's decay (0 for "no decay" parameters)
  int64_t step_lag = 0;         // this tensor's step t = step - step_lag
  int64_t first_chunk = 0;      // CUDA only: index of its first chunk (see plan_chunks)
};

inline bool operator==(const OptimTensor& a, const OptimTensor& b) {
  return a.param == b.param && a.grad == b.grad && a.buf1 == b.buf1 && a.buf2 == b.buf2 && a.numel == b.numel &&
         a.weight_decay == b.weight_decay && a.step_lag == b.step_lag && a.first_chunk == b.first_chunk;
}
inline bool operator!=(const OptimTensor& a, const OptimTensor& b) { return !(a == b); }

// The values that change from step to step; read from memory by the updates (see above).
struct OptimScalars {
  double lr = 0;      // learning rate of this step
  int64_t step = 0;   // the group step: how many steps have run, this one included (>= 1)
};

struct SgdHyper {
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;
};

struct AdamHyper {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  bool decoupled = false;  // true: AdamW
};

// Elements per CUDA thread block in the fused update.
constexpr int64_t kOptimChunk = 4096;

// Fills first_chunk of each descriptor (prefix sum of ceil(numel / kOptimChunk)) and
// returns the total number of chunks (the CUDA grid size).
inline int64_t plan_chunks(OptimTensor* tensors, int64_t count) {
  int64_t chunks = 0;
  for (int64_t i = 0; i < count; ++i) {
    tensors[i].first_chunk = chunks;
    chunks += (tensors[i].numel + kOptimChunk - 1) / kOptimChunk;
  }
  return chunks;
}

namespace cpu {
// `tensors`: host array of `count` descriptors. `scalars`: host pointer to lr and step.
template <typename T>
void sgd_step(const SgdHyper& h, const OptimScalars* scalars, const OptimTensor* tensors, int64_t count);
template <typename T>
void adam_step(const AdamHyper& h, const OptimScalars* scalars, const OptimTensor* tensors, int64_t count);
}  // namespace cpu

namespace cuda {
// `tensors`: DEVICE array of `count` descriptors planned by plan_chunks(), which returned
// `num_chunks`; `scalars`: DEVICE pointer to lr and step, read when the kernel runs. One
// kernel launch.
template <typename T>
void sgd_step(const SgdHyper& h, const OptimScalars* scalars, const OptimTensor* tensors, int64_t count,
              int64_t num_chunks, Stream stream);
template <typename T>
void adam_step(const AdamHyper& h, const OptimScalars* scalars, const OptimTensor* tensors, int64_t count,
               int64_t num_chunks, Stream stream);
}  // namespace cuda

}  // namespace kern
