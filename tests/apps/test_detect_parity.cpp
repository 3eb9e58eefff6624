// End-to-end parity of ssd_detect with torchvision's ssd300_vgg16 on an image FILE: PNG
// decode, bilinear resize to 300x300, normalisation, the network, post-processing and the
// mapping of boxes back to original pixels. The fixture is made by
//   python3 tools/make_detect_parity.py      (writes tests/fixtures/detect_parity/)
// image.png is a 360x240 full-contrast picture (so the resize downscales x and upscales y);
// torchvision.json holds torchvision's detections for it (model.eval(); model([image / 255]),
// computed in float64 and, for the drift figures, in float32) from parity_init weights, K = 5.
//
// Here: our ssd300_vgg16 with the same K and models::parity_init is saved with
// save_model_weights, ssd_detect runs on the PNG, and every detection the fixture lists in
// "compare" (the 20 best plus the 5 best of each label) must have its own counterpart in
// detections.json with the same label (category_id = model class index), IoU > 0.998 and a
// score within 5e-4 relative. Why so loose: with the parity weights VGG's conv4_3 cancels
// heavily at full-contrast amplitudes, so float32 results drift. On this picture torch's own
// float32 pipeline is off its float64 one by 4.7e-5 relative in score on the compared
// detections and 2.2e-4 over all 200 (figures in the JSON); ours measured 7.8e-5 .. 1.6e-4
// relative and min IoU 0.99939 .. 0.99957 depending on the thread count (1 to 16). The
// pipeline mistakes tried in Python (antialiased resize, align_corners, mean off by one grey
// level) move scores by 1.5e-2 to 6e-2 and drop IoU below 0.92, far outside.
// Matching is by label and IoU, not by rank: neighbouring scores differ by as little as 2.9e-4.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "models/detection_model.h"
#include "models/parity_init.h"
#include "models/weights.h"

namespace {

namespace fs = std::filesystem;

struct Det {
  int label = 0;
  double score = 0;
  double box[4] = {0, 0, 0, 0};  // x1, y1, x2, y2 in original pixels
};

double iou(const Det& a, const Det& b) {
  const double iw = std::max(0.0, std::min(a.box[2], b.box[2]) - std::max(a.box[0], b.box[0]));
  const double ih = std::max(0.0, std::min(a.box[3], b.box[3]) - std::max(a.box[1], b.box[1]));
  const double inter = iw * ih;
  const double u = (a.box[2] - a.box[0]) * (a.box[3] - a.box[1]) + (b.box[2] - b.box[0]) * (b.box[3] - b.box[1]) - inter;
  return u > 0 ? inter / u : 0.0;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  INFO("reading " << path);
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}

}  // namespace

TEST_CASE("ssd_detect: detections on an image file equal torchvision's ssd300_vgg16", "[apps][parity]") {
  const std::string dir = std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/detect_parity";
  const std::string image = dir + "/image.png", ref_path = dir + "/torchvision.json";
  INFO("fixture " << dir << " (regenerate with python3 tools/make_detect_parity.py)");
  REQUIRE(std::ifstream(image).good());  // fails, never skips, when the fixture is missing
  REQUIRE(std::ifstream(ref_path).good());
  const nlohmann::json ref = read_json(ref_path);
  REQUIRE(ref.at("model") == "ssd300_vgg16");
  const int64_t K = ref.at("num_classes").get<int64_t>();

  const fs::path tmp = fs::temp_directory_path() / ("detect_parity_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  const std::string weights = (tmp / "parity.safetensors").string(), out = (tmp / "out").string();
  {
    models::ModelConfig mc;
    mc.arch = "ssd300_vgg16";
    mc.num_classes = K;
    auto model = models::create_model(mc);
    models::parity_init(*model);
    models::save_model_weights(*model, weights);
  }
  const test::AppRun r =
      test::run_app("ssd_detect", "--weights '" + weights + "' --input '" + image + "' --out '" + out + "'");
  INFO("ssd_detect stdout:\n" << r.out << "stderr:\n" << r.err);
  REQUIRE(r.status == 0);

  const nlohmann::json got = read_json(out + "/detections.json");
  REQUIRE(got.at("images").size() == 1);
  const nlohmann::json& im = got.at("images")[0];
  REQUIRE(im.at("width").get<int>() == ref.at("width").get<int>());
  REQUIRE(im.at("height").get<int>() == ref.at("height").get<int>());
  std::vector<Det> ours;
  for (const auto& d : im.at("detections")) {
    Det o;
    o.label = d.at("category_id").get<int>();  // no class list in the file: category_id = model class
    o.score = d.at("score").get<double>();
    const auto b = d.at("bbox").get<std::vector<double>>();
    o.box[0] = b[0];
    o.box[1] = b[1];
    o.box[2] = b[0] + b[2];
    o.box[3] = b[1] + b[3];
    ours.push_back(o);
  }
  const nlohmann::json& f64 = ref.at("float64");
  std::vector<Det> theirs;
  for (size_t i = 0; i < f64.at("scores").size(); ++i) {
    Det t;
    t.label = f64.at("labels")[i].get<int>();
    t.score = f64.at("scores")[i].get<double>();
    for (int k = 0; k < 4; ++k) t.box[k] = f64.at("boxes")[i][k].get<double>();
    theirs.push_back(t);
  }
  // Both keep 200 detections per image (keep 200 of many more candidates above 0.01).
  CHECK(ours.size() == theirs.size());

  const double score_rtol = 5e-4, min_iou = 0.998;
  const auto compare = ref.at("compare").get<std::vector<size_t>>();
  REQUIRE(compare.size() >= 20);
  std::vector<bool> used(ours.size(), false);
  double worst_iou = 1, worst_rel = 0, worst_abs = 0;
  for (size_t i : compare) {
    REQUIRE(i < theirs.size());
    const Det& t = theirs[i];
    INFO("torchvision detection " << i << ": label " << t.label << " score " << t.score << " box [" << t.box[0] << ", "
                                  << t.box[1] << ", " << t.box[2] << ", " << t.box[3] << "]");
    // The unused detection of the same label with the best IoU.
    int best = -1;
    double best_iou = -1;
    for (size_t j = 0; j < ours.size(); ++j) {
      if (used[j] || ours[j].label != t.label) continue;
      const double v = iou(ours[j], t);
      if (v > best_iou) best_iou = v, best = static_cast<int>(j);
    }
    REQUIRE(best >= 0);
    const Det& o = ours[static_cast<size_t>(best)];
    INFO("ours: #" << best << " score " << o.score << " box [" << o.box[0] << ", " << o.box[1] << ", " << o.box[2]
                   << ", " << o.box[3] << "], IoU " << best_iou);
    CHECK(best_iou > min_iou);
    CHECK(std::fabs(o.score - t.score) <= score_rtol * t.score);
    used[static_cast<size_t>(best)] = true;
    worst_iou = std::min(worst_iou, best_iou);
    worst_abs = std::max(worst_abs, std::fabs(o.score - t.score));
    worst_rel = std::max(worst_rel, std::fabs(o.score - t.score) / t.score);
  }
  WARN("compared " << compare.size() << " detections: min IoU " << worst_iou << ", max score diff " << worst_abs
                   << " (" << worst_rel << " relative); torch float32 vs float64 on the same: "
                   << ref.at("f32_vs_f64_compared").dump());
  fs::remove_all(tmp);
}
