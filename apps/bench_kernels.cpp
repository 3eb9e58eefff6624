// bench_kernels: times the compute kernels on the CPU and (when present) the GPU.
//
//   bench_kernels [--device cpu|cuda|all] [--reps N] [--json FILE] [--only NAME,...] [--precision fp32,tf32,bf16]
//
// Every benchmark is one named function registered from apps/bench/rows_*.cpp. It builds its
// inputs, times the CPU version, and, when CUDA rows are wanted and a device exists, checks
// the CUDA result against the CPU one before timing it (a wrong kernel gets no figure).
// Times are warm (inputs resident in cache/HBM, no flush): median, min and max over the
// repetitions after a short warm-up. To add a row: write a function like bench_sgemm in a
// rows file and register it there.
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

#include "engine/cpu_threads.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "bench/bench_common.h"
#include "common/cli_rules.h"
#include "kernels/gemm.h"

using namespace eng;
using namespace bench;

namespace {

// ---- output ----------------------------------------------------------------------------------

// Compute-bound rows report GFLOP/s, memory-bound rows GB/s; %peak compares CUDA rows with
// the FP32 or HBM peak (CPU rows have no peak figure).
void print_rows(const std::vector<Row>& rows) {
  std::printf("%-22s %-6s %-44s %10s %10s %10s %10s %14s %7s\n", "name", "device", "shape", "median_ms", "min_ms",
              "max_ms", "cold_ms", "throughput", "%peak");
  for (const Row& r : rows) {
    if (!r.valid) {
      std::printf("%-22s %-6s %-44s  MISMATCH vs CPU (worst error %.3g x tolerance): not timed\n", r.name.c_str(),
                  r.device.c_str(), r.shape.c_str(), r.max_err);
      continue;
    }
    const bool by_flops = r.flops > 0;
    char tput[32], peak[16] = "-", cold[16] = "-";
    if (r.device == "cuda") std::snprintf(cold, sizeof cold, "%.3f", r.cold_median_ms);
    std::snprintf(tput, sizeof tput, "%.1f %s", by_flops ? r.gflops() : r.gbs(), by_flops ? "GFLOP/s" : "GB/s");
    const DevicePeaks& dp = device_peaks();
    const double ceiling = by_flops ? dp.fp32_gflops : dp.hbm_gbs;
    if (r.device == "cuda" && ceiling > 0)
      std::snprintf(peak, sizeof peak, "%.1f", 100.0 * (by_flops ? r.gflops() : r.gbs()) / ceiling);
    std::printf("%-22s %-6s %-44s %10.3f %10.3f %10.3f %10s %14s %7s\n", r.name.c_str(), r.device.c_str(),
                r.shape.c_str(), r.median_ms, r.min_ms, r.max_ms, cold, tput, peak);
  }
}

void write_json(const std::string& path, const std::vector<Row>& rows, const Options& o) {
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write " + path);
  f << "{\n  \"reps\": " << o.reps << ",\n  \"warmup\": " << o.warmup << ",\n  \"device\": \""
    << device_peaks().label << "\",\n  \"rows\": [\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    f << "    {\"name\": \"" << r.name << "\", \"device\": \"" << r.device << "\", \"shape\": \"" << r.shape
      << "\", \"valid\": " << (r.valid ? "true" : "false") << ", \"median_ms\": " << r.median_ms
      << ", \"min_ms\": " << r.min_ms << ", \"max_ms\": " << r.max_ms << ", \"cold_median_ms\": " << r.cold_median_ms << ", \"gflops\": " << r.gflops()
      << ", \"gbs\": " << r.gbs() << ", \"flops\": " << r.flops << ", \"bytes\": " << r.bytes
      << ", \"max_err_over_tol\": " << r.max_err << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
  }
  f << "  ]\n}\n";
  if (!f) throw std::runtime_error("error writing " + path);
}

}  // namespace

int main(int argc, char** argv) {
  // OpenMP threads and their waiting, OpenBLAS single-threaded (engine/cpu_threads.h).
  if (!eng::init_cpu_threads(argc, argv, "bench_kernels")) return 1;
  const std::vector<Bench> kBenches = registered_benches();
  CLI::App app{"bench_kernels: time the compute kernels (CPU, and CUDA when a device is present)"};
  std::string device = "all", json;
  std::vector<std::string> only;
  Options o;
  app.add_option("--device", device, "which rows to run")->check(CLI::IsMember({"cpu", "cuda", "all"}));
  app.add_option("--reps", o.reps, "timed repetitions per row");
  app.add_option("--json", json, "also write the rows to this JSON file");
  app.add_option("--only", only, "comma-separated row names (default: all)")->delimiter(',');
  app.add_option("--precision", o.precisions, "precisions of the multi-precision rows, e.g. fp32,tf32 (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}));
  std::string footer = "Rows:";
  for (const Bench& b : kBenches) footer += std::string("\n  ") + b.name + ": " + b.what;
  app.footer(footer);
  ::app::apply_rules(app, ::app::bench_kernels_rules());  // numbers checked on their text (common/config_check.h)
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "%s\n", ::app::cli_error_line("bench_kernels", e).c_str());
    return 1;
  }

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
    if (cuda::available()) std::printf("device: %s\n", device_peaks().label.c_str());
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
