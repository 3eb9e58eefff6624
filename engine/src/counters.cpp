// eng::cuda::Counters: the engine's view of the kernel layer's counters (kernels/counters.h).
// Built in every configuration; without CUDA nothing counts and every field stays 0.
#include "engine/counters.h"

#include <cstdio>
#include <utility>

#include "engine/cuda_context.h"
#include "kernels/counters.h"

namespace eng::cuda {
namespace {

std::string bytes_str(uint64_t n) {
  char buf[48];
  if (n < 1024) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  else if (n < (1u << 20)) std::snprintf(buf, sizeof buf, "%.1f KiB", n / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.1f MiB", n / (1024.0 * 1024.0));
  return buf;
}

}  // namespace

Counters counters() {
  const kern::counters::Values v = kern::counters::read();
  Counters c;
  c.launches = v.launches;
  c.host_syncs = v.host_syncs;
  c.device_allocs = v.device_allocs;
  c.pinned_allocs = v.pinned_allocs;
  c.bytes_h2d = v.bytes_h2d;
  c.bytes_d2h = v.bytes_d2h;
  return c;
}

Counters Counters::operator-(const Counters& e) const {
  Counters d;
  d.launches = launches - e.launches;
  d.host_syncs = host_syncs - e.host_syncs;
  d.device_allocs = device_allocs - e.device_allocs;
  d.pinned_allocs = pinned_allocs - e.pinned_allocs;
  d.bytes_h2d = bytes_h2d - e.bytes_h2d;
  d.bytes_d2h = bytes_d2h - e.bytes_d2h;
  return d;
}

bool Counters::operator==(const Counters& o) const {
  return launches == o.launches && host_syncs == o.host_syncs && device_allocs == o.device_allocs &&
         pinned_allocs == o.pinned_allocs && bytes_h2d == o.bytes_h2d && bytes_d2h == o.bytes_d2h;
}

std::string Counters::str() const {
  return "launches " + std::to_string(launches) + ", host syncs " + std::to_string(host_syncs) + ", driver allocs " +
         std::to_string(driver_allocs()) + " (device " + std::to_string(device_allocs) + ", pinned " +
         std::to_string(pinned_allocs) + "), h2d " + bytes_str(bytes_h2d) + ", d2h " + bytes_str(bytes_d2h);
}

#ifndef ENGINE_WITH_CUDA
// A CPU-only build has no events: constructing one is the usual "no CUDA backend" error.
TimingEvent::TimingEvent() { fail_no_cuda(); }
TimingEvent::~TimingEvent() = default;
TimingEvent& TimingEvent::operator=(TimingEvent&& o) noexcept {
  std::swap(handle_, o.handle_);
  return *this;
}
void TimingEvent::record() { fail_no_cuda(); }
void TimingEvent::synchronize() { fail_no_cuda(); }
float TimingEvent::elapsed_ms(const TimingEvent&, const TimingEvent&) { fail_no_cuda(); }
#endif

}  // namespace eng::cuda
