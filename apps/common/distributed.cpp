#include "common/distributed.h"

#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine/allocator.h"
#include "engine/cuda_context.h"
#include "engine/error.h"

namespace app {

namespace {

// An error every rank throws after the start-up agreement; rank 0's copy is printed, the
// others' are not (the apps ask reported_elsewhere()).
class ReportedByRoot : public eng::Error {
 public:
  explicit ReportedByRoot(const std::string& m) : eng::Error(m) {}
};

std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
std::string string_of(const std::vector<uint8_t>& b) { return std::string(b.begin(), b.end()); }

// The first "key=value" line where `theirs` differs from `mine`, described for a message.
std::string first_difference(const std::string& mine, const std::string& theirs, int rank) {
  auto lines = [](const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
      const size_t end = s.find('\n', start);
      out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
      if (end == std::string::npos) break;
      start = end + 1;
    }
    return out;
  };
  const auto a = lines(mine), b = lines(theirs);
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const std::string x = i < a.size() ? a[i] : "", y = i < b.size() ? b[i] : "";
    if (x == y) continue;
    const std::string key = (x.empty() ? y : x).substr(0, (x.empty() ? y : x).find('='));
    auto value = [](const std::string& line) {
      const size_t eq = line.find('=');
      return eq == std::string::npos ? std::string("(absent)") : "'" + line.substr(eq + 1) + "'";
    };
    return key + " is " + value(y) + " on rank " + std::to_string(rank) + " but " + value(x) + " on rank 0";
  }
  return "";
}

}  // namespace

FaultInjection fault_from_env() {
  FaultInjection f;
  const char* v = std::getenv("ENGINE_TEST_DIST_FAULT");
  if (v == nullptr || *v == 0) return f;
  const std::string s = v;
  const size_t a = s.find(':'), b = a == std::string::npos ? a : s.find(':', a + 1);
  bool ok = b != std::string::npos;
  if (ok) {
    f.kind = s.substr(0, a);
    char* end = nullptr;
    const std::string rs = s.substr(a + 1, b - a - 1), is = s.substr(b + 1);
    const long r = std::strtol(rs.c_str(), &end, 10);
    ok = !rs.empty() && *end == 0 && r >= 0 && r < (1 << 20);
    const long long it = std::strtoll(is.c_str(), &end, 10);
    ok = ok && !is.empty() && *end == 0 && it >= 1 && it < (1LL << 50);
    ok = ok && (f.kind == "kill" || f.kind == "hang" || f.kind == "nan" || f.kind == "throw");
    f.rank = static_cast<int>(r);
    f.iteration = it;
  }
  ENGINE_CHECK(ok, "ENGINE_TEST_DIST_FAULT is '", s, "', not <kill|hang|nan|throw>:<rank>:<iteration>");
  return f;
}

std::string Distributed::who() const { return active() ? "rank " + std::to_string(rank()) + ": " : ""; }

bool reported_elsewhere(const std::exception& e) { return dynamic_cast<const ReportedByRoot*>(&e) != nullptr; }

void select_local_gpu(int rank, int local_rank) {
  const int n = eng::cuda::device_count();
  ENGINE_CHECK(local_rank < n, "rank ", rank, ": local rank ", local_rank, " has no GPU (this machine shows ", n,
               n == 1 ? " GPU" : " GPUs", "; start at most that many ranks per machine)");
  eng::cuda::set_device_index(local_rank);
}

Distributed start_distributed(const DistOptions& options, const std::string& device,
                              const std::vector<std::string>& config_lines) {
  Distributed d;
  ENGINE_CHECK(options.mode == "auto" || options.mode == "none", "--dist must be auto or none, got '", options.mode,
               "'");
  ENGINE_CHECK(options.backend == "auto" || options.backend == "nccl" || options.backend == "mpi",
               "--dist-backend must be auto, nccl or mpi, got '", options.backend, "'");
  if (options.mode == "none") return d;
  d.launch_ = eng::dist::detect_launch();
  if (d.launch_.size == 1) return d;  // no launcher, or one rank: exactly the single-process run
  ENGINE_CHECK(eng::dist::mpi_available(), "started as rank ", d.launch_.rank, " of ", d.launch_.size, " by ",
               d.launch_.launcher,
               ", but distributed training is unavailable: this build has no MPI (install openmpi-bin "
               "libopenmpi-dev and rebuild, or run with --dist none)");
  std::unique_ptr<eng::dist::Communicator> host = eng::dist::init("mpi");
  host->set_timeout(options.timeout_s);
  const int rank = host->rank();

  // Local checks; their results travel with the configuration so that every rank learns of
  // any rank's problem at the same collective (nobody waits for a rank that gave up).
  std::string problem;
  std::string backend = options.backend;
  if (backend == "auto") backend = device == "cuda" ? "nccl" : "mpi";
  try {
    if (backend == "nccl") {
      ENGINE_CHECK(device == "cuda", "--dist-backend nccl needs --device cuda (NCCL reduces GPU tensors)");
      ENGINE_CHECK(eng::dist::nccl_available(),
                   "--device cuda with several ranks needs NCCL, and this build has none (MPI only): rebuild with "
                   "NCCL, or pass --dist-backend mpi (slower: through host memory)");
    }
    if (device == "cuda") select_local_gpu(rank, d.launch_.local_rank);
  } catch (const std::exception& e) {
    problem = e.what();
  }
  std::string config;
  for (const std::string& line : config_lines) config += line + "\n";
  config += "world_size=" + std::to_string(host->size()) + "\n";
  const std::string mine = (problem.empty() ? "ok" : "error") + std::string("\n") + problem + "\n" + config;
  const std::vector<std::vector<uint8_t>> all = host->all_gather_bytes(bytes_of(mine));

  std::string first;  // the first problem of any rank, as rank 0 reports it
  const std::string root_config = [&] {
    const std::string s = string_of(all[0]);
    const size_t a = s.find('\n'), b = s.find('\n', a + 1);
    return s.substr(b + 1);
  }();
  for (size_t r = 0; r < all.size() && first.empty(); ++r) {
    const std::string s = string_of(all[r]);
    const size_t a = s.find('\n'), b = s.find('\n', a + 1);
    if (s.compare(0, a, "error") == 0) {
      const std::string msg = s.substr(a + 1, b - a - 1);
      first = msg.rfind("rank ", 0) == 0 ? msg : "rank " + std::to_string(r) + ": " + msg;
    } else if (s.substr(b + 1) != root_config) {
      first = "the ranks were started with different arguments: " +
              first_difference(root_config, s.substr(b + 1), static_cast<int>(r));
    }
  }
  if (!first.empty()) {
    // Every rank got here (the all-gather above): they leave MPI together, then exit 1.
    host.reset();
    eng::dist::finalize();
    if (rank == 0) throw eng::Error(first);
    throw ReportedByRoot(first);
  }
  if (backend == "nccl") {
    d.comm_ = eng::dist::make_nccl(std::move(host));
  } else {
    d.comm_ = std::move(host);
  }
  d.comm_->set_timeout(options.timeout_s);
  return d;
}

}  // namespace app
