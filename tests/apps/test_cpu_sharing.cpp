// CPU threads that share the machine (engine/cpu_threads.h): the cgroup quota readers, the
// thread budget, the programs' settings and their errors, and the competitor test: tiny_ssd
// training beside a busy-looping process pinned to one of two CPUs keeps at least half of
// its quiet speed (with OpenMP threads spinning at barriers it fell to a third).
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "engine/cpu_threads.h"
#include "engine/error.h"
#include "synth_voc.h"
#include "temp_dir.h"

namespace {

// The programs' own defaults, whatever the suite exports (scripts/test.sh sets PASSIVE).
const std::string kCleanEnv =
    "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u OPENBLAS_NUM_THREADS -u OMP_NUM_THREADS -u ENGINE_CPU_SPIN "
    "-u ENGINE_CPU_THREADS -u ENGINE_CPU_REEXEC ";

std::string app_cmd(const std::string& name) { return kCleanEnv + "'" + test::app_path(name) + "'"; }

// Runs a shell command line, returning its exit status and stderr (stdout discarded).
test::AppRun run_shell(const std::string& cmd) {
  test::TempDir d("cpu_sharing_err");
  const std::string err = d / "err";
  const int st = std::system((cmd + " >/dev/null 2>'" + err + "'").c_str());
  test::AppRun r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream e(err);
  r.err.assign(std::istreambuf_iterator<char>(e), std::istreambuf_iterator<char>());
  return r;
}

}  // namespace

TEST_CASE("cgroup v2 cpu.max as CPUs", "[cpu_threads]") {
  CHECK(eng::cgroup_v2_quota("max 100000\n") == 0);
  CHECK(eng::cgroup_v2_quota("150000 100000\n") == Approx(1.5));
  CHECK(eng::cgroup_v2_quota("50000 100000") == Approx(0.5));
  CHECK(eng::cgroup_v2_quota("200000") == Approx(2.0));  // the period defaults to 100000
  CHECK_THROWS_AS(eng::cgroup_v2_quota(""), eng::Error);
  CHECK_THROWS_AS(eng::cgroup_v2_quota("abc 100000"), eng::Error);
  CHECK_THROWS_AS(eng::cgroup_v2_quota("100000 0"), eng::Error);
  CHECK_THROWS_AS(eng::cgroup_v2_quota("-5 100000"), eng::Error);
  CHECK_THROWS_AS(eng::cgroup_v2_quota("1 2 3"), eng::Error);
  CHECK_THROWS_AS(eng::cgroup_v2_quota("99999999999999999999999 100000"), eng::Error);
}

TEST_CASE("cgroup v1 cfs quota as CPUs", "[cpu_threads]") {
  CHECK(eng::cgroup_v1_quota("-1\n", "100000\n") == 0);
  CHECK(eng::cgroup_v1_quota("250000", "100000") == Approx(2.5));
  CHECK_THROWS_AS(eng::cgroup_v1_quota("", "100000"), eng::Error);
  CHECK_THROWS_AS(eng::cgroup_v1_quota("0", "100000"), eng::Error);
  CHECK_THROWS_AS(eng::cgroup_v1_quota("100000", "0"), eng::Error);
  CHECK_THROWS_AS(eng::cgroup_v1_quota("1e5", "100000"), eng::Error);
}

