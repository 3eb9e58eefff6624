// Readable printing: nested brackets, at most `max_per_dim` entries per dim (head ... tail),
// then a line with shape, dtype, device and grad info.
#include <iomanip>
#include <sstream>

#include "engine/autograd.h"
#include "engine/tensor.h"

namespace eng {
namespace {

void print_rec(std::ostringstream& os, const std::vector<double>& v, const Shape& sizes, const Shape& strides,
               size_t dim, int64_t offset, int64_t max_per_dim, bool integral, int indent) {
  if (dim == sizes.size()) {
    if (integral) os << static_cast<long long>(v[offset]);
    else os << std::setprecision(5) << v[offset];
    return;
  }
  os << "[";
  const int64_t n = sizes[dim];
  const int64_t half = max_per_dim / 2;
  for (int64_t i = 0; i < n; ++i) {
    if (n > max_per_dim && i == half) {
      os << "..., ";
      i = n - half;
    }
    if (i > 0 && !(n > max_per_dim && i == n - half)) {
      os << (dim + 1 < sizes.size() ? ",\n" + std::string(indent + 1, ' ') : ", ");
    }
    print_rec(os, v, sizes, strides, dim + 1, offset + i * strides[dim], max_per_dim, integral, indent + 1);
  }
  os << "]";
}

}  // namespace

std::string Tensor::to_string(int64_t max_per_dim) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  std::vector<double> v = to_vector<double>();  // contiguous host copy
  bool integral = !is_floating(dtype());
  os << "tensor(";
  print_rec(os, v, sizes(), contiguous_strides(sizes()), 0, 0, std::max<int64_t>(max_per_dim, 2), integral, 7);
  os << ", shape=" << shape_str(sizes()) << ", dtype=" << dtype_name(dtype()) << ", device=" << device().str();
  if (requires_grad()) os << (is_leaf() ? ", requires_grad" : ", grad_fn=" + grad_fn()->name());
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

}  // namespace eng
