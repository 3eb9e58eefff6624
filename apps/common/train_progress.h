// What ssd_train reports beside the losses at each log interval (docs/training.md#what-a-run-writes):
// the estimated time to the end (EtaEstimator), the memory in use (device allocator and the
// process's resident set), and the small formatting helpers of the progress line.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <utility>

namespace app {

// Seconds as h:mm:ss ("0:04:05", "27:46:40"); "?" for a negative or non-finite value.
std::string format_hms(double seconds);

// The process's resident set in MiB: current (VmRSS) and peak (VmHWM) from
// /proc/self/status; where that file cannot be read, the peak from getrusage (ru_maxrss)
// for both. Zero when neither can be read.
struct ProcessMemory {
  double rss_mb = 0;
  double rss_peak_mb = 0;
};
ProcessMemory process_memory();

// The CUDA caching allocator's counters in MiB (engine/allocator.h): bytes handed out to
// tensors, bytes held from the driver (handed out + cached free blocks), and the high-water
// mark of `allocated` since the last eng::cuda::alloc::reset_peak() (ssd_train resets it
// once at the start of a run, so it is the run's peak, as torch.cuda.max_memory_allocated
// without a reset).
struct DeviceMemory {
  double allocated_mb = 0;
  double reserved_mb = 0;
  double peak_mb = 0;
};
DeviceMemory cuda_memory();

// The number of evaluations still to run, seen from the log line of `iteration` (written
// before that iteration's evaluation, if one is due): the periodic ones at the multiples of
// `every` in [iteration, total) (0: none) and the final one at the end of the run.
// `total` <= 0 or INT64_MAX: a run without a known length (time limit only): the periodic
// evaluations are not counted, the final one is.
int64_t evaluations_left(int64_t iteration, int64_t total, int64_t every);

// The time to the end of a run from its recent rate.
//   rate: wall seconds per iteration over the last `window` log intervals, training time
//         only (the evaluations' time is taken out of the interval it fell in), leaving out
//         the process's first interval (warm-up: first allocations, algorithm choice, graph
//         capture) unless it is the only one; weighted by iterations (sum of seconds / sum
//         of iterations).
//   ETA = iterations left x rate + evaluations left x the mean duration of the evaluations
//         this process ran (none yet: they are not counted).
class EtaEstimator {
 public:
  explicit EtaEstimator(int window = 5) : window_(window < 1 ? 1 : window) {}
  // A log interval: `iterations` steps in `seconds` of training time (evaluations excluded).
  void add_interval(int64_t iterations, double seconds);
  void add_evaluation(double seconds);
  // NaN until an interval with at least one iteration was added.
  double seconds_per_iteration() const;
  double mean_evaluation_seconds() const { return evals_ > 0 ? eval_seconds_ / evals_ : 0; }
  // NaN when the rate is unknown; `iterations_left` < 0 counts as 0.
  double eta(int64_t iterations_left, int64_t evaluations_left) const;

 private:
  int window_;
  bool have_first_ = false;
  std::pair<int64_t, double> first_{0, 0};        // the warm-up interval
  std::deque<std::pair<int64_t, double>> recent_;  // the last `window_` intervals after it
  int64_t evals_ = 0;
  double eval_seconds_ = 0;
};

// The ETA of a whole run at its log line of `iteration` (NaN: unknown, e.g. no interval yet).
// `total`: the run's length in iterations (INT64_MAX: none, a time limit ends it);
// `time_limit` (0: none) and `elapsed` (seconds since the start, as --time-limit counts
// them): the training part is at most the time left; `every` and `evaluates`: the
// evaluation schedule (evaluations_left; up to the iteration the run is expected to end at).
double run_eta(const EtaEstimator& e, int64_t iteration, int64_t total, double time_limit, double elapsed,
               int64_t every, bool evaluates);

}  // namespace app
