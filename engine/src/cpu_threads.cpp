// CPU thread count, OpenMP wait policy and OpenBLAS threads (engine/cpu_threads.h).
#include "engine/cpu_threads.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/error.h"
#include "kernels/gemm.h"

namespace eng {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// A whole decimal integer in [lo, hi], or false (no sign games, no overflow: checked on the text).
bool parse_count(const std::string& text, long long lo, long long hi, long long& out) {
  const std::string t = trim(text);
  size_t i = t.size() > 1 && t[0] == '-' ? 1 : 0;
  if (t.empty() || i == t.size() || t.size() - i > 18) return false;
  for (size_t k = i; k < t.size(); ++k)
    if (t[k] < '0' || t[k] > '9') return false;
  out = std::stoll(t);
  return out >= lo && out <= hi;
}

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
  return std::max(1, CPU_COUNT(&set));
}

// Mount points of the cgroup v2 hierarchy and of the v1 hierarchy with the cpu controller,
// from /proc/self/mountinfo (field 5 the mount point, after " - " the type and options).
void cgroup_mounts(std::string& v2, std::string& v1_cpu) {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::vector<std::string> f;
    for (std::string w; ls >> w;) f.push_back(w);
    const auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || f.end() - dash < 4) continue;
    const std::string& type = *(dash + 1);
    const std::string& opts = *(dash + 3);
    if (type == "cgroup2" && v2.empty()) v2 = f[4];
    if (type == "cgroup" && v1_cpu.empty()) {
      std::istringstream os(opts);
      for (std::string o; std::getline(os, o, ',');)
        if (o == "cpu") v1_cpu = f[4];
    }
  }
}

// The tightest quota from `dir` up to `root` (a parent's limit binds its children too).
template <typename ReadQuota>
double tightest_quota(const std::string& root, std::string rel, ReadQuota read) {
  double best = 0;
  for (;;) {
    const double q = read(root + rel);
    if (q > 0 && (best == 0 || q < best)) best = q;
    if (rel.empty() || rel == "/") break;
    const size_t slash = rel.find_last_of('/');
    rel = slash == std::string::npos || slash == 0 ? std::string() : rel.substr(0, slash);
  }
  return best;
}

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

std::string g_wait = "runtime default";  // what cpu_threads_summary reports
CpuBudget g_budget;

}  // namespace

double cgroup_v2_quota(const std::string& cpu_max) {
  std::istringstream ss(cpu_max);
  std::string quota, period, extra;
  ss >> quota >> period;
  ENGINE_CHECK(!quota.empty() && !(ss >> extra), "cgroup cpu.max: expected '<quota|max> [period]', got '",
               trim(cpu_max), "'");
  long long p = 100000, q = 0;
  if (!period.empty()) ENGINE_CHECK(parse_count(period, 1, 1000000000000LL, p), "cgroup cpu.max: bad period '", period, "'");
  if (quota == "max") return 0;
  ENGINE_CHECK(parse_count(quota, 1, 1000000000000000LL, q), "cgroup cpu.max: bad quota '", quota, "'");
  return static_cast<double>(q) / static_cast<double>(p);
}

double cgroup_v1_quota(const std::string& quota_us, const std::string& period_us) {
  long long q = 0, p = 0;
  ENGINE_CHECK(parse_count(quota_us, -1, 1000000000000000LL, q) && q != 0, "cgroup cpu.cfs_quota_us: bad value '",
               trim(quota_us), "'");
  ENGINE_CHECK(parse_count(period_us, 1, 1000000000000LL, p), "cgroup cpu.cfs_period_us: bad value '",
               trim(period_us), "'");
  return q < 0 ? 0 : static_cast<double>(q) / static_cast<double>(p);
}

double cgroup_quota(const std::string& proc_cgroup, const std::string& v2_mount, const std::string& v1_mount) {
  const std::string& v2 = v2_mount;
  const std::string& v1 = v1_mount;
  double best = 0;
  std::istringstream in(proc_cgroup);
  for (std::string line; std::getline(in, line);) {  // "0::/path" (v2), "3:cpu,cpuacct:/path" (v1)
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string ctrl = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    double q = 0;
    try {
      if (line.compare(0, a, "0") == 0 && ctrl.empty() && !v2.empty()) {
        q = tightest_quota(v2, path, [](const std::string& d) {
          const std::string t = read_text(d + "/cpu.max");
          return t.empty() ? 0.0 : cgroup_v2_quota(t);
        });
      } else if (!v1.empty() && ("," + ctrl + ",").find(",cpu,") != std::string::npos) {
        q = tightest_quota(v1, path, [](const std::string& d) {
          const std::string t = read_text(d + "/cpu.cfs_quota_us"), p = read_text(d + "/cpu.cfs_period_us");
          return t.empty() || p.empty() ? 0.0 : cgroup_v1_quota(t, p);
        });
      }
    } catch (const Error&) {
      q = 0;  // a file we cannot read as a quota does not limit the thread count
    }
    if (q > 0 && (best == 0 || q < best)) best = q;
  }
  return best;
}