TEST_CASE("the cgroup quota: the tightest of the cgroup and its ancestors, v1 and v2", "[cpu_threads]") {
  test::TempDir d("cpu_quota");
  // v2: the process in /a/b; b has no limit, a 1.5 CPUs, the root none.
  test::write_file(d / "v2/cpu.max", "max 100000\n");
  test::write_file(d / "v2/a/cpu.max", "150000 100000\n");
  test::write_file(d / "v2/a/b/cpu.max", "max 100000\n");
  CHECK(eng::cgroup_quota("0::/a/b\n", d / "v2", "") == Approx(1.5));
  CHECK(eng::cgroup_quota("0::/\n", d / "v2", "") == 0);
  CHECK(eng::cgroup_quota("0::/a/b\n", "", "") == 0);  // no cgroup2 mount
  // v1: the cpu controller (joined with cpuacct), the process in /x; x 3 CPUs, the root none.
  test::write_file(d / "v1/cpu.cfs_quota_us", "-1\n");
  test::write_file(d / "v1/cpu.cfs_period_us", "100000\n");
  test::write_file(d / "v1/x/cpu.cfs_quota_us", "300000\n");
  test::write_file(d / "v1/x/cpu.cfs_period_us", "100000\n");
  const std::string both = "4:memory:/m\n3:cpu,cpuacct:/x\n0::/a/b\n";
  CHECK(eng::cgroup_quota("3:cpu,cpuacct:/x\n", "", d / "v1") == Approx(3.0));
  CHECK(eng::cgroup_quota("3:cpuacct:/x\n", "", d / "v1") == 0);  // not the cpu controller
  CHECK(eng::cgroup_quota(both, d / "v2", d / "v1") == Approx(1.5));
  // A cgroup that does not exist under the mount (another namespace's path): its ancestors count.
  CHECK(eng::cgroup_quota("0::/a/elsewhere/deeper\n", d / "v2", "") == Approx(1.5));
  // A file that is not a quota limits nothing; a line that is not "id:controllers:path" is skipped.
  test::write_file(d / "v2/a/cpu.max", "lots\n");
  CHECK(eng::cgroup_quota("garbage\n0::/a/b\n", d / "v2", "") == 0);
}

TEST_CASE("the thread budget follows the affinity mask", "[cpu_threads]") {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(sched_getaffinity(0, sizeof(set), &set) == 0);
  const eng::CpuBudget b = eng::cpu_budget();
  CHECK(b.affinity == CPU_COUNT(&set));
  CHECK(b.threads >= 1);
  CHECK(b.threads <= b.affinity);
  if (b.quota > 0) CHECK(b.threads <= static_cast<int>(b.quota) + 1);
  // In a child restricted to one CPU the budget is one thread.
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int first = 0;
    while (!CPU_ISSET(first, &set)) ++first;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    if (sched_setaffinity(0, sizeof(one), &one) != 0) _exit(2);
    _exit(eng::cpu_budget().threads == 1 && eng::cpu_budget().affinity == 1 ? 0 : 1);
  }
  int st = 0;
  REQUIRE(waitpid(pid, &st, 0) == pid);
  CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
}

TEST_CASE("wait modes name the environment they set", "[cpu_threads]") {
  CHECK(eng::spin_env("passive") == std::make_pair(std::string("OMP_WAIT_POLICY"), std::string("PASSIVE")));
  CHECK(eng::spin_env("active") == std::make_pair(std::string("OMP_WAIT_POLICY"), std::string("ACTIVE")));
  CHECK(eng::spin_env("short").first == "GOMP_SPINCOUNT");
  CHECK_THROWS_WITH(eng::spin_env("spin"), "ENGINE_CPU_SPIN: 'spin' is not passive, short or active");
}

