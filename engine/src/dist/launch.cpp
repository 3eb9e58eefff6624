// Where this process stands in a distributed run, read from the launcher's environment
// (no MPI call), and the dist settings read from the environment.
//
// Families, the first whose rank variable is set wins:
//   openmpi  OMPI_COMM_WORLD_RANK, _SIZE (required), _LOCAL_RANK, _LOCAL_SIZE (optional)
//   slurm    SLURM_PROCID, SLURM_NTASKS (required), SLURM_LOCALID, SLURM_NTASKS_PER_NODE
//            (optional; the latter only when it is a single number)
//   pmix     PMIX_RANK: the size is not in the environment, so size = 0 ("known once MPI
//            starts"); local rank 0 of 1
//   torchrun RANK, WORLD_SIZE (required), LOCAL_RANK, LOCAL_WORLD_SIZE (optional)
// Every value is a plain decimal integer (no sign, no spaces) checked against its range
// before use; anything else is an eng::Error naming the variable and the value.
#include <cstdlib>
#include <string>

#include "dist_env.h"
#include "engine/dist/communicator.h"
#include "engine/error.h"

namespace eng::dist {
namespace {

constexpr int kMaxRanks = 1 << 20;  // far above any job; keeps every product in int range

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v;  // null when unset; an empty value counts as set (and is then malformed)
}

// `value` of variable `name` as an integer in [lo, hi], else an error naming both.
int parse_int(const char* name, const char* value, int lo, int hi) {
  const std::string s(value);
  bool ok = !s.empty() && s.size() <= 9;  // 9 digits cannot overflow a 64-bit sum below
  for (const char c : s) ok = ok && c >= '0' && c <= '9';
  long long v = 0;
  if (ok) {
    for (const char c : s) v = v * 10 + (c - '0');
    ok = v >= lo && v <= hi;
  }
  ENGINE_CHECK(ok, "detect_launch: ", name, "='", s, "' is not an integer in [", lo, ", ", hi, "]");
  return static_cast<int>(v);
}

int required(const char* name, const char* set_by, int lo, int hi) {
  const char* v = env(name);
  ENGINE_CHECK(v != nullptr, "detect_launch: ", set_by, " is set but ", name, " is not");
  return parse_int(name, v, lo, hi);
}

int optional(const char* name, int lo, int hi, int fallback) {
  const char* v = env(name);
  return v ? parse_int(name, v, lo, hi) : fallback;
}

// rank/size, then local_rank/local_size, from the variables named; local ones optional.
LaunchInfo read_family(const char* launcher, const char* rank_var, const char* size_var,
                       const char* local_rank_var, const char* local_size_var) {
  LaunchInfo info;
  info.launcher = launcher;
  info.size = required(size_var, rank_var, 1, kMaxRanks);
  info.rank = parse_int(rank_var, env(rank_var), 0, info.size - 1);
  info.local_size = optional(local_size_var, 1, info.size, 0);
  const int local_hi = info.local_size > 0 ? info.local_size - 1 : info.size - 1;
  info.local_rank = optional(local_rank_var, 0, local_hi, 0);
  if (info.local_size == 0) info.local_size = info.local_rank + 1;  // a lower bound only
  return info;
}

}  // namespace

LaunchInfo detect_launch() {
  if (env("OMPI_COMM_WORLD_RANK")) {
    return read_family("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                       "OMPI_COMM_WORLD_LOCAL_SIZE");
  }
  if (env("SLURM_PROCID")) {
    // SLURM_NTASKS_PER_NODE may read "2(x3)" or be absent: only a single number is used.
    LaunchInfo info;
    info.launcher = "slurm";
    info.size = required("SLURM_NTASKS", "SLURM_PROCID", 1, kMaxRanks);
    info.rank = parse_int("SLURM_PROCID", env("SLURM_PROCID"), 0, info.size - 1);
    info.local_size = 0;
    if (const char* per_node = env("SLURM_NTASKS_PER_NODE")) {
      const std::string s(per_node);
      if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) {
        info.local_size = parse_int("SLURM_NTASKS_PER_NODE", per_node, 1, info.size);
      }
    }
    const int local_hi = info.local_size > 0 ? info.local_size - 1 : info.size - 1;
    info.local_rank = optional("SLURM_LOCALID", 0, local_hi, 0);
    if (info.local_size == 0) info.local_size = info.local_rank + 1;
    return info;
  }
  if (const char* pmix = env("PMIX_RANK")) {
    LaunchInfo info;
    info.launcher = "pmix";
    info.rank = parse_int("PMIX_RANK", pmix, 0, kMaxRanks - 1);
    info.size = 0;  // not in the environment: known once MPI starts (init("mpi"))
    return info;
  }
  if (env("RANK")) {
    return read_family("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE");
  }
  return LaunchInfo{};
}

bool mpi_available() {
#ifdef ENGINE_HAVE_MPI
  return true;
#else
  return false;
#endif
}

namespace detail {

double timeout_from_env() {
  const char* v = std::getenv("ENGINE_DIST_TIMEOUT");
  if (!v) return 300.0;
  // Digits with at most one '.', at most 12 characters, checked before strtod so that
  // "nan", "inf", "1e999", signs and spaces are refused.
  const std::string s(v);
  bool ok = !s.empty() && s.size() <= 12 && s != ".";
  int dots = 0;
  for (const char c : s) {
    if (c == '.') ++dots;
    else ok = ok && c >= '0' && c <= '9';
  }
  ok = ok && dots <= 1;
  const double seconds = ok ? std::strtod(s.c_str(), nullptr) : 0.0;
  ENGINE_CHECK(ok && seconds > 0 && seconds <= 604800.0, "ENGINE_DIST_TIMEOUT='", s,
               "' is not a number of seconds in (0, 604800]");
  return seconds;
}

}  // namespace detail
}  // namespace eng::dist
