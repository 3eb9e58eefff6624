// Data-parallel ssd_train under mpirun (issue 13): 2 ranks x batch 8 with --sync-bn train the
// same model as 1 rank x batch 16, resume works with another world size, and a rank that
// dies, hangs, diverges or throws stops the whole job with one line. The [cuda] cases run
// the NCCL path on the emulator (CUDA_EMU_DEVICES=2, the nccl.h stand-in over MPI).
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "common/inference.h"
#include "data/dataset.h"
#include "models/weights.h"
#include "data/synth.h"
#include "engine/allocator.h"
#include "engine/io/safetensors.h"
#include "synth_voc.h"
#include "temp_dir.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using test::TempDir;

namespace {

// 48 + 8 small generated images, written once per test process.
const std::string& dataset_root() {
  static const test::SynthVoc d("ssd_train_dist_data", 48, 8, 23);
  return d.root;
}

bool have_mpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }

#define REQUIRE_MPIRUN_OR_SKIP()                                              \
  do {                                                                        \
    if (!have_mpirun()) {                                                     \
      WARN("SKIPPED: mpirun not found (scripts/install_deps.sh installs it)"); \
      return;                                                                 \
    }                                                                         \
  } while (0)

struct Run {
  int status = -1;
  std::string out, err;
  double seconds = 0;
};

// Runs a shell command line, capturing stdout and stderr.
Run run_cmd(const std::string& cmd) {
  static int counter = 0;
  const std::string err_file = (fs::temp_directory_path() / ("dist_err_" + std::to_string(::getpid()) + "_" +
                                                             std::to_string(counter++)))
                                   .string();
  const auto t0 = std::chrono::steady_clock::now();
  FILE* p = ::popen((cmd + " 2>'" + err_file + "'").c_str(), "r");
  REQUIRE(p != nullptr);
  Run r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ifstream e(err_file);
  std::ostringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  std::remove(err_file.c_str());
  return r;
}

// Open MPI refuses root unless told; one OpenMP thread per rank (2 ranks share 2 cores).
void mpi_env() {
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  ::setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
  ::setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// ssd_train's arguments for a small tiny_ssd run (per-rank batch `batch`).
std::string train_args(const std::string& out, int batch, int64_t iters, const std::string& extra = "") {
  return "--arch tiny_ssd --data " + quoted(dataset_root()) + " --input-size 64 --batch " + std::to_string(batch) +
         " --iters " + std::to_string(iters) + " --workers 1 --log-every 1 --lr 0.005 --warmup 2 --steps 15 --seed 5" +
         " --save-every 5 --out " + quoted(out) + " " + extra;
}

// `np` ranks under mpirun (np 0: ssd_train alone, no launcher).
Run train(int np, const std::string& args, const std::string& env = "") {
  mpi_env();
  const std::string exe = quoted(test::app_path("ssd_train"));
  if (np == 0) return run_cmd("env OMP_NUM_THREADS=2 " + env + " " + exe + " " + args);
  std::string pass;  // variables mpirun forwards to the ranks (only those that are set)
  for (const char* v : {"CUDA_EMU_DEVICES", "ENGINE_TEST_DIST_FAULT"})
    if (env.find(std::string(v) + "=") != std::string::npos) pass += std::string(" -x ") + v;
  return run_cmd("env " + env + " mpirun -np " + std::to_string(np) +
                 " --bind-to none -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY=PASSIVE" + pass + " " + exe + " " + args);
}

std::vector<nlohmann::json> jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::map<int64_t, double> losses(const std::string& dir) {
  std::map<int64_t, double> out;
  for (const auto& j : jsonl(dir + "/metrics.jsonl"))
    if (j.contains("loss") && j.contains("lr")) out[j["iteration"].get<int64_t>()] = j["loss"].get<double>();
  return out;
}

// The largest relative difference of two runs' losses (same iterations required).
double loss_difference(const std::string& a, const std::string& b) {
  const auto la = losses(a), lb = losses(b);
  REQUIRE(la.size() == lb.size());
  REQUIRE(!la.empty());
  double worst = 0;
  for (const auto& [it, v] : la) {
    REQUIRE(lb.count(it) == 1);
    worst = std::max(worst, std::abs(v - lb.at(it)) / std::max(1e-12, std::abs(v)));
  }
  return worst;
}

// The largest absolute difference between the weights of two checkpoints, relative to the
// largest weight.
double weight_difference(const std::string& a, const std::string& b) {
  const auto fa = eng::io::load_safetensors(a), fb = eng::io::load_safetensors(b);
  REQUIRE(fa.tensors.size() == fb.tensors.size());
  double worst = 0, scale = 1e-12;
  std::map<std::string, eng::Tensor> other(fb.tensors.begin(), fb.tensors.end());
  for (const auto& [name, t] : fa.tensors) {
    if (name.rfind("optimizer.", 0) == 0 || t.dtype() != eng::DType::f32) continue;
    REQUIRE(other.count(name) == 1);
    const std::vector<float> va = t.to_vector<float>(), vb = other.at(name).to_vector<float>();
    REQUIRE(va.size() == vb.size());
    for (size_t i = 0; i < va.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::abs(va[i] - vb[i])));
      scale = std::max(scale, static_cast<double>(std::abs(va[i])));
    }
  }
  return worst / scale;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// Equal up to the order of float sums: the two runs add the same numbers in another order
