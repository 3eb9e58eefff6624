// eng::dist::detect_launch (the launcher's environment, no MPI started), mpi_available,
// the ENGINE_DIST_TIMEOUT parser and init()'s refusals. Single process: no MPI is started.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#include "../../engine/src/dist/dist_env.h"  // detail::timeout_from_env (private to engine/dist)
#include "engine/dist/communicator.h"
#include "engine/error.h"

using Catch::Matchers::Contains;
using eng::dist::detect_launch;

namespace {

const std::vector<const char*> kLaunchVars = {
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
    "SLURM_PROCID",         "SLURM_NTASKS",         "SLURM_LOCALID",              "SLURM_NTASKS_PER_NODE",
    "PMIX_RANK",            "RANK",                 "WORLD_SIZE",                 "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",     "ENGINE_DIST_TIMEOUT"};

// Clears the launch variables for a test and puts the old values back afterwards.
struct CleanEnv {
  std::vector<std::pair<std::string, std::string>> saved;
  CleanEnv() {
    for (const char* v : kLaunchVars) {
      if (const char* old = std::getenv(v)) saved.emplace_back(v, old);
      ::unsetenv(v);
    }
  }
  ~CleanEnv() {
    for (const char* v : kLaunchVars) ::unsetenv(v);
    for (const auto& [k, v] : saved) ::setenv(k.c_str(), v.c_str(), 1);
  }
  void set(const char* k, const char* v) { ::setenv(k, v, 1); }
};

}  // namespace

TEST_CASE("dist launch: no launcher is rank 0 of 1", "[dist][launch]") {
  CleanEnv env;
  const auto info = detect_launch();
  CHECK(info.launcher == "none");
  CHECK(info.rank == 0);
  CHECK(info.size == 1);
  CHECK(info.local_rank == 0);
  CHECK(info.local_size == 1);
}

TEST_CASE("dist launch: Open MPI's variables", "[dist][launch]") {
  CleanEnv env;
  env.set("OMPI_COMM_WORLD_RANK", "5");
  env.set("OMPI_COMM_WORLD_SIZE", "8");
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "1");
  env.set("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
  // torchrun's variables lose against Open MPI's
  env.set("RANK", "0");
  env.set("WORLD_SIZE", "2");
  const auto info = detect_launch();
  CHECK(info.launcher == "openmpi");
  CHECK(info.rank == 5);
  CHECK(info.size == 8);
  CHECK(info.local_rank == 1);
  CHECK(info.local_size == 4);
}

TEST_CASE("dist launch: Slurm's variables", "[dist][launch]") {
  CleanEnv env;
  env.set("SLURM_PROCID", "3");
  env.set("SLURM_NTASKS", "4");
  env.set("SLURM_LOCALID", "1");
  env.set("SLURM_NTASKS_PER_NODE", "2");
  auto info = detect_launch();
  CHECK(info.launcher == "slurm");
  CHECK(info.rank == 3);
  CHECK(info.size == 4);
  CHECK(info.local_rank == 1);
  CHECK(info.local_size == 2);
  // A per-node count that is not one number ("2(x2)") is not used: local_size is then only
  // known to be above the local rank.
  env.set("SLURM_NTASKS_PER_NODE", "2(x2)");
  info = detect_launch();
  CHECK(info.local_rank == 1);
  CHECK(info.local_size == 2);
  env.set("SLURM_LOCALID", "2");
  env.set("SLURM_NTASKS_PER_NODE", "2");
  CHECK_THROWS_WITH(detect_launch(), Contains("SLURM_LOCALID='2'") && Contains("[0, 1]"));
}

TEST_CASE("dist launch: PMIx gives the rank only", "[dist][launch]") {
  CleanEnv env;
  env.set("PMIX_RANK", "2");
  const auto info = detect_launch();
  CHECK(info.launcher == "pmix");
  CHECK(info.rank == 2);
  CHECK(info.size == 0);  // known once MPI starts
}

TEST_CASE("dist launch: torchrun-style variables", "[dist][launch]") {
  CleanEnv env;
  env.set("RANK", "1");
  env.set("WORLD_SIZE", "2");
  auto info = detect_launch();
  CHECK(info.launcher == "torchrun");
  CHECK(info.rank == 1);
  CHECK(info.size == 2);
  CHECK(info.local_rank == 0);
  CHECK(info.local_size == 1);
  env.set("LOCAL_RANK", "1");
  env.set("LOCAL_WORLD_SIZE", "2");
  info = detect_launch();
  CHECK(info.local_rank == 1);
  CHECK(info.local_size == 2);
}

