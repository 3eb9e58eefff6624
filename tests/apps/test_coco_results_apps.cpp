// ssd_detect --coco-results / --coco-gt and ssd_eval on COCO results files, end to end: the
// built programs on a generated COCO set (data/synth.h) with a fixed-seed, untrained
// tiny_ssd (its detections are many and arbitrary, which is what a format test wants).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "common/checkpoint.h"
#include "data/synth.h"
#include "engine/io/safetensors.h"
#include "engine/tensor.h"
#include "models/detection_model.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const bool kPassiveOpenMp = [] { return ::setenv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0; }();

std::string q(const std::string& s) { return "'" + s + "'"; }

json read_json(const std::string& path) {
  INFO("reading " << path);
  REQUIRE(fs::exists(path));
  std::ifstream f(path);
  return json::parse(f);
}

// A COCO set of 6 + 2 images of 3 classes (category ids 1..3; trainval ids 1..6, test 7..8),
// and the weights of a fixed-seed tiny_ssd for it (category ids 1..3), made once.
struct Fixture {
  test::TempDir dir{"coco_results_apps"};
  std::string data, weights;
  Fixture() {
    data = dir / "data";
    data::SynthOptions o;
    o.width = 96;
    o.height = 80;
    o.num_classes = 3;
    data::write_synth_dataset(data, data::SynthFormat::Coco, 6, 2, 11, o);
    weights = dir / "w.safetensors";
    eng::manual_seed(5);
    models::ModelConfig mc;
    mc.arch = "tiny_ssd";
    mc.num_classes = 4;
    mc.input_size = 128;
    auto model = models::create_model(mc);
    app::save_checkpoint(weights, *model, nullptr, app::TrainState{}, {{"circle", "square", "triangle"}, {1, 2, 3}});
  }
  std::string image(int i) const {
    char name[32];
    std::snprintf(name, sizeof name, "/%06d.jpg", i);
    return data + name;
  }
  std::string trainval() const { return data + "/instances_trainval.json"; }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

test::AppRun detect(const std::string& args) {
  const Fixture& f = fixture();
  return test::run_app("ssd_detect", "--weights " + q(f.weights) + " --workers 0 " + args);
}

// ssd_eval --json on one GT and detections file: the parsed object.
json eval(const std::string& gt, const std::string& det) {
  auto r = test::run_app("ssd_eval", "--gt " + q(gt) + " --det " + q(det) + " --json");
  INFO("ssd_eval " << det << "\nstdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.status == 0);
  return json::parse(r.out);
}

// detections.json as (file base name -> list of [category_id, score, x, y, w, h]).
std::map<std::string, std::vector<std::vector<double>>> detections_by_file(const json& dj) {
  std::map<std::string, std::vector<std::vector<double>>> out;
  for (const json& im : dj.at("images")) {
    auto& v = out[fs::path(im.at("file").get<std::string>()).filename().string()];
    for (const json& d : im.at("detections")) {
      const json& b = d.at("bbox");
      v.push_back({d.at("category_id").get<double>(), d.at("score").get<double>(), b[0].get<double>(),
                   b[1].get<double>(), b[2].get<double>(), b[3].get<double>()});
    }
  }
  return out;
}

// The results list grouped the same way, through `file_of_id`.
std::map<std::string, std::vector<std::vector<double>>> results_by_file(const json& rj,
                                                                        const std::map<int64_t, std::string>& file_of_id) {
  std::map<std::string, std::vector<std::vector<double>>> out;
  for (const json& r : rj) {
    const auto it = file_of_id.find(r.at("image_id").get<int64_t>());
    REQUIRE(it != file_of_id.end());
    const json& b = r.at("bbox");
    out[fs::path(it->second).filename().string()].push_back(
        {r.at("category_id").get<double>(), r.at("score").get<double>(), b[0].get<double>(), b[1].get<double>(),
         b[2].get<double>(), b[3].get<double>()});
  }
  return out;
}

}  // namespace

TEST_CASE("ssd_detect --coco-results without a GT: ids in input order, the ids file beside, the same detections",
          "[apps][coco_results]") {
  const Fixture& f = fixture();
  test::TempDir tmp("coco_results_noggt");
  const std::string out = tmp / "det", res = tmp / "res.json";
  // Inputs in a deliberate order (not sorted): ids follow it.
  const std::vector<int> order = {5, 2, 8, 1};
  std::string inputs;
  for (int i : order) inputs += " " + q(f.image(i));
  auto r = detect("--input" + inputs + " --out " + q(out) + " --coco-results " + q(res));
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  CHECK_THAT(r.out, Catch::Contains("wrote " + res) && Catch::Contains("wrote " + tmp / "res.ids.json"));

  const json ids = read_json(tmp / "res.ids.json");
  REQUIRE(ids.at("images").size() == order.size());
  std::map<int64_t, std::string> file_of_id;
  for (size_t k = 0; k < order.size(); ++k) {
    const json& im = ids.at("images")[k];
    CHECK(im.at("id").get<int64_t>() == static_cast<int64_t>(k) + 1);
    CHECK(im.at("file_name").get<std::string>() == f.image(order[k]));
    CHECK(im.at("width").get<int>() == 96);
    CHECK(im.at("height").get<int>() == 80);
    file_of_id[static_cast<int64_t>(k) + 1] = im.at("file_name").get<std::string>();
  }
  const json rj = read_json(res);
  REQUIRE(rj.is_array());
  REQUIRE(rj.size() > 20);  // an untrained model still finds plenty
  // The same detections, value for value, as detections.json of the same run; category ids
  // are the weights' (here the 1-based class index).
  const auto from_det = detections_by_file(read_json(out + "/detections.json"));
  const auto from_res = results_by_file(rj, file_of_id);
  CHECK(from_det == from_res);
  for (const json& e : rj) {
    CHECK(e.at("category_id").get<int>() >= 1);
    CHECK(e.at("category_id").get<int>() <= 3);
  }
}

TEST_CASE("ssd_detect --coco-gt: ids from the GT by file name, unmatched images in one line, stale ids file removed",
          "[apps][coco_results]") {
  const Fixture& f = fixture();
  test::TempDir tmp("coco_results_gt");
  const std::string out = tmp / "det", res = tmp / "res.json";
  test::write_file(tmp / "res.ids.json", "{\"images\": [{\"id\": 1, \"file_name\": \"stale.jpg\"}]}");
  // The whole folder: 6 trainval images are in the GT, the 2 test images are not.
  auto r = detect("--input " + q(f.data) + " --out " + q(out) + " --coco-results " + q(res) + " --coco-gt " +
                  q(f.trainval()));
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.status == 0);
  const auto lines = test::split_lines(r.err);
  REQUIRE(lines.size() == 1);  // one summary line, not one per image
  CHECK_THAT(lines[0], Catch::StartsWith("ssd_detect: warning: --coco-gt " + f.trainval()) &&
                           Catch::Contains("2 of 8 images") && Catch::Contains("000007.jpg") &&
                           Catch::Contains("000008.jpg"));
  CHECK_FALSE(fs::exists(tmp / "res.ids.json"));

