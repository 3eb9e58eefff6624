// Standard layers: construction (names, shapes, PyTorch default init) and forward.
#include "engine/nn/layers.h"

#include <cmath>
#include <tuple>

#include "engine/autograd.h"
#include "engine/dist/sync_batch_norm.h"
#include "engine/error.h"

namespace eng::nn {

// ---- initialisers ----
namespace init {

// Values are drawn on the host in element order, then copied in (any dtype, any device).
void uniform_(Tensor& t, double lo, double hi, Generator& gen) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (double& x : v) x = lo + (hi - lo) * gen.uniform();
  NoGradGuard guard;
  t.copy_(from_vector(v, t.sizes()));
}

void normal_(Tensor& t, double mean, double std, Generator& gen) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (double& x : v) x = mean + std * gen.normal();
  NoGradGuard guard;
  t.copy_(from_vector(v, t.sizes()));
}

void constant_(Tensor& t, double value) {
  NoGradGuard guard;
  t.fill_(value);
}

}  // namespace init

namespace {
void check_positive(const char* layer, const char* what, int64_t v) {
  ENGINE_CHECK(v > 0, layer, ": ", what, " must be positive, got ", v);
}
}  // namespace

// ---- Conv2d ----
Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride, int64_t padding,
               int64_t dilation, bool with_bias, int64_t groups)
    : Module("Conv2d") {
  check_positive("Conv2d", "in_channels", in_channels);
  check_positive("Conv2d", "out_channels", out_channels);
  check_positive("Conv2d", "kernel_size", kernel_size);
  check_positive("Conv2d", "stride", stride);
  check_positive("Conv2d", "dilation", dilation);
  ENGINE_CHECK(padding >= 0, "Conv2d: padding must be >= 0, got ", padding);
  ENGINE_CHECK(groups >= 1 && in_channels % groups == 0 && out_channels % groups == 0, "Conv2d: groups ", groups,
               " must divide in_channels (", in_channels, ") and out_channels (", out_channels, ")");
  params.groups = groups;
  params.stride_h = params.stride_w = stride;
  params.pad_h = params.pad_w = padding;
  params.dilation_h = params.dilation_w = dilation;

  // kaiming_uniform_(a = sqrt(5)) gives bound = gain * sqrt(3 / fan_in) with
  // gain = sqrt(2 / (1 + 5)), i.e. bound = 1 / sqrt(fan_in); the bias uses the same bound.
  const int64_t in_per_group = in_channels / groups;
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_per_group * kernel_size * kernel_size));
  weight = empty({out_channels, in_per_group, kernel_size, kernel_size});
  init::uniform_(weight, -bound, bound);
  weight = register_parameter("weight", weight);
  if (with_bias) {
    bias = empty({out_channels});
    init::uniform_(bias, -bound, bound);
    bias = register_parameter("bias", bias);
  }
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight, bias, params); }

// ---- Linear ----
Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias) : Module("Linear") {
  check_positive("Linear", "in_features", in_features);
  check_positive("Linear", "out_features", out_features);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));  // as for Conv2d
  weight = empty({out_features, in_features});
  init::uniform_(weight, -bound, bound);
  weight = register_parameter("weight", weight);
  if (with_bias) {
    bias = empty({out_features});
    init::uniform_(bias, -bound, bound);
    bias = register_parameter("bias", bias);
  }
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

// ---- BatchNorm2d ----
BatchNorm2d::BatchNorm2d(int64_t channels, double eps_, double momentum_)
    : Module("BatchNorm2d"), eps(eps_), momentum(momentum_) {
  check_positive("BatchNorm2d", "channels", channels);
  weight = register_parameter("weight", ones({channels}));
  bias = register_parameter("bias", zeros({channels}));
  running_mean = register_buffer("running_mean", zeros({channels}));
  running_var = register_buffer("running_var", ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, DType::i64));
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  Tensor y = sync ? dist::sync_batch_norm2d(x, weight, bias, running_mean, running_var, is_training(), momentum, eps)
                  : batch_norm2d(x, weight, bias, running_mean, running_var, is_training(), momentum, eps);
  if (is_training()) {
    NoGradGuard guard;
    // Counted on the tensor's own device: no host read-back (a GPU sync) per forward.
    num_batches_tracked.copy_(add_scalar(num_batches_tracked.to(DType::f64), 1.0));
  }
  return y;
}