// (SyncBatchNorm's statistics in f64 over two ranks against one rank's f32 sums; the
// gradients as rank 0's sum + rank 1's sum). The first steps agree to float rounding. Then
// tiny_ssd's hard-negative mining, a discrete choice among near-equal losses, turns rounding
// differences into different selected anchors, and the runs drift apart as two single-
// process runs do that differ only in their OpenMP thread count (measured beside, printed).
TEST_CASE("ssd_train: 2 ranks x batch 8 with sync-bn equal 1 rank x batch 16 (tiny_ssd, cpu)", "[dist]") {
  REQUIRE_MPIRUN_OR_SKIP();
  TempDir dir("dist_equal");
  const std::string one = (dir.path / "one").string(), two = (dir.path / "two").string();
  const std::string one20 = (dir.path / "one20").string(), two20 = (dir.path / "two20").string();
  const std::string twin20 = (dir.path / "twin20").string();
  // Two steps: the same losses and the same weights, to float rounding.
  const Run a = train(0, train_args(one, 16, 2));
  INFO(a.err);
  REQUIRE(a.status == 0);
  const Run b = train(2, train_args(two, 8, 2, "--sync-bn"));
  INFO(b.out << b.err);
  REQUIRE(b.status == 0);
  // One line from rank 0 says what the run is; metrics.jsonl records it.
  CHECK(contains(b.out, "distributed: 2 ranks"));
  CHECK(contains(b.out, "global batch 16"));
  bool event = false;
  for (const auto& j : jsonl(two + "/metrics.jsonl"))
    if (j.value("event", "") == "distributed") {
      event = true;
      CHECK(j["world_size"] == 2);
      CHECK(j["backend"] == "mpi");
      CHECK(j["global_batch"] == 16);
      CHECK(j["bytes_per_step"].get<int64_t>() > 4000000);  // tiny_ssd: 1.4 M parameters, f32
    }
  CHECK(event);
  const double dl2 = loss_difference(one, two);
  const double dw2 = weight_difference(one + "/last.safetensors", two + "/last.safetensors");
  CHECK(dl2 < 1e-6);
  CHECK(dw2 < 1e-5);
  // 20 steps: within the drift of the engine's own summation order.
  REQUIRE(train(0, train_args(one20, 16, 20)).status == 0);
  REQUIRE(train(2, train_args(two20, 8, 20, "--sync-bn")).status == 0);
  REQUIRE(run_cmd("env OMP_NUM_THREADS=1 " + quoted(test::app_path("ssd_train")) + " " + train_args(twin20, 16, 20))
              .status == 0);
  const double dl20 = loss_difference(one20, two20), twin = loss_difference(one20, twin20);
  const double dw20 = weight_difference(one20 + "/last.safetensors", two20 + "/last.safetensors");
  std::printf("tiny_ssd, 2 ranks x 8 (sync-bn) vs 1 x 16: after 2 steps losses within %.1e, weights within %.1e; "
              "over 20 steps losses within %.1e, weights within %.1e (1 vs 2 OpenMP threads of one process: "
              "losses within %.1e)\n",
              dl2, dw2, dl20, dw20, twin);
  CHECK(dl20 < 0.1);
  CHECK(dw20 < 0.1);
}

TEST_CASE("ssd_train: 2 ranks x batch 4 x accum 2 equal 1 rank x batch 8 x accum 2 (cpu)", "[dist]") {
  REQUIRE_MPIRUN_OR_SKIP();
  TempDir dir("dist_accum");
  const std::string one = (dir.path / "one").string(), two = (dir.path / "two").string();
  REQUIRE(train(0, train_args(one, 8, 4, "--accum 2")).status == 0);
  // With --val: the final evaluation is sharded over the 2 ranks and gathered.
  const Run b = train(2, train_args(two, 4, 4, "--accum 2 --sync-bn --val " + quoted(dataset_root())));
  INFO(b.out << b.err);
  REQUIRE(b.status == 0);
  CHECK(contains(b.out, "accum 2 = global batch 16"));
  CHECK(loss_difference(one, two) < 1e-2);
  CHECK(weight_difference(one + "/last.safetensors", two + "/last.safetensors") < 1e-2);
  // The sharded evaluation equals one process's evaluation of the saved weights.
  double map_dist = -1;
  int64_t eval_images = 0;
  for (const auto& j : jsonl(two + "/metrics.jsonl"))
    if (j.contains("map_voc07")) {
      map_dist = j["map_voc07"].get<double>();
      eval_images = j["eval_images"].get<int64_t>();
    }
  REQUIRE(map_dist >= 0);
  CHECK(eval_images == 8);
  models::ModelConfig mc = models::read_model_config(two + "/last.safetensors");
  auto model = models::create_model(mc);
  models::load_model_weights(*model, two + "/last.safetensors");
  const data::Dataset val = data::load_dataset(dataset_root(), "test", "", "");
  const app::EvalRun single = app::evaluate_model(*model, val, eng::Device::cpu(), app::InferenceOptions{}, 8, 0);
  CHECK(single.result.map_voc07 == map_dist);
}