  std::map<int64_t, std::string> file_of_id;
  const json gt = read_json(f.trainval());
  for (const json& im : gt.at("images"))
    file_of_id[im.at("id").get<int64_t>()] = im.at("file_name").get<std::string>();
  const json rj = read_json(res);
  std::set<int64_t> seen;
  for (const json& e : rj) seen.insert(e.at("image_id").get<int64_t>());
  CHECK(seen == std::set<int64_t>{1, 2, 3, 4, 5, 6});
  // detections.json keeps every image; the results only the GT's, with the GT's ids.
  auto from_det = detections_by_file(read_json(out + "/detections.json"));
  from_det.erase("000007.jpg");
  from_det.erase("000008.jpg");
  CHECK(from_det == results_by_file(rj, file_of_id));
}

TEST_CASE("ssd_eval on a COCO results file gives the numbers of detections.json of the same run",
          "[apps][coco_results]") {
  const Fixture& f = fixture();
  test::TempDir tmp("coco_results_eval");
  const std::string out = tmp / "det";
  {
    auto r = detect("--input " + q(f.data) + " --out " + q(out) + " --coco-results " + q(tmp / "gt.json") +
                    " --coco-gt " + q(f.trainval()));
    REQUIRE(r.status == 0);
  }
  {
    auto r = detect("--input " + q(f.data) + " --out " + q(tmp / "det2") + " --coco-results " + q(tmp / "n.json"));
    REQUIRE(r.status == 0);
  }
  const json reference = eval(f.trainval(), out + "/detections.json");
  REQUIRE(reference.at("map_coco").get<double>() >= 0);
  // GT ids (mapped through the GT's "images"), and input-order ids (through n.ids.json).
  CHECK(eval(f.trainval(), tmp / "gt.json") == reference);
  CHECK(eval(f.trainval(), tmp / "n.json") == reference);

  // Input-order ids with no ids file and a GT that has no ids to offer: one line.
  fs::remove(tmp / "n.ids.json");
  const std::string voc = tmp / "voc";
  data::SynthOptions o;
  o.width = 96;
  o.height = 80;
  o.num_classes = 3;
  data::write_synth_dataset(voc, data::SynthFormat::Voc, 6, 2, 11, o);
  auto r = test::run_app("ssd_eval", "--gt " + q(voc) + " --det " + q(tmp / "n.json") + " --json");
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.status == 1);
  CHECK(r.out.empty());
  REQUIRE(test::split_lines(r.err).size() == 1);
  CHECK_THAT(r.err, Catch::StartsWith("ssd_eval: " + tmp / "n.json") && Catch::Contains("n.ids.json"));
}

