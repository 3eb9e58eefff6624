// The synthetic shapes generator: determinism, box validity, the occlusion bound, the VOC and
// COCO layouts on disk, and the ssd_data program.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <pugixml.hpp>

#include "app_runner.h"
#include "data/image.h"
#include "data/synth.h"
#include "engine/error.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using test::TempDir;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> read_lines(const fs::path& p) { return test::split_lines(read_file(p)); }

double inclusive_area(const data::Box& b) { return (b.x2 - b.x1 + 1) * (b.y2 - b.y1 + 1); }

double inclusive_overlap(const data::Box& a, const data::Box& b) {
  const double w = std::min(a.x2, b.x2) - std::max(a.x1, b.x1) + 1;
  const double h = std::min(a.y2, b.y2) - std::max(a.y1, b.y1) + 1;
  return w > 0 && h > 0 ? w * h : 0.0;
}

// Mean RGB over a pixel rectangle (inclusive), clipped to the image; false when empty.
bool mean_rgb(const data::Image& im, int x0, int y0, int x1, int y1, double out[3]) {
  x0 = std::max(x0, 0), y0 = std::max(y0, 0), x1 = std::min(x1, im.width - 1), y1 = std::min(y1, im.height - 1);
  if (x1 < x0 || y1 < y0) return false;
  double n = 0;
  out[0] = out[1] = out[2] = 0;
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x, n += 1)
      for (int c = 0; c < 3; ++c) out[c] += im.at(x, y, c);
  for (int c = 0; c < 3; ++c) out[c] /= n;
  return true;
}

// Mean colour of the 3-pixel band just outside a box (the four sides, clipped).
bool surround_rgb(const data::Image& im, const data::Box& b, double out[3]) {
  const int x0 = static_cast<int>(b.x1), y0 = static_cast<int>(b.y1);
  const int x1 = static_cast<int>(b.x2), y1 = static_cast<int>(b.y2);
  double sum[3] = {0, 0, 0}, part[3];
  int parts = 0;
  const int rects[4][4] = {{x0, y0 - 3, x1, y0 - 1}, {x0, y1 + 1, x1, y1 + 3},
                           {x0 - 3, y0, x0 - 1, y1}, {x1 + 1, y0, x1 + 3, y1}};
  for (const auto& r : rects) {
    if (!mean_rgb(im, r[0], r[1], r[2], r[3], part)) continue;
    for (int c = 0; c < 3; ++c) sum[c] += part[c];
    ++parts;
  }
  if (parts == 0) return false;
  for (int c = 0; c < 3; ++c) out[c] = sum[c] / parts;
  return true;
}

}  // namespace

TEST_CASE("synth class names are distinct and the count is checked", "[data][synth]") {
  for (int k = 1; k <= data::kMaxSynthClasses; ++k) {
    const auto names = data::synth_class_names(k);
    REQUIRE(static_cast<int>(names.size()) == k);
    REQUIRE(std::set<std::string>(names.begin(), names.end()).size() == names.size());
  }
  CHECK(data::synth_class_names(6) == std::vector<std::string>{"circle", "square", "triangle", "diamond", "cross", "star"});
  CHECK_THROWS_AS(data::synth_class_names(0), eng::Error);
  CHECK_THROWS_WITH(data::synth_class_names(data::kMaxSynthClasses + 1), Contains("classes"));
}

TEST_CASE("synth options and sizes are validated", "[data][synth]") {
  data::SynthOptions o;
  data::parse_synth_size("128x96", o);
  CHECK((o.width == 128 && o.height == 96));
  for (const char* bad : {"", "128", "128x", "x96", "128x96x3", "-128x96", "128 x 96", "abcxdef", "16x16", "5000x100"})
    CHECK_THROWS_AS(data::parse_synth_size(bad, o), eng::Error);
  CHECK_THROWS_WITH(data::parse_synth_size("12", o), Contains("12"));
  data::SynthOptions k0;
  k0.num_classes = 0;
  CHECK_THROWS_AS(data::render_scene(k0, 1), eng::Error);
  data::SynthOptions counts;
  counts.min_objects = 3;
  counts.max_objects = 2;
  CHECK_THROWS_AS(data::validate_synth_options(counts), eng::Error);
}

