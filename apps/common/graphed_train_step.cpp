#include "common/graphed_train_step.h"

#include "engine/autograd.h"
#include "engine/counters.h"
#include "engine/cuda_graph.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace app {

struct GraphedTrainStep::Entry {
  eng::Tensor images;       // static device inputs (the graph reads these addresses)
  models::Targets targets;
  // The model's anchors for this size, which the loss reads: the model caches one set per
  // device and replaces it when the input size changes; holding it here keeps the block the
  // graph reads from being freed and reused while another size trains.
  eng::Tensor anchors;
  bool warm = false;        // an eager step ran here with every gradient already allocated
  int64_t warm_mark = -1;   // events_ after that step: captured only if nothing happened since
  eng::cuda::Graph graph;
};

GraphedTrainStep::GraphedTrainStep(models::DetectionModel& model, eng::optim::Optimizer& optimizer,
                                   double clip_grad_norm)
    : model_(model), optimizer_(optimizer), clip_grad_norm_(clip_grad_norm) {
  const eng::Tensor& first = optimizer_.parameters().front().second;
  ENGINE_CHECK(first.device().is_cuda(), "--cuda-graph: the model must be on a CUDA device, it is on ",
               first.device().str());
  sums_ = eng::zeros({3}, eng::TensorOptions(eng::DType::f32).device(first.device()));
  norm_max_ = eng::zeros({}, eng::TensorOptions(eng::DType::f32).device(first.device()));
}

GraphedTrainStep::~GraphedTrainStep() = default;

size_t GraphedTrainStep::graphs() const {
  size_t n = 0;
  for (const auto& [size, e] : entries_) n += e->graph.captured() ? 1 : 0;
  return n;
}

int64_t GraphedTrainStep::grads_defined() const {
  int64_t n = 0;
  for (const auto& [name, p] : optimizer_.parameters()) n += p.grad().defined() ? 1 : 0;
  return n;
}

// The step itself, eager or under capture: gradients zeroed in place (their addresses are
// in the optimizer's descriptors and in the graph), so backward accumulates into them.
void GraphedTrainStep::body(const eng::Tensor& images, const models::Targets& targets, bool captured) {
  optimizer_.zero_grad(/*set_to_none=*/false);
  models::LossParts parts;
  {
    const models::HeadOutputs heads = models::forward_heads_f32(model_, images);
    parts = model_.loss(heads, targets);
  }
  parts.total.backward();
  {
    // Norms are >= 0, so the zeroed norm_max_ is a neutral start (running_max is NaN-sticky).
    const eng::Tensor norm = clip_grad_norm_ > 0 ? eng::optim::clip_grad_norm_(optimizer_.parameters(), clip_grad_norm_)
                                                 : eng::optim::grad_norm(optimizer_.parameters());
    norm_max_.copy_(running_max(norm_max_, norm));
  }
  if (captured) {
    optimizer_.launch_step();  // lr and step come from the device block prepare_step() wrote
  } else {
    optimizer_.step();
  }
  eng::NoGradGuard no_grad;
  const eng::Tensor now = eng::concat({parts.total.detach().reshape({1}), parts.classification.detach().reshape({1}),
                                       parts.box_regression.detach().reshape({1})},
                                      0);
  sums_.copy_(eng::add(sums_, now.to(eng::DType::f32)));
}

GraphedTrainStep::Mode GraphedTrainStep::step(const eng::Tensor& images, const models::Targets& targets,
                                              int64_t iteration) {
  ENGINE_CHECK(images.dim() == 4 && images.size(2) == model_.config().input_size, "--cuda-graph: a batch of shape ",
               eng::shape_str(images.sizes()), " for input size ", model_.config().input_size);
  if (first_pending_ == 0) first_pending_ = iteration;
  last_pending_ = iteration;
  const eng::Device dev = sums_.device();
  const int64_t size = images.size(2);
  auto it = entries_.find(size);
  if (it == entries_.end()) {
    auto e = std::make_unique<Entry>();
    auto like = [&](const eng::Tensor& t) { return eng::empty(t.sizes(), eng::TensorOptions(t.dtype()).device(dev)); };
    e->images = like(images);
    e->targets = {like(targets.boxes), like(targets.labels), like(targets.counts),
                  targets.ignore.defined() ? like(targets.ignore) : eng::Tensor()};
    it = entries_.emplace(size, std::move(e)).first;
  }
  Entry& e = *it->second;
  const bool fits = e.images.sizes() == images.sizes() && e.targets.boxes.sizes() == targets.boxes.sizes() &&
                    e.targets.labels.sizes() == targets.labels.sizes() &&
                    e.targets.counts.sizes() == targets.counts.sizes() &&
                    e.targets.ignore.defined() == targets.ignore.defined() &&
                    (!targets.ignore.defined() || e.targets.ignore.sizes() == targets.ignore.sizes());
  if (!fits) {  // another batch size: eager, on its own copies
    ++events_;
    body(images.to(dev),
         {targets.boxes.to(dev), targets.labels.to(dev), targets.counts.to(dev),
          targets.ignore.defined() ? targets.ignore.to(dev) : eng::Tensor()},
         false);
    return Mode::eager;
  }
  // 1. Into the static inputs (asynchronous from pinned memory, queued before the replay).
  e.images.copy_(images);
  e.targets.boxes.copy_(targets.boxes);
  e.targets.labels.copy_(targets.labels);
  e.targets.counts.copy_(targets.counts);
  if (targets.ignore.defined()) e.targets.ignore.copy_(targets.ignore);
  if (e.graph.captured()) {
    optimizer_.prepare_step();  // 2. lr and step to the device
    e.graph.replay();           // 3.
    ++replays_;
    return Mode::replayed;
  }
  if (e.warm && e.warm_mark == events_) {
    ++events_;
    optimizer_.prepare_step();
    e.anchors = model_.cached_anchors(dev);  // this size's (computed by the warm-up)
    const eng::cuda::Counters before = eng::cuda::counters();
    e.graph.capture([&] { body(e.images, e.targets, true); });
    const eng::cuda::Counters cost = eng::cuda::counters() - before;
    if (cost.bytes_h2d != 0) {
      // A copy from host memory inside the step would replay from a host block that is
      // reused by then: refuse rather than train on stale data. (The counters are
      // process-wide: a thread that uploads during the capture would trip this too.)
      e.graph.reset();
      ENGINE_FAIL("--cuda-graph: the captured training step copies ", cost.bytes_h2d,
                  " bytes from host memory; a graph would replay them from a stale host block");
    }
    e.graph.replay();
    ++replays_;
    return Mode::captured;
  }
  const int64_t before = grads_defined();
  body(e.images, e.targets, false);
  e.warm = before > 0 && grads_defined() == before;
  e.warm_mark = ++events_;
  return Mode::eager;
}

void GraphedTrainStep::flush(LossMeter& meter) {
  if (first_pending_ == 0) return;
  eng::NoGradGuard no_grad;
  meter.add_sums(sums_.clone(), first_pending_, last_pending_);
  meter.add_grad_norm(norm_max_.clone());
  sums_.zero_();
  norm_max_.zero_();
  first_pending_ = last_pending_ = 0;
}

}  // namespace app