TEST_CASE("ssd_detect and ssd_eval: bad COCO results input is one line, nothing half-written",
          "[apps][coco_results]") {
  const Fixture& f = fixture();
  test::TempDir tmp("coco_results_badapps");
  const std::string out = tmp / "det", res = tmp / "res.json";
  auto one_line = [](const test::AppRun& r, const std::string& prog, const std::string& part) {
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.status == 1);
    const auto lines = test::split_lines(r.err);
    REQUIRE(lines.size() == 1);
    CHECK_THAT(lines[0], Catch::StartsWith(prog + ": ") && Catch::Contains(part));
  };
  const std::string in = " --input " + q(f.image(1)) + " --out " + q(out);
  one_line(detect(in + " --coco-gt " + q(f.trainval())), "ssd_detect", "needs --coco-results");
  one_line(detect(in + " --coco-results " + q(res) + " --coco-gt " + q(tmp / "none.json")), "ssd_detect",
           tmp / "none.json");
  one_line(detect(in + " --coco-results " + q(tmp / "no/dir/r.json")), "ssd_detect", "does not exist");
  test::write_file(tmp / "two_cats.json",
                   "{\"images\": [], \"annotations\": [], \"categories\": [{\"id\": 1, \"name\": \"a\"}, "
                   "{\"id\": 9, \"name\": \"b\"}]}");
  one_line(detect(in + " --coco-results " + q(res) + " --coco-gt " + q(tmp / "two_cats.json")), "ssd_detect",
           "2 categories, but the model has 3 classes");
  test::write_file(tmp / "dup.json",
                   "{\"images\": [{\"id\": 1, \"file_name\": \"a/x.jpg\"}, {\"id\": 2, \"file_name\": \"b/x.jpg\"}],"
                   " \"annotations\": [], \"categories\": [{\"id\": 1, \"name\": \"a\"}, {\"id\": 2, \"name\": \"b\"},"
                   " {\"id\": 3, \"name\": \"c\"}]}");
  one_line(detect(in + " --coco-results " + q(res) + " --coco-gt " + q(tmp / "dup.json")), "ssd_detect",
           "same file name 'x.jpg'");
  CHECK_FALSE(fs::exists(res));
  CHECK_FALSE(fs::exists(res + ".tmp"));

  test::write_file(tmp / "bad.json", "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 5, 5], \"score\": 0.5},"
                                     " {\"image_id\": 2, \"category_id\": 1, \"bbox\": [0, 0, -5, 5], \"score\": 0.5}]");
  one_line(test::run_app("ssd_eval", "--gt " + q(f.trainval()) + " --det " + q(tmp / "bad.json")), "ssd_eval",
           tmp / "bad.json" + ": entry 1: bbox[2] (w) is -5");
  // Ids neither the ids file nor the GT has: left out, one warning line.
  test::write_file(tmp / "odd.json", "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 5, 5], \"score\": 0.5},"
                                     " {\"image_id\": 99, \"category_id\": 1, \"bbox\": [0, 0, 5, 5], \"score\": 0.5}]");
  auto r = test::run_app("ssd_eval", "--gt " + q(f.trainval()) + " --det " + q(tmp / "odd.json") + " --json");
  INFO("stderr: " << r.err);
  CHECK(r.status == 0);
  REQUIRE(test::split_lines(r.err).size() == 1);
  CHECK_THAT(r.err, Catch::Contains("1 detections on 1 image ids") && Catch::Contains("e.g. 99"));
}

