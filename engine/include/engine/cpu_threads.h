// CPU threads that share a machine well (docs/training.md, "CPU threads and memory").
//
// Three decisions, made once at the start of a program (init_cpu_threads, first thing in
// main of every program that computes on the CPU):
//  - how many OpenMP threads: the CPUs the process may use, the smaller of its affinity
//    mask (sched_getaffinity) and its cgroup's CPU quota (v2 cpu.max, v1 cfs_quota_us /
//    cfs_period_us, the tightest along the cgroup's ancestors), rounded up. ENGINE_CPU_THREADS
//    or OMP_NUM_THREADS (set by the user) win; --threads N on a command line wins over all.
//  - how OpenMP threads wait at the end of a parallel region: ENGINE_CPU_SPIN =
//    passive (sleep at once; the default), short (spin briefly, then sleep) or active (spin
//    until the others arrive). A thread spinning for a partner that another process has
//    descheduled burns the core that partner needs: training collapsed to a third of its
//    speed beside one busy process (docs/training.md has the measurements). A user's own
//    OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept.
//  - OpenBLAS single-threaded (OPENBLAS_NUM_THREADS=1 unless set): large products are split
//    over the OpenMP threads instead (kernels/cpu/gemm.cpp), one pool, not two.
// libgomp and OpenBLAS read their environment when they are loaded, before main, so when a
// variable must change the program executes itself again (once, same pid and arguments).
#pragma once
#include <string>
#include <utility>

namespace eng {

// The CPUs this process may use.
struct CpuBudget {
  int affinity = 0;    // CPUs in the affinity mask
  double quota = 0;    // CPUs' worth of time the cgroup grants per period; 0: no quota
  int threads = 1;     // min(affinity, ceil(quota)), at least 1
};
CpuBudget cpu_budget();

// The tightest CPU quota in CPUs (0: none) of a process whose /proc/self/cgroup reads
// `proc_cgroup`, the cgroup2 hierarchy mounted at `v2_mount` and v1's cpu controller at
// `v1_mount` ("" where absent): the cgroup's own limit and its ancestors'. A file that does
// not read as a quota limits nothing.
double cgroup_quota(const std::string& proc_cgroup, const std::string& v2_mount, const std::string& v1_mount);

// The cgroup files' texts as CPUs (0: no quota). v2 cpu.max: "max 100000" or "150000 100000";
// v1: cpu.cfs_quota_us ("-1" or microseconds) and cpu.cfs_period_us. Throws eng::Error on
// malformed text.
double cgroup_v2_quota(const std::string& cpu_max);
double cgroup_v1_quota(const std::string& quota_us, const std::string& period_us);

// The environment a wait mode sets: "passive" -> OMP_WAIT_POLICY=PASSIVE, "short" ->
// GOMP_SPINCOUNT=<kShortSpinCount>, "active" -> OMP_WAIT_POLICY=ACTIVE. Throws on another name.
constexpr const char* kShortSpinCount = "1000";
std::pair<std::string, std::string> spin_env(const std::string& mode);

// Sets up the process as described above; call first in main, before any OpenMP region.
// May replace the process by itself (execv) once. Returns false after printing one line
// "<program>: ENGINE_CPU_THREADS: ..." for a malformed setting (the caller exits 1).
bool init_cpu_threads(int argc, char** argv, const char* program);

// --threads N (N >= 1) for the rest of the run; 0 keeps the current count.
void set_cpu_threads(int n);
int cpu_threads();  // OpenMP threads of the next parallel region (1 without OpenMP)

// One line for logs: "2 OpenMP threads (affinity 2 CPUs, cgroup quota none), wait passive (OMP_WAIT_POLICY=PASSIVE)";
// init_cpu_threads prints it to stderr when ENGINE_CPU_VERBOSE is set.
std::string cpu_threads_summary();

}  // namespace eng
