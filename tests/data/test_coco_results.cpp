// The COCO results format (data/coco_results.h): writer/reader round trip, the ids file,
// telling it from detections.json by content, the category mapping, and every kind of bad
// input giving one line that names the file, the entry, the field and the value.
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/coco_results.h"
#include "engine/error.h"
#include "engine/io/limits.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using test::TempDir;
using test::write_file;

namespace {

// The one-line refusal of `path` by `read`, with every `parts` in it.
template <typename Read>
std::string refusal(Read read, const std::string& path) {
  try {
    read(path);
  } catch (const eng::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find('\n') == std::string::npos);
    CHECK(msg.find(path) != std::string::npos);
    return msg;
  }
  FAIL("accepted: " << path);
  return "";
}

std::string results_refusal(const std::string& path) {
  return refusal([](const std::string& p) { data::read_coco_results(p); }, path);
}

}  // namespace

TEST_CASE("coco results: write then read gives back every value", "[data][coco_results]") {
  TempDir tmp("coco_results_rt");
  std::vector<data::CocoResult> in = {
      {42, 18, 0.87, {10.5, 20.25, 110.5, 320.125}},
      {42, 1, 1.0 / 3.0, {0, 0, 0, 0}},                         // an empty box is legal
      {0, -7, 1e-300, {-5.5, -1e6, 1e6, 2.5}},                  // id 0, negative category id
      {data::kMaxCocoImageId, 2147483647, -0.25, {0.1, 0.2, 0.30000000000000004, 0.7}},
  };
  const std::string path = tmp / "results.json";
  data::write_coco_results(path, in);
  CHECK_FALSE(fs::exists(path + ".tmp"));

  // The official shape: a list of objects with exactly these four members.
  std::ifstream f(path);
  const nlohmann::json j = nlohmann::json::parse(f);
  REQUIRE(j.is_array());
  REQUIRE(j.size() == in.size());
  for (const auto& e : j) {
    CHECK(e.size() == 4);
    for (const char* k : {"image_id", "category_id", "bbox", "score"}) CHECK(e.contains(k));
    CHECK(e.at("bbox").size() == 4);
  }
  CHECK(j[0].at("bbox")[2].get<double>() == 100.0);  // [x, y, w, h]
  CHECK(j[0].at("bbox")[3].get<double>() == 299.875);

  REQUIRE(data::is_coco_results_file(path));
  const std::vector<data::CocoResult> out = data::read_coco_results(path);
  REQUIRE(out.size() == in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    INFO("entry " << i);
    CHECK(out[i].image_id == in[i].image_id);
    CHECK(out[i].category_id == in[i].category_id);
    CHECK(out[i].score == in[i].score);  // bit-exact: shortest round-trip form
    CHECK(out[i].box.x1 == in[i].box.x1);
    CHECK(out[i].box.y1 == in[i].box.y1);
    // x2 comes back as x + (x2 - x): equal up to the last bit
    CHECK(out[i].box.x2 == Approx(in[i].box.x2).epsilon(1e-15).margin(1e-9));
    CHECK(out[i].box.y2 == Approx(in[i].box.y2).epsilon(1e-15).margin(1e-9));
  }

  // An empty run is an empty list, still a results file.
  data::write_coco_results(path, {});
  CHECK(data::is_coco_results_file(path));
  CHECK(data::read_coco_results(path).empty());
}

