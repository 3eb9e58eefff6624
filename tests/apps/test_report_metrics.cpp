// Reading metrics.jsonl for the report (common/report_metrics.h): torn last lines, garbage,
// bad iterations, nulls, repeated iterations of a resumed run, the per-class summary, and a
// missing file.
#include <catch2/catch.hpp>

#include <cmath>

#include "common/report_metrics.h"
#include "temp_dir.h"

using namespace app::report;
using test::TempDir;

namespace {

const char* kTrain1 = R"({"iteration":10,"loss":5.5,"loss_cls":3.5,"loss_box":2.0,"lr":0.01,"img_per_s":40.5,"elapsed_s":2.5})";
const char* kTrain2 = R"({"iteration":20,"loss":4.25,"loss_cls":3,"loss_box":1.25,"lr":0.01,"img_per_s":41,"elapsed_s":5})";
const char* kEval = R"({"iteration":20,"map_voc07":0.25,"map_coco":0.125,"per_class":[{"name":"cat","num_gt":3,"ap_voc07":0.5,"ap_coco":0.25,"pr":[[0,1],[0.5,0.75]]},{"name":"dog","num_gt":0,"ap_voc07":-1,"ap_coco":-1,"pr":[]}]})";

}  // namespace

TEST_CASE("report metrics: training and evaluation lines, per-class summary", "[apps][report]") {
  TempDir d("report_metrics");
  test::write_file(d / "metrics.jsonl", std::string(kTrain1) + "\n" + R"({"event":"profile","iteration":10})" + "\n" +
                                            kTrain2 + "\n" + kEval + "\n");
  const RunMetrics m = read_run_metrics(d / "metrics.jsonl");
  CHECK(m.warnings.empty());
  REQUIRE(m.train.size() == 2);
  CHECK(m.train[0].iteration == 10);
  CHECK(m.train[0].loss == 5.5);
  CHECK(m.train[0].loss_cls == 3.5);
  CHECK(m.train[1].loss_box == 1.25);
  CHECK(m.train[1].elapsed_s == 5);
  REQUIRE(m.evals.size() == 1);
  CHECK(m.evals[0].map_voc07 == 0.25);
  CHECK(m.evals[0].map_coco == 0.125);
  CHECK(m.classes_iteration == 20);
  REQUIRE(m.classes.size() == 2);
  CHECK(m.classes[0].name == "cat");
  CHECK(m.classes[0].recall == std::vector<double>{0, 0.5});
  CHECK(m.classes[0].precision == std::vector<double>{1, 0.75});
  CHECK(m.classes[1].ap_voc07 == -1);
}

TEST_CASE("report metrics: a torn last line is skipped with a warning naming its line", "[apps][report]") {
  TempDir d("report_torn");
  test::write_file(d / "metrics.jsonl", std::string(kTrain1) + "\n" + kTrain2 + "\n" + R"({"iteration":30,"loss":3.)");
  const RunMetrics m = read_run_metrics(d / "metrics.jsonl");
  REQUIRE(m.train.size() == 2);
  REQUIRE(m.warnings.size() == 1);
  CHECK(m.warnings[0].find("line 3") != std::string::npos);
  CHECK(m.warnings[0].find("torn") != std::string::npos);
  CHECK(m.warnings[0].find('\n') == std::string::npos);
}

TEST_CASE("report metrics: garbage, bad iterations and nulls", "[apps][report]") {
  TempDir d("report_garbage");
  std::string text = std::string(kTrain1) + "\n";
  text += "not json at all\n";                                 // line 2
  text += "[1, 2]\n";                                          // line 3: not an object
  text += R"({"iteration":-4,"loss":1})" "\n";                 // line 4: negative iteration
  text += R"({"iteration":2.5,"loss":1})" "\n";                // line 5: not an integer
  text += R"({"iteration":1e300,"loss":1})" "\n";              // line 6: out of range
  text += R"({"iteration":40,"loss":null,"loss_cls":"x","lr":[1]})" "\n";  // line 7: fields left out
  text += "\n";                                                // blank: not a problem
  text += R"({"iteration":10,"loss":7.5})" "\n";               // a resumed run logs iteration 10 again
  const std::string path = d / "metrics.jsonl";
  test::write_file(path, text);
  const RunMetrics m = read_run_metrics(path);
  REQUIRE(m.train.size() == 2);
  CHECK(m.train[0].iteration == 10);
  CHECK(m.train[0].loss == 7.5);  // the later line wins
  CHECK(m.train[1].iteration == 40);
  CHECK(std::isnan(m.train[1].loss));
  CHECK(std::isnan(m.train[1].loss_cls));
  CHECK(std::isnan(m.train[1].lr));
  CHECK(m.skipped == 5);
  REQUIRE(m.warnings.size() == 5);
  for (int i = 0; i < 5; ++i) CHECK(m.warnings[static_cast<size_t>(i)].find("line " + std::to_string(i + 2)) != std::string::npos);
  CHECK(m.warnings[0].find("torn") == std::string::npos);  // a middle line is garbage, not torn
}

TEST_CASE("report metrics: many bad lines give five warnings and a count", "[apps][report]") {
  TempDir d("report_many");
  std::string text;
  for (int i = 0; i < 12; ++i) text += "garbage\n";
  test::write_file(d / "metrics.jsonl", text);
  const RunMetrics m = read_run_metrics(d / "metrics.jsonl");
  CHECK(m.train.empty());
  REQUIRE(m.warnings.size() == 6);
  CHECK(m.warnings[5].find("7 more lines skipped") != std::string::npos);
}

TEST_CASE("report metrics: a malformed per_class is a warning, the rest is kept", "[apps][report]") {
  TempDir d("report_bad_classes");
  test::write_file(d / "metrics.jsonl", R"({"iteration":5,"map_voc07":0.5,"map_coco":0.2,"per_class":{"a":1}})" "\n");
  const RunMetrics m = read_run_metrics(d / "metrics.jsonl");
  CHECK(m.evals.size() == 1);
  CHECK(m.classes.empty());
  REQUIRE(m.warnings.size() == 1);
  CHECK(m.warnings[0].find("per_class") != std::string::npos);
}

TEST_CASE("report metrics: a missing file is one error naming it", "[apps][report]") {
  TempDir d("report_missing");
  try {
    read_run_metrics(d / "metrics.jsonl");
    FAIL("no error");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    CHECK(what.find("metrics.jsonl") != std::string::npos);
    CHECK(what.find('\n') == std::string::npos);
  }
}

TEST_CASE("report metrics: a folder named metrics.jsonl is one error", "[apps][report]") {
  TempDir d("report_dir_metrics");
  std::filesystem::create_directories(d.path / "metrics.jsonl");
  CHECK_THROWS_WITH(read_run_metrics(d / "metrics.jsonl"), Catch::Contains("not a regular file"));
}
