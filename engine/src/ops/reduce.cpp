// Reduction front-ends: sum / mean over any set of dims, max / argmax over one dim.
// A set of adjacent dims reduces in place as [outer, R, inner]; any other set is first
// permuted to the end (one copy), then reduced as [outer, R, 1].
// On CUDA, a sum whose kept dims form one run ([A, kept..., B]: whole-tensor sums, sums over
// trailing dims, the conv bias gradient's {0, 2, 3}) takes the multi-block two-pass kernel
// of kernels/reduce_multiblock.h instead, with its partials in a tensor from the caching
// allocator (no permute copy, no host synchronisation, the same bits on every run).
#include <algorithm>
#include <numeric>

#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "engine/trace.h"
#include "kernels/reduce.h"
#include "kernels/reduce_multiblock.h"

namespace eng {
using namespace detail;

namespace {

std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  std::vector<int64_t> out;
  for (int64_t d : dims) out.push_back(wrap_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  ENGINE_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), op, ": repeated dim");
  return out;
}

Shape reduced_shape(const Shape& in, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t i = 0; i < static_cast<int64_t>(in.size()); ++i) {
    bool reduced = std::binary_search(dims.begin(), dims.end(), i);
    if (!reduced) out.push_back(in[i]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

// When the reduced `dims` (sorted, unique, not empty) are a leading run and a trailing run
// around the kept dims, x reads as [A, O, B] (sum over A and B): fills A, O, B and returns true.
bool outer_inner_split(const Tensor& x, const std::vector<int64_t>& dims, int64_t* A, int64_t* O, int64_t* B) {
  const int64_t nd = x.dim(), nr = static_cast<int64_t>(dims.size());
  if (nr == 0) return false;
  int64_t lead = 0;
  while (lead < nr && dims[lead] == lead) ++lead;
  for (int64_t j = lead; j < nr; ++j)
    if (dims[j] != nd - (nr - j)) return false;  // not one trailing run
  *A = *O = *B = 1;
  for (int64_t i = 0; i < nd; ++i) {
    if (i < lead) *A *= x.size(i);
    else if (i >= nd - (nr - lead)) *B *= x.size(i);
    else *O *= x.size(i);
  }
  if (*O == 1) {  // everything reduced: one long row (no division in the kernel)
    *B *= *A;
    *A = 1;
  }
  return true;
}

// y = scale * sum over `dims` (sorted, unique), result in keepdim layout.
Tensor sum_raw(const Tensor& x_in, const std::vector<int64_t>& dims, double scale_per_elem, const char* op) {
  Tensor x = x_in.detach();
  int64_t A = 1, O = 1, B = 1;
  // Multi-block path, except for a sum over leading dims only into many outputs (B == 1,
  // O >= 64), where the strided kernel's threads read along the kept dims, coalesced.
  if (x.is_cuda() && outer_inner_split(x, dims, &A, &O, &B) && !(B == 1 && O >= 64) && O <= 2147483647LL) {
    x = x.contiguous();
    Tensor y = new_empty(reduced_shape(x_in.sizes(), dims, true), x);
    const double scale =
        scale_per_elem < 0 ? 1.0 / static_cast<double>(std::max<int64_t>(A * B, 1)) : scale_per_elem;
    const int64_t np = kern::sum_outer_inner_partials(A, O, B);
    Tensor partials = np > 0 ? empty({np}, TensorOptions(DType::f64).device(x.device())) : Tensor();
    dispatch_float_or_bf16(x, op, [&](auto tag) {
      using T = decltype(tag);
      ENGINE_IF_CUDA(kern::cuda::sum_outer_inner<T>(A, O, B, x.data<T>(), y.data<T>(), scale,
                                                    np > 0 ? partials.data<double>() : nullptr, cuda::stream()));
    });
    return y;
  }
  // CPU: reduced dims on both sides of the kept ones (a bias gradient's {0, 2, 3}) are summed
  // in place, threads over the outputs, instead of through a permute copy.
  if (!x.is_cuda() && outer_inner_split(x, dims, &A, &O, &B) && A > 1 && B > 1) {
    x = x.contiguous();
    Tensor y = new_empty(reduced_shape(x_in.sizes(), dims, true), x);
    const double scale = scale_per_elem < 0 ? 1.0 / static_cast<double>(A * B) : scale_per_elem;
    dispatch_float_or_bf16(x, op, [&](auto tag) {
      using T = decltype(tag);
      kern::cpu::sum_outer_inner<T>(A, O, B, x.data<T>(), y.data<T>(), scale);
    });
    return y;
  }
  int64_t outer = 1, R = 1, inner = 1;
  const bool adjacent = dims.empty() || dims.back() - dims.front() + 1 == static_cast<int64_t>(dims.size());
  if (adjacent && !dims.empty()) {
    x = x.contiguous();
    for (int64_t i = 0; i < dims.front(); ++i) outer *= x.size(i);
    for (int64_t d : dims) R *= x.size(d);
    for (int64_t i = dims.back() + 1; i < x.dim(); ++i) inner *= x.size(i);
  } else {
    Shape perm;
    for (int64_t i = 0; i < x.dim(); ++i)
      if (!std::binary_search(dims.begin(), dims.end(), i)) perm.push_back(i);
    for (int64_t d : dims) perm.push_back(d);
    x = x.permute(perm).contiguous();
    for (int64_t i = 0; i < x.dim(); ++i) {
      if (i < x.dim() - static_cast<int64_t>(dims.size())) outer *= x.size(i);
      else R *= x.size(i);
    }
  }
  Tensor y = new_empty(reduced_shape(x_in.sizes(), dims, true), x);
  const double scale = scale_per_elem < 0 ? 1.0 / static_cast<double>(std::max<int64_t>(R, 1)) : scale_per_elem;
  dispatch_float_or_bf16(x, op, [&](auto tag) {
    using T = decltype(tag);
    if (x.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::sum_dim<T>(outer, R, inner, x.data<T>(), y.data<T>(), scale, cuda::stream()));
    } else {
      kern::cpu::sum_dim<T>(outer, R, inner, x.data<T>(), y.data<T>(), scale);
    }
  });
  return y;
}

struct SumBackward : Node {
  Shape in_sizes, keep_sizes;
  double scale;
  SumBackward(const char* n, Shape in, Shape keep, double s)
      : Node(n), in_sizes(std::move(in)), keep_sizes(std::move(keep)), scale(s) {}
  std::vector<Tensor> apply(const Tensor& g) override {
    Tensor gk = g.reshape(keep_sizes);
    if (scale != 1.0) gk = mul_scalar(gk, scale);
    return {gk.expand(in_sizes)};
  }
};

// mean == true: scale 1/R.
Tensor reduce_sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim, bool mean) {
  const char* op = mean ? "mean" : "sum";
  ENGINE_CHECK(x.defined(), op, ": undefined input");
  check_floating_or_bf16(op, x);
  std::vector<int64_t> dims = normalize_dims(dims_in, x.dim(), op);
  if (x.dim() == 0) dims.clear();
  int64_t R = 1;
  for (int64_t d : dims) R *= x.size(d);
  Tensor y = sum_raw(x, dims, mean ? -1.0 : 1.0, op);
  Shape keep = y.sizes();
  Shape out_shape = reduced_shape(x.sizes(), dims, keepdim);
  y = y.view(out_shape);
  if (any_requires_grad({x})) {
    double scale = mean ? 1.0 / static_cast<double>(std::max<int64_t>(R, 1)) : 1.0;
    attach(y, std::make_shared<SumBackward>(mean ? "MeanBackward" : "SumBackward", x.sizes(), keep, scale), {x});
  }
  return y;
}

