#include "models/parity_init.h"

#include <cmath>
#include <vector>

#include "engine/autograd.h"

namespace models {
namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

double parity_value(const std::string& name, const eng::Shape& shape, int64_t k, int64_t i) {
  const double u = std::sin(0.37 * static_cast<double>(i + 1) + 0.11 * static_cast<double>(k + 1));
  if (ends_with(name, "num_batches_tracked")) return 0.0;
  if (ends_with(name, "running_var")) return 1.0 + 0.5 * std::fabs(u);
  if (ends_with(name, "running_mean")) return 0.1 * u;
  if (ends_with(name, "scale_weight")) return 20.0 + u;
  if (shape.size() == 1) return ends_with(name, ".weight") || name == "weight" ? 1.0 + 0.1 * u : 0.05 * u;
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  const double fan_in = shape.empty() || shape[0] == 0 ? 1.0 : static_cast<double>(numel / shape[0]);
  return u * std::sqrt(3.0 / fan_in);
}

void parity_init(eng::nn::Module& model) {
  eng::NoGradGuard guard;
  int64_t k = 0;
  for (auto& [name, t] : model.state_dict()) {
    std::vector<double> v(static_cast<size_t>(t.numel()));
    for (int64_t i = 0; i < t.numel(); ++i) v[static_cast<size_t>(i)] = parity_value(name, t.sizes(), k, i);
    t.copy_(eng::from_vector(v, t.sizes()));
    ++k;
  }
}

}  // namespace models
