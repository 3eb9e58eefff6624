#include "common/train_progress.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>

#include "engine/allocator.h"

namespace app {

std::string format_hms(double seconds) {
  // Beyond ~114 years the count would not fit the printf below; such an estimate is noise.
  if (!std::isfinite(seconds) || seconds < 0 || seconds > 3.6e12) return "?";
  const long long s = std::llround(seconds);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

namespace {

// "VmRSS:\t  123456 kB" -> 123456 (kB); -1 when the line is not of that form.
double status_kb(const std::string& line, const char* key) {
  const size_t n = std::strlen(key);
  if (line.compare(0, n, key) != 0) return -1;
  const char* p = line.c_str() + n;
  char* end = nullptr;
  const double v = std::strtod(p, &end);
  if (end == p || !std::isfinite(v) || v < 0) return -1;
  return v;
}

}  // namespace

ProcessMemory process_memory() {
  ProcessMemory m;
  double rss_kb = -1, hwm_kb = -1;
  std::ifstream in("/proc/self/status");
  for (std::string line; in && std::getline(in, line);) {
    if (const double v = status_kb(line, "VmRSS:"); v >= 0) rss_kb = v;
    if (const double v = status_kb(line, "VmHWM:"); v >= 0) hwm_kb = v;
  }
  if (rss_kb < 0 || hwm_kb < 0) {
    rusage u{};
    if (::getrusage(RUSAGE_SELF, &u) == 0 && u.ru_maxrss > 0) {  // Linux: kB
      if (hwm_kb < 0) hwm_kb = static_cast<double>(u.ru_maxrss);
      if (rss_kb < 0) rss_kb = hwm_kb;
    }
  }
  m.rss_mb = rss_kb > 0 ? rss_kb / 1024 : 0;
  m.rss_peak_mb = hwm_kb > 0 ? hwm_kb / 1024 : 0;
  return m;
}

DeviceMemory cuda_memory() {
  const eng::MemoryStats s = eng::cuda::alloc::stats();
  constexpr double kMiB = 1 << 20;
  return {static_cast<double>(s.allocated) / kMiB, static_cast<double>(s.reserved) / kMiB,
          static_cast<double>(s.peak_allocated) / kMiB};
}

int64_t evaluations_left(int64_t iteration, int64_t total, int64_t every) {
  const bool bounded = total > 0 && total != std::numeric_limits<int64_t>::max();
  if (!bounded) return 1;
  if (iteration > total) return 0;
  int64_t n = 1;  // the final evaluation
  if (every > 0 && total > 1) {
    // multiples of `every` in [max(iteration, 1), total - 1]
    const int64_t lo = std::max<int64_t>(iteration, 1);
    n += (total - 1) / every - (lo - 1) / every;
  }
  return n;
}

void EtaEstimator::add_interval(int64_t iterations, double seconds) {
  if (iterations <= 0 || !std::isfinite(seconds) || seconds < 0) return;
  if (!have_first_) {
    have_first_ = true;
    first_ = {iterations, seconds};
    return;
  }
  recent_.emplace_back(iterations, seconds);
  while (static_cast<int>(recent_.size()) > window_) recent_.pop_front();
}

void EtaEstimator::add_evaluation(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return;
  ++evals_;
  eval_seconds_ += seconds;
}

double EtaEstimator::seconds_per_iteration() const {
  if (!have_first_) return std::numeric_limits<double>::quiet_NaN();
  if (recent_.empty()) return first_.second / static_cast<double>(first_.first);
  int64_t its = 0;
  double secs = 0;
  for (const auto& [n, s] : recent_) {
    its += n;
    secs += s;
  }
  return secs / static_cast<double>(its);
}

double EtaEstimator::eta(int64_t iterations_left, int64_t evaluations_left) const {
  const double rate = seconds_per_iteration();
  if (std::isnan(rate)) return rate;
  const double its = static_cast<double>(std::max<int64_t>(iterations_left, 0));
  const double evals = static_cast<double>(std::max<int64_t>(evaluations_left, 0));
  return its * rate + evals * mean_evaluation_seconds();
}

double run_eta(const EtaEstimator& e, int64_t iteration, int64_t total, double time_limit, double elapsed,
               int64_t every, bool evaluates) {
  const double rate = e.seconds_per_iteration();
  const bool bounded = total > 0 && total != std::numeric_limits<int64_t>::max();
  if (std::isnan(rate) || (!bounded && time_limit <= 0)) return std::numeric_limits<double>::quiet_NaN();
  double train = bounded ? static_cast<double>(std::max<int64_t>(total - iteration, 0)) * rate
                         : std::numeric_limits<double>::infinity();
  int64_t end = bounded ? total : std::numeric_limits<int64_t>::max();
  if (time_limit > 0) {
    const double left = std::max(0.0, time_limit - elapsed);
    if (left < train) {
      train = left;
      // The iteration the clock is expected to stop at (the run then evaluates there).
      const double more = rate > 0 ? std::ceil(left / rate) : 0;
      end = iteration + static_cast<int64_t>(std::min(more, 1e15));
      if (bounded) end = std::min(end, total);
    }
  }
  const int64_t evals = evaluates ? evaluations_left(iteration, end, every) : 0;
  return train + static_cast<double>(evals) * e.mean_evaluation_seconds();
}

}  // namespace app
