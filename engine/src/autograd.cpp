// The backward pass: topological order over Nodes reachable from the roots, gradients
// summed where paths meet, accumulation (+=) into leaves.
#include "engine/autograd.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "engine/ops.h"

namespace eng {
namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return {t.grad_fn()};
  return {std::make_shared<AccumulateGrad>(t.impl())};
}

void attach(Tensor& out, std::shared_ptr<Node> node, const std::vector<Tensor>& inputs) {
  auto& edges = node->next_edges();
  edges.clear();
  for (const Tensor& t : inputs) edges.push_back(gradient_edge(t));
  node->out_sizes = out.sizes();
  node->out_dtype = out.dtype();
  node->out_device = out.device();
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& grad) {
  NoGradGuard guard;
  Tensor g = grad;
  if (g.sizes() != leaf_->sizes) g = sum_to(g, leaf_->sizes);
  if (!leaf_->grad.defined()) {
    // Own the gradient: never alias a tensor the graph (or the user) may still hold.
    leaf_->grad = g.clone();
  } else {
    Tensor acc = leaf_->grad;
    acc.copy_(add(acc, g));
  }
  return {};
}

HookHandle register_post_accumulate_grad_hook(const Tensor& leaf, PostAccumulateGradHook hook) {
  ENGINE_CHECK(leaf.defined(), "register_post_accumulate_grad_hook: undefined tensor");
  ENGINE_CHECK(leaf.is_leaf() && leaf.requires_grad(), "register_post_accumulate_grad_hook: the tensor of shape ",
               shape_str(leaf.sizes()), " must be a leaf that requires grad (",
               leaf.requires_grad() ? "it is the output of an op" : "it does not require grad", ")");
  ENGINE_CHECK(hook != nullptr, "register_post_accumulate_grad_hook: empty hook");
  auto& list = leaf.impl()->hooks;
  if (!list) list = std::make_shared<LeafHooks>();
  const uint64_t id = list->next_id++;
  list->hooks.emplace_back(id, std::move(hook));
  return HookHandle(list, id);
}

void HookHandle::remove() {
  if (auto list = list_.lock()) {
    auto& h = list->hooks;
    h.erase(std::remove_if(h.begin(), h.end(), [&](const auto& p) { return p.first == id_; }), h.end());
  }
  list_.reset();
}

bool HookHandle::active() const {
  auto list = list_.lock();
  if (!list) return false;
  for (const auto& p : list->hooks)
    if (p.first == id_) return true;
  return false;
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& seeds, bool retain_graph) {
  NoGradGuard guard;  // backward formulas build no graph of their own

  // 1. Count, for every node, how many edges point at it (dependencies).
  std::unordered_map<Node*, int> deps;
  std::unordered_map<Node*, std::shared_ptr<Node>> owner;
  // Leaves with hooks: how many of their AccumulateGrad nodes are still to run in this pass.
  std::unordered_map<TensorImpl*, int> hook_pending;
  std::vector<Node*> stack;
  auto discover = [&](const std::shared_ptr<Node>& fn) {
    if (!owner.emplace(fn.get(), fn).second) return;
    stack.push_back(fn.get());
    if (auto* acc = dynamic_cast<AccumulateGrad*>(fn.get()))
      if (acc->leaf()->hooks && !acc->leaf()->hooks->hooks.empty()) ++hook_pending[acc->leaf().get()];
  };
  // One edge per root, kept: a leaf root's AccumulateGrad exists only here.
  std::vector<Edge> root_edges;
  for (const Tensor& r : roots) {
    root_edges.push_back(gradient_edge(r));
    if (root_edges.back().fn) discover(root_edges.back().fn);
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (Edge& e : n->next_edges()) {
      if (!e.fn) continue;
      ++deps[e.fn.get()];
      discover(e.fn);
    }
  }

  // 2. Seed the roots, then run nodes whose every consumer has already run.
  std::unordered_map<Node*, Tensor> grads;
  std::vector<Node*> ready;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Edge& e = root_edges[i];
    if (!e.fn) continue;
    Node* n = e.fn.get();
    if (grads.count(n)) grads[n] = add(grads[n], seeds[i]);
    else grads[n] = seeds[i];
    if (deps[n] == 0 && std::find(ready.begin(), ready.end(), n) == ready.end()) ready.push_back(n);
  }
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    ENGINE_CHECK(!n->released(), "backward through the graph a second time (node ", n->name(),
                 "): its saved tensors were freed; pass retain_graph=true to the first backward");
    Tensor g = std::move(grads[n]);
    grads.erase(n);
    std::vector<Tensor> in_grads = g.defined() ? n->apply(g) : std::vector<Tensor>(n->next_edges().size());
    if (!hook_pending.empty()) {
      if (auto* acc = dynamic_cast<AccumulateGrad*>(n)) {
        auto it = hook_pending.find(acc->leaf().get());
        if (it != hook_pending.end() && --it->second == 0) {
          hook_pending.erase(it);
          const Tensor leaf(acc->leaf());
          // A copy: a hook may remove itself (or register another) while they run.
          const auto hooks = acc->leaf()->hooks->hooks;
          for (const auto& h : hooks) h.second(leaf);
        }
      }
    }
    if (!retain_graph && dynamic_cast<AccumulateGrad*>(n) == nullptr) {
      n->release_saved();
      n->mark_released();
    }
    auto& edges = n->next_edges();
    for (size_t i = 0; i < edges.size(); ++i) {
      Node* next = edges[i].fn.get();
      if (!next) continue;
      if (i < in_grads.size() && in_grads[i].defined()) {
        auto it = grads.find(next);
        if (it == grads.end() || !it->second.defined()) grads[next] = in_grads[i];
        else it->second = add(it->second, in_grads[i]);
      } else if (!grads.count(next)) {
        grads[next] = Tensor();
      }
      if (--deps[next] == 0) ready.push_back(next);
    }
  }
}

}  // namespace eng