TEST_CASE("synth scenes are deterministic per seed", "[data][synth]") {
  const data::SynthOptions o;
  const auto a = data::render_scene(o, 42), b = data::render_scene(o, 42), c = data::render_scene(o, 43);
  REQUIRE(a.image.width == 320);
  REQUIRE(a.image.height == 240);
  CHECK(a.image.rgb == b.image.rgb);
  REQUIRE(a.objects.size() == b.objects.size());
  for (size_t i = 0; i < a.objects.size(); ++i) {
    CHECK(a.objects[i].label == b.objects[i].label);
    CHECK(a.objects[i].box.x1 == b.objects[i].box.x1);
    CHECK(a.objects[i].box.y2 == b.objects[i].box.y2);
  }
  CHECK(a.image.rgb != c.image.rgb);
  CHECK(data::synth_image_seed(0, 0, 1) != data::synth_image_seed(0, 0, 2));
  CHECK(data::synth_image_seed(0, 0, 1) != data::synth_image_seed(0, 1, 1));
  CHECK(data::synth_image_seed(0, 0, 1) != data::synth_image_seed(1, 0, 1));
}

TEST_CASE("synth boxes lie in the image, are at least 8 px and hold a visible object", "[data][synth]") {
  data::SynthOptions o;
  o.num_classes = data::kMaxSynthClasses;
  int objects = 0, visible = 0, images_with_objects = 0;
  std::vector<int> per_class(data::kMaxSynthClasses, 0);
  for (uint64_t seed = 0; seed < 60; ++seed) {
    const auto s = data::render_scene(o, data::synth_image_seed(7, 0, seed));
    REQUIRE(static_cast<int>(s.objects.size()) <= o.max_objects);
    images_with_objects += s.objects.empty() ? 0 : 1;
    for (const auto& obj : s.objects) {
      const auto& b = obj.box;
      REQUIRE((obj.label >= 0 && obj.label < o.num_classes));
      ++per_class[obj.label];
      REQUIRE((b.x1 >= 0 && b.y1 >= 0 && b.x2 <= o.width - 1 && b.y2 <= o.height - 1));
      REQUIRE((b.x1 == std::floor(b.x1) && b.x2 == std::floor(b.x2)));  // whole pixels
      REQUIRE(b.x2 - b.x1 + 1 >= 8);
      REQUIRE(b.y2 - b.y1 + 1 >= 8);
      // Box sides: 15%-55% of the shorter side, plus rotation slack (never above 0.7).
      REQUIRE(std::max(b.x2 - b.x1 + 1, b.y2 - b.y1 + 1) <= 0.7 * 240);
      // The central half of the box differs in colour from the band just outside it.
      const double w = b.x2 - b.x1 + 1, h = b.y2 - b.y1 + 1;
      double inner[3], outer[3];
      REQUIRE(mean_rgb(s.image, static_cast<int>(b.x1 + w / 4), static_cast<int>(b.y1 + h / 4),
                       static_cast<int>(b.x2 - w / 4), static_cast<int>(b.y2 - h / 4), inner));
      if (!surround_rgb(s.image, b, outer)) continue;
      const double d = std::sqrt((inner[0] - outer[0]) * (inner[0] - outer[0]) +
                                 (inner[1] - outer[1]) * (inner[1] - outer[1]) +
                                 (inner[2] - outer[2]) * (inner[2] - outer[2]));
      ++objects;
      visible += d > 25 ? 1 : 0;
    }
  }
  INFO(visible << " of " << objects << " objects stand out from their surroundings");
  CHECK(images_with_objects >= 55);
  CHECK(objects >= 100);
  CHECK(visible >= 0.85 * objects);
  for (int k = 0; k < data::kMaxSynthClasses; ++k) CHECK(per_class[k] > 0);
}

TEST_CASE("synth objects hide at most 35% of an earlier box", "[data][synth]") {
  data::SynthOptions o;
  o.min_objects = 6;
  o.max_objects = 10;  // crowded scenes stress the placement rule
  int pairs_overlapping = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const auto s = data::render_scene(o, seed);
    for (size_t i = 0; i < s.objects.size(); ++i) {
      for (size_t j = i + 1; j < s.objects.size(); ++j) {
        const double cover = inclusive_overlap(s.objects[i].box, s.objects[j].box) / inclusive_area(s.objects[i].box);
        REQUIRE(cover <= data::kSynthMaxCover + 1e-12);
        pairs_overlapping += cover > 0 ? 1 : 0;
      }
    }
  }
  CHECK(pairs_overlapping > 0);  // overlap does happen
}

