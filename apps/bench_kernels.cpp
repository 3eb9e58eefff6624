// bench_kernels: times the compute kernels on the CPU and (when present) the GPU.
//
//   bench_kernels [--device cpu|cuda|all] [--reps N] [--json FILE] [--only NAME,...]
//
// Every benchmark is one named function in kBenches (bottom of the file). It builds its
// inputs, times the CPU version, and, when CUDA rows are wanted and a device exists, checks
// the CUDA result against the CPU one before timing it (a wrong kernel gets no figure).
// Times are warm (inputs resident in cache/HBM, no flush): median, min and max over the
// repetitions after a short warm-up. To add a row: write a function like bench_sgemm and
// add it to kBenches.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "kernels/gemm.h"

using namespace eng;

namespace {

// FP32 (non-tensor-core) peak of an H100 SXM, DESIGN.md section 7; H200 has the same SMs.
constexpr double kGpuFp32PeakGflops = 66.9e3;

struct Options {
  bool cpu = true, cuda = true;
  int reps = 20, warmup = 3;
};

struct Row {
  std::string name, device, shape;
  double flops = 0;  // per repetition
  double median_ms = 0, min_ms = 0, max_ms = 0;
  double max_err = 0;  // CUDA rows: worst |cuda - cpu| / (1e-4 + 1e-3 |cpu|); <= 1 passes
  bool valid = true;
  double gflops() const { return median_ms > 0 ? flops / (median_ms * 1e6) : 0; }
};

struct Bench {
  const char* name;
  const char* what;
  std::function<void(const Options&, std::vector<Row>&)> run;
};

// Runs fn `warmup` times, then `reps` timed times; CUDA work is synchronised around each.
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

// Worst ratio |actual - ref| / (1e-4 + 1e-3 |ref|) (the GEMM/conv tolerance of the tests).
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

// ---- rows ----------------------------------------------------------------------------------

// C = A B, row-major float, M = N = K = 1024, straight through the gemm kernels.
void bench_sgemm(const Options& o, std::vector<Row>& rows) {
  const int64_t n = 1024;
  const std::string shape = "M=N=K=1024 f32";
  const double flops = 2.0 * n * n * n;
  Generator gen(1);
  Tensor A = randn({n, n}, gen), B = randn({n, n}, gen), C = zeros({n, n});
  auto cpu_run = [&] {
    kern::cpu::gemm<float>(false, false, n, n, n, 1.0f, A.data<float>(), n, B.data<float>(), n, 0.0f, C.data<float>(),
                           n);
  };
  if (o.cpu || cuda_rows_possible(o)) cpu_run();  // the reference for validation
  if (o.cpu) {
    Row r = time_it(o, false, cpu_run);
    r.name = "sgemm", r.device = "cpu", r.shape = shape, r.flops = flops;
    rows.push_back(r);
  }
#ifdef ENGINE_WITH_CUDA
  if (cuda_rows_possible(o)) {
    Tensor dA = A.cuda(), dB = B.cuda(), dC = zeros({n, n}, Device::cuda());
    auto gpu_run = [&] {
      kern::cuda::gemm<float>(false, false, n, n, n, 1.0f, dA.data<float>(), n, dB.data<float>(), n, 0.0f,
                              dC.data<float>(), n, cuda::blas(), cuda::stream());
    };
    gpu_run();
    cuda::synchronize();
    Row r;
    const double err = tolerance_ratio(dC.cpu(), C);
    if (err <= 1.0) r = time_it(o, true, gpu_run);
    r.name = "sgemm", r.device = "cuda", r.shape = shape, r.flops = flops, r.max_err = err, r.valid = err <= 1.0;
    rows.push_back(r);
  }
#endif
}

// One forward conv2d through the engine op (im2col + GEMM), float, no grad.
void bench_conv(const Options& o, std::vector<Row>& rows, const char* name, int64_t N, int64_t C, int64_t O,
                int64_t H, int64_t W, int64_t k, const Conv2dParams& p) {
  NoGradGuard no_grad;
  Generator gen(2);
  Tensor x = randn({N, C, H, W}, gen), w = randn({O, C, k, k}, gen) * (1.0 / std::sqrt(double(C * k * k)));
  Tensor b = randn({O}, gen);
  Tensor y = conv2d(x, w, b, p);  // the reference for validation
  const int64_t Ho = y.size(2), Wo = y.size(3);
  const double flops = 2.0 * N * O * Ho * Wo * C * k * k;
  char shape[160];
  std::snprintf(shape, sizeof shape, "N=%lld %lld->%lld %lldx%lld k%lld s%lld p%lld d%lld f32", (long long)N,
                (long long)C, (long long)O, (long long)H, (long long)W, (long long)k, (long long)p.stride_h,
                (long long)p.pad_h, (long long)p.dilation_h);
  if (o.cpu) {
    Row r = time_it(o, false, [&] { y = conv2d(x, w, b, p); });
    r.name = name, r.device = "cpu", r.shape = shape, r.flops = flops;
    rows.push_back(r);
  }
  if (cuda_rows_possible(o)) {
    Tensor dx = x.cuda(), dw = w.cuda(), db = b.cuda();
    Tensor dy = conv2d(dx, dw, db, p);
    Row r;
    const double err = tolerance_ratio(dy.cpu(), y);
    if (err <= 1.0) r = time_it(o, true, [&] { dy = conv2d(dx, dw, db, p); });
    r.name = name, r.device = "cuda", r.shape = shape, r.flops = flops, r.max_err = err, r.valid = err <= 1.0;
    rows.push_back(r);
  }
}

Conv2dParams conv_params(int64_t stride, int64_t pad, int64_t dil) {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = pad;
  p.dilation_h = p.dilation_w = dil;
  return p;
}

// VGG16 conv1_2 at SSD300 resolution / 2: 64 -> 64, 3x3, pad 1, 150x150.
void bench_conv2d_vgg(const Options& o, std::vector<Row>& rows) {
  bench_conv(o, rows, "conv2d_vgg", 1, 64, 64, 150, 150, 3, conv_params(1, 1, 1));
}

// SSD fc6: 512 -> 1024, 3x3, dilation 6, pad 6, 19x19.
void bench_conv2d_dilated(const Options& o, std::vector<Row>& rows) {
  bench_conv(o, rows, "conv2d_dilated", 1, 512, 1024, 19, 19, 3, conv_params(1, 6, 6));
}

const std::vector<Bench> kBenches = {
    {"sgemm", "float GEMM 1024^3 via kern::cpu::gemm / kern::cuda::gemm", bench_sgemm},
    {"conv2d_vgg", "eng::conv2d forward, VGG layer 64->64 3x3 pad 1 on 150x150", bench_conv2d_vgg},
    {"conv2d_dilated", "eng::conv2d forward, SSD fc6 512->1024 3x3 dilation 6 on 19x19", bench_conv2d_dilated},
};

// ---- output ----------------------------------------------------------------------------------

void print_rows(const std::vector<Row>& rows) {
  std::printf("%-16s %-6s %-42s %10s %10s %10s %10s %8s\n", "name", "device", "shape", "median_ms", "min_ms",
              "max_ms", "GFLOP/s", "%peak");
  for (const Row& r : rows) {
    if (!r.valid) {
      std::printf("%-16s %-6s %-42s  MISMATCH vs CPU (worst error %.3g x tolerance): not timed\n", r.name.c_str(),
                  r.device.c_str(), r.shape.c_str(), r.max_err);
      continue;
    }
    char peak[16] = "-";
    if (r.device == "cuda") std::snprintf(peak, sizeof peak, "%.1f", 100.0 * r.gflops() / kGpuFp32PeakGflops);
    std::printf("%-16s %-6s %-42s %10.3f %10.3f %10.3f %10.1f %8s\n", r.name.c_str(), r.device.c_str(),
                r.shape.c_str(), r.median_ms, r.min_ms, r.max_ms, r.gflops(), peak);
  }
}

void write_json(const std::string& path, const std::vector<Row>& rows, const Options& o) {
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write " + path);
  f << "{\n  \"reps\": " << o.reps << ",\n  \"warmup\": " << o.warmup << ",\n  \"rows\": [\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    f << "    {\"name\": \"" << r.name << "\", \"device\": \"" << r.device << "\", \"shape\": \"" << r.shape
      << "\", \"valid\": " << (r.valid ? "true" : "false") << ", \"median_ms\": " << r.median_ms
      << ", \"min_ms\": " << r.min_ms << ", \"max_ms\": " << r.max_ms << ", \"gflops\": " << r.gflops()
      << ", \"flops\": " << r.flops << ", \"max_err_over_tol\": " << r.max_err << "}"
      << (i + 1 < rows.size() ? "," : "") << "\n";
  }
  f << "  ]\n}\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_kernels: time the compute kernels (CPU, and CUDA when a device is present)"};
  std::string device = "all", json;
  std::vector<std::string> only;
  Options o;
  app.add_option("--device", device, "which rows to run")->check(CLI::IsMember({"cpu", "cuda", "all"}));
  app.add_option("--reps", o.reps, "timed repetitions per row")->check(CLI::PositiveNumber);
  app.add_option("--json", json, "also write the rows to this JSON file");
  app.add_option("--only", only, "comma-separated row names (default: all)")->delimiter(',');
  std::string footer = "Rows:";
  for (const Bench& b : kBenches) footer += std::string("\n  ") + b.name + ": " + b.what;
  app.footer(footer);
  CLI11_PARSE(app, argc, argv);

