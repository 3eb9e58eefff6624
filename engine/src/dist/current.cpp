// current() / set_current() / CurrentScope, and all_reduce_sum: the differentiable sum over
// ranks that model code (SyncBatchNorm, the losses' normaliser) reaches through current().
#include "engine/autograd.h"
#include "engine/dist/communicator.h"
#include "engine/error.h"

namespace eng::dist {
namespace {
// Thread-local: each thread of a thread group (tests) has its own rank. The apps set it once
// on the main thread; the data loader's threads never reduce.
thread_local Communicator* g_current = nullptr;

// y = sum over ranks of x. Every rank's loss depends on every rank's x through y, so
// d loss_total / d x_r = sum over ranks of d loss_q / d y: the gradient is all-reduced too.
// The backward runs on the communicator of the forward (not whatever current() is then).
struct AllReduceSumBackward : Node {
  Communicator* comm;
  explicit AllReduceSumBackward(Communicator* c) : Node("AllReduceSumBackward"), comm(c) {}
  std::vector<Tensor> apply(const Tensor& g) override {
    Tensor gs = g.contiguous().clone();
    comm->all_reduce(gs);
    return {gs};
  }
};
}  // namespace

Communicator* current() { return g_current; }
void set_current(Communicator* comm) { g_current = comm; }

CurrentScope::CurrentScope(Communicator* comm) : previous_(g_current) { g_current = comm; }
CurrentScope::~CurrentScope() { g_current = previous_; }

Tensor all_reduce_sum(const Tensor& t) {
  ENGINE_CHECK(t.defined(), "all_reduce_sum: undefined tensor");
  Communicator* comm = g_current;
  if (comm == nullptr || comm->size() == 1) return t;
  Tensor out;
  {
    NoGradGuard guard;
    out = t.detach().contiguous().clone();
  }
  comm->all_reduce(out);
  if (any_requires_grad({t})) attach(out, std::make_shared<AllReduceSumBackward>(comm), {t});
  return out;
}

}  // namespace eng::dist
