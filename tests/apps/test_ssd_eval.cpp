// Runs the built ssd_eval (<build>/apps/ssd_eval): the COCO numbers against pycocotools on
// tests/fixtures/eval/, a hand-computed VOC case, the table output and the error exits.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;
using test::write_file;

namespace {

std::string fixture(const std::string& name) {
  return std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/eval/" + name;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

json parse_stdout(const test::AppRun& r) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.status == 0);
  json j;
  REQUIRE_NOTHROW(j = json::parse(r.out));  // exactly one JSON value, nothing else
  REQUIRE(j.is_object());
  return j;
}

// One error line "ssd_eval: ..." naming `file`, exit 1, nothing on stdout.
void check_error(const test::AppRun& r, const std::string& file) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.status == 1);
  CHECK(r.out.empty());
  const auto lines = test::split_lines(r.err);
  REQUIRE(lines.size() == 1);
  CHECK_THAT(lines[0], Catch::StartsWith("ssd_eval: ") && Catch::Contains(file));
}

std::string voc_object(const std::string& name, int xmin, int ymin, int xmax, int ymax, bool difficult = false) {
  return "<object><name>" + name + "</name><difficult>" + (difficult ? "1" : "0") + "</difficult><bndbox><xmin>" +
         std::to_string(xmin) + "</xmin><ymin>" + std::to_string(ymin) + "</ymin><xmax>" + std::to_string(xmax) +
         "</xmax><ymax>" + std::to_string(ymax) + "</ymax></bndbox></object>";
}

std::string voc_xml(const std::string& file, const std::string& objects) {
  return "<annotation><filename>" + file + "</filename><size><width>100</width><height>100</height>"
         "<depth>3</depth></size>" + objects + "</annotation>";
}

// A small VOC tree (no JPEGs: ssd_eval does not need them) with classes cat (id 1), dog (id 2):
//   a.jpg: cat G1 XML (11,11,50,50) -> box (10,10,49,49); cat G2 (61,61,90,90) -> (60,60,89,89);
//          difficult cat D (2,62,31,91) -> (1,61,30,90)
//   b.jpg: cat G3 (21,21,60,60) -> (20,20,59,59); dog G4 (1,1,30,30) -> (0,0,29,29)
void write_voc_tree(const std::string& root) {
  write_file(root + "/classes.txt", "cat\ndog\n");
  write_file(root + "/ImageSets/Main/test.txt", "a\nb\n");
  write_file(root + "/Annotations/a.xml",
             voc_xml("a.jpg", voc_object("cat", 11, 11, 50, 50) + voc_object("cat", 61, 61, 90, 90) +
                                  voc_object("cat", 2, 62, 31, 91, true)));
  write_file(root + "/Annotations/b.xml",
             voc_xml("b.jpg", voc_object("cat", 21, 21, 60, 60) + voc_object("dog", 1, 1, 30, 30)));
}

// Detections (bbox [x, y, w, h] in the corner convention of the boxes above):
//   s 0.95 cat a (1,61,30,90)   on the difficult D: neither TP nor FP
//   s 0.9  cat a (10,10,49,49)  TP  (G1)
//   s 0.8  cat b (70,0,99,29)   FP  (no overlap)
//   s 0.7  cat b (20,20,59,59)  TP  (G3)
//   s 0.6  cat a (10,10,49,49)  FP  (duplicate of G1)
//   s 0.5  dog b (0,0,29,29)    TP  (G4)
// cat: npos 3 (D is difficult); after dropping D's detection:
//   rank  TP FP  recall  precision
//     1    1  0   1/3     1
//     2    1  1   1/3     1/2
//     3    2  1   2/3     2/3
//     4    2  2   2/3     1/2
//   VOC07: t = 0, .1, .2, .3 -> max precision at recall >= t is 1 (4 points);
//          t = .4, .5, .6 -> 2/3 (3 points); t = .7 ... 1 -> 0 (recall never reaches t).
//          AP = (4 + 3 * 2/3) / 11 = 6/11.
//   area:  envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3]: AP = 1/3 + 2/9 = 5/9.
// dog: one TP on its only GT: AP 1 for both.
// mAP VOC07 = (6/11 + 1) / 2 = 17/22; mAP area = (5/9 + 1) / 2 = 7/9.
const char* kVocDetections = R"({"images": [
  {"file": "a.jpg", "width": 100, "height": 100, "detections": [
    {"category_id": 1, "label": 1, "score": 0.95, "bbox": [1, 61, 29, 29]},
    {"category_id": 1, "label": 1, "score": 0.9, "bbox": [10, 10, 39, 39]},
    {"category_id": 1, "label": 1, "score": 0.6, "bbox": [10, 10, 39, 39]}]},
  {"file": "some/dir/b.jpg", "width": 100, "height": 100, "detections": [
    {"category_id": 1, "label": 1, "score": 0.8, "bbox": [70, 0, 29, 29]},
    {"category_id": 1, "label": 1, "score": 0.7, "bbox": [20, 20, 39, 39]},
    {"category_id": 2, "label": 2, "score": 0.5, "bbox": [0, 0, 29, 29]}]}
]})";

}  // namespace

