// Detection metrics (data/metrics.h) and the COCO / detections.json readers (data/coco_json.h).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/coco_json.h"
#include "data/metrics.h"
#include "engine/error.h"

using namespace data;

namespace {

GroundTruth gt_box(const std::string& img, double x1, double y1, double x2, double y2, int cat,
                   bool difficult = false, bool crowd = false) {
  GroundTruth g;
  g.image = img;
  g.box = Box{x1, y1, x2, y2};
  g.category = cat;
  g.difficult = difficult;
  g.iscrowd = crowd;
  return g;
}

Detection det_box(const std::string& img, double x1, double y1, double x2, double y2, int cat, double score) {
  Detection d;
  d.image = img;
  d.box = Box{x1, y1, x2, y2};
  d.category = cat;
  d.score = score;
  return d;
}

std::string fixture(const std::string& name) {
  return std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/eval/" + name;
}

}  // namespace

TEST_CASE("VOC IoU uses the devkit's +1 pixel widths", "[metrics]") {
  // [0,0,9,9] is 10x10 pixels; [5,0,14,9] overlaps it in 5x10 pixels: 50 / (100 + 100 - 50).
  REQUIRE(voc_iou(Box{0, 0, 9, 9}, Box{5, 0, 14, 9}) == Approx(1.0 / 3.0));
  // Plain (COCO) IoU of the same boxes: 4*9 / (81 + 81 - 36).
  REQUIRE(coco_iou(Box{0, 0, 9, 9}, Box{5, 0, 14, 9}, false) == Approx(36.0 / 126.0));
  // Crowd: intersection over the detection's area.
  REQUIRE(coco_iou(Box{0, 0, 10, 10}, Box{5, 0, 100, 100}, true) == Approx(0.5));
  REQUIRE(voc_iou(Box{0, 0, 9, 9}, Box{20, 20, 30, 30}) == 0.0);
}

TEST_CASE("VOC07 11-point and area AP on a hand-computed case, difficult and duplicates", "[metrics]") {
  // Class 0: four GT (G1..G4) plus one difficult GT (D), so npos = 4.
  std::vector<GroundTruth> gt = {
      gt_box("a.jpg", 0, 0, 49, 49, 0),            // G1
      gt_box("a.jpg", 100, 100, 149, 149, 0),      // G2
      gt_box("b.jpg", 0, 0, 29, 29, 0),            // G3
      gt_box("b.jpg", 200, 200, 259, 259, 0),      // G4 (never detected)
      gt_box("b.jpg", 100, 0, 139, 39, 0, true),   // D (difficult)
  };
  std::vector<Detection> dets = {
      det_box("a.jpg", 0, 0, 49, 49, 0, 0.9),        // rank 1: TP on G1
      det_box("a.jpg", 1, 1, 49, 49, 0, 0.8),        // rank 2: duplicate on G1 -> FP
      det_box("a.jpg", 100, 100, 149, 149, 0, 0.7),  // rank 3: TP on G2
      det_box("b.jpg", 100, 0, 139, 39, 0, 0.6),     // rank 4: on D -> neither TP nor FP
      det_box("a.jpg", 300, 300, 340, 340, 0, 0.5),  // rank 5: background -> FP
      det_box("b.jpg", 0, 0, 29, 29, 0, 0.4),        // rank 6: TP on G3
      det_box("c.jpg", 0, 0, 29, 29, 1, 0.9),        // class 1 has no GT: AP -1, not in the mean
  };
  // PR table (the difficult match, rank 4, is dropped):
  //   rank  TP FP  recall  precision
  //     1    1  0   0.25     1
  //     2    1  1   0.25     0.5
  //     3    2  1   0.50     2/3
  //     5    2  2   0.50     0.5
  //     6    3  2   0.75     0.6
  // 11-point: max precision at recall >= t
  //   t = 0, .1, .2        -> 1     (3 points)
  //   t = .3, .4, .5       -> 2/3   (3 points)
  //   t = .6, .7           -> 0.6   (2 points)
  //   t = .8, .9, 1        -> 0     (3 points)
  //   AP07 = (3 * 1 + 3 * 2/3 + 2 * 0.6) / 11 = 6.2 / 11
  // Area under the envelope (1 up to recall .25, 2/3 up to .5, 0.6 up to .75):
  //   AP = .25 * 1 + .25 * 2/3 + .25 * 0.6 = 0.25 + 1/6 + 0.15
  EvalResult r = evaluate(gt, dets, 2);
  REQUIRE(r.per_class.size() == 2);
  CHECK(r.per_class[0].num_gt == 4);
  CHECK(r.per_class[0].ap_voc07 == Approx(6.2 / 11.0).epsilon(1e-12));
  CHECK(r.per_class[0].ap_voc_area == Approx(0.25 + 1.0 / 6.0 + 0.15).epsilon(1e-12));
  CHECK(r.per_class[1].num_gt == 0);
  CHECK(r.per_class[1].ap_voc07 == -1.0);
  CHECK(r.map_voc07 == Approx(6.2 / 11.0).epsilon(1e-12));
  CHECK(r.map_voc_area == Approx(0.25 + 1.0 / 6.0 + 0.15).epsilon(1e-12));

  // The same building blocks on the PR arrays directly.
  const std::vector<double> rec = {0.25, 0.25, 0.5, 0.5, 0.75}, prec = {1, 0.5, 2.0 / 3.0, 0.5, 0.6};
  CHECK(voc07_ap(rec, prec) == Approx(6.2 / 11.0).epsilon(1e-12));
  CHECK(voc_area_ap(rec, prec) == Approx(0.25 + 1.0 / 6.0 + 0.15).epsilon(1e-12));
}

