// SGD with momentum, dampening, Nesterov and weight decay (torch.optim.SGD semantics).
#include <cmath>

#include "engine/cuda_context.h"
#include "engine/optim.h"
#include "kernels/optim.h"

namespace eng::optim {

namespace {

const SGDOptions& checked(const SGDOptions& o) {
  ENGINE_CHECK(std::isfinite(o.momentum) && o.momentum >= 0, "SGD: invalid momentum ", o.momentum,
               " (must be >= 0)");
  ENGINE_CHECK(std::isfinite(o.dampening), "SGD: invalid dampening ", o.dampening);
  ENGINE_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
               "SGD: Nesterov momentum requires a momentum > 0 and zero dampening");
  return o;
}

std::vector<std::string> sgd_buffers(const SGDOptions& o) {
  if (o.momentum == 0) return {};
  return {"momentum_buffer"};
}

}  // namespace

SGD::SGD(NamedTensors params, const SGDOptions& options)
    : Optimizer("SGD", std::move(params), checked(options).lr, options.weight_decay, options.no_decay_bias_and_norm,
                sgd_buffers(options)),
      options_(options) {}

SGD::SGD(const std::vector<Tensor>& params, const SGDOptions& options) : SGD(name_by_index(params), options) {}

void SGD::update(const kern::OptimScalars* scalars, const kern::OptimTensor* tensors, int64_t count,
                 [[maybe_unused]] int64_t num_chunks, DType dtype, Device device) {
  kern::SgdHyper h;
  h.momentum = options_.momentum;
  h.dampening = options_.dampening;
  h.nesterov = options_.nesterov;
  dispatch_float(dtype, "SGD", [&](auto tag) {
    using T = decltype(tag);
    if (device.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::sgd_step<T>(h, scalars, tensors, count, num_chunks, cuda::stream()));
    } else {
      kern::cpu::sgd_step<T>(h, scalars, tensors, count);
    }
  });
}

}  // namespace eng::optim