TEST_CASE("ssd_train: its thread settings and their errors", "[cpu_threads][apps]") {
  SECTION("the default: passive waiting, set by re-executing once") {
    const auto r = run_shell("ENGINE_CPU_VERBOSE=1 " + app_cmd("ssd_train") + " --help");
    CHECK(r.status == 0);
    CHECK(r.err.find("ssd_train: ") == 0);
    CHECK(r.err.find("wait passive (OMP_WAIT_POLICY=PASSIVE)") != std::string::npos);
  }
  SECTION("ENGINE_CPU_SPIN and a user's own OMP_WAIT_POLICY") {
    auto r = run_shell(kCleanEnv + "ENGINE_CPU_VERBOSE=1 ENGINE_CPU_SPIN=short '" + test::app_path("ssd_train") + "' --help");
    CHECK(r.err.find("wait short (GOMP_SPINCOUNT=" + std::string(eng::kShortSpinCount) + ")") != std::string::npos);
    r = run_shell(kCleanEnv + "ENGINE_CPU_VERBOSE=1 OMP_WAIT_POLICY=active '" + test::app_path("ssd_train") + "' --help");
    CHECK(r.err.find("wait OMP_WAIT_POLICY=active") != std::string::npos);
  }
  SECTION("ENGINE_CPU_THREADS") {
    auto r = run_shell(kCleanEnv + "ENGINE_CPU_VERBOSE=1 ENGINE_CPU_THREADS=3 '" + test::app_path("ssd_train") + "' --help");
    CHECK(r.status == 0);
    CHECK(r.err.find("ssd_train: 3 OpenMP threads") == 0);
    for (const char* bad : {"0", "-2", "two", "1e3", "99999999999999999999", "1025"}) {
      r = run_shell(kCleanEnv + "ENGINE_CPU_THREADS='" + bad + "' '" + test::app_path("ssd_train") + "' --help");
      CHECK(r.status == 1);
      CHECK(r.err == "ssd_train: ENGINE_CPU_THREADS: '" + std::string(bad) + "' is not an integer in 1..1024\n");
    }
  }
  SECTION("a bad ENGINE_CPU_SPIN and --threads") {
    auto r = run_shell(kCleanEnv + "ENGINE_CPU_SPIN=fast '" + test::app_path("ssd_train") + "' --help");
    CHECK(r.status == 1);
    CHECK(r.err == "ssd_train: ENGINE_CPU_SPIN: 'fast' is not passive, short or active\n");
    r = run_shell(app_cmd("ssd_train") + " --data x --threads 2000");
    CHECK(r.status == 1);
    CHECK(r.err.find("--threads") != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
}

namespace {

// Images per second of a short tiny_ssd training run: iterations 11-30 (the first interval
// holds the start-up), the programs' default thread settings, --threads 2.
double train_images_per_second(const std::string& data) {
  test::TempDir out("cpu_sharing_run");
  const auto r = run_shell(app_cmd("ssd_train") + " --arch tiny_ssd --data '" + data +
                           "' --input-size 128 --batch 8 --iters 30 --log-every 10 --workers 1 --seed 1 "
                           "--threads 2 --out '" + out.path.string() + "'");
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::ifstream in(out / "metrics.jsonl");
  double seconds = 0;
  int images = 0;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("img_per_s") || j.value("iteration", 0) <= 10) continue;
    seconds += 10 * 8 / j["img_per_s"].get<double>();
    images += 10 * 8;
  }
  REQUIRE(images == 160);
  return images / seconds;
}

// A child process that spins on `cpu` until this object goes (also when a REQUIRE throws).
struct Competitor {
  pid_t pid = -1;
  explicit Competitor(int cpu) {
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      sched_setaffinity(0, sizeof(one), &one);
      for (volatile unsigned long x = 0;; x = x + 1) {
      }
    }
  }
  ~Competitor() {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  Competitor(const Competitor&) = delete;
  Competitor& operator=(const Competitor&) = delete;
};

}  // namespace

TEST_CASE("tiny_ssd training keeps half its speed beside a busy process on one of two CPUs",
          "[cpu_threads][apps][competitor]") {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(sched_getaffinity(0, sizeof(set), &set) == 0);
  if (CPU_COUNT(&set) < 2) {
    WARN("SKIPPED: fewer than 2 CPUs");
    return;
  }
  int last = CPU_SETSIZE - 1;  // the competitor takes the last CPU of the mask
  while (!CPU_ISSET(last, &set)) --last;
  static const test::SynthVoc data("cpu_sharing_data", 64, 0, 3);
  // Two rounds, alternating, the faster of each kind: other load on a shared machine slows
  // both kinds alike and falls between rounds.
  std::vector<double> quiet, shared;
  for (int round = 0; round < 2; ++round) {
    quiet.push_back(train_images_per_second(data.root));
    const Competitor busy(last);
    shared.push_back(train_images_per_second(data.root));
  }
  const double q = *std::max_element(quiet.begin(), quiet.end());
  const double s = *std::max_element(shared.begin(), shared.end());
  std::printf("tiny_ssd 128 batch 8, --threads 2: quiet %.1f / %.1f img/s, beside a busy process on CPU %d %.1f / "
              "%.1f img/s; best %.1f vs %.1f (%.2fx)\n",
              quiet[0], quiet[1], last, shared[0], shared[1], q, s, s / q);
  INFO("quiet " << q << " img/s, beside a busy process " << s << " img/s");
  CHECK(s >= 0.5 * q);
}