TEST_CASE("coco results: the writer refuses values it could not read back, writing nothing",
          "[data][coco_results]") {
  TempDir tmp("coco_results_wbad");
  const std::string path = tmp / "r.json";
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const std::vector<std::pair<data::CocoResult, std::string>> bad = {
      {{1, 1, nan, {0, 0, 1, 1}}, "score is not finite"},
      {{1, 1, 0.5, {0, 0, inf, 1}}, "non-finite coordinate"},
      {{1, 1, 0.5, {5, 0, 1, 1}}, "corners out of order"},
      {{-1, 1, 0.5, {0, 0, 1, 1}}, "image_id -1 is outside"},
      {{data::kMaxCocoImageId + 1, 1, 0.5, {0, 0, 1, 1}}, "is outside [0, 2^53]"},
  };
  for (const auto& [r, why] : bad) {
    INFO(why);
    std::vector<data::CocoResult> v = {{3, 1, 0.9, {0, 0, 2, 2}}, r};
    try {
      data::write_coco_results(path, v);
      FAIL("written");
    } catch (const eng::Error& e) {
      CHECK_THAT(e.what(), Catch::Contains(path) && Catch::Contains("entry 1") && Catch::Contains(why));
    }
    CHECK_FALSE(fs::exists(path));
    CHECK_FALSE(fs::exists(path + ".tmp"));
  }
  // An unwritable place: one line naming the file.
  try {
    data::write_coco_results(tmp / "no/such/folder/r.json", {});
    FAIL("written");
  } catch (const eng::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("no/such/folder/r.json"));
  }
}

TEST_CASE("coco results: the ids file sits beside the results and reads back", "[data][coco_results]") {
  CHECK(data::coco_ids_path("out/results.json") == "out/results.ids.json");
  CHECK(data::coco_ids_path("results.json") == "results.ids.json");
  CHECK(data::coco_ids_path("out/results.txt") == "out/results.txt.ids.json");
  CHECK(data::coco_ids_path("out/.json") == "out/.json.ids.json");
  CHECK(data::coco_ids_path("res") == "res.ids.json");

  TempDir tmp("coco_ids");
  const std::string path = tmp / "r.ids.json";
  data::write_coco_image_ids(path, {{1, "photos/a b.jpg", 640, 480}, {2, "c.png", 0, 0}, {7, "d\"q.jpg", 3, 2}});
  CHECK_FALSE(data::is_coco_results_file(path));  // an object, not a list
  const auto refs = data::read_coco_image_ids(path);
  REQUIRE(refs.size() == 3);
  CHECK(refs[0].id == 1);
  CHECK(refs[0].file_name == "photos/a b.jpg");
  CHECK(refs[0].width == 640);
  CHECK(refs[0].height == 480);
  CHECK(refs[1].width == 0);  // unknown: not written
  CHECK(refs[2].file_name == "d\"q.jpg");

  std::vector<int64_t> unknown;
  const std::vector<data::CocoResult> rs = {
      {7, 3, 0.5, {1, 2, 3, 4}}, {9, 3, 0.4, {1, 2, 3, 4}}, {1, 2, 0.3, {0, 0, 1, 1}}, {9, 1, 0.2, {0, 0, 1, 1}}};
  const auto dets = data::coco_results_to_detections(rs, refs, unknown);
  REQUIRE(dets.size() == 2);
  CHECK(dets[0].image == "d\"q.jpg");
  CHECK(dets[0].category == 3);
  CHECK(dets[1].image == "a b.jpg");  // the base name: how the evaluator keys images
  CHECK(unknown == std::vector<int64_t>{9});
}

TEST_CASE("coco results: told apart from detections.json by the first character", "[data][coco_results]") {
  TempDir tmp("coco_sniff");
  const std::vector<std::pair<std::string, bool>> cases = {
      {"[]", true}, {" \n\t\r[{\"image_id\": 1}]", true}, {"\xEF\xBB\xBF  [", true},
      {"{\"images\": []}", false}, {"", false}, {"   ", false}, {"\xEF\xBB\xBF{", false}, {"x[", false}};
  int n = 0;
  for (const auto& [text, list] : cases) {
    const std::string p = tmp / ("f" + std::to_string(n++) + ".json");
    write_file(p, text);
    INFO("text: " << text);
    CHECK(data::is_coco_results_file(p) == list);
  }
  CHECK_FALSE(data::is_coco_results_file(tmp / "missing.json"));
  CHECK_FALSE(data::is_coco_results_file(tmp.path.string()));  // a folder
  const std::string fifo = tmp / "fifo.json";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_FALSE(data::is_coco_results_file(fifo));  // returns at once: never opened
}

