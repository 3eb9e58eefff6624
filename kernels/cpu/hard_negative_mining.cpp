// CPU reference of hard-negative mining (maths and tie rules in kernels/hard_negative_mining.h).
// Written with a comparator on (loss, index) pairs rather than the integer keys the CUDA
// version uses, so that the two implementations check each other.
#include "kernels/hard_negative_mining.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kern::cpu {
namespace {

template <typename T>
struct Candidate {
  T loss;
  int64_t index;
};

// True when x comes before y: NaN first, then larger loss, then lower index.
template <typename T>
bool ranks_before(const Candidate<T>& x, const Candidate<T>& y) {
  const bool x_nan = std::isnan(x.loss), y_nan = std::isnan(y.loss);
  if (x_nan != y_nan) return x_nan;
  if (!x_nan && x.loss != y.loss) return x.loss > y.loss;  // -0.0 == +0.0 falls through
  return x.index < y.index;
}

}  // namespace

template <typename T>
void hard_negative_mining(const MiningDims& d, const T* loss, const int64_t* labels, double ratio,
                          int64_t min_negatives, uint8_t* mask) {
#pragma omp parallel for if (d.B * d.A > (1 << 16))
  for (int64_t b = 0; b < d.B; ++b) {
    const T* l = loss + b * d.A;
    const int64_t* lab = labels + b * d.A;
    uint8_t* m = mask + b * d.A;

    int64_t positives = 0;
    std::vector<Candidate<T>> candidates;
    candidates.reserve(static_cast<size_t>(d.A));
    for (int64_t a = 0; a < d.A; ++a) {
      m[a] = 0;
      if (lab[a] > 0) ++positives;
      else if (lab[a] == 0) candidates.push_back({l[a], a});
    }
    const int64_t k =
        mining::num_negatives(positives, static_cast<int64_t>(candidates.size()), ratio, min_negatives);
    if (k <= 0) continue;
    // Puts the k first candidates of the order in front (in some order).
    std::nth_element(candidates.begin(), candidates.begin() + (k - 1), candidates.end(), ranks_before<T>);
    for (int64_t i = 0; i < k; ++i) m[candidates[static_cast<size_t>(i)].index] = 1;
  }
}

template void hard_negative_mining<float>(const MiningDims&, const float*, const int64_t*, double, int64_t, uint8_t*);
template void hard_negative_mining<double>(const MiningDims&, const double*, const int64_t*, double, int64_t,
                                           uint8_t*);

}  // namespace kern::cpu
