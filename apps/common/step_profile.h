// `ssd_train --profile N`: the cost of one training step after N warm-up steps, per phase
// (data wait, forward, loss, backward, optimizer), with the device counters
// (engine/counters.h). On CUDA the phase times come from CUDA events on the compute stream
// (device time between the phase boundaries); the host's wall clock per phase is given
// too (on the CPU it is the only timer).
//
//   StepProfiler p(device.is_cuda());
//   p.begin();  ... p.mark(Phase::data); ... p.mark(Phase::optimizer);
//   StepProfile r = p.finish();   // counters first, then one host sync to read the events
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/counters.h"

namespace app {

enum class Phase { data, forward, loss, backward, optimizer };
constexpr int kNumPhases = 5;
const char* phase_name(Phase p);  // "data", "forward", "loss", "backward", "optimizer"

struct StepProfile {
  eng::cuda::Counters cost;             // what the step queued (before the profiler's own sync)
  std::array<eng::cuda::Counters, kNumPhases> phase_cost;  // the same per phase
  std::array<double, kNumPhases> ms{};  // per phase: CUDA events on cuda, wall clock on cpu
  std::array<double, kNumPhases> host_ms{};  // per phase, the host's wall clock
  std::string timer;                    // "cuda_events" or "wall_clock"
  double step_ms() const;               // sum of ms
  // {"event":"profile","iteration":...,"launches":...,"host_syncs":...,"device_allocs":...,
  //  "pinned_allocs":...,"bytes_h2d":...,"bytes_d2h":...,"timer":...,"data_ms":...,...,
  //  "step_ms":...,"host_data_ms":...,...,
  //  "phases":{"data":{"launches":...,"host_syncs":...,"driver_allocs":...,"bytes_h2d":...,
  //  "bytes_d2h":...},...}}
  nlohmann::json to_json(int64_t iteration) const;
  std::string str(int64_t iteration) const;  // the lines ssd_train prints
};

class StepProfiler {
 public:
  explicit StepProfiler(bool cuda);
  ~StepProfiler();
  void begin();            // the step starts (counters snapshot, first timestamp)
  void mark(Phase ended);  // `ended` is over; phases must be marked in order, each once
  StepProfile finish();    // after the last phase: counters, then the times

 private:
  bool cuda_;
  int next_ = 0;
  std::vector<eng::cuda::Counters> marks_;                    // begin + one per phase
  std::vector<std::chrono::steady_clock::time_point> host_;  // begin + one per phase
  std::vector<eng::cuda::TimingEvent> events_;                      // the same, on the stream
};

}  // namespace app