TEST_CASE("coco results: every bad value is one line naming the file, entry, field and value",
          "[data][coco_results]") {
  TempDir tmp("coco_results_bad");
  struct Case {
    std::string text;
    std::vector<std::string> parts;
  };
  const std::string ok_box = "\"bbox\": [1, 2, 3, 4]";
  const std::vector<Case> cases = {
      {"{\"images\": []}", {"not a COCO results file", "not a JSON list"}},
      {"[1]", {"entry 0 is 1, not an object"}},
      {"[{\"category_id\": 1, " + ok_box + ", \"score\": 0.5}]", {"entry 0", "no \"image_id\""}},
      {"[{\"image_id\": 1.5, \"category_id\": 1, " + ok_box + ", \"score\": 0.5}]",
       {"entry 0", "image_id is 1.5", "not an integer in [0, 9007199254740992]"}},
      {"[{\"image_id\": 1, \"category_id\": 1, " + ok_box + ", \"score\": 0.5},"
       "{\"image_id\": -3, \"category_id\": 1, " + ok_box + ", \"score\": 0.5}]",
       {"entry 1", "image_id is -3"}},
      {"[{\"image_id\": 9007199254740993, \"category_id\": 1, " + ok_box + ", \"score\": 0.5}]",
       {"image_id is 9007199254740993"}},
      {"[{\"image_id\": 18446744073709551615, \"category_id\": 1, " + ok_box + ", \"score\": 0.5}]",
       {"image_id is 18446744073709551615"}},
      {"[{\"image_id\": \"7\", \"category_id\": 1, " + ok_box + ", \"score\": 0.5}]", {"image_id is \"7\""}},
      {"[{\"image_id\": 1, \"category_id\": 2147483648, " + ok_box + ", \"score\": 0.5}]",
       {"entry 0", "category_id is 2147483648", "not an integer in [-2147483648, 2147483647]"}},
      {"[{\"image_id\": 1, \"category_id\": 1.0, " + ok_box + ", \"score\": 0.5}]", {"category_id is 1.0"}},
      {"[{\"image_id\": 1, \"category_id\": 1, \"score\": 0.5}]", {"entry 0", "no \"bbox\""}},
      {"[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, 3], \"score\": 0.5}]",
       {"bbox is [1,2,3]", "not an array of 4 numbers"}},
      {"[{\"image_id\": 1, \"category_id\": 1, \"bbox\": {\"x\": 1}, \"score\": 0.5}]", {"bbox is {\"x\":1}"}},
      {"[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, -3, 4], \"score\": 0.5}]",
       {"entry 0", "bbox[2] (w) is -3", "not a number in [0, "}},
      {"[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, 3, -0.5], \"score\": 0.5}]", {"bbox[3] (h) is -0.5"}},
      {"[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [2e7, 2, 3, 4], \"score\": 0.5}]", {"bbox[0] (x) is 20000000"}},
      {"[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, null, 3, 4], \"score\": 0.5}]", {"bbox[1] (y) is null"}},
      {"[{\"image_id\": 1, \"category_id\": 1, " + ok_box + "}]", {"entry 0", "no \"score\""}},
      {"[{\"image_id\": 1, \"category_id\": 1, " + ok_box + ", \"score\": \"high\"}]",
       {"score is \"high\"", "not a finite number"}},
      {"[{\"image_id\": 1, \"category_id\": 1, " + ok_box + ", \"score\": 1e400}]", {"malformed JSON"}},
      {"[{\"image_id\": 1, \"category_id\": 1, " + ok_box + ", \"score\": NaN}]", {"malformed JSON"}},
      {"[{\"image_id\": 1,", {"malformed JSON"}},
  };
  int n = 0;
  for (const Case& c : cases) {
    const std::string p = tmp / ("bad" + std::to_string(n++) + ".json");
    write_file(p, c.text);
    INFO("input: " << c.text);
    const std::string msg = results_refusal(p);
    for (const std::string& part : c.parts) CHECK_THAT(msg, Catch::Contains(part));
  }
  // Not there, a folder: one line naming it.
  CHECK_THAT(results_refusal(tmp / "missing.json"), Catch::Contains("not found"));
  CHECK_THAT(results_refusal(tmp.path.string()), Catch::Contains(tmp.path.string()));
}

