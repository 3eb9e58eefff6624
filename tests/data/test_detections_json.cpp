// detections.json: round trip through data::read_detections, the exact set of keys, bbox as
// [x, y, w, h], atomic writing and its errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/coco_json.h"
#include "data/detections_json.h"
#include "data/metrics.h"
#include "engine/error.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using data::Box;
using data::DetectionRecord;
using data::ImageDetections;
using nlohmann::json;
using test::TempDir;

namespace {

json parse_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return json::parse(ss.str());
}

std::set<std::string> keys(const json& obj) {
  std::set<std::string> k;
  for (auto it = obj.begin(); it != obj.end(); ++it) k.insert(it.key());
  return k;
}

// Random detections with float-valued boxes (as a detector produces) and awkward scores.
std::vector<ImageDetections> sample(int num_images, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> coord(0.f, 600.f), unit(0.f, 1.f);
  std::vector<ImageDetections> images;
  for (int i = 0; i < num_images; ++i) {
    ImageDetections im;
    im.file = "photos/dir" + std::to_string(i % 2) + "/img" + std::to_string(i) + ".jpg";
    im.width = 640;
    im.height = 480;
    const int n = i == 1 ? 0 : 3 + i;  // one image without detections
    for (int d = 0; d < n; ++d) {
      DetectionRecord r;
      r.category_id = 1 + (d * 7 + i) % 20;
      r.label = "class \"" + std::to_string(r.category_id) + "\"";  // needs escaping
      r.score = d == 0 ? 1e-7 : unit(rng);
      const float x1 = coord(rng), y1 = coord(rng);
      r.box = Box{x1, y1, x1 + 40 * unit(rng), y1 + 40 * unit(rng)};
      im.detections.push_back(r);
    }
    images.push_back(im);
  }
  return images;
}

}  // namespace

TEST_CASE("write_detections_json round-trips through read_detections", "[data][detections_json]") {
  TempDir t("test_detections_json");
  const auto images = sample(5, 7);
  const std::string path = t / "detections.json";
  data::write_detections_json(path, images);
  REQUIRE_FALSE(fs::exists(path + ".tmp"));

  const std::vector<data::Detection> back = data::read_detections(path);
  size_t k = 0;
  for (const ImageDetections& im : images)
    for (const DetectionRecord& r : im.detections) {
      REQUIRE(k < back.size());
      const data::Detection& d = back[k++];
      CHECK(d.image == data::image_key(im.file));
      CHECK(d.category == r.category_id);
      CHECK(d.score == r.score);  // exact
      CHECK(d.box.x1 == r.box.x1);
      CHECK(d.box.y1 == r.box.y1);
      // x + w reproduces x2 to the last bit or so.
      CHECK(std::fabs(d.box.x2 - r.box.x2) <= 1e-12 * std::fabs(r.box.x2));
      CHECK(std::fabs(d.box.y2 - r.box.y2) <= 1e-12 * std::fabs(r.box.y2));
    }
  REQUIRE(k == back.size());
}

TEST_CASE("mAP from the file equals mAP from memory", "[data][detections_json]") {
  TempDir t("test_detections_json");
  const auto images = sample(6, 11);
  std::vector<data::GroundTruth> gt;
  std::vector<data::Detection> mem;
  for (const ImageDetections& im : images)
    for (size_t n = 0; n < im.detections.size(); ++n) {
      const DetectionRecord& r = im.detections[n];
      mem.push_back(data::Detection{data::image_key(im.file), r.box, r.category_id, r.score});
      if (n % 2 == 0) {  // ground truth near every other detection
        Box g = r.box;
        g.x1 += 3, g.x2 += 2;
        gt.push_back(data::GroundTruth{data::image_key(im.file), g, r.category_id});
      }
    }
  const std::string path = t / "d.json";
  data::write_detections_json(path, images);
  const data::EvalResult a = data::evaluate(gt, mem, 21), b = data::evaluate(gt, data::read_detections(path), 21);
  CHECK(a.map_coco > 0);
  CHECK(std::fabs(a.map_coco - b.map_coco) <= 1e-6);
  CHECK(std::fabs(a.map_voc07 - b.map_voc07) <= 1e-6);
  CHECK(std::fabs(a.map_voc_area - b.map_voc_area) <= 1e-6);
}