TEST_CASE("dist launch: malformed or inconsistent values are one-line errors naming the variable", "[dist][launch]") {
  CleanEnv env;
  env.set("OMPI_COMM_WORLD_RANK", "0");
  CHECK_THROWS_WITH(detect_launch(), Contains("OMPI_COMM_WORLD_RANK is set but OMPI_COMM_WORLD_SIZE is not"));
  env.set("OMPI_COMM_WORLD_SIZE", "2");
  CHECK(detect_launch().size == 2);
  for (const char* bad : {"", "abc", "-1", "+1", " 1", "1 ", "2", "1.0", "99999999999999999999", "0x1"}) {
    INFO("rank '" << bad << "'");
    env.set("OMPI_COMM_WORLD_RANK", bad);
    CHECK_THROWS_WITH(detect_launch(),
                      Contains(std::string("OMPI_COMM_WORLD_RANK='") + bad + "'") && Contains("not an integer in [0, 1]"));
  }
  env.set("OMPI_COMM_WORLD_RANK", "0");
  for (const char* bad : {"0", "-2", "x", "2000000"}) {
    INFO("size '" << bad << "'");
    env.set("OMPI_COMM_WORLD_SIZE", bad);
    CHECK_THROWS_WITH(detect_launch(), Contains(std::string("OMPI_COMM_WORLD_SIZE='") + bad + "'"));
  }
  env.set("OMPI_COMM_WORLD_SIZE", "2");
  env.set("OMPI_COMM_WORLD_LOCAL_SIZE", "3");  // more local ranks than ranks
  CHECK_THROWS_WITH(detect_launch(), Contains("OMPI_COMM_WORLD_LOCAL_SIZE='3'"));
  env.set("OMPI_COMM_WORLD_LOCAL_SIZE", "1");
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "1");
  CHECK_THROWS_WITH(detect_launch(), Contains("OMPI_COMM_WORLD_LOCAL_RANK='1'"));
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "0");
  CHECK(detect_launch().local_size == 1);

  CleanEnv env2;
  env2.set("RANK", "2");
  env2.set("WORLD_SIZE", "2");
  CHECK_THROWS_WITH(detect_launch(), Contains("RANK='2'") && Contains("[0, 1]"));
  env2.set("PMIX_RANK", "x");  // PMIx comes before torchrun
  CHECK_THROWS_WITH(detect_launch(), Contains("PMIX_RANK='x'"));
}

TEST_CASE("dist launch: ENGINE_DIST_TIMEOUT is a number of seconds up to a week", "[dist][launch]") {
  CleanEnv env;
  CHECK(eng::dist::detail::timeout_from_env() == 300.0);
  env.set("ENGINE_DIST_TIMEOUT", "2");
  CHECK(eng::dist::detail::timeout_from_env() == 2.0);
  env.set("ENGINE_DIST_TIMEOUT", "0.25");
  CHECK(eng::dist::detail::timeout_from_env() == 0.25);
  for (const char* bad : {"", "0", "0.0", "-1", "nan", "inf", "1e3", "1.2.3", ".", " 5", "604801", "9999999999999"}) {
    INFO("'" << bad << "'");
    env.set("ENGINE_DIST_TIMEOUT", bad);
    CHECK_THROWS_WITH(eng::dist::detail::timeout_from_env(),
                      Contains(std::string("ENGINE_DIST_TIMEOUT='") + bad + "'") && Contains("(0, 604800]"));
  }
}

TEST_CASE("dist init: what this build offers, and one-line refusals", "[dist][launch]") {
  CleanEnv env;
#ifdef ENGINE_HAVE_MPI
  CHECK(eng::dist::mpi_available());
#else
  CHECK_FALSE(eng::dist::mpi_available());
  CHECK_THROWS_WITH(eng::dist::init("mpi"), "distributed training is unavailable: this build has no MPI (install "
                                            "openmpi-bin libopenmpi-dev and rebuild)");
#endif
  // Refused before MPI is touched.
  CHECK_THROWS_WITH(eng::dist::init("gloo"), Contains("unknown backend 'gloo'") && Contains("mpi or nccl"));
}