TEST_CASE("ssd_train: resume with a different world size continues the same run", "[dist]") {
  REQUIRE_MPIRUN_OR_SKIP();
  TempDir dir("dist_resume");
  const std::string straight = (dir.path / "straight").string(), split = (dir.path / "split").string();
  REQUIRE(train(0, train_args(straight, 16, 4)).status == 0);
  // 2 iterations on 2 ranks x 8, then 2 more on 1 rank x 16 from its checkpoint.
  const Run first = train(2, train_args(split, 8, 2, "--sync-bn"));
  INFO(first.out << first.err);
  REQUIRE(first.status == 0);
  const Run second = train(0, train_args(split, 16, 4, "--resume " + quoted(split + "/last.safetensors")));
  INFO(second.out << second.err);
  REQUIRE(second.status == 0);
  CHECK(loss_difference(straight, split) < 1e-2);
  CHECK(weight_difference(straight + "/last.safetensors", split + "/last.safetensors") < 1e-2);
  // Then 2 ranks x 4 (another global batch: 8): the sampler continues at the same place of
  // the epoch (data::resume_batch), said once.
  const Run third = train(2, train_args(split, 4, 6, "--sync-bn --resume " + quoted(split + "/last.safetensors")));
  INFO(third.out << third.err);
  CHECK(third.status == 0);
  CHECK(contains(third.out, "resume: the global batch was 16, now 8: batch 4 of the old size is batch 8 of the new one"));
}

TEST_CASE("ssd_train: a rank killed mid-run stops the job, the last checkpoint stays intact", "[dist]") {
  REQUIRE_MPIRUN_OR_SKIP();
  TempDir dir("dist_kill");
  const std::string out = (dir.path / "run").string();
  const Run r = train(2, train_args(out, 4, 20), "ENGINE_TEST_DIST_FAULT=kill:1:7");
  INFO(r.out << r.err);
  CHECK(r.status != 0);
  CHECK(r.seconds < 120);
  // Open MPI's launcher names the rank and the signal.
  CHECK(contains(r.out + r.err, "rank 1"));
  const auto f = eng::io::load_safetensors(out + "/last.safetensors");
  CHECK(f.metadata.at("iteration") == "5");
}

TEST_CASE("ssd_train: a rank whose loss is NaN stops every rank with one line naming it", "[dist]") {
  REQUIRE_MPIRUN_OR_SKIP();
  TempDir dir("dist_nan");
  const std::string out = (dir.path / "run").string();
  const Run r = train(2, train_args(out, 4, 20), "ENGINE_TEST_DIST_FAULT=nan:1:7");
  INFO(r.out << r.err);
  CHECK(r.status == 1);
  CHECK(contains(r.out, "the loss is NaN on rank 1 at iteration 7; stopping every rank"));
  const auto f = eng::io::load_safetensors(out + "/last.safetensors");
  CHECK(f.metadata.at("iteration") == "5");
}

TEST_CASE("ssd_train: a hung rank stops the job after --dist-timeout", "[dist]") {
  REQUIRE_MPIRUN_OR_SKIP();
  TempDir dir("dist_hang");
  const std::string out = (dir.path / "run").string();
  const Run r = train(2, train_args(out, 4, 20, "--dist-timeout 5"), "ENGINE_TEST_DIST_FAULT=hang:1:7");
  INFO(r.out << r.err);
  CHECK(r.status != 0);
  CHECK(r.seconds < 90);
  CHECK(contains(r.err, "ssd_train: rank 0: "));
  CHECK(contains(r.err, "waited 5 s"));
}

TEST_CASE("ssd_train: an error on one rank ends the job with one line naming the rank", "[dist]") {
  REQUIRE_MPIRUN_OR_SKIP();
  TempDir dir("dist_throw");
  const Run r = train(2, train_args((dir.path / "run").string(), 4, 20), "ENGINE_TEST_DIST_FAULT=throw:1:3");
  INFO(r.out << r.err);
  CHECK(r.status != 0);
  CHECK(contains(r.err, "ssd_train: rank 1: injected fault (ENGINE_TEST_DIST_FAULT)"));
}