TEST_CASE("coco results: the JSON size cap applies before anything is read", "[data][coco_results]") {
  TempDir tmp("coco_results_cap");
  const std::string p = tmp / "big.json";
  std::string text = "[";
  for (int i = 0; i < 100; ++i) text += std::string(i ? "," : "") + "{\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,1,1],\"score\":0.5}";
  write_file(p, text + "]");
  eng::io::ReadLimits small = eng::io::read_limits();
  small.json_bytes = 1000;
  const eng::io::ScopedReadLimits scope(small);
  CHECK_THAT(results_refusal(p), Catch::Contains("larger than the limit"));
  CHECK_THAT(refusal([](const std::string& q) { data::read_coco_image_ids(q); }, p),
             Catch::Contains("larger than the limit"));
}

TEST_CASE("coco results: bad ids files are one line each", "[data][coco_results]") {
  TempDir tmp("coco_ids_bad");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[]", "not a JSON object"},
      {"{\"imgs\": []}", "no \"images\" list"},
      {"{\"images\": [{\"file_name\": \"a.jpg\"}]}", "images[0]: no \"id\""},
      {"{\"images\": [{\"id\": 2.5, \"file_name\": \"a.jpg\"}]}", "images[0]: id is 2.5"},
      {"{\"images\": [{\"id\": 1, \"file_name\": \"\"}]}", "file_name is \"\""},
      {"{\"images\": [{\"id\": 1, \"file_name\": 3}]}", "file_name is 3"},
      {"{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", \"width\": -1}]}", "width is -1"},
      {"{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", \"height\": 1e9}]}", "height is 1000000000.0"},
      {"{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\"}, {\"id\": 1, \"file_name\": \"b.jpg\"}]}",
       "images[1]: id 1 appears twice"},
  };
  int n = 0;
  for (const auto& [text, part] : cases) {
    const std::string p = tmp / ("ids" + std::to_string(n++) + ".json");
    write_file(p, text);
    INFO("input: " << text);
    CHECK_THAT(refusal([](const std::string& q) { data::read_coco_image_ids(q); }, p), Catch::Contains(part));
  }
  // A COCO instances file is an ids source too: its other members are ignored.
  const std::string gt = tmp / "instances.json";
  write_file(gt, "{\"images\": [{\"id\": 5, \"file_name\": \"x/y.jpg\", \"width\": 4, \"height\": 3, \"license\": 1}],"
                 "\"annotations\": [], \"categories\": []}");
  const auto refs = data::read_coco_image_ids(gt);
  REQUIRE(refs.size() == 1);
  CHECK(refs[0].id == 5);
  CHECK(refs[0].file_name == "x/y.jpg");
}

TEST_CASE("coco results: model classes map to the GT's categories as the COCO loader labels them",
          "[data][coco_results]") {
  // Same count: label k -> the k-th smallest GT id (data::load_coco's labels), whatever the
  // weights' own ids are.
  CHECK(data::coco_category_mapping({1, 2, 3}, {3, 7, 9}, "gt.json") == std::vector<int>{3, 7, 9});
  CHECK(data::coco_category_mapping({3, 7, 9}, {3, 7, 9}, "gt.json") == std::vector<int>{3, 7, 9});
  // torchvision's 90 labels against 80 categories: the weights' ids, which cover the GT's.
  std::vector<int> tv;
  for (int k = 1; k <= 90; ++k) tv.push_back(k);
  CHECK(data::coco_category_mapping(tv, {1, 2, 90}, "gt.json") == tv);
  try {
    data::coco_category_mapping({1, 2}, {1, 2, 5}, "gt.json");
    FAIL("accepted");
  } catch (const eng::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("gt.json") && Catch::Contains("3 categories") &&
                             Catch::Contains("the model has 2 classes"));
  }
}
