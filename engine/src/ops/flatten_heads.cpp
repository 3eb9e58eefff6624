// flatten_concat_heads front-end: every head level permuted and concatenated into the final
// [B, N, K] tensor by one kernel per kMaxHeadLevels levels (kernels/flatten_heads.h), instead of a
// permute copy per level followed by a concat copy.
#include <algorithm>

#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "engine/trace.h"
#include "kernels/flatten_heads.h"

namespace eng {
using namespace detail;

namespace {

// The dims of levels [first, first + count) of the whole list (offsets into the full output).
struct HeadLayout {
  int64_t batch = 0, k = 0, total = 0;
  std::vector<int64_t> anchors, hw, offset;
  kern::FlattenHeadsDims chunk(size_t first, size_t count) const {
    kern::FlattenHeadsDims d;
    d.levels = static_cast<int>(count);
    d.batch = batch, d.k = k, d.total = total;
    for (size_t i = 0; i < count; ++i) {
      d.anchors[i] = anchors[first + i];
      d.hw[i] = hw[first + i];
      d.offset[i] = offset[first + i];
    }
    return d;
  }
};

// Runs fn(dims, first, count) for each group of at most kMaxHeadLevels levels.
template <typename F>
void for_each_chunk(const HeadLayout& L, F&& fn) {
  const size_t n = L.anchors.size();
  for (size_t first = 0; first < n; first += kern::kMaxHeadLevels) {
    const size_t count = std::min<size_t>(kern::kMaxHeadLevels, n - first);
    fn(L.chunk(first, count), first, count);
  }
}

struct FlattenHeadsBackward : Node {
  HeadLayout L;
  std::vector<Shape> shapes;
  FlattenHeadsBackward(HeadLayout l, std::vector<Shape> s)
      : Node("FlattenConcatHeadsBackward"), L(std::move(l)), shapes(std::move(s)) {}
  std::vector<Tensor> apply(const Tensor& g_in) override {
    Tensor g = g_in.contiguous();
    std::vector<Tensor> grads(shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) grads[i] = new_empty(shapes[i], g);
    dispatch_float_or_bf16(g, "flatten_concat_heads", [&](auto tag) {
      using T = decltype(tag);
      for_each_chunk(L, [&](const kern::FlattenHeadsDims& d, size_t first, size_t count) {
        T* ptrs[kern::kMaxHeadLevels] = {};
        for (size_t i = 0; i < count; ++i) ptrs[i] = grads[first + i].data<T>();
        if (g.is_cuda()) {
          ENGINE_IF_CUDA(kern::cuda::flatten_heads_backward<T>(d, g.data<T>(), ptrs, cuda::stream()));
        } else {
          kern::cpu::flatten_heads_backward<T>(d, g.data<T>(), ptrs);
        }
      });
    });
    for (size_t i = 0; i < grads.size(); ++i)
      if (!next_edges()[i].fn) grads[i] = Tensor();
    return grads;
  }
};

}  // namespace

static Tensor flatten_concat_heads_untraced(const std::vector<Tensor>& levels_in, int64_t k) {
  ENGINE_CHECK(!levels_in.empty(), "flatten_concat_heads: needs at least one level");
  for (size_t i = 0; i < levels_in.size(); ++i)
    ENGINE_CHECK(levels_in[i].defined(), "flatten_concat_heads: level ", i, " is undefined");
  check_same_device_dtype("flatten_concat_heads", levels_in);
  check_floating_or_bf16("flatten_concat_heads", levels_in[0]);
  ENGINE_CHECK(k > 0, "flatten_concat_heads: K must be positive, got ", k);
  HeadLayout L;
  L.k = k;
  L.batch = levels_in[0].dim() == 4 ? levels_in[0].size(0) : 0;
  std::vector<Tensor> levels;
  std::vector<Shape> shapes;
  for (size_t i = 0; i < levels_in.size(); ++i) {
    const Tensor& x = levels_in[i];
    ENGINE_CHECK(x.dim() == 4, "flatten_concat_heads: level ", i, " must be [B, A*K, H, W], got ",
                 shape_str(x.sizes()));
    ENGINE_CHECK(x.size(0) == L.batch, "flatten_concat_heads: level ", i, " has batch ", x.size(0), " (shape ",
                 shape_str(x.sizes()), "), level 0 has ", L.batch);
    ENGINE_CHECK(x.size(1) % k == 0, "flatten_concat_heads: level ", i, " has ", x.size(1),
                 " channels, not a multiple of K = ", k, " (shape ", shape_str(x.sizes()), ")");
    L.anchors.push_back(x.size(1) / k);
    L.hw.push_back(x.size(2) * x.size(3));
    L.offset.push_back(L.total);
    L.total += L.anchors.back() * L.hw.back();
    levels.push_back(x.detach().contiguous());
    shapes.push_back(x.sizes());
  }

  Tensor out = new_empty({L.batch, L.total, k}, levels[0]);
  dispatch_float_or_bf16(out, "flatten_concat_heads", [&](auto tag) {
    using T = decltype(tag);
    for_each_chunk(L, [&](const kern::FlattenHeadsDims& d, size_t first, size_t count) {
      const T* ptrs[kern::kMaxHeadLevels] = {};
      for (size_t i = 0; i < count; ++i) ptrs[i] = levels[first + i].data<T>();
      if (out.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::flatten_heads_forward<T>(d, ptrs, out.data<T>(), cuda::stream()));
      } else {
        kern::cpu::flatten_heads_forward<T>(d, ptrs, out.data<T>());
      }
    });
  });
  if (any_requires_grad(levels_in))
    attach(out, std::make_shared<FlattenHeadsBackward>(std::move(L), std::move(shapes)), levels_in);
  return out;
}

Tensor flatten_concat_heads(const std::vector<Tensor>& levels, int64_t k) {
  Tensor y = flatten_concat_heads_untraced(levels, k);
  if (auto* r = trace::active()) r->record("flatten_concat_heads", levels, {y}, {{"k", k}});
  return y;
}

}  // namespace eng
