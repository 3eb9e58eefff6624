// Timing and validation helpers of bench_kernels.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "bench/bench_common.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bench {
using namespace eng;

Row time_it(const Options& o, bool on_cuda, const std::function<void()>& fn) {
  auto sync = [&] {
    if (on_cuda) cuda::synchronize();
  };
  for (int i = 0; i < o.warmup; ++i) fn();
  sync();
  std::vector<double> ms;
  for (int i = 0; i < o.reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    sync();
    auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  Row r;
  r.median_ms = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
  r.min_ms = ms.front();
  r.max_ms = ms.back();
  return r;
}

double tolerance_ratio(const Tensor& actual, const Tensor& ref) {
  std::vector<double> a = actual.to_vector<double>(), b = ref.to_vector<double>();
  double worst = a.size() == b.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    double r = std::fabs(a[i] - b[i]) / (1e-4 + 1e-3 * std::fabs(b[i]));
    if (!(r <= worst)) worst = r;  // NaN-safe
  }
  return worst;
}

bool cuda_rows_possible(const Options& o) { return o.cuda && cuda::available(); }


void bench_engine_op(const Options& o, std::vector<Row>& rows, const std::string& name, const std::string& shape,
                     double flops, double bytes, const std::function<std::vector<Tensor>(Device)>& make_inputs,
                     const std::function<Tensor(const std::vector<Tensor>&)>& fn) {
  Tensor ref;
  std::vector<Tensor> in_cpu;
  if (o.cpu || cuda_rows_possible(o)) {
    in_cpu = make_inputs(Device::cpu());
    ref = fn(in_cpu);  // the reference for validation
  }
  if (o.cpu) {
    Row r = time_it(o, false, [&] { fn(in_cpu); });
    r.name = name, r.device = "cpu", r.shape = shape, r.flops = flops, r.bytes = bytes;
    rows.push_back(r);
  }
  if (cuda_rows_possible(o)) {
    std::vector<Tensor> in_gpu = make_inputs(Device::cuda());
    const double err = tolerance_ratio(fn(in_gpu).cpu(), ref);
    Row r;
    if (err <= 1.0) r = time_it(o, true, [&] { fn(in_gpu); });
    r.name = name, r.device = "cuda", r.shape = shape, r.flops = flops, r.bytes = bytes, r.max_err = err;
    r.valid = err <= 1.0;
    rows.push_back(r);
  }
}

namespace {
std::vector<std::pair<int, std::vector<Bench>>>& registry() {
  static std::vector<std::pair<int, std::vector<Bench>>> r;  // built during static init
  return r;
}
}  // namespace

RegisterRows::RegisterRows(int order, std::vector<Bench> benches) { registry().emplace_back(order, std::move(benches)); }

std::vector<Bench> registered_benches() {
  auto files = registry();
  std::stable_sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<Bench> out;
  for (auto& f : files) out.insert(out.end(), f.second.begin(), f.second.end());
  return out;
}

}  // namespace bench