TEST_CASE("ssd_eval --json on the COCO fixture equals pycocotools", "[apps][ssd_eval]") {
  const auto r = test::run_app("ssd_eval", "--gt " + quoted(fixture("gt.json")) + " --det " +
                                               quoted(fixture("detections.json")) + " --json");
  const json j = parse_stdout(r);
  CHECK(r.err.empty());
  std::ifstream f(fixture("pycocotools.json"));
  const json ref = json::parse(f);
  for (const char* key : {"map_coco", "ap50", "ap75", "aps", "apm", "apl"}) {
    INFO(key);
    REQUIRE(j.contains(key));
    CHECK(j[key].get<double>() == Approx(ref[key].get<double>()).margin(1e-4));
  }
  for (const char* key : {"map_voc07", "map_voc_area", "per_class"}) CHECK(j.contains(key));
  CHECK(j["per_class"].size() == 4);  // categories 1, 2, 5, 7
}

TEST_CASE("ssd_eval on a small VOC tree: hand-computed VOC07 and area AP", "[apps][ssd_eval]") {
  TempDir t("test_ssd_eval");
  write_voc_tree(t / "voc");
  write_file(t / "det.json", kVocDetections);
  const std::string args = "--gt " + quoted(t / "voc") + " --det " + quoted(t / "det.json");

  SECTION("--json") {
    const auto r = test::run_app("ssd_eval", args + " --json");
    const json j = parse_stdout(r);
    CHECK(r.err.empty());
    CHECK(j["map_voc07"].get<double>() == Approx(17.0 / 22.0));
    CHECK(j["map_voc_area"].get<double>() == Approx(7.0 / 9.0));
    REQUIRE(j["per_class"].size() == 2);
    CHECK(j["per_class"][0]["category"] == 1);
    CHECK(j["per_class"][0]["num_gt"] == 3);
    CHECK(j["per_class"][0]["ap_voc07"].get<double>() == Approx(6.0 / 11.0));
    CHECK(j["per_class"][0]["ap_voc_area"].get<double>() == Approx(5.0 / 9.0));
    CHECK(j["per_class"][1]["ap_voc07"].get<double>() == Approx(1.0));
    CHECK(j["per_class"][1]["ap_coco"].get<double>() == Approx(1.0));
  }
  SECTION("the table") {
    const auto r = test::run_app("ssd_eval", args);
    INFO(r.out << r.err);
    REQUIRE(r.status == 0);
    CHECK_THAT(r.out, Catch::Contains("images: 2, detections: 6"));
    CHECK_THAT(r.out, Catch::Contains("cat         3    0.5455       0.5556"));
    CHECK_THAT(r.out, Catch::Contains("dog         1    1.0000       1.0000   1.0000"));
    CHECK_THAT(r.out, Catch::Contains("mAP VOC07 (11-point):   0.7727"));
    CHECK_THAT(r.out, Catch::Contains("mAP VOC area:           0.7778"));
  }
  SECTION("--split and --classes are honoured") {
    write_file(t / "voc/ImageSets/Main/val.txt", "b\n");
    write_file(t / "other_classes.txt", "dog\ncat\n");  // dog is now id 1, cat id 2
    write_file(t / "det_val.json", R"({"images": [{"file": "b.jpg", "detections": [
      {"category_id": 1, "score": 0.5, "bbox": [0, 0, 29, 29]}]}]})");
    const auto r = test::run_app("ssd_eval", "--gt " + quoted(t / "voc") + " --split val --classes " +
                                                 quoted(t / "other_classes.txt") + " --det " +
                                                 quoted(t / "det_val.json") + " --json");
    const json j = parse_stdout(r);
    REQUIRE(j["per_class"].size() == 2);
    CHECK(j["per_class"][0]["ap_voc07"].get<double>() == Approx(1.0));  // dog
    CHECK(j["per_class"][1]["ap_voc07"].get<double>() == Approx(0.0));  // cat: one GT, no detection
  }
}