std::vector<int64_t> all_dims(const Tensor& x) {
  std::vector<int64_t> d(x.dim());
  std::iota(d.begin(), d.end(), 0);
  return d;
}

struct MaxBackward : Node {
  Tensor idx;  // int64, keepdim layout
  Shape in_sizes;
  int64_t outer, R, inner;
  MaxBackward(Tensor i, Shape s, int64_t o, int64_t r, int64_t n)
      : Node("MaxBackward"), idx(std::move(i)), in_sizes(std::move(s)), outer(o), R(r), inner(n) {}
  std::vector<Tensor> apply(const Tensor& g_in) override {
    Tensor g = g_in.contiguous();
    Tensor gx = empty(in_sizes, TensorOptions(g.dtype()).device(g.device()));
    dispatch_float_or_bf16(g, "max", [&](auto tag) {
      using T = decltype(tag);
      if (g.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::max_dim_backward<T>(outer, R, inner, idx.data<int64_t>(), g.data<T>(),
                                                       gx.data<T>(), cuda::stream()));
      } else {
        kern::cpu::max_dim_backward<T>(outer, R, inner, idx.data<int64_t>(), g.data<T>(), gx.data<T>());
      }
    });
    return {gx};
  }
  void release_saved() override { idx = Tensor(); }
};

}  // namespace

