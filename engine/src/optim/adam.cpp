// Adam and AdamW (torch.optim.Adam / AdamW semantics, amsgrad off).
#include <cmath>

#include "engine/cuda_context.h"
#include "engine/optim.h"
#include "kernels/optim.h"

namespace eng::optim {

namespace {

const AdamOptions& checked(const AdamOptions& o, const char* kind) {
  ENGINE_CHECK(std::isfinite(o.eps) && o.eps >= 0, kind, ": invalid eps ", o.eps, " (must be >= 0)");
  ENGINE_CHECK(o.beta1 >= 0 && o.beta1 < 1, kind, ": invalid beta1 ", o.beta1, " (must be in [0, 1))");
  ENGINE_CHECK(o.beta2 >= 0 && o.beta2 < 1, kind, ": invalid beta2 ", o.beta2, " (must be in [0, 1))");
  return o;
}

}  // namespace

Adam::Adam(const char* kind, NamedTensors params, const AdamOptions& options, bool decoupled)
    : Optimizer(kind, std::move(params), checked(options, kind).lr, options.weight_decay,
                options.no_decay_bias_and_norm, {"exp_avg", "exp_avg_sq"}),
      options_(options),
      decoupled_(decoupled) {}

Adam::Adam(NamedTensors params, const AdamOptions& options) : Adam("Adam", std::move(params), options, false) {}

Adam::Adam(const std::vector<Tensor>& params, const AdamOptions& options)
    : Adam("Adam", name_by_index(params), options, false) {}

AdamW::AdamW(NamedTensors params, const AdamOptions& options) : Adam("AdamW", std::move(params), options, true) {}

AdamW::AdamW(const std::vector<Tensor>& params, const AdamOptions& options)
    : Adam("AdamW", name_by_index(params), options, true) {}

void Adam::update(const kern::OptimScalars* scalars, const kern::OptimTensor* tensors, int64_t count,
                  [[maybe_unused]] int64_t num_chunks, DType dtype, Device device) {
  kern::AdamHyper h;
  h.beta1 = options_.beta1;
  h.beta2 = options_.beta2;
  h.eps = options_.eps;
  h.decoupled = decoupled_;
  dispatch_float(dtype, kind_, [&](auto tag) {
    using T = decltype(tag);
    if (device.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::adam_step<T>(h, scalars, tensors, count, num_chunks, cuda::stream()));
    } else {
      kern::cpu::adam_step<T>(h, scalars, tensors, count);
    }
  });
}

}  // namespace eng::optim