TEST_CASE("VOC: a detection on a difficult GT is neither TP nor FP, duplicates are FP", "[metrics]") {
  std::vector<GroundTruth> gt = {gt_box("a.jpg", 0, 0, 49, 49, 0), gt_box("a.jpg", 100, 100, 149, 149, 0, true)};
  // Highest score on the difficult GT: if it counted as FP the precision at recall 1 would be 0.5.
  std::vector<Detection> dets = {det_box("a.jpg", 100, 100, 149, 149, 0, 0.9), det_box("a.jpg", 0, 0, 49, 49, 0, 0.8)};
  EvalResult r = evaluate(gt, dets, 1);
  CHECK(r.per_class[0].num_gt == 1);
  CHECK(r.map_voc07 == Approx(1.0));
  CHECK(r.map_voc_area == Approx(1.0));

  // A duplicate ranked above the TP makes precision 1/2 at recall 1.
  dets = {det_box("a.jpg", 0, 0, 49, 49, 0, 0.8), det_box("a.jpg", 1, 0, 49, 49, 0, 0.9)};
  r = evaluate(gt, dets, 1);
  // rank 1 (0.9): TP (rec 1, prec 1); rank 2: duplicate FP (rec 1, prec 0.5) -> AP 1.
  CHECK(r.map_voc07 == Approx(1.0));
  dets.push_back(det_box("a.jpg", 2, 2, 49, 49, 0, 0.95));  // now two duplicates around one TP
  r = evaluate(gt, dets, 1);
  // rank 1 TP (1, 1); ranks 2, 3 FP -> AP stays 1 (precision 1 reached at recall 1).
  CHECK(r.map_voc_area == Approx(1.0));
  // Duplicates ranked first: FP at rank 1 would require a matched GT; instead put a background
  // FP first: rec (0, 1), prec (0, 0.5) -> AP07 = 0.5, area AP = 0.5.
  dets = {det_box("a.jpg", 300, 300, 340, 340, 0, 0.99), det_box("a.jpg", 0, 0, 49, 49, 0, 0.5)};
  r = evaluate(gt, dets, 1);
  CHECK(r.map_voc07 == Approx(0.5));
  CHECK(r.map_voc_area == Approx(0.5));

  // IoU exactly 0.5 (devkit: ovmax >= 0.5) is a TP: 10x10 GT inside a 20x10 detection.
  gt = {gt_box("a.jpg", 0, 0, 9, 9, 0)};
  dets = {det_box("a.jpg", 0, 0, 19, 9, 0, 0.9)};
  r = evaluate(gt, dets, 1);
  CHECK(r.map_voc07 == Approx(1.0));
}

TEST_CASE("COCO: crowd regions absorb detections, detections on images without GT are FP", "[metrics]") {
  std::vector<GroundTruth> gt = {gt_box("a.jpg", 0, 0, 100, 100, 3), gt_box("a.jpg", 200, 200, 400, 400, 3, false, true)};
  gt[0].area = 10000;
  gt[1].area = 40000;
  std::vector<Detection> dets = {det_box("a.jpg", 0, 0, 100, 100, 3, 0.5),
                                 det_box("a.jpg", 210, 210, 260, 260, 3, 0.9),  // inside the crowd: ignored
                                 det_box("a.jpg", 300, 300, 350, 350, 3, 0.8)};  // also inside: ignored
  EvalResult r = evaluate(gt, dets, std::vector<int>{3});
  CHECK(r.map_coco == Approx(1.0));
  CHECK(r.ap50 == Approx(1.0));
  CHECK(r.apl == Approx(1.0));
  CHECK(r.aps == -1.0);  // no small GT
  // One more detection, on an image with no GT at all, scored highest: precision 1/2 at recall 1.
  dets.push_back(det_box("empty.jpg", 0, 0, 100, 100, 3, 0.95));
  r = evaluate(gt, dets, std::vector<int>{3});
  CHECK(r.map_coco == Approx(0.5));
  CHECK(r.ap75 == Approx(0.5));
}

