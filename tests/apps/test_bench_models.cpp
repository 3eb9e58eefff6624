// bench_models end to end on the CPU: the JSON rows it writes (fields, positive figures),
// the loader mode on a small generated dataset, and one-line errors for bad flags.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const bool kPassiveOpenMp = [] { return ::setenv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0; }();

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() / ("bench_models_test_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

json read_json(const std::string& path) {
  INFO("reading " << path);
  REQUIRE(fs::exists(path));
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return json::parse(ss.str());
}

void check_common_fields(const json& r) {
  INFO(r.dump());
  for (const char* k : {"model", "mode", "batch", "precision", "median_ms", "img_per_s", "peak_mem_mb", "device",
                        "threads", "input_size"})
    REQUIRE(r.contains(k));
  CHECK(r["batch"].get<int>() >= 1);
  CHECK(r["median_ms"].get<double>() > 0);
  CHECK(r["img_per_s"].get<double>() > 0);
  CHECK(r["threads"].get<int>() >= 1);
  // img_per_s is the batch over the median time.
  CHECK(r["img_per_s"].get<double>() ==
        Approx(r["batch"].get<double>() * 1000.0 / r["median_ms"].get<double>()).epsilon(1e-9));
}

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace

TEST_CASE("bench_models: tiny_ssd on the cpu writes a train row and two infer rows", "[apps][bench_models]") {
  TempDir dir("rows");
  const std::string out = dir / "rows.json";
  const test::AppRun r = test::run_app(
      "bench_models", "--device cpu --model tiny_ssd --reps 1 --warmup 0 --input-size 96 --batch 2 --infer-batch 2 "
                      "--json '" + out + "'");
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = read_json(out);
  REQUIRE(j.contains("rows"));
  const json& rows = j["rows"];
  REQUIRE(rows.size() == 3);
  std::set<std::pair<std::string, int>> seen;
  for (const json& row : rows) {
    check_common_fields(row);
    CHECK(row["model"] == "tiny_ssd");
    CHECK(row["precision"] == "fp32");
    CHECK(row["device"] == "cpu");
    CHECK(row["input_size"] == 96);
    CHECK(row["peak_mem_mb"].get<double>() > 0);
    seen.insert({row["mode"].get<std::string>(), row["batch"].get<int>()});
  }
  CHECK(seen == std::set<std::pair<std::string, int>>{{"train", 2}, {"infer", 1}, {"infer", 2}});
  // The table on stdout has a header and one line per row.
  CHECK(count_lines(r.out) == 4);
}

TEST_CASE("bench_models: --loader times decode and augmentation on generated JPEGs", "[apps][bench_models]") {
  TempDir dir("loader");
  const test::AppRun gen =
      test::run_app("ssd_data", "synth --out '" + (dir / "voc") + "' --n 4 --seed 3 --size 200x150");
  INFO(gen.err);
  REQUIRE(gen.status == 0);
  const std::string out = dir / "loader.json";
  const test::AppRun r = test::run_app(
      "bench_models", "--loader '" + (dir / "voc") + "' --loader-images 6 --input-size 96 --json '" + out + "'");
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json rows = read_json(out)["rows"];
  REQUIRE(rows.size() == 1);
  check_common_fields(rows[0]);
  CHECK(rows[0]["mode"] == "loader");
  CHECK(rows[0]["threads"] == 1);
  CHECK(rows[0]["reps"].get<int>() >= 6);
  CHECK(rows[0]["img_per_s_16_cores_extrapolated"].get<double>() ==
        Approx(16 * rows[0]["img_per_s"].get<double>()));
}

TEST_CASE("bench_models: bad flags give one line on stderr, exit 1 and no JSON", "[apps][bench_models]") {
  TempDir dir("bad");
  const std::string out = dir / "never.json";
  const std::pair<const char*, const char*> cases[] = {
      {"--bogus", "--bogus"},
      {"--model nope", "unknown model 'nope'"},
      {"--model tiny_ssd,", "--model"},
      {"--device tpu", "--device: tpu"},
      {"--precision fp64", "fp64"},
      {"--precision bf16", "bf16"},
      {"--reps 0", "--reps: 0"},
      {"--mode eval", "--mode: 'eval'"},
      {"--batch abc", "--batch"},
      {"--loader /nonexistent/folder", "/nonexistent/folder"},
  };
  for (const auto& [args, needle] : cases) {
    INFO(args);
    const test::AppRun r = test::run_app("bench_models", std::string(args) + " --json '" + out + "'");
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(r.signal == 0);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err.find(needle) != std::string::npos);
    CHECK_FALSE(fs::exists(out));
  }
}

// The CUDA path (device synchronisation, the caching allocator's peak, every precision) on
// the emulator or a GPU: the rows come back on "cuda" with positive figures.
TEST_CASE("bench_models: tiny_ssd on cuda in fp32, tf32 and bf16", "[apps][bench_models][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  TempDir dir("cuda");
  for (const char* prec : {"fp32", "tf32", "bf16"}) {
    INFO(prec);
    const std::string out = dir / (std::string(prec) + ".json");
    const test::AppRun r = test::run_app(
        "bench_models", std::string("--device cuda --precision ") + prec +
                            " --model tiny_ssd --reps 1 --warmup 0 --input-size 64 --batch 1 --infer-batch 1 --json '" +
                            out + "'");
    INFO(r.err);
    REQUIRE(r.status == 0);
    const json rows = read_json(out)["rows"];
    REQUIRE(rows.size() == 2);  // train at 1, infer at 1 (the throughput row is the same batch)
    for (const json& row : rows) {
      check_common_fields(row);
      CHECK(row["device"] == "cuda");
      CHECK(row["precision"] == prec);
      CHECK(row["peak_mem_mb"].get<double>() > 0);
    }
  }
}
