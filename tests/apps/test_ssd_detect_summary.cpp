// Runs the built ssd_detect binary (found next to this test: <build>/tests/<exe> ->
// <build>/apps/ssd_detect) and checks its --summary output and exit codes.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "models/detection_model.h"
#include "app_runner.h"
#include "test_helpers.h"

namespace fs = std::filesystem;

namespace {

struct Run {
  int status = -1;
  std::string out;
  std::string err;
};

Run run(const std::string& args) {
  auto r = test::run_app("ssd_detect", args);
  return {r.status, r.out, r.err};
}

std::vector<std::string> lines(const std::string& s) { return test::split_lines(s); }

struct SummaryCase {
  const char* arch;
  int64_t num_classes;
  int64_t parameters;  // -1: whatever create_model(...)->num_parameters() says
  int64_t anchors;
  int64_t input_size;  // 0: the architecture's default
};

// One row per architecture (the acceptance figures where it gives them).
const SummaryCase kCases[] = {
    {"tiny_ssd", 21, -1, 5444, 0},
    {"tiny_ssd", 21, -1, 21764, 512},
    {"ssd300_vgg16", 91, 35641826, 8732, 0},            // torchvision's figures
    {"ssd512_vgg16", 91, -1, 24564, 0},
    {"retinanet_resnet50_fpn", 91, 34014999, 49104, 0},  // FrozenBN affine as buffers
};

}  // namespace

TEST_CASE("ssd_detect --summary: parameter and anchor counts", "[apps][ssd_detect]") {
  for (const auto& c : kCases) {
    std::string args = std::string("--arch ") + c.arch + " --num-classes " + std::to_string(c.num_classes) + " --summary";
    if (c.input_size) args += " --input-size " + std::to_string(c.input_size);
    INFO("ssd_detect " << args);
    Run r = run(args);
    INFO("stdout:\n" << r.out << "stderr:\n" << r.err);
    REQUIRE(r.status == 0);
    int64_t params = c.parameters;
    if (params < 0) {
      models::ModelConfig mc;
      mc.arch = c.arch;
      mc.num_classes = c.num_classes;
      mc.input_size = c.input_size;
      params = models::create_model(mc)->num_parameters();
    }
    auto ls = lines(r.out);
    REQUIRE(ls.size() >= 3);
    CHECK(ls[ls.size() - 2] == "parameters: " + std::to_string(params));
    CHECK(ls[ls.size() - 1] == "anchors: " + std::to_string(c.anchors));
    for (size_t i = 0; i + 2 < ls.size(); ++i) CHECK(ls[i].find(": [") != std::string::npos);
  }
}

TEST_CASE("ssd_detect: a bad arch is one line and exit 1, no --input is exit 1", "[apps][ssd_detect]") {
  Run r = run("--arch nonsense --num-classes 21 --summary");
  INFO("stdout:\n" << r.out << "stderr:\n" << r.err);
  CHECK(r.status == 1);
  CHECK(r.out.empty());
  auto ls = lines(r.err);
  REQUIRE(ls.size() == 1);
  CHECK(ls[0].find("nonsense") != std::string::npos);
  CHECK(ls[0].find("tiny_ssd") != std::string::npos);

  Run n = run("--arch tiny_ssd --num-classes 21");
  CHECK(n.status == 1);
  REQUIRE(lines(n.err).size() == 1);
  CHECK(n.err.find("--input") != std::string::npos);
}
