// Shared pieces of bench_kernels: options, result rows, timing and validation helpers.
// Each apps/bench/rows_*.cpp file registers its rows itself:
//   static const bench::RegisterRows kRows(30, {{"l2norm_fwd", "what it times", run_fn}, ...});
// (the number orders the files in the output; GEMM/conv 10, core ops 20, detection 30+).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace bench {

// Peak figures of the detected device for the fraction-of-peak column (DESIGN.md section 7):
// H100 SXM (132 SMs): FP32 66.9 TFLOP/s, HBM3 3.35 TB/s; H100 PCIe (114 SMs): 51.2, 2.0;
// H200 (132 SMs): 66.9, 4.8. Zero when the device is not one of these (no %peak printed).
struct DevicePeaks {
  std::string label = "none";
  double fp32_gflops = 0;
  double hbm_gbs = 0;
};
const DevicePeaks& device_peaks();  // queried once, on first use

struct Options {
  bool cpu = true, cuda = true;
  int reps = 20, warmup = 3;
  // --precision: the precisions of the rows that have several (conv2d_cudnn_*, conv2d_dilated_*).
  std::vector<std::string> precisions = {"fp32", "tf32", "bf16"};
};

struct Row {
  std::string name, device, shape;
  double flops = 0;  // per repetition (0 when the row is memory-bound)
  double bytes = 0;  // minimum bytes moved per repetition (0 when compute-bound)
  double median_ms = 0, min_ms = 0, max_ms = 0;
  double cold_median_ms = 0;  // CUDA rows: median with the L2 cache flushed before each rep
  double max_err = 0;  // CUDA rows: worst |cuda - cpu| / (1e-4 + 1e-3 |cpu|); <= 1 passes
  bool valid = true;
  double gflops() const { return median_ms > 0 ? flops / (median_ms * 1e6) : 0; }
  double gbs() const { return median_ms > 0 ? bytes / (median_ms * 1e6) : 0; }
};

struct Bench {
  const char* name;
  const char* what;
  std::function<void(const Options&, std::vector<Row>&)> run;
};

// Runs fn `warmup` times, then `reps` timed times; CUDA work is synchronised around each.
// On CUDA it then runs `reps` more, each after writing a buffer twice the L2 size (outside
// the timed interval), and stores their median as cold_median_ms.
Row time_it(const Options& o, bool on_cuda, const std::function<void()>& fn);
// Worst ratio |actual - ref| / (1e-4 + 1e-3 |ref|) (the GEMM/conv tolerance of the tests).
double tolerance_ratio(const eng::Tensor& actual, const eng::Tensor& ref);
bool cuda_rows_possible(const Options& o);

// One engine op, timed on the CPU and, validated first, on CUDA. make_inputs(device)
// builds the inputs on a device from fixed seeds; fn computes the result to compare.
// `backward` times forward + backward of sum(y * r) instead of the forward alone.
void bench_engine_op(const Options& o, std::vector<Row>& rows, const std::string& name, const std::string& shape,
                     double flops, double bytes,
                     const std::function<std::vector<eng::Tensor>(eng::Device)>& make_inputs,
                     const std::function<eng::Tensor(const std::vector<eng::Tensor>&)>& fn);

// Every registered benchmark, ordered by the files' order keys, then registration order.
std::vector<Bench> registered_benches();
struct RegisterRows {
  RegisterRows(int order, std::vector<Bench> benches);
};

}  // namespace bench
