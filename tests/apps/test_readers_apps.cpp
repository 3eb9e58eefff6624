// Issue 18, end to end: the programs meet crafted files (a .json that is a link to
// /dev/zero or a FIFO, a number like 1e400, lying checkpoint metadata, a size limit set in
// the environment) and each gives one line naming the file, exit 1, without hanging.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "app_runner.h"
#include "common/checkpoint.h"
#include "data/image.h"
#include "engine/io/safetensors.h"
#include "engine/random.h"
#include "models/detection_model.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using test::TempDir;
using test::write_file;

namespace {

std::string q(const std::string& s) { return "'" + s + "'"; }

std::string eval_fixture(const std::string& name) {
  return std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/eval/" + name;
}

// Exit 1, nothing on stdout, one stderr line "<app>: ..." containing each of `parts`.
void check_one_line(const test::AppRun& r, const std::string& app, const std::vector<std::string>& parts) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.signal == 0);
  CHECK(r.status == 1);
  const auto lines = test::split_lines(r.err);
  REQUIRE(lines.size() == 1);
  CHECK_THAT(lines[0], Catch::StartsWith(app + ": "));
  for (const std::string& p : parts) CHECK_THAT(lines[0], Catch::Contains(p));
}

}  // namespace

TEST_CASE("ssd_eval: a .json link to /dev/zero, a FIFO, 1e400 and the JSON limit give one line",
          "[apps][ssd_eval][hardened]") {
  TempDir t("readers_eval");
  const std::string gt = eval_fixture("gt.json"), det = eval_fixture("detections.json");
  const std::string zero = t / "zero.json";
  fs::create_symlink("/dev/zero", zero);
  check_one_line(test::run_app("ssd_eval", "--gt " + q(zero) + " --det " + q(det)), "ssd_eval",
                 {zero, "JSON file is a character device, not a regular file"});
  const std::string fifo = t / "fifo.json";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  check_one_line(test::run_app("ssd_eval", "--gt " + q(gt) + " --det " + q(fifo)), "ssd_eval",
                 {fifo, "JSON file is a FIFO"});
  const std::string big_number = t / "big.json";
  write_file(big_number, R"({"images": [{"file": "img_00.jpg", "detections": [)"
                         R"({"category_id": 1, "score": 1e400, "bbox": [0, 0, 29, 29]}]}]})");
  check_one_line(test::run_app("ssd_eval", "--gt " + q(gt) + " --det " + q(big_number)), "ssd_eval",
                 {big_number, "malformed JSON", "1e400"});
  // The limit from the environment (the child inherits it).
  ::setenv("ENGINE_MAX_JSON_BYTES", "10", 1);
  check_one_line(test::run_app("ssd_eval", "--gt " + q(gt) + " --det " + q(det)), "ssd_eval",
                 {gt, "larger than the limit of 10 bytes", "ENGINE_MAX_JSON_BYTES"});
  ::setenv("ENGINE_MAX_JSON_BYTES", "ten", 1);
  check_one_line(test::run_app("ssd_eval", "--gt " + q(gt) + " --det " + q(det)), "ssd_eval",
                 {"ENGINE_MAX_JSON_BYTES='ten' is not a whole number of bytes"});
  ::unsetenv("ENGINE_MAX_JSON_BYTES");
}

TEST_CASE("ssd_detect: lying weights metadata and headers give one line naming the file",
          "[apps][ssd_detect][hardened]") {
  TempDir t("readers_detect");
  const std::string W = t / "w.safetensors", in = t / "img.png", O = t / "out";
  eng::manual_seed(1);
  models::ModelConfig mc;
  mc.arch = "tiny_ssd";
  mc.num_classes = 3;
  mc.anchor_preset = "coco";
  mc.input_size = 128;
  auto model = models::create_model(mc);
  app::save_checkpoint(W, *model, nullptr, app::TrainState{}, app::ClassList{{"a", "b"}, {1, 2}});
  data::Image img;
  img.width = img.height = 32;
  img.rgb.assign(32 * 32 * 3, 128);
  data::save_png(in, img);
  const eng::io::SafetensorsFile good = eng::io::load_safetensors(W);

  struct Case {
    std::string key, value, expect;
  };
  const std::vector<Case> cases = {
      {"num_classes", "1e10", "'num_classes' is '1e10', not an integer in [1, 1000000]"},
      {"input_size", "-128", "'input_size' is '-128', not an integer in [0, 65536]"},
      {"category_ids", "[1, 1e400]", "'category_ids' is '[1, 1e400]', not valid JSON"},
      {"classes", "[\"a\", 2]", "'classes' entry 1 is 2, not a string"},
  };
  for (const Case& c : cases) {
    INFO(c.key << " = " << c.value);
    const std::string bad = t / ("bad_" + c.key + ".safetensors");
    auto meta = good.metadata;
    meta[c.key] = c.value;
    eng::io::save_safetensors(bad, good.tensors, meta);
    check_one_line(test::run_app("ssd_detect", "--weights " + q(bad) + " --input " + q(in) + " --out " + q(O)),
                   "ssd_detect", {bad, c.expect});
  }
  // A header number out of double range (nlohmann out_of_range, not parse_error).
  const std::string header = R"({"w": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}})";
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  const std::string h = t / "h.safetensors";
  write_file(h, bytes + header + std::string(4, '\0'));
  check_one_line(test::run_app("ssd_detect", "--weights " + q(h) + " --input " + q(in) + " --out " + q(O)),
                 "ssd_detect", {h, "header is not valid JSON", "1e400"});
  CHECK(!fs::exists(O + "/detections.json"));
}
