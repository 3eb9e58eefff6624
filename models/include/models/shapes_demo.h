// The engine's end-to-end demo: train SmallConvNet with SGD (momentum, weight decay,
// linear warmup then cosine) on the generated shapes set (data/shapes_dataset.h), then
// measure accuracy on a held-out generated set. Used by apps/demo_train and by the smoke
// test, so both exercise the same path: conv2d, batch_norm2d, relu, max_pool2d, linear,
// cross_entropy, autograd and the optimizer.
#pragma once
#include <cstdint>
#include <functional>

#include "engine/dtype.h"

namespace models {

struct ShapesDemoConfig {
  int64_t train_images = 2048;
  int64_t test_images = 512;
  int64_t image_size = 16;
  int64_t batch = 32;
  int64_t iters = 300;
  double lr = 0.05;
  uint64_t seed = 1;
  eng::Device device = eng::Device::cpu();
  int64_t log_every = 50;
};

struct ShapesDemoResult {
  double final_loss = 0;      // mean training loss over the last log interval
  double train_accuracy = 0;  // on the whole training set, eval mode
  double test_accuracy = 0;   // on the held-out set, eval mode
  int64_t parameters = 0;
  double seconds = 0;         // training time
};

// on_log(iteration, mean loss since the last call, lr) is called every log_every iterations.
ShapesDemoResult train_shapes_demo(const ShapesDemoConfig& cfg,
                                   const std::function<void(int64_t, double, double)>& on_log = {});

}  // namespace models
