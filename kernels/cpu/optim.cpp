// CPU reference of the optimizer updates (maths in kernels/include/kernels/optim.h).
#include "kernels/optim.h"

#include <cmath>

namespace kern::cpu {

template <typename T>
void sgd_step(const SgdHyper& h, const OptimScalars* scalars, const OptimTensor* tensors, int64_t count) {
  const int64_t step = scalars->step;
  const T lr = static_cast<T>(scalars->lr);
  const T momentum = static_cast<T>(h.momentum);
  const T keep = static_cast<T>(1.0 - h.dampening);  // weight of the new gradient in the buffer
  for (int64_t k = 0; k < count; ++k) {
    const OptimTensor& d = tensors[k];
    T* p = static_cast<T*>(d.param);
    const T* grad = static_cast<const T*>(d.grad);
    T* buf = static_cast<T*>(d.buf1);
    const T wd = static_cast<T>(d.weight_decay);
    const bool first = step - d.step_lag == 1;
#pragma omp parallel for if (d.numel > (1 << 16))
    for (int64_t i = 0; i < d.numel; ++i) {
      T g = grad[i];
      if (d.weight_decay != 0) g = g + wd * p[i];
      if (h.momentum != 0) {
        buf[i] = first ? g : momentum * buf[i] + keep * g;
        g = h.nesterov ? g + momentum * buf[i] : buf[i];
      }
      p[i] = p[i] - lr * g;
    }
  }
}

template <typename T>
void adam_step(const AdamHyper& h, const OptimScalars* scalars, const OptimTensor* tensors, int64_t count) {
  const int64_t step = scalars->step;
  const double lr = scalars->lr;
  const T beta1 = static_cast<T>(h.beta1), beta2 = static_cast<T>(h.beta2);
  const T one_minus_beta1 = static_cast<T>(1.0 - h.beta1), one_minus_beta2 = static_cast<T>(1.0 - h.beta2);
  const T eps = static_cast<T>(h.eps);
  for (int64_t k = 0; k < count; ++k) {
    const OptimTensor& d = tensors[k];
    T* p = static_cast<T*>(d.param);
    const T* grad = static_cast<const T*>(d.grad);
    T* m = static_cast<T*>(d.buf1);
    T* v = static_cast<T*>(d.buf2);
    const double t = static_cast<double>(step - d.step_lag);
    const double bc1 = 1.0 - std::pow(h.beta1, t);
    const double bc2 = 1.0 - std::pow(h.beta2, t);
    const T step_size = static_cast<T>(lr / bc1);
    const T sqrt_bc2 = static_cast<T>(std::sqrt(bc2));
    const T wd = static_cast<T>(d.weight_decay);
    const T decay_factor = static_cast<T>(1.0 - lr * d.weight_decay);  // AdamW
    const bool coupled_decay = !h.decoupled && d.weight_decay != 0;
    const bool decoupled_decay = h.decoupled && d.weight_decay != 0;
#pragma omp parallel for if (d.numel > (1 << 16))
    for (int64_t i = 0; i < d.numel; ++i) {
      T g = grad[i];
      T x = p[i];
      if (decoupled_decay) x = x * decay_factor;
      if (coupled_decay) g = g + wd * x;
      m[i] = beta1 * m[i] + one_minus_beta1 * g;
      v[i] = beta2 * v[i] + one_minus_beta2 * g * g;
      const T denom = std::sqrt(v[i]) / sqrt_bc2 + eps;
      p[i] = x - step_size * (m[i] / denom);
    }
  }
}

#define KERN_INSTANTIATE(T)                                                                  \
  template void sgd_step<T>(const SgdHyper&, const OptimScalars*, const OptimTensor*, int64_t); \
  template void adam_step<T>(const AdamHyper&, const OptimScalars*, const OptimTensor*, int64_t);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
