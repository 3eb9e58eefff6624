#include "common/step_profile.h"

#include <cstdio>

#include "engine/error.h"

namespace app {

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::data: return "data";
    case Phase::forward: return "forward";
    case Phase::loss: return "loss";
    case Phase::backward: return "backward";
    case Phase::optimizer: return "optimizer";
  }
  return "?";
}

double StepProfile::step_ms() const {
  double s = 0;
  for (double v : ms) s += v;
  return s;
}

nlohmann::json StepProfile::to_json(int64_t iteration) const {
  nlohmann::json j = {{"event", "profile"},
                      {"iteration", iteration},
                      {"launches", cost.launches},
                      {"host_syncs", cost.host_syncs},
                      {"device_allocs", cost.device_allocs},
                      {"pinned_allocs", cost.pinned_allocs},
                      {"bytes_h2d", cost.bytes_h2d},
                      {"bytes_d2h", cost.bytes_d2h},
                      {"timer", timer},
                      {"step_ms", step_ms()}};
  nlohmann::json phases = nlohmann::json::object();
  for (int i = 0; i < kNumPhases; ++i) {
    const size_t k = static_cast<size_t>(i);
    const std::string name = phase_name(static_cast<Phase>(i));
    j[name + "_ms"] = ms[k];
    j["host_" + name + "_ms"] = host_ms[k];
    const eng::cuda::Counters& c = phase_cost[k];
    phases[name] = {{"launches", c.launches},
                    {"host_syncs", c.host_syncs},
                    {"driver_allocs", c.driver_allocs()},
                    {"bytes_h2d", c.bytes_h2d},
                    {"bytes_d2h", c.bytes_d2h}};
  }
  j["phases"] = phases;
  return j;
}

std::string StepProfile::str(int64_t iteration) const {
  std::string s = "profile of iteration " + std::to_string(iteration) + ": " + cost.str() + "\n  " +
                  (timer == "cuda_events" ? "device time (CUDA events)" : "wall clock") + ":";
  char buf[64];
  for (int i = 0; i < kNumPhases; ++i) {
    std::snprintf(buf, sizeof buf, " %s %.3f ms", phase_name(static_cast<Phase>(i)), ms[static_cast<size_t>(i)]);
    s += buf;
  }
  std::snprintf(buf, sizeof buf, "; step %.3f ms", step_ms());
  s += buf;
  s += "\n  launches / host syncs per phase:";
  for (int i = 0; i < kNumPhases; ++i) {
    const eng::cuda::Counters& c = phase_cost[static_cast<size_t>(i)];
    std::snprintf(buf, sizeof buf, " %s %llu/%llu", phase_name(static_cast<Phase>(i)),
                  static_cast<unsigned long long>(c.launches), static_cast<unsigned long long>(c.host_syncs));
    s += buf;
  }
  if (timer == "cuda_events") {
    s += "\n  host wall clock:";
    for (int i = 0; i < kNumPhases; ++i) {
      std::snprintf(buf, sizeof buf, " %s %.3f ms", phase_name(static_cast<Phase>(i)),
                    host_ms[static_cast<size_t>(i)]);
      s += buf;
    }
  }
  return s;
}

StepProfiler::StepProfiler(bool cuda) : cuda_(cuda) {
  if (cuda_) {
    for (int i = 0; i <= kNumPhases; ++i) events_.emplace_back();  // created before the step
  }
}

StepProfiler::~StepProfiler() = default;

void StepProfiler::begin() {
  ENGINE_CHECK(next_ == 0 && host_.empty(), "StepProfiler::begin: called twice");
  marks_.push_back(eng::cuda::counters());
  host_.push_back(std::chrono::steady_clock::now());
  if (cuda_) events_[0].record();
}

void StepProfiler::mark(Phase ended) {
  ENGINE_CHECK(!host_.empty(), "StepProfiler::mark: begin() was not called");
  ENGINE_CHECK(static_cast<int>(ended) == next_, "StepProfiler::mark: phase ", phase_name(ended),
               " marked out of order");
  ++next_;
  marks_.push_back(eng::cuda::counters());
  host_.push_back(std::chrono::steady_clock::now());
  if (cuda_) events_[static_cast<size_t>(next_)].record();
}

StepProfile StepProfiler::finish() {
  ENGINE_CHECK(next_ == kNumPhases, "StepProfiler::finish: only ", next_, " of ", kNumPhases, " phases marked");
  StepProfile r;
  // Counters from the marks, all taken before the sync below (which is not the step's).
  r.cost = marks_.back() - marks_.front();
  for (int i = 0; i < kNumPhases; ++i) {
    const size_t k = static_cast<size_t>(i);
    r.phase_cost[k] = marks_[k + 1] - marks_[k];
    r.host_ms[k] = std::chrono::duration<double, std::milli>(host_[k + 1] - host_[k]).count();
  }
  if (cuda_) {
    events_.back().synchronize();
    for (int i = 0; i < kNumPhases; ++i) {
      const size_t k = static_cast<size_t>(i);
      r.ms[k] = eng::cuda::TimingEvent::elapsed_ms(events_[k], events_[k + 1]);
    }
    r.timer = "cuda_events";
  } else {
    r.ms = r.host_ms;
    r.timer = "wall_clock";
  }
  return r;
}

}  // namespace app