TEST_CASE("ssd_eval reports reader warnings and unmatched detections on stderr", "[apps][ssd_eval]") {
  TempDir t("test_ssd_eval");
  write_voc_tree(t / "voc");
  write_file(t / "voc/ImageSets/Main/test.txt", "a\nb\nc\n");  // c.xml does not exist
  write_file(t / "det.json", R"({"images": [{"file": "zzz.jpg", "detections": [
    {"category_id": 1, "score": 0.5, "bbox": [0, 0, 29, 29]}]}]})");
  const auto r = test::run_app("ssd_eval", "--gt " + quoted(t / "voc") + " --det " + quoted(t / "det.json") +
                                               " --json");
  parse_stdout(r);
  const auto lines = test::split_lines(r.err);
  REQUIRE(lines.size() == 3);
  CHECK_THAT(lines[0], Catch::Contains("c.xml") && Catch::EndsWith("(image skipped)"));
  CHECK_THAT(lines[1], Catch::Contains("1 warnings: 1 images and 0 objects skipped"));
  CHECK_THAT(lines[2], Catch::Contains("1 detections on 1 images not in the ground truth"));
}

TEST_CASE("ssd_eval: missing files, malformed JSON and unknown categories exit 1 with one line",
          "[apps][ssd_eval]") {
  TempDir t("test_ssd_eval");
  const std::string gt = fixture("gt.json"), det = fixture("detections.json");
  SECTION("missing COCO GT") {
    check_error(test::run_app("ssd_eval", "--gt " + quoted(t / "none.json") + " --det " + quoted(det)), t / "none.json");
  }
  SECTION("missing VOC root") {
    check_error(test::run_app("ssd_eval", "--gt " + quoted(t / "no_voc") + " --det " + quoted(det)), t / "no_voc");
  }
  SECTION("missing VOC split") {
    write_voc_tree(t / "voc");
    check_error(test::run_app("ssd_eval", "--gt " + quoted(t / "voc") + " --split val --det " + quoted(det)),
                "val.txt");
  }
  SECTION("missing detections") {
    check_error(test::run_app("ssd_eval", "--gt " + quoted(gt) + " --det " + quoted(t / "d.json")), t / "d.json");
  }
  SECTION("malformed GT JSON") {
    write_file(t / "bad_gt.json", "{\"images\": [1, 2,\n");
    check_error(test::run_app("ssd_eval", "--gt " + quoted(t / "bad_gt.json") + " --det " + quoted(det)),
                t / "bad_gt.json");
  }
  SECTION("malformed detections JSON") {
    write_file(t / "bad_det.json", "{\"images\": [\n{\"file\": \"a.jpg\",\n");
    check_error(test::run_app("ssd_eval", "--gt " + quoted(gt) + " --det " + quoted(t / "bad_det.json")),
                t / "bad_det.json");
  }
  SECTION("a detection category that the dataset does not have") {
    write_file(t / "cat99.json", R"({"images": [{"file": "img_00.jpg", "detections": [
      {"category_id": 99, "score": 0.5, "bbox": [0, 0, 29, 29]}]}]})");
    const auto r = test::run_app("ssd_eval", "--gt " + quoted(gt) + " --det " + quoted(t / "cat99.json"));
    check_error(r, t / "cat99.json");
    CHECK_THAT(r.err, Catch::Contains("category_id 99"));
  }
  SECTION("missing --det") { check_error(test::run_app("ssd_eval", "--gt " + quoted(gt)), "--det"); }
}