Tensor sum(const Tensor& x) { return reduce_sum(x, all_dims(x), false, false); }
static Tensor sum_dims_untraced(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) { return reduce_sum(x, dims, keepdim, false); }
Tensor mean(const Tensor& x) { return reduce_sum(x, all_dims(x), false, true); }
static Tensor mean_dims_untraced(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) { return reduce_sum(x, dims, keepdim, true); }

std::pair<Tensor, Tensor> max(const Tensor& x_in, int64_t dim, bool keepdim) {
  ENGINE_CHECK(x_in.defined(), "max: undefined input");
  check_floating_or_bf16("max", x_in);
  ENGINE_CHECK(x_in.dim() > 0, "max: needs at least 1 dim");
  dim = wrap_dim(dim, x_in.dim(), "max");
  ENGINE_CHECK(x_in.size(dim) > 0, "max: dim ", dim, " is empty");
  Tensor x = x_in.detach().contiguous();
  int64_t outer = 1, R = x.size(dim), inner = 1;
  for (int64_t i = 0; i < dim; ++i) outer *= x.size(i);
  for (int64_t i = dim + 1; i < x.dim(); ++i) inner *= x.size(i);
  Shape keep = x.sizes();
  keep[dim] = 1;
  Tensor values = new_empty(keep, x);
  Tensor idx = empty(keep, TensorOptions(DType::i64).device(x.device()));
  dispatch_float_or_bf16(x, "max", [&](auto tag) {
    using T = decltype(tag);
    if (x.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::max_dim<T>(outer, R, inner, x.data<T>(), values.data<T>(), idx.data<int64_t>(),
                                            cuda::stream()));
    } else {
      kern::cpu::max_dim<T>(outer, R, inner, x.data<T>(), values.data<T>(), idx.data<int64_t>());
    }
  });
  if (any_requires_grad({x_in}))
    attach(values, std::make_shared<MaxBackward>(idx, x.sizes(), outer, R, inner), {x_in});
  if (!keepdim) {
    values = values.squeeze(dim);
    idx = idx.squeeze(dim);
  }
  return {values, idx};
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard guard;
  return max(x, dim, keepdim).second;
}

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor y = sum_dims_untraced(x, dims, keepdim);
  if (auto* r = trace::active()) {
    std::vector<int64_t> d;
    for (int64_t v : dims) d.push_back(v < 0 ? v + x.dim() : v);
    r->record("sum", {x}, {y}, {{"dims", d}, {"keepdim", int64_t{keepdim}}});
  }
  return y;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor y = mean_dims_untraced(x, dims, keepdim);
  if (auto* r = trace::active()) {
    std::vector<int64_t> d;
    for (int64_t v : dims) d.push_back(v < 0 ? v + x.dim() : v);
    r->record("mean", {x}, {y}, {{"dims", d}, {"keepdim", int64_t{keepdim}}});
  }
  return y;
}

}  // namespace eng