TEST_CASE("ssd_detect --coco-gt: class k gets the k-th smallest GT category id, as the COCO loader labels them",
          "[apps][coco_results]") {
  const Fixture& f = fixture();
  test::TempDir tmp("coco_results_remap");
  // The trainval GT with its categories 1, 2, 3 renamed 9, 3, 7 (file order 9, 3, 7; sorted
  // 3, 7, 9): data::load_coco labels them 0 -> 3, 1 -> 7, 2 -> 9.
  json gt = read_json(f.trainval());
  const std::map<int, int> renamed = {{1, 9}, {2, 3}, {3, 7}};
  for (json& c : gt.at("categories")) c["id"] = renamed.at(c.at("id").get<int>());
  for (json& a : gt.at("annotations")) a["category_id"] = renamed.at(a.at("category_id").get<int>());
  const std::string gt_path = tmp / "renamed.json";
  test::write_file(gt_path, gt.dump());
  auto r = detect("--input " + q(f.image(1)) + " --input " + q(f.image(2)) + " --out " + q(tmp / "det") +
                  " --coco-results " + q(tmp / "res.json") + " --coco-gt " + q(gt_path));
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  CHECK_THAT(r.out, Catch::Contains("category ids by class order (3, 7, 9), not the weights' own (1, 2, 3)"));
  // detections.json keeps the weights' ids 1, 2, 3 (labels 0, 1, 2): each maps to 3, 7, 9.
  const std::map<double, double> by_label = {{1, 3}, {2, 7}, {3, 9}};
  std::map<std::string, std::vector<std::vector<double>>> expected = detections_by_file(read_json(tmp / "det/detections.json"));
  for (auto& [file, dets] : expected)
    for (auto& d : dets) d[0] = by_label.at(d[0]);
  std::map<int64_t, std::string> file_of_id;
  for (const json& im : gt.at("images")) file_of_id[im.at("id").get<int64_t>()] = im.at("file_name").get<std::string>();
  const json rj = read_json(tmp / "res.json");
  REQUIRE(rj.size() > 20);
  CHECK(results_by_file(rj, file_of_id) == expected);
}

TEST_CASE("ssd_detect --coco-gt with weights of more classes whose ids cover the GT's (torchvision's 90 labels)",
          "[apps][coco_results]") {
  const Fixture& f = fixture();
  test::TempDir tmp("coco_results_tv");
  // No metadata: 91 outputs, category id = class index (common/detect_run.h).
  eng::manual_seed(13);
  models::ModelConfig mc;
  mc.arch = "tiny_ssd";
  mc.num_classes = 91;
  auto model = models::create_model(mc);
  const std::string w = tmp / "tv.safetensors";
  eng::io::save_safetensors(w, model->state_dict());
  const std::string res = tmp / "res.json";
  auto r = test::run_app("ssd_detect", "--weights " + q(w) + " --arch tiny_ssd --workers 0 --input " + q(f.image(1)) +
                                           " --input " + q(f.image(3)) + " --out " + q(tmp / "det") +
                                           " --coco-results " + q(res) + " --coco-gt " + q(f.trainval()));
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.status == 0);
  // Detections of the 87 ids the GT does not have are left out, reported in one line.
  const auto lines = test::split_lines(r.err);
  REQUIRE(lines.size() == 1);
  CHECK_THAT(lines[0], Catch::Contains("detections of categories the file does not have are left out of " + res));
  const json dj = read_json(tmp / "det/detections.json");
  size_t in_gt = 0;
  for (const json& im : dj.at("images"))
    for (const json& d : im.at("detections")) in_gt += d.at("category_id").get<int>() <= 3;
  const json rj = read_json(res);
  CHECK(in_gt > 0);
  CHECK(rj.size() == in_gt);
  for (const json& e : rj) {
    CHECK(e.at("category_id").get<int>() >= 1);
    CHECK(e.at("category_id").get<int>() <= 3);
  }
  // And the evaluator takes it as it is.
  CHECK(eval(f.trainval(), res).at("map_coco").get<double>() >= 0);
}