TEST_CASE("detections.json holds exactly the documented keys", "[data][detections_json]") {
  TempDir t("test_detections_json");
  std::vector<ImageDetections> images(2);
  images[0].file = "in/cat.png";
  images[0].width = 320;
  images[0].height = 200;
  images[0].detections.push_back(DetectionRecord{17, "cat", 0.875, Box{10.5, 20.25, 110.5, 70.25}});
  images[1].file = "ünïcode dir/b.jpg";
  images[1].width = 1;
  images[1].height = 2;
  const std::string path = t / "out.json";
  data::write_detections_json(path, images);

  const json j = parse_file(path);
  REQUIRE(keys(j) == std::set<std::string>{"images"});
  REQUIRE(j["images"].size() == 2);
  const json& im = j["images"][0];
  REQUIRE(keys(im) == std::set<std::string>{"file", "width", "height", "detections"});
  CHECK(im["file"] == "in/cat.png");
  CHECK(im["width"] == 320);
  CHECK(im["height"] == 200);
  REQUIRE(im["detections"].size() == 1);
  const json& d = im["detections"][0];
  REQUIRE(keys(d) == std::set<std::string>{"category_id", "label", "score", "bbox"});
  CHECK(d["category_id"] == 17);
  CHECK(d["category_id"].is_number_integer());
  CHECK(d["label"] == "cat");
  CHECK(d["score"].get<double>() == 0.875);
  CHECK(d["bbox"] == json::array({10.5, 20.25, 100.0, 50.0}));
  CHECK(j["images"][1]["file"] == "ünïcode dir/b.jpg");
  CHECK(j["images"][1]["detections"] == json::array());
}

TEST_CASE("write_detections_json: no images gives an empty list", "[data][detections_json]") {
  TempDir t("test_detections_json");
  data::write_detections_json(t / "e.json", {});
  CHECK(parse_file(t / "e.json") == json::parse(R"({"images": []})"));
  CHECK(data::read_detections(t / "e.json").empty());
}

TEST_CASE("write_detections_json: failures name the path and leave no .tmp", "[data][detections_json]") {
  TempDir t("test_detections_json");
  const auto images = sample(2, 3);

  SECTION("directory does not exist") {
    const std::string path = t / "no/such/dir/out.json";
    REQUIRE_THROWS_WITH(data::write_detections_json(path, images), Contains(path));
    CHECK_FALSE(fs::exists(path + ".tmp"));
  }
  SECTION("the target is a directory: the .tmp is written, the rename fails, the .tmp goes") {
    const std::string path = t / "taken";
    fs::create_directories(path + "/inside");
    REQUIRE_THROWS_WITH(data::write_detections_json(path, images), Contains(path));
    CHECK_FALSE(fs::exists(path + ".tmp"));
    CHECK(fs::is_directory(path));
  }
  SECTION("an existing file is replaced whole") {
    const std::string path = t / "old.json";
    std::ofstream(path) << "old contents that are longer than the new file would be, surely, yes";
    data::write_detections_json(path, {});
    CHECK(parse_file(path) == json::parse(R"({"images": []})"));
  }
}

TEST_CASE("write_detections_json refuses values the reader would refuse", "[data][detections_json]") {
  TempDir t("test_detections_json");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const DetectionRecord& bad : {DetectionRecord{1, "a", nan, Box{0, 0, 1, 1}},
                                     DetectionRecord{1, "a", 0.5, Box{0, 0, std::numeric_limits<double>::infinity(), 1}},
                                     DetectionRecord{1, "a", 0.5, Box{5, 0, 1, 1}}}) {
    std::vector<ImageDetections> images(1);
    images[0].file = "x.jpg";
    images[0].detections.push_back(bad);
    const std::string path = t / "bad.json";
    REQUIRE_THROWS_AS(data::write_detections_json(path, images), eng::Error);
    REQUIRE_THROWS_WITH(data::write_detections_json(path, images), Contains(path) && Contains("detections[0]"));
    CHECK_FALSE(fs::exists(path));
    CHECK_FALSE(fs::exists(path + ".tmp"));
  }
}