TEST_CASE("COCO numbers equal pycocotools on the committed fixture", "[metrics]") {
  for (const char* f : {"gt.json", "detections.json", "pycocotools.json"}) {
    INFO("missing fixture " << fixture(f) << " (run tools/make_eval_fixture.py)");
    REQUIRE(std::filesystem::exists(fixture(f)));  // fails, never skips
  }
  CocoGroundTruth gt = read_coco_gt(fixture("gt.json"));
  std::vector<Detection> dets = read_detections(fixture("detections.json"));
  nlohmann::json ref;
  std::ifstream(fixture("pycocotools.json")) >> ref;
  REQUIRE(gt.images.size() == 10);
  REQUIRE(static_cast<int>(gt.annotations.size()) == ref.at("num_annotations").get<int>());
  REQUIRE(static_cast<int>(dets.size()) == ref.at("num_detections").get<int>());
  EvalResult r = evaluate(gt.annotations, dets, gt.category_ids());
  const std::pair<const char*, double> got[] = {{"map_coco", r.map_coco}, {"ap50", r.ap50}, {"ap75", r.ap75},
                                                {"aps", r.aps},           {"apm", r.apm},   {"apl", r.apl}};
  double worst = 0;
  for (const auto& [name, value] : got) {
    const double want = ref.at(name).get<double>();
    INFO(name << ": ours " << value << ", pycocotools " << want);
    CHECK(std::fabs(value - want) <= 1e-4);
    worst = std::max(worst, std::fabs(value - want));
  }
  WARN("worst |ours - pycocotools| = " << worst);
  // The category without GT is -1 and left out; VOC numbers are in [0, 1].
  REQUIRE(r.per_class.size() == 4);
  CHECK(r.per_class[3].category == 7);
  CHECK(r.per_class[3].ap_coco == -1.0);
  CHECK(r.map_voc07 >= 0.0);
  CHECK(r.map_voc07 <= 1.0);

  nlohmann::json j = nlohmann::json::parse(to_json(r));
  for (const char* k : {"map_voc07", "map_voc_area", "map_coco", "ap50", "ap75", "aps", "apm", "apl"})
    CHECK(j.contains(k));
  CHECK(j.at("map_coco").get<double>() == Approx(r.map_coco));
  CHECK(j.at("per_class").size() == 4);
}

TEST_CASE("COCO / detections readers report malformed input with the file name", "[metrics]") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "engine_test_metrics";
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    const std::string p = (dir / name).string();
    std::ofstream(p) << text;
    return p;
  };
  auto message = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const eng::Error& e) {
      return e.what();
    }
    return "";
  };
  const std::string bad = write("bad.json", "{\"images\": [");
  std::string m = message([&] { read_coco_gt(bad); });
  CHECK(m.find("bad.json") != std::string::npos);
  CHECK(m.find("malformed JSON") != std::string::npos);
  m = message([&] { read_detections(bad); });
  CHECK(m.find("bad.json") != std::string::npos);

  const std::string no_bbox = write("no_bbox.json",
                                    R"({"images": [{"id": 1, "file_name": "x/a.jpg"}], "categories": [{"id": 1}],
                                        "annotations": [{"image_id": 1, "category_id": 1}]})");
  m = message([&] { read_coco_gt(no_bbox); });
  CHECK(m.find("no_bbox.json") != std::string::npos);
  CHECK(m.find("bbox") != std::string::npos);

  const std::string no_score = write("no_score.json",
                                     R"({"images": [{"file": "a.jpg", "width": 4, "height": 4,
                                         "detections": [{"category_id": 1, "bbox": [0, 0, 1, 1]}]}]})");
  m = message([&] { read_detections(no_score); });
  CHECK(m.find("no_score.json") != std::string::npos);
  CHECK(m.find("score") != std::string::npos);

  m = message([&] { read_detections((dir / "does_not_exist.json").string()); });
  CHECK(m.find("does_not_exist.json") != std::string::npos);

  // A well-formed pair: keys are base names, bbox becomes corners, missing area = w * h.
  const std::string ok_gt = write("ok_gt.json",
                                  R"({"images": [{"id": 7, "file_name": "dir/a.jpg"}], "categories": [{"id": 2, "name": "x"}],
                                      "annotations": [{"image_id": 7, "category_id": 2, "bbox": [1, 2, 3, 4], "iscrowd": 1}]})");
  CocoGroundTruth g = read_coco_gt(ok_gt);
  REQUIRE(g.annotations.size() == 1);
  CHECK(g.annotations[0].image == "a.jpg");
  CHECK(g.annotations[0].box.x2 == 4.0);
  CHECK(g.annotations[0].box.y2 == 6.0);
  CHECK(g.annotations[0].area == 12.0);
  CHECK(g.annotations[0].iscrowd);
  const std::string ok_det = write("ok_det.json",
                                   R"({"images": [{"file": "imgs/a.jpg", "width": 4, "height": 4,
                                       "detections": [{"category_id": 2, "label": "x", "score": 0.5, "bbox": [1, 2, 3, 4]}]}]})");
  std::vector<Detection> d = read_detections(ok_det);
  REQUIRE(d.size() == 1);
  CHECK(d[0].image == "a.jpg");
  CHECK(d[0].box.x2 == 4.0);
  fs::remove_all(dir);
}
