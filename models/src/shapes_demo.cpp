#include "models/shapes_demo.h"

#include <chrono>
#include <numeric>
#include <vector>

#include "data/shapes_dataset.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "models/small_convnet.h"

namespace models {
using namespace eng;

namespace {

// Fraction of rows of `logits` whose argmax equals `labels`.
double accuracy(SmallConvNet& net, const data::ShapesBatch& set, Device device) {
  NoGradGuard guard;
  net.eval();
  int64_t correct = 0;
  const int64_t n = set.images.size(0), chunk = 256;
  for (int64_t s = 0; s < n; s += chunk) {
    const int64_t len = std::min(chunk, n - s);
    Tensor pred = argmax(net.forward(set.images.narrow(0, s, len).to(device)), 1).cpu();
    auto p = pred.to_vector<int64_t>();
    auto l = set.labels.narrow(0, s, len).to_vector<int64_t>();
    for (int64_t i = 0; i < len; ++i) correct += p[i] == l[i];
  }
  net.train();
  return static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace

ShapesDemoResult train_shapes_demo(const ShapesDemoConfig& cfg,
                                   const std::function<void(int64_t, double, double)>& on_log) {
  ENGINE_CHECK(cfg.batch > 0 && cfg.iters > 0 && cfg.train_images >= cfg.batch,
               "shapes demo: need batch > 0, iters > 0 and train_images >= batch");
  manual_seed(cfg.seed);  // parameter initialisation
  data::ShapesBatch train = data::make_shapes(cfg.train_images, cfg.seed, cfg.image_size);
  data::ShapesBatch test = data::make_shapes(cfg.test_images, cfg.seed + 1000003, cfg.image_size);

  SmallConvNet net(1, data::kShapeClasses, cfg.image_size);
  net.to(cfg.device);
  optim::SGDOptions o;
  o.lr = cfg.lr;
  o.momentum = 0.9;
  o.weight_decay = 1e-4;
  o.no_decay_bias_and_norm = true;
  optim::SGD opt(net.named_parameters(), o);
  optim::LinearWarmup sched(optim::Cosine(cfg.lr, cfg.iters, cfg.lr * 0.01), cfg.iters / 10, 0.1);

  // Seeded shuffling: a fresh permutation each epoch.
  Generator shuffle(cfg.seed + 7);
  std::vector<int64_t> order(static_cast<size_t>(cfg.train_images));
  int64_t pos = cfg.train_images;
  // The set lives on the host: gather each batch's rows there, then move the batch.
  const std::vector<float> all = train.images.to_vector<float>();
  const std::vector<int64_t> labels = train.labels.to_vector<int64_t>();
  const int64_t per = train.images.numel() / cfg.train_images;
  auto next_batch = [&]() {
    if (pos + cfg.batch > cfg.train_images) {
      std::iota(order.begin(), order.end(), 0);
      for (int64_t i = cfg.train_images - 1; i > 0; --i)
        std::swap(order[i], order[static_cast<int64_t>(shuffle.uniform() * (i + 1))]);
      pos = 0;
    }
    std::vector<int64_t> idx(order.begin() + pos, order.begin() + pos + cfg.batch);
    pos += cfg.batch;
    std::vector<float> x(static_cast<size_t>(cfg.batch * per));
    std::vector<int64_t> y(static_cast<size_t>(cfg.batch));
    for (int64_t b = 0; b < cfg.batch; ++b) {
      std::copy(all.begin() + idx[b] * per, all.begin() + (idx[b] + 1) * per, x.begin() + b * per);
      y[b] = labels[idx[b]];
    }
    Shape shape = train.images.sizes();
    shape[0] = cfg.batch;
    return std::make_pair(from_vector(x, shape).to(cfg.device), from_vector(y, {cfg.batch}).to(cfg.device));
  };

  ShapesDemoResult result;
  result.parameters = net.num_parameters();
  const auto t0 = std::chrono::steady_clock::now();
  double loss_sum = 0;
  int64_t loss_count = 0;
  for (int64_t it = 0; it < cfg.iters; ++it) {
    auto [x, y] = next_batch();
    opt.set_lr(sched.lr_at(it));
    opt.zero_grad();
    Tensor loss = cross_entropy(net.forward(x), y);
    loss.backward();
    opt.step();
    loss_sum += loss.item();
    ++loss_count;
    if ((it + 1) % cfg.log_every == 0 || it + 1 == cfg.iters) {
      result.final_loss = loss_sum / static_cast<double>(loss_count);
      if (on_log) on_log(it + 1, result.final_loss, opt.lr());
      loss_sum = 0;
      loss_count = 0;
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  result.train_accuracy = accuracy(net, train, cfg.device);
  result.test_accuracy = accuracy(net, test, cfg.device);
  return result;
}

}  // namespace models