TEST_CASE("synth VOC dataset: files, XML with 1-based coordinates, split lists", "[data][synth]") {
  TempDir tmp("test_synth");
  data::SynthOptions o;
  o.width = 128;
  o.height = 96;
  o.num_classes = 4;
  const auto summary = data::write_synth_dataset(tmp / "voc", data::SynthFormat::Voc, 3, 2, 5, o);
  REQUIRE(summary.splits == std::vector<std::string>{"trainval", "test"});
  CHECK(summary.images_per_split == std::vector<int>{3, 2});
  const fs::path dir = tmp.path / "voc";
  CHECK(read_lines(dir / "ImageSets/Main/trainval.txt") == std::vector<std::string>{"000001", "000002", "000003"});
  CHECK(read_lines(dir / "ImageSets/Main/test.txt") == std::vector<std::string>{"000004", "000005"});
  CHECK(read_lines(dir / "classes.txt") == data::synth_class_names(4));
  int64_t objects = 0;
  for (int number = 1; number <= 5; ++number) {
    const std::string id = "00000" + std::to_string(number);
    const auto image = data::load_image((dir / "JPEGImages" / (id + ".jpg")).string());
    CHECK((image.width == 128 && image.height == 96));
    CHECK_FALSE(fs::exists(dir / "Annotations" / (id + ".xml.tmp")));
    // Re-render the scene this image was made from: trainval image j uses stream 0, test stream 1.
    const bool test_split = number > 3;
    const auto scene = data::render_scene(o, data::synth_image_seed(5, test_split ? 1 : 0, test_split ? number - 4 : number - 1));
    pugi::xml_document doc;
    REQUIRE(doc.load_file((dir / "Annotations" / (id + ".xml")).c_str()));
    const auto root = doc.child("annotation");
    CHECK(std::string(root.child_value("filename")) == id + ".jpg");
    CHECK(root.child("size").child("width").text().as_int() == 128);
    CHECK(root.child("size").child("height").text().as_int() == 96);
    CHECK(root.child("size").child("depth").text().as_int() == 3);
    size_t k = 0;
    for (auto obj : root.children("object")) {
      REQUIRE(k < scene.objects.size());
      const auto& want = scene.objects[k++];
      CHECK(std::string(obj.child_value("name")) == data::synth_class_names(4)[want.label]);
      CHECK(obj.child("difficult").text().as_int() == 0);
      const auto bb = obj.child("bndbox");
      CHECK(bb.child("xmin").text().as_int() == want.box.x1 + 1);
      CHECK(bb.child("ymin").text().as_int() == want.box.y1 + 1);
      CHECK(bb.child("xmax").text().as_int() == want.box.x2 + 1);
      CHECK(bb.child("ymax").text().as_int() == want.box.y2 + 1);
    }
    CHECK(k == scene.objects.size());
    objects += static_cast<int64_t>(k);
  }
  int64_t counted = 0;
  for (int64_t c : summary.objects_per_class) counted += c;
  CHECK(counted == objects);
}

TEST_CASE("synth COCO dataset: instances JSON per split", "[data][synth]") {
  TempDir tmp("test_synth");
  data::SynthOptions o;
  o.width = 96;
  o.height = 64;
  data::write_synth_dataset(tmp / "coco", data::SynthFormat::Coco, 4, 1, 9, o, "train");
  const fs::path dir = tmp.path / "coco";
  const auto train = nlohmann::json::parse(read_file(dir / "instances_train.json"));
  const auto test = nlohmann::json::parse(read_file(dir / "instances_test.json"));
  REQUIRE(train["images"].size() == 4);
  REQUIRE(test["images"].size() == 1);
  CHECK(test["images"][0]["id"] == 5);
  CHECK(test["images"][0]["file_name"] == "000005.jpg");
  REQUIRE(train["categories"].size() == 6);
  CHECK(train["categories"][0]["id"] == 1);
  CHECK(train["categories"][0]["name"] == "circle");
  CHECK(train["categories"][0]["supercategory"] == "shape");
  size_t expected = 0;
  for (int j = 0; j < 4; ++j) {
    const auto& im = train["images"][j];
    CHECK(im["width"] == 96);
    CHECK(im["height"] == 64);
    const auto image = data::load_image((dir / im["file_name"].get<std::string>()).string());
    CHECK((image.width == 96 && image.height == 64));
    expected += data::render_scene(o, data::synth_image_seed(9, 0, j)).objects.size();
  }
  REQUIRE(train["annotations"].size() == expected);
  if (expected > 0) {
    const auto scene = data::render_scene(o, data::synth_image_seed(9, 0, train["annotations"][0]["image_id"].get<int>() - 1));
    const auto& a = train["annotations"][0];
    const auto& b = scene.objects.at(0).box;
    CHECK(a["id"] == 1);
    CHECK(a["category_id"] == scene.objects[0].label + 1);
    CHECK(a["bbox"][0].get<double>() == b.x1);
    CHECK(a["bbox"][1].get<double>() == b.y1);
    CHECK(a["bbox"][2].get<double>() == b.x2 - b.x1 + 1);
    CHECK(a["bbox"][3].get<double>() == b.y2 - b.y1 + 1);
    CHECK(a["area"].get<double>() == (b.x2 - b.x1 + 1) * (b.y2 - b.y1 + 1));
    CHECK(a["iscrowd"] == 0);
  }
}