CpuBudget cpu_budget() {
  CpuBudget b;
  b.affinity = affinity_cpus();
  std::string v2, v1;
  cgroup_mounts(v2, v1);
  b.quota = cgroup_quota(read_text("/proc/self/cgroup"), v2, v1);
  b.threads = b.affinity;
  if (b.quota > 0) b.threads = std::min(b.threads, static_cast<int>(std::min(4096.0, std::ceil(b.quota))));
  b.threads = std::max(1, b.threads);
  return b;
}

std::pair<std::string, std::string> spin_env(const std::string& mode) {
  if (mode == "passive") return {"OMP_WAIT_POLICY", "PASSIVE"};
  if (mode == "short") return {"GOMP_SPINCOUNT", kShortSpinCount};
  if (mode == "active") return {"OMP_WAIT_POLICY", "ACTIVE"};
  ENGINE_FAIL("ENGINE_CPU_SPIN: '", mode, "' is not passive, short or active");
}

bool init_cpu_threads(int argc, char** argv, const char* program) {
  (void)argc;
  try {
    // 1. The environment that libgomp and OpenBLAS read when loaded. A user's own setting
    // of the wait (OMP_WAIT_POLICY, GOMP_SPINCOUNT) is kept.
    const std::string mode = env_set("ENGINE_CPU_SPIN") ? std::getenv("ENGINE_CPU_SPIN") : "passive";
    const auto wait = spin_env(mode);
    bool changed = false;
    if (env_set("ENGINE_CPU_REEXEC")) {  // the second start: the first one set the variables
      g_wait = std::getenv("ENGINE_CPU_REEXEC");
    } else if (env_set("OMP_WAIT_POLICY") || env_set("GOMP_SPINCOUNT")) {
      g_wait = env_set("OMP_WAIT_POLICY") ? std::string("OMP_WAIT_POLICY=") + std::getenv("OMP_WAIT_POLICY")
                                          : std::string("GOMP_SPINCOUNT=") + std::getenv("GOMP_SPINCOUNT");
    } else {
      ::setenv(wait.first.c_str(), wait.second.c_str(), 1);
      g_wait = mode + " (" + wait.first + "=" + wait.second + ")";
      changed = true;
    }
    // OpenBLAS then starts no threads of its own; alone this is not worth a second start
    // (kernels/cpu/gemm.cpp sets it single-threaded at the first product anyway).
    if (!env_set("OPENBLAS_NUM_THREADS")) ::setenv("OPENBLAS_NUM_THREADS", "1", 1);
    // libgomp read its variables in its constructor; run again with them (same pid, args).
    // ENGINE_CPU_REEXEC guards against a loop should a variable not stick.
    if (changed && !env_set("ENGINE_CPU_REEXEC")) {
      ::setenv("ENGINE_CPU_REEXEC", g_wait.c_str(), 1);
      ::execv("/proc/self/exe", argv);
      // execv failed (no /proc): go on with the runtime's defaults, as before.
      g_wait = "runtime default (re-exec failed: " + std::string(std::strerror(errno)) + ")";
    }
    ::unsetenv("ENGINE_CPU_REEXEC");  // not inherited by programs this one starts

    // 2. The thread count.
    g_budget = cpu_budget();
    int threads = 0;
    if (env_set("ENGINE_CPU_THREADS")) {
      long long n = 0;
      ENGINE_CHECK(parse_count(std::getenv("ENGINE_CPU_THREADS"), 1, 1024, n), "ENGINE_CPU_THREADS: '",
                   std::getenv("ENGINE_CPU_THREADS"), "' is not an integer in 1..1024");
      threads = static_cast<int>(n);
    } else if (!env_set("OMP_NUM_THREADS")) {
      threads = g_budget.threads;
    }
    set_cpu_threads(threads);
    if (env_set("ENGINE_CPU_VERBOSE")) std::fprintf(stderr, "%s: %s\n", program, cpu_threads_summary().c_str());
    return true;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return false;
  }
}

void set_cpu_threads(int n) {
#ifdef _OPENMP
  if (n >= 1) omp_set_num_threads(n);
#else
  (void)n;
#endif
}

int cpu_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

std::string cpu_threads_summary() {
  std::ostringstream s;
  s << cpu_threads() << " OpenMP threads (affinity " << g_budget.affinity << " CPUs, cgroup quota ";
  if (g_budget.quota > 0) s << g_budget.quota << " CPUs";
  else s << "none";
  s << "), wait " << g_wait;
  const std::string core = kern::cpu::blas_core_name();
  if (!core.empty()) s << ", OpenBLAS kernels " << core;
  return s.str();
}

}  // namespace eng
