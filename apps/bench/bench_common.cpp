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
  if (on_cuda) {
    // Cold: evict inputs from L2 by writing a buffer twice its size before each rep.
    static Tensor flush;
    if (!flush.defined()) {
      const auto l2 = static_cast<int64_t>(cuda::device_info().l2_bytes);
      flush = empty({std::max<int64_t>(2 * l2 / 4, 1 << 20)}, TensorOptions(DType::f32).device(Device::cuda()));
    }
    std::vector<double> cold;
    for (int i = 0; i < o.reps; ++i) {
      flush.fill_(static_cast<double>(i));
      sync();
      auto t0 = std::chrono::steady_clock::now();
      fn();
      sync();
      cold.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(cold.begin(), cold.end());
    r.cold_median_ms = cold.size() % 2 ? cold[cold.size() / 2] : 0.5 * (cold[cold.size() / 2 - 1] + cold[cold.size() / 2]);
  }
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

const DevicePeaks& device_peaks() {
  static const DevicePeaks peaks = [] {
    DevicePeaks p;
    if (!cuda::available()) return p;
    const cuda::DeviceInfo info = cuda::device_info();
    p.label = info.name + " (" + std::to_string(info.sm_count) + " SMs)";
    if (info.name.find("H200") != std::string::npos) {
      p.fp32_gflops = 66.9e3, p.hbm_gbs = 4800;
    } else if (info.name.find("H100") != std::string::npos) {
      if (info.sm_count >= 132) p.fp32_gflops = 66.9e3, p.hbm_gbs = 3350;  // SXM
      else p.fp32_gflops = 51.2e3, p.hbm_gbs = 2000;                          // PCIe
    }
    return p;
  }();
  return peaks;
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
