// Runs every app (the built binaries, <build>/apps/<name>) with a long table of bad
// command-line values and asserts the issue-18 contract for each: exit status 1, exactly one
// non-empty line on stderr that names the flag (and the value where there is one), nothing
// on stdout, no signal (no abort, no core dump), and a quick exit (the checks run before any
// data, weights or model is touched). The other arguments of each row point at paths that do
// not exist, so a value that slipped through would end in a different error line (naming a
// path, not the flag) and fail the row.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "app_runner.h"
#include "engine/io/safetensors.h"
#include "engine/tensor.h"
#include "models/detection_model.h"
#include "models/weights.h"
#include "temp_dir.h"

namespace {

struct BadValue {
  const char* app;
  std::vector<std::string> args;  // the bad flag and its value(s), plus whatever the row needs
  const char* flag;               // the line must name it
  const char* value;              // ... and this text, when not empty
};

// Arguments that are valid but lead nowhere (nothing is written: /proc cannot hold folders).
std::vector<std::string> base_args(const std::string& app) {
  if (app == "ssd_train") return {"--data", "/nonexistent/voc", "--iters", "5", "--out", "/proc/nonexistent/out"};
  if (app == "ssd_detect")
    return {"--weights", "/nonexistent/w.safetensors", "--input", "/nonexistent/a.jpg", "--out", "/proc/nonexistent/o"};
  if (app == "bench_models") return {"--loader", "/nonexistent/voc"};
  if (app == "bench_kernels") return {"--only", "no_such_row"};
  return {};
}

std::string shell_quoted(const std::string& s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

const std::vector<BadValue>& table() {
  static const std::vector<BadValue> rows = {
      // ---- ssd_train: counts
      {"ssd_train", {"--batch", "0"}, "--batch", "0"},
      {"ssd_train", {"--batch", "-4"}, "--batch", "-4"},
      {"ssd_train", {"--batch", "1025"}, "--batch", "1025"},
      {"ssd_train", {"--batch", "99999999999"}, "--batch", "99999999999"},
      {"ssd_train", {"--batch", "2.5"}, "--batch", "2.5"},
      {"ssd_train", {"--batch", "nan"}, "--batch", "nan"},
      {"ssd_train", {"--iters", "9223372036854775808"}, "--iters", "9223372036854775808"},
      {"ssd_train", {"--iters", "18446744073709551616"}, "--iters", "18446744073709551616"},
      {"ssd_train", {"--iters", "1000000000001"}, "--iters", "1000000000001"},
      {"ssd_train", {"--iters", "-1"}, "--iters", "-1"},
      {"ssd_train", {"--iters", "1e3"}, "--iters", "1e3"},
      {"ssd_train", {"--iters", "1.5"}, "--iters", "1.5"},
      {"ssd_train", {"--iters", "0x10"}, "--iters", "0x10"},
      {"ssd_train", {"--iters", " 5"}, "--iters", "' 5'"},
      {"ssd_train", {"--epochs", "-1"}, "--epochs", "-1"},
      {"ssd_train", {"--epochs", "1000001"}, "--epochs", "1000001"},
      {"ssd_train", {"--epochs", "nan"}, "--epochs", "nan"},
      {"ssd_train", {"--workers", "100000"}, "--workers", "100000"},
      {"ssd_train", {"--workers", "-1"}, "--workers", "-1"},
      {"ssd_train", {"--workers", "257"}, "--workers", "257"},
      {"ssd_train", {"--workers", "2147483648"}, "--workers", "2147483648"},
      {"ssd_train", {"--eval-every", "-1"}, "--eval-every", "-1"},
      {"ssd_train", {"--save-every", "-5"}, "--save-every", "-5"},
      {"ssd_train", {"--log-every", "0"}, "--log-every", "0"},
      {"ssd_train", {"--eval-batch", "0"}, "--eval-batch", "0"},
      {"ssd_train", {"--eval-batch", "2000"}, "--eval-batch", "2000"},
      {"ssd_train", {"--profile", "-2"}, "--profile", "-2"},
      {"ssd_train", {"--max-gt", "0"}, "--max-gt", "0"},
      // ---- ssd_train: two-stage / ResNet-FPN options (0 / -1: the architecture's default)
      {"ssd_train", {"--trainable-backbone-layers", "6"}, "--trainable-backbone-layers", "6"},
      {"ssd_train", {"--trainable-backbone-layers", "-2"}, "--trainable-backbone-layers", "-2"},
      {"ssd_train", {"--trainable-backbone-layers", "1.5"}, "--trainable-backbone-layers", "1.5"},
      {"ssd_train", {"--rpn-top-n-train", "-5"}, "--rpn-top-n-train", "-5"},
      {"ssd_train", {"--rpn-top-n-train", "200000"}, "--rpn-top-n-train", "200000"},
      {"ssd_train", {"--rpn-top-n-train", "nan"}, "--rpn-top-n-train", "nan"},
      {"ssd_train", {"--rpn-top-n-test", "-1"}, "--rpn-top-n-test", "-1"},
      {"ssd_train", {"--rpn-top-n-test", "100001"}, "--rpn-top-n-test", "100001"},
      {"ssd_train", {"--seed", "-1"}, "--seed", "-1"},
      {"ssd_train", {"--seed", "18446744073709551616"}, "--seed", "18446744073709551616"},
      {"ssd_train", {"--seed", "1.5"}, "--seed", "1.5"},
      {"ssd_train", {"--batch", "1", "--batch", "2"}, "--batch", ""},  // given twice
      {"ssd_train", {"--batch"}, "--batch", ""},                       // no value
      {"ssd_train", {"--iters="}, "--iters", ""},
      {"ssd_train", {"--lr=nan"}, "--lr", "nan"},
      // ---- ssd_train: reals
      {"ssd_train", {"--lr", "nan"}, "--lr", "nan"},
      {"ssd_train", {"--lr", "inf"}, "--lr", "inf"},
      {"ssd_train", {"--lr", "-inf"}, "--lr", "-inf"},
      {"ssd_train", {"--lr", "1e400"}, "--lr", "1e400"},
      {"ssd_train", {"--lr", "1e-400"}, "--lr", "1e-400"},
      {"ssd_train", {"--lr", "0"}, "--lr", "0"},
      {"ssd_train", {"--lr", "-0.5"}, "--lr", "-0.5"},
      {"ssd_train", {"--lr", "-2"}, "--lr", "-2"},
      {"ssd_train", {"--lr", "abc"}, "--lr", "abc"},
      {"ssd_train", {"--lr", "0.1x"}, "--lr", "0.1x"},
      {"ssd_train", {"--lr", ""}, "--lr", ""},
      {"ssd_train", {"--momentum", "-0.1"}, "--momentum", "-0.1"},
      {"ssd_train", {"--momentum", "1.01"}, "--momentum", "1.01"},
      {"ssd_train", {"--momentum", "nan"}, "--momentum", "nan"},
      {"ssd_train", {"--wd", "-1e-4"}, "--wd", "-1e-4"},
      {"ssd_train", {"--clip-grad-norm", "-1"}, "--clip-grad-norm", "-1"},
      {"ssd_train", {"--clip-grad-norm", "nan"}, "--clip-grad-norm", "nan"},
      {"ssd_train", {"--clip-grad-norm", "inf"}, "--clip-grad-norm", "inf"},
      {"ssd_train", {"--wd", "nan"}, "--wd", "nan"},
      {"ssd_train", {"--wd", "2"}, "--wd", "2"},
      {"ssd_train", {"--time-limit", "-1"}, "--time-limit", "-1"},
      {"ssd_train", {"--time-limit", "nan"}, "--time-limit", "nan"},
      {"ssd_train", {"--time-limit", "inf"}, "--time-limit", "inf"},
      {"ssd_train", {"--time-limit", "1e10"}, "--time-limit", "1e10"},
      // ---- ssd_train: schedule
      {"ssd_train", {"--warmup", "-7"}, "--warmup", "-7"},
      {"ssd_train", {"--warmup", "-2"}, "--warmup", "-2"},
      {"ssd_train", {"--warmup", "1e3"}, "--warmup", "1e3"},
      {"ssd_train", {"--warmup", "9223372036854775808"}, "--warmup", "9223372036854775808"},
      {"ssd_train", {"--steps", "100,50"}, "--steps", "50"},
      {"ssd_train", {"--steps", "10,10"}, "--steps", "10"},
      {"ssd_train", {"--steps", "0"}, "--steps", "0"},
      {"ssd_train", {"--steps", "-5"}, "--steps", "-5"},
      {"ssd_train", {"--steps", "1e3"}, "--steps", "1e3"},
      {"ssd_train", {"--steps", "100,,200"}, "--steps", "100,,200"},
      {"ssd_train", {"--steps", "100,"}, "--steps", "100,"},
      {"ssd_train", {"--steps", "9223372036854775808"}, "--steps", "9223372036854775808"},
      // ---- ssd_train: sizes
      {"ssd_train", {"--input-size", "63"}, "--input-size", "63"},
      {"ssd_train", {"--input-size", "-300"}, "--input-size", "-300"},
      {"ssd_train", {"--input-size", "5000"}, "--input-size", "5000"},
      {"ssd_train", {"--input-size", "nan"}, "--input-size", "nan"},
      {"ssd_train", {"--input-size", "200", "--arch", "ssd512_vgg16"}, "--input-size", "200"},
      {"ssd_train", {"--input-size", "100", "--arch", "retinanet_resnet50_fpn"}, "--input-size", "100"},
      {"ssd_train", {"--multiscale", "64,32"}, "--multiscale", "32"},
      {"ssd_train", {"--multiscale", "64,,96"}, "--multiscale", ""},
      {"ssd_train", {"--multiscale", "abc"}, "--multiscale", "abc"},
      {"ssd_train", {"--multiscale", "64,nan"}, "--multiscale", "nan"},
      {"ssd_train", {"--multiscale", "5000"}, "--multiscale", "5000"},
      {"ssd_train", {"--multiscale", "128,160", "--arch", "ssd512_vgg16"}, "--multiscale", "128"},
      // ---- ssd_train: fixed sets
      {"ssd_train", {"--arch", "foo"}, "--arch", "foo"},
      {"ssd_train", {"--device", "gpu"}, "--device", "gpu"},
      {"ssd_train", {"--precision", "fp16"}, "--precision", "fp16"},
      {"ssd_train", {"--image-transfer", "u16"}, "--image-transfer", "u16"},
      {"ssd_train", {"--matcher", "hungarian"}, "--matcher", "hungarian"},
      {"ssd_train", {"--crop-rule", "all"}, "--crop-rule", "all"},
      // ---- ssd_detect
      {"ssd_detect", {"--topk", "0"}, "--topk", "0"},
      {"ssd_detect", {"--topk", "-2"}, "--topk", "-2"},
      {"ssd_detect", {"--topk", "1000000000"}, "--topk", "1000000000"},
      {"ssd_detect", {"--topk", "nan"}, "--topk", "nan"},
      {"ssd_detect", {"--nms-thresh", "nan"}, "--nms-thresh", "nan"},
      {"ssd_detect", {"--nms-thresh", "-0.5"}, "--nms-thresh", "-0.5"},
      {"ssd_detect", {"--nms-thresh", "1.5"}, "--nms-thresh", "1.5"},
      {"ssd_detect", {"--nms-thresh", "inf"}, "--nms-thresh", "inf"},
      {"ssd_detect", {"--score-thresh", "nan"}, "--score-thresh", "nan"},
      {"ssd_detect", {"--score-thresh", "2"}, "--score-thresh", "2"},
      {"ssd_detect", {"--score-thresh", "-0.1"}, "--score-thresh", "-0.1"},
      {"ssd_detect", {"--batch", "0"}, "--batch", "0"},
      {"ssd_detect", {"--batch", "2000"}, "--batch", "2000"},
      {"ssd_detect", {"--workers", "100000"}, "--workers", "100000"},
      {"ssd_detect", {"--workers", "-1"}, "--workers", "-1"},
      {"ssd_detect", {"--draw-thresh", "nan"}, "--draw-thresh", "nan"},
      {"ssd_detect", {"--draw-thresh", "1.5"}, "--draw-thresh", "1.5"},
      {"ssd_detect", {"--scales", "32"}, "--scales", "32"},
      {"ssd_detect", {"--scales", "64,abc"}, "--scales", "abc"},
      {"ssd_detect", {"--scales", "nan"}, "--scales", "nan"},
      {"ssd_detect", {"--scales", "9999"}, "--scales", "9999"},
      {"ssd_detect", {"--device", "tpu"}, "--device", "tpu"},
      {"ssd_detect", {"--precision", "fp8"}, "--precision", "fp8"},
      {"ssd_detect", {"--arch", "bogus"}, "--arch", "bogus"},
      {"ssd_detect", {"--arch", "tiny_ssd", "--num-classes", "3", "--anchors", "bogus", "--summary"}, "--anchors",
       "bogus"},
      {"ssd_detect", {"--arch", "tiny_ssd", "--num-classes", "1", "--summary"}, "--num-classes", "1"},
      {"ssd_detect", {"--arch", "tiny_ssd", "--num-classes", "-3", "--summary"}, "--num-classes", "-3"},
      {"ssd_detect", {"--arch", "tiny_ssd", "--num-classes", "3", "--input-size", "10", "--summary"}, "--input-size",
       "10"},
      {"ssd_detect", {"--arch", "ssd512_vgg16", "--num-classes", "3", "--input-size", "100", "--summary"},
       "--input-size", "100"},
      // ---- ssd_data synth
      {"ssd_data", {"synth", "--out", "/proc/nonexistent/o", "--n", "0"}, "--n", "0"},
      {"ssd_data", {"synth", "--out", "/proc/nonexistent/o", "--n", "-1"}, "--n", "-1"},
      {"ssd_data", {"synth", "--out", "/proc/nonexistent/o", "--n", "1000000"}, "--n", "1000000"},
      {"ssd_data", {"synth", "--out", "/proc/nonexistent/o", "--n", "abc"}, "--n", "abc"},
      {"ssd_data", {"synth", "--out", "/proc/nonexistent/o", "--val", "-1"}, "--val", "-1"},
      {"ssd_data", {"synth", "--out", "/proc/nonexistent/o", "--classes", "0"}, "--classes", "0"},
      {"ssd_data", {"synth", "--out", "/proc/nonexistent/o", "--classes", "11"}, "--classes", "11"},
      {"ssd_data", {"synth", "--out", "/proc/nonexistent/o", "--seed", "-1"}, "--seed", "-1"},
      {"ssd_data", {"synth", "--out", "/proc/nonexistent/o", "--format", "yolo"}, "--format", "yolo"},
      {"ssd_data", {"synth", "--out", "/proc/nonexistent/o", "--size", "3x3"}, "--size", "3x3"},
      {"ssd_data", {"synth", "--out", "/proc/nonexistent/o", "--size", "axb"}, "--size", "axb"},
      {"ssd_data", {"synth", "--out", "/proc/nonexistent/o", "--size", "99999999x1"}, "--size", "99999999x1"},
      // ---- demo_train
      {"demo_train", {"--lr", "nan"}, "--lr", "nan"},
      {"demo_train", {"--lr", "0"}, "--lr", "0"},
      {"demo_train", {"--lr", "-1"}, "--lr", "-1"},
      {"demo_train", {"--lr", "11"}, "--lr", "11"},
      {"demo_train", {"--iters", "0"}, "--iters", "0"},
      {"demo_train", {"--iters", "9223372036854775808"}, "--iters", "9223372036854775808"},
      {"demo_train", {"--batch", "0"}, "--batch", "0"},
      {"demo_train", {"--batch", "5000"}, "--batch", "5000"},
      {"demo_train", {"--seed", "-1"}, "--seed", "-1"},
      {"demo_train", {"--device", "tpu"}, "--device", "tpu"},
      // ---- bench_models
      {"bench_models", {"--reps", "0"}, "--reps", "0"},
      {"bench_models", {"--warmup", "-1"}, "--warmup", "-1"},
      {"bench_models", {"--batch", "-1"}, "--batch", "-1"},
      {"bench_models", {"--infer-batch", "5000"}, "--infer-batch", "5000"},
      {"bench_models", {"--input-size", "10"}, "--input-size", "10"},
      {"bench_models", {"--loader-images", "0"}, "--loader-images", "0"},
      {"bench_models", {"--workers", "300"}, "--workers", "300"},
      {"bench_models", {"--device", "tpu"}, "--device", "tpu"},
      {"bench_models", {"--precision", "fp16"}, "--precision", "fp16"},
      // ---- bench_kernels
      {"bench_kernels", {"--reps", "0"}, "--reps", "0"},
      {"bench_kernels", {"--reps", "nan"}, "--reps", "nan"},
      {"bench_kernels", {"--reps", "-5"}, "--reps", "-5"},
      {"bench_kernels", {"--device", "tpu"}, "--device", "tpu"},
      {"bench_kernels", {"--precision", "fp16"}, "--precision", "fp16"},
      // ---- ssd_eval (no numbers: its unknown flags and missing values)
      {"ssd_eval", {"--gt", "/nonexistent/voc", "--det", "/nonexistent/d.json", "--bogus", "1"}, "--bogus", ""},
      {"ssd_eval", {"--gt", "/nonexistent/voc"}, "--det", ""},
  };
  return rows;
}

}  // namespace

TEST_CASE("apps: every bad command-line value gives one line naming the flag and exit 1", "[apps][cli]") {
  const auto& rows = table();
  CHECK(rows.size() >= 100);
  for (const BadValue& row : rows) {
    std::string args;
    // The base arguments, less the row's own flag (CLI11 refuses a flag given twice).
    const std::vector<std::string> base = base_args(row.app);
    for (size_t i = 0; i + 1 < base.size(); i += 2)
      if (base[i] != row.flag) args += shell_quoted(base[i]) + " " + shell_quoted(base[i + 1]) + " ";
    for (const std::string& a : row.args) args += shell_quoted(a) + " ";
    const auto t0 = std::chrono::steady_clock::now();
    const test::AppRun r = test::run_app(row.app, args);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    INFO(row.app << " " << args << "\nstatus " << r.status << " signal " << r.signal << "\nstdout: " << r.out
                 << "\nstderr: " << r.err);
    CHECK(r.signal == 0);
    CHECK(r.status == 1);
    CHECK(r.out.empty());
    const auto lines = test::split_lines(r.err);
    REQUIRE(lines.size() == 1);
    CHECK_THAT(lines[0], Catch::StartsWith(std::string(row.app) + ": ") && Catch::Contains(row.flag));
    if (std::string(row.value).size() > 0) CHECK_THAT(lines[0], Catch::Contains(row.value));
    CHECK(seconds < 10);
  }
}

TEST_CASE("apps: values in range pass the checks and reach the data", "[apps][cli]") {
  // The edges of the ranges and the documented special values are accepted: the run then
  // fails on the missing data, naming the path (not a flag).
  const std::vector<std::vector<std::string>> ok = {
      {"--lr", "-1"},         {"--lr", "1e12"},        {"--warmup", "-1"},       {"--warmup", "0"},
      {"--workers", "0"},     {"--workers", "256"},    {"--batch", "1024"},      {"--input-size", "64"},
      {"--momentum", "0"},    {"--momentum", "1"},     {"--wd", "0"},            {"--profile", "-1"},
      {"--seed", "18446744073709551615"},              {"--steps", "5,10,20"},   {"--multiscale", "96,64,96"},
      {"--time-limit", "0.5"}, {"--batch", "+8"},      {"--lr", "0x1p-4"},       {"--batch", "010"},
      {"--trainable-backbone-layers", "-1"},           {"--trainable-backbone-layers", "0"},
      {"--trainable-backbone-layers", "5"},            {"--rpn-top-n-train", "0"},
      {"--rpn-top-n-train", "100000"},                 {"--rpn-top-n-test", "1"},
  };
  for (const auto& extra : ok) {
    std::string args;
    for (const std::string& a : base_args("ssd_train")) args += shell_quoted(a) + " ";
    for (const std::string& a : extra) args += shell_quoted(a) + " ";
    const test::AppRun r = test::run_app("ssd_train", args);
    INFO("ssd_train " << args << "\nstderr: " << r.err);
    CHECK(r.status == 1);
    const auto lines = test::split_lines(r.err);
    REQUIRE(!lines.empty());
    CHECK_THAT(r.err, Catch::Contains("/proc/nonexistent/out") || Catch::Contains("/nonexistent/voc"));
  }
}

TEST_CASE("apps: an unknown anchor preset in weights metadata is one line naming the file", "[apps][cli]") {
  // Only SSD uses the preset; tiny_ssd used to ignore an unknown one silently.
  test::TempDir dir("cli_anchor");
  const std::string weights = dir / "w.safetensors";
  eng::io::save_safetensors(weights, {{"x", eng::zeros({1})}},
                            {{"arch", "tiny_ssd"}, {"num_classes", "3"}, {"input_size", "64"}, {"anchor_preset", "bogus"}});
  CHECK_THROWS_WITH(models::read_model_config(weights),
                    Catch::Contains(weights) && Catch::Contains("anchor_preset") && Catch::Contains("bogus"));
  models::ModelConfig mc;
  mc.arch = "tiny_ssd";
  mc.num_classes = 3;
  mc.anchor_preset = "bogus";
  CHECK_THROWS_WITH(models::create_model(mc), Catch::Contains("anchor preset 'bogus' is not one of voc, coco"));

  const test::AppRun r = test::run_app("ssd_detect", "--weights " + shell_quoted(weights) +
                                                         " --input /nonexistent/a.jpg --out " +
                                                         shell_quoted(dir / "out"));
  INFO(r.err);
  CHECK(r.status == 1);
  CHECK(r.signal == 0);
  const auto lines = test::split_lines(r.err);
  CHECK(lines.size() == 2);  // the missing input, then the weights
  CHECK_THAT(r.err, Catch::Contains(weights) && Catch::Contains("bogus"));
}
