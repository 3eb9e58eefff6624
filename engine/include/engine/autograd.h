// Autograd: a dynamic tape.
//
// Each differentiable op whose inputs need grad (while grad mode is on) creates one Node.
// A Node holds one Edge per differentiable input (the input's grad_fn, or an AccumulateGrad
// node for a leaf) and the tensors its backward needs. Tensor::backward() orders the graph
// topologically, seeds the output's gradient, calls each Node's apply() in reverse order,
// sums gradients that meet at one node, and accumulates (+=) into leaves' .grad.
// After a node ran, its saved tensors are released unless retain_graph was asked for.
//
// Writing a new Node:
//   struct ReluBackward : Node {
//     Tensor x;                                   // saved for backward
//     ReluBackward() : Node("relu") {}
//     std::vector<Tensor> apply(const Tensor& g) override { return {relu_grad(g, x)}; }
//     void release_saved() override { x = Tensor(); }
//   };
//   Tensor y = ...forward...;
//   if (any_requires_grad({x})) attach(y, std::make_shared<ReluBackward>(...), {x});
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace eng {

class Node;

struct Edge {
  std::shared_ptr<Node> fn;  // null when the input does not need grad
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  explicit Node(std::string name) : name_(std::move(name)) {}
  virtual ~Node() = default;

  // Gradient of the loss w.r.t. this node's output -> gradients w.r.t. each input, in
  // the order of next_edges(). An entry may be undefined where the input needs none.
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  virtual void release_saved() {}

  const std::string& name() const { return name_; }
  std::vector<Edge>& next_edges() { return next_; }
  bool released() const { return released_; }
  void mark_released() { released_ = true; }
  // Shape/dtype/device of the output this node produced (for seeding and checks).
  Shape out_sizes;
  DType out_dtype = DType::f32;
  Device out_device;

 private:
  std::string name_;
  std::vector<Edge> next_;
  bool released_ = false;
};

// The node behind a leaf that requires grad: accumulates into leaf.grad.
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : Node("AccumulateGrad"), leaf_(std::move(leaf)) {}
  std::vector<Tensor> apply(const Tensor& grad) override;
  const std::shared_ptr<TensorImpl>& leaf() const { return leaf_; }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// ---- grad mode ----
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and any defined input requires grad.
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Makes `node` the grad_fn of `out` with one edge per entry of `inputs` (inputs that do not
// require grad get an empty edge) and marks `out` as requiring grad.
void attach(Tensor& out, std::shared_ptr<Node> node, const std::vector<Tensor>& inputs);

// The edge that carries gradient into `t` (its grad_fn, or the shared AccumulateGrad node of
// a leaf), or an empty edge when `t` does not require grad.
Edge gradient_edge(const Tensor& t);

// Runs backward from several roots at once (each with its seed gradient).
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& seeds, bool retain_graph);

// ---- post-accumulate-grad hooks (data-parallel gradient buckets, engine/dist/grad_reducer.h) ----
// A hook on a leaf that requires grad runs inside backward, once per backward pass that
// reaches the leaf, right after the LAST accumulation of that pass into leaf.grad: a leaf used
// by several ops (a head shared by pyramid levels) has several AccumulateGrad nodes, and the
// hook waits for all of them. It gets the leaf (its .grad complete for this pass; undefined
// when no path carried a gradient and it had none). Hooks run in registration order, in
// the thread that runs backward, with grad mode off; an exception leaves backward.
using PostAccumulateGradHook = std::function<void(const Tensor& leaf)>;

struct LeafHooks {
  std::vector<std::pair<uint64_t, PostAccumulateGradHook>> hooks;
  uint64_t next_id = 1;
};

// Removes its hook with remove() (no-op when already removed or the leaf is gone). Copyable;
// dropping a handle does NOT remove the hook.
class HookHandle {
 public:
  HookHandle() = default;
  HookHandle(std::weak_ptr<LeafHooks> list, uint64_t id) : list_(std::move(list)), id_(id) {}
  void remove();
  bool active() const;  // the hook is still registered

 private:
  std::weak_ptr<LeafHooks> list_;
  uint64_t id_ = 0;
};

// Registers `hook` on `leaf` (shared by every handle of the same TensorImpl). Refused on a
// non-leaf or a tensor that does not require grad.
HookHandle register_post_accumulate_grad_hook(const Tensor& leaf, PostAccumulateGradHook hook);

}  // namespace eng
