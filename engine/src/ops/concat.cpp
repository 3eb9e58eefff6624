// concat front-end (torch.cat): joins tensors along one dim through the strided copy.
// Backward hands each input its slice of the output gradient.
#include "engine/autograd.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "engine/trace.h"

namespace eng {
using namespace detail;

namespace {

struct ConcatBackward : Node {
  int64_t dim;
  std::vector<int64_t> offsets, lengths;  // where each input sits along `dim`
  ConcatBackward(int64_t d, std::vector<int64_t> off, std::vector<int64_t> len)
      : Node("ConcatBackward"), dim(d), offsets(std::move(off)), lengths(std::move(len)) {}
  std::vector<Tensor> apply(const Tensor& g) override {
    std::vector<Tensor> grads(offsets.size());
    for (size_t i = 0; i < offsets.size(); ++i)
      if (next_edges()[i].fn) grads[i] = g.narrow(dim, offsets[i], lengths[i]);
    return grads;
  }
};

}  // namespace

static Tensor concat_untraced(const std::vector<Tensor>& xs, int64_t dim_in) {
  ENGINE_CHECK(!xs.empty(), "concat: needs at least one tensor");
  for (size_t i = 0; i < xs.size(); ++i) ENGINE_CHECK(xs[i].defined(), "concat: tensor ", i, " is undefined");
  check_same_device_dtype("concat", xs);
  const Tensor& first = xs[0];
  ENGINE_CHECK(first.dim() > 0, "concat: cannot join 0-d tensors");
  const int64_t dim = wrap_dim(dim_in, first.dim(), "concat");
  Shape out_shape = first.sizes();
  out_shape[dim] = 0;
  std::vector<int64_t> offsets, lengths;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    bool same = x.dim() == first.dim();
    for (int64_t k = 0; same && k < x.dim(); ++k) same = k == dim || x.size(k) == first.size(k);
    ENGINE_CHECK(same, "concat: tensor ", i, " has shape ", shape_str(x.sizes()), ", expected the shape of tensor 0 ",
                 shape_str(first.sizes()), " except along dim ", dim);
    offsets.push_back(out_shape[dim]);
    lengths.push_back(x.size(dim));
    out_shape[dim] += x.size(dim);
  }

  Tensor out = new_empty(out_shape, first);
  {
    NoGradGuard guard;  // the copies are bookkeeping; the gradient comes from ConcatBackward
    for (size_t i = 0; i < xs.size(); ++i)
      if (lengths[i] > 0) out.narrow(dim, offsets[i], lengths[i]).copy_(xs[i]);
  }
  if (any_requires_grad(xs)) attach(out, std::make_shared<ConcatBackward>(dim, offsets, lengths), xs);
  return out;
}

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  Tensor y = concat_untraced(xs, dim);
  if (auto* r = trace::active()) r->record("concat", xs, {y}, {{"dim", dim < 0 ? dim + y.dim() : dim}});
  return y;
}

}  // namespace eng