TEST_CASE("ssd_train: ranks started with different arguments get one line from rank 0", "[dist]") {
  REQUIRE_MPIRUN_OR_SKIP();
  TempDir dir("dist_mismatch");
  mpi_env();
  const std::string exe = quoted(test::app_path("ssd_train"));
  const std::string out = (dir.path / "run").string();
  // Open MPI's MPMD syntax: two programs (here two argument lists), one rank each.
  const Run r = run_cmd("mpirun --bind-to none -np 1 " + exe + " " + train_args(out, 8, 4) + " : -np 1 " + exe + " " +
                        train_args(out, 4, 4));
  INFO(r.out << r.err);
  CHECK(r.status == 1);
  const std::string line = "ssd_train: the ranks were started with different arguments: --batch is '4' on rank 1 but '8' on rank 0";
  CHECK(contains(r.err, line));
  // Printed once (by rank 0), not by every rank.
  CHECK(r.err.find("different arguments") == r.err.rfind("different arguments"));
}

TEST_CASE("ssd_train: --device cuda with no GPU for a local rank is one line from rank 0", "[dist]") {
  REQUIRE_MPIRUN_OR_SKIP();
  if (eng::cuda::device_count() >= 2) {
    WARN("SKIPPED: this machine has 2 GPUs, every local rank finds one");
    return;
  }
  TempDir dir("dist_nogpu");
  const Run r = train(2, train_args((dir.path / "run").string(), 4, 4, "--device cuda"), "CUDA_EMU_DEVICES=1");
  INFO(r.out << r.err);
  CHECK(r.status == 1);
  CHECK(contains(r.err, "has no GPU (this machine shows"));
}

TEST_CASE("ssd_train: --dist-backend nccl on the cpu is one line from rank 0", "[dist]") {
  REQUIRE_MPIRUN_OR_SKIP();
  TempDir dir("dist_nccl_cpu");
  const Run r = train(2, train_args((dir.path / "run").string(), 4, 4, "--dist-backend nccl"));
  INFO(r.out << r.err);
  CHECK(r.status == 1);
  CHECK(contains(r.err, "ssd_train: rank 0: --dist-backend nccl needs --device cuda"));
  CHECK(r.err.find("needs --device cuda") == r.err.rfind("needs --device cuda"));  // once
}

TEST_CASE("ssd_train: a plain run and --dist none stay single-process", "[dist]") {
  REQUIRE_MPIRUN_OR_SKIP();
  TempDir dir("dist_none");
  const std::string out = (dir.path / "run").string();
  // Under mpirun with --dist none each process is a world of its own (told apart by --out).
  const Run r = train(0, train_args(out, 4, 2, "--dist none"));
  REQUIRE(r.status == 0);
  for (const auto& j : jsonl(out + "/metrics.jsonl")) CHECK(j.value("event", "") != "distributed");
  CHECK(!contains(r.out, "distributed:"));
}

TEST_CASE("ssd_train: 2 emulated GPUs through the NCCL stand-in equal 1 GPU", "[cuda][dist]") {
  REQUIRE_CUDA_OR_SKIP();
  REQUIRE_MPIRUN_OR_SKIP();
  TempDir dir("dist_nccl");
  const std::string one = (dir.path / "one").string(), two = (dir.path / "two").string();
  const std::string host = (dir.path / "host").string();
  const std::string extra = "--device cuda --precision fp32 --sync-bn";
  const Run a = train(0, train_args(one, 8, 2, extra), "CUDA_EMU_DEVICES=2");
  INFO(a.err);
  REQUIRE(a.status == 0);
  const Run b = train(2, train_args(two, 4, 2, extra), "CUDA_EMU_DEVICES=2");
  INFO(b.out << b.err);
  REQUIRE(b.status == 0);
  CHECK(contains(b.out, "backend nccl"));
  // The same on the mpi backend (CUDA tensors through pinned host buffers): the same bits,
  // as both sum the ranks in rank order.
  const Run c = train(2, train_args(host, 4, 2, extra + " --dist-backend mpi"), "CUDA_EMU_DEVICES=2");
  INFO(c.out << c.err);
  REQUIRE(c.status == 0);
  CHECK(contains(c.out, "backend mpi"));
  const double dl = loss_difference(one, two), dw = weight_difference(one + "/last.safetensors", two + "/last.safetensors");
  std::printf("emulated NCCL, 2 ranks x 4 vs 1 x 8, 2 steps: losses within %.1e, weights within %.1e\n", dl, dw);
  CHECK(dl < 1e-5);
  CHECK(dw < 1e-5);
  CHECK(loss_difference(two, host) == 0);
  CHECK(weight_difference(two + "/last.safetensors", host + "/last.safetensors") == 0);
}
