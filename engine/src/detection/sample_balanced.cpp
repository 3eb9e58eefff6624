// sample_balanced: torchvision's BalancedPositiveNegativeSampler on the host (draw order and
// semantics in engine/detection_two_stage.h). On CUDA the labels come to the host (one sync)
// and the mask goes back.
#include <limits>
#include <vector>

#include "engine/detail/op_utils.h"
#include "engine/detection_two_stage.h"

namespace eng::det {
using namespace eng::detail;

namespace {

// Uniform integer in [0, n), n >= 1, without modulo bias (rejection of the top remainder).
uint64_t bounded(Generator& gen, uint64_t n) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = max - max % n;  // draws >= limit are redrawn
  uint64_t x;
  do x = gen.next_u64();
  while (x >= limit);
  return x % n;
}

// Marks k of the candidates (k <= size) in mask: a partial Fisher-Yates shuffle, draw i picks
// position i + bounded(size - i).
void choose(std::vector<int64_t>& cand, int64_t k, Generator& gen, uint8_t* mask) {
  const uint64_t n = cand.size();
  for (uint64_t i = 0; i < static_cast<uint64_t>(k); ++i) {
    const uint64_t j = i + bounded(gen, n - i);
    std::swap(cand[i], cand[j]);
    mask[cand[i]] = 1;
  }
}

}  // namespace

Tensor sample_balanced(const Tensor& labels_in, int64_t batch_size_per_image, double positive_fraction,
                       Generator& gen) {
  const char* op = "sample_balanced";
  check_dim(op, labels_in, 2, "labels");
  ENGINE_CHECK(labels_in.dtype() == DType::i64, op, ": labels must be i64, got ", dtype_name(labels_in.dtype()));
  ENGINE_CHECK(batch_size_per_image >= 0, op, ": batch_size_per_image must be >= 0, got ", batch_size_per_image);
  ENGINE_CHECK(positive_fraction >= 0.0 && positive_fraction <= 1.0, op,
               ": positive_fraction must be in [0, 1], got ", positive_fraction);
  const Tensor labels = labels_in.detach().cpu().contiguous();  // CUDA: the one host sync
  const int64_t B = labels.size(0), N = labels.size(1);
  // torchvision: int(batch_size_per_image * positive_fraction), truncation toward zero.
  const int64_t pos_cap = static_cast<int64_t>(static_cast<double>(batch_size_per_image) * positive_fraction);
  Tensor mask = zeros({B, N}, TensorOptions(DType::u8));
  uint8_t* m = mask.data<uint8_t>();
  const int64_t* l = labels.data<int64_t>();
  std::vector<int64_t> pos, neg;
  for (int64_t b = 0; b < B; ++b) {
    pos.clear(), neg.clear();
    for (int64_t n = 0; n < N; ++n) {
      const int64_t v = l[b * N + n];
      if (v >= 1) pos.push_back(n);
      else if (v == 0) neg.push_back(n);
    }
    const int64_t n_pos = std::min<int64_t>(static_cast<int64_t>(pos.size()), pos_cap);
    const int64_t n_neg = std::min<int64_t>(static_cast<int64_t>(neg.size()), batch_size_per_image - n_pos);
    choose(pos, n_pos, gen, m + b * N);
    choose(neg, n_neg, gen, m + b * N);
  }
  return labels_in.is_cuda() ? mask.to(labels_in.device()) : mask;
}

}  // namespace eng::det