  try {
    o.cpu = device != "cuda";
    o.cuda = device != "cpu";
    for (const std::string& n : only) {
      bool known = std::any_of(kBenches.begin(), kBenches.end(), [&](const Bench& b) { return n == b.name; });
      if (!known) {
        std::string names;
        for (const Bench& b : kBenches) names += std::string(names.empty() ? "" : ", ") + b.name;
        throw std::runtime_error("unknown row '" + n + "' (rows: " + names + ")");
      }
    }

    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    std::printf("bench_kernels: reps %d, warm-up %d, OpenMP threads %d, CPU GEMM %s\n", o.reps, o.warmup, threads,
                kern::cpu::gemm_uses_blas() ? "OpenBLAS" : "built-in");
    if (o.cuda && !cuda::available())
      std::printf("CUDA rows skipped: %s\n",
#ifdef ENGINE_WITH_CUDA
                  "no CUDA device"
#else
                  "this build has no CUDA backend"
#endif
      );

    std::vector<Row> rows;
    for (const Bench& b : kBenches) {
      if (!only.empty() && std::find(only.begin(), only.end(), b.name) == only.end()) continue;
      b.run(o, rows);
    }
    print_rows(rows);
    if (!json.empty()) write_json(json, rows, o);
    bool all_valid = std::all_of(rows.begin(), rows.end(), [](const Row& r) { return r.valid; });
    return all_valid ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: error: %s\n", e.what());
    return 1;
  }
}