TEST_CASE("synth image i does not depend on the number of images", "[data][synth]") {
  TempDir tmp("test_synth");
  data::SynthOptions o;
  o.width = 64;
  o.height = 64;
  data::write_synth_dataset(tmp / "a", data::SynthFormat::Voc, 2, 1, 3, o);
  data::write_synth_dataset(tmp / "b", data::SynthFormat::Voc, 4, 1, 3, o);
  for (const char* id : {"000001", "000002"}) {
    CHECK(read_file(tmp.path / "a/JPEGImages" / (std::string(id) + ".jpg")) ==
          read_file(tmp.path / "b/JPEGImages" / (std::string(id) + ".jpg")));
    CHECK(read_file(tmp.path / "a/Annotations" / (std::string(id) + ".xml")) ==
          read_file(tmp.path / "b/Annotations" / (std::string(id) + ".xml")));
  }
  // The held-out image is the same scene too (its id differs: 000003 vs 000005).
  CHECK(read_file(tmp.path / "a/JPEGImages/000003.jpg") == read_file(tmp.path / "b/JPEGImages/000005.jpg"));
}

TEST_CASE("synth dataset errors name the problem", "[data][synth]") {
  TempDir tmp("test_synth");
  const data::SynthOptions o;
  CHECK_THROWS_WITH(data::write_synth_dataset(tmp / "x", data::SynthFormat::Voc, 0, 0, 0, o), Contains(">= 1"));
  CHECK_THROWS_AS(data::write_synth_dataset(tmp / "x", data::SynthFormat::Voc, 1, -1, 0, o), eng::Error);
  CHECK_THROWS_AS(data::write_synth_dataset(tmp / "x", data::SynthFormat::Voc, 1, 0, 0, o, "a/b"), eng::Error);
  CHECK_THROWS_AS(data::write_synth_dataset(tmp / "x", data::SynthFormat::Voc, 1, 1, 0, o, "test"), eng::Error);
  // A regular file where a directory should go: unwritable whoever runs the test.
  std::ofstream(tmp.path / "file") << "x";
  const std::string blocked = (tmp / "file") + "/sub";
  CHECK_THROWS_WITH(data::write_synth_dataset(blocked, data::SynthFormat::Coco, 1, 0, 0, o), Contains(blocked));
}

TEST_CASE("ssd_data synth writes a dataset and reports bad flags on one line", "[data][synth]") {
  TempDir tmp("test_synth");
  const std::string out = tmp / "d";
  const auto ok = test::run_app("ssd_data", "synth --out '" + out + "' --n 3 --val 1 --size 96x64 --classes 3 --seed 4");
  INFO(ok.err);
  REQUIRE(ok.status == 0);
  const auto lines = test::split_lines(ok.out);
  REQUIRE(lines.size() == 1);
  CHECK_THAT(lines[0], Contains("trainval 3 images") && Contains("test 1 images") && Contains("circle"));
  CHECK(fs::exists(tmp.path / "d/JPEGImages/000004.jpg"));
  CHECK(read_lines(tmp.path / "d/classes.txt").size() == 3);

  const auto coco = test::run_app("ssd_data", "synth --out '" + out + "c' --format coco --n 1 --size 64x64");
  CHECK(coco.status == 0);
  CHECK(fs::exists(out + "c/instances_trainval.json"));

  for (const std::string& bad : {std::string("synth --out '") + out + "' --bogus",
                                 std::string("synth --n 3"),
                                 std::string(""),
                                 std::string("synth --out '") + out + "' --format yolo",
                                 std::string("synth --out '") + out + "' --size 12",
                                 std::string("synth --out '") + out + "' --classes 11",
                                 std::string("synth --out '") + out + "' --n 0"}) {
    const auto r = test::run_app("ssd_data", bad);
    INFO("args: " << bad << "\nstderr: " << r.err);
    CHECK(r.signal == 0);
    CHECK(r.status != 0);
    const auto err = test::split_lines(r.err);
    REQUIRE(err.size() == 1);
    CHECK_THAT(err[0], Catch::Matchers::StartsWith("ssd_data: "));
  }
}