// ---- FrozenBatchNorm2d ----
FrozenBatchNorm2d::FrozenBatchNorm2d(int64_t channels, double eps_) : Module("FrozenBatchNorm2d"), eps(eps_) {
  check_positive("FrozenBatchNorm2d", "channels", channels);
  weight = register_buffer("weight", ones({channels}));
  bias = register_buffer("bias", zeros({channels}));
  running_mean = register_buffer("running_mean", zeros({channels}));
  running_var = register_buffer("running_var", ones({channels}));
}

void FrozenBatchNorm2d::invalidate_cache() {
  scale_ = Tensor();
  shift_ = Tensor();
}

bool FrozenBatchNorm2d::cache_valid() const {
  if (!scale_.defined() || cached_eps_ != eps) return false;
  const Tensor* bufs[4] = {&weight, &bias, &running_mean, &running_var};
  for (int i = 0; i < 4; ++i) {
    const Tensor& t = *bufs[i];
    if (!t.defined()) return false;
    const std::shared_ptr<Storage> held = sources_[i].storage.lock();
    if (!held || held != t.storage() || held->version() != sources_[i].version ||
        sources_[i].offset != t.storage_offset())
      return false;
  }
  return true;
}

Tensor FrozenBatchNorm2d::forward(const Tensor& x) {
  if (!cache_valid()) {
    // Checks the buffers against x first (shapes, dtypes, devices), with the op's messages.
    Tensor y = frozen_batch_norm2d(x, weight, bias, running_mean, running_var, eps);
    std::tie(scale_, shift_) = frozen_batch_norm2d_scale_shift(weight, bias, running_mean, running_var, eps);
    const Tensor* bufs[4] = {&weight, &bias, &running_mean, &running_var};
    for (int i = 0; i < 4; ++i) sources_[i] = {bufs[i]->storage(), bufs[i]->storage()->version(), bufs[i]->storage_offset()};
    cached_eps_ = eps;
    ++computations_;
    return y;
  }
  return frozen_batch_norm2d_affine(x, scale_, shift_);
}

// ---- MaxPool2d ----
MaxPool2d::MaxPool2d(int64_t kernel_size, int64_t stride, int64_t padding, bool ceil_mode) : Module("MaxPool2d") {
  check_positive("MaxPool2d", "kernel_size", kernel_size);
  ENGINE_CHECK(padding >= 0, "MaxPool2d: padding must be >= 0, got ", padding);
  if (stride < 1) stride = kernel_size;
  params.kernel_h = params.kernel_w = kernel_size;
  params.stride_h = params.stride_w = stride;
  params.pad_h = params.pad_w = padding;
  params.ceil_mode = ceil_mode;
}

// ---- Sequential ----
Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> layers) : Module("Sequential") {
  for (const auto& m : layers) push_back(m);
}

const std::shared_ptr<Module>& Sequential::operator[](size_t i) const {
  ENGINE_CHECK(i < layers_.size(), "Sequential: index ", i, " out of range (size ", layers_.size(), ")");
  return layers_[i];
}

// A Conv2d followed by a ReLU runs as one conv2d_relu (cuDNN fuses conv + bias + ReLU); the
// result and its gradients are those of the two layers in turn.
Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    auto* conv = dynamic_cast<Conv2d*>(layers_[i].get());
    if (conv && i + 1 < layers_.size() && dynamic_cast<ReLU*>(layers_[i + 1].get())) {
      y = conv2d_relu(y, conv->weight, conv->bias, conv->params);
      ++i;
      continue;
    }
    y = layers_[i]->forward(y);
  }
  return y;
}

// ---- ModuleList ----
ModuleList::ModuleList(std::initializer_list<std::shared_ptr<Module>> modules) : Module("ModuleList") {
  for (const auto& m : modules) push_back(m);
}

const std::shared_ptr<Module>& ModuleList::operator[](size_t i) const {
  ENGINE_CHECK(i < items_.size(), "ModuleList: index ", i, " out of range (size ", items_.size(), ")");
  return items_[i];
}

}  // namespace eng::nn
