// Issue 18: every number in a VOC / COCO / detections / list file is range-checked before
// conversion, every file is a regular file under its size limit, and each problem is one
// line naming the file, the field and the value. Crafted inputs are written by the tests.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "data/coco_json.h"
#include "data/dataset.h"
#include "data/input_list.h"
#include "engine/error.h"
#include "engine/io/limits.h"
#include "temp_dir.h"

using namespace data;
using Catch::Contains;
using Catch::StartsWith;
using test::TempDir;
using test::write_file;
namespace fs = std::filesystem;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const eng::Error& e) {
    return e.what();
  }
  return "";
}

std::string voc_object(const std::string& extra, const std::string& x1 = "1", const std::string& y1 = "1",
                       const std::string& x2 = "20", const std::string& y2 = "20") {
  return "<object><name>cat</name>" + extra + "<bndbox><xmin>" + x1 + "</xmin><ymin>" + y1 + "</ymin><xmax>" + x2 +
         "</xmax><ymax>" + y2 + "</ymax></bndbox></object>";
}

std::string voc_xml(const std::string& size, const std::string& objects) {
  return "<annotation><filename>bad.jpg</filename><size>" + size + "</size>" + objects + "</annotation>";
}

const std::string kSize = "<width>50</width><height>50</height><depth>3</depth>";

// A VOC root with images "good" (one cat) and "bad" (`xml`, unless empty); returns the
// dataset and the bad XML's path.
Dataset load_with_bad(const TempDir& t, const std::string& xml, std::string& bad_path) {
  const std::string root = t / "voc";
  write_file(root + "/Annotations/good.xml", voc_xml(kSize, voc_object("")));
  bad_path = root + "/Annotations/bad.xml";
  if (!xml.empty()) write_file(bad_path, xml);
  for (const char* img : {"/JPEGImages/good.jpg", "/JPEGImages/bad.jpg"}) write_file(root + img, "x");
  write_file(root + "/ImageSets/Main/trainval.txt", "good\nbad\n");
  VocOptions o;
  o.roots = {root};
  return load_voc(o);
}

}  // namespace

TEST_CASE("VOC: bad sizes skip the image with one warning naming the field and value", "[data][hardened]") {
  struct Case {
    std::string size, expect;
  };
  const std::vector<Case> cases = {
      {"<width>1e10</width><height>50</height>", "<size><width> is '1e10', not a whole number in [0, 1000000]"},
      {"<width>50</width><height>nan</height>", "<size><height> is 'nan', not a whole number"},
      {"<width>inf</width><height>50</height>", "<size><width> is 'inf'"},
      {"<width>-5</width><height>50</height>", "<size><width> is '-5'"},
      {"<width>50.5</width><height>50</height>", "<size><width> is '50.5'"},
      {"<width>0x40</width><height>50</height>", "<size><width> is '0x40'"},
      {"<width>50</width><height>50</height><depth>300</depth>", "<size><depth> is '300', not a whole number in [0, 4]"},
  };
  for (const Case& c : cases) {
    INFO(c.size);
    TempDir t("hardened_voc");
    std::string bad;
    const Dataset d = load_with_bad(t, voc_xml(c.size, voc_object("")), bad);
    REQUIRE(d.warnings.size() == 1);
    CHECK_THAT(d.warnings[0], StartsWith(bad + ": " + c.expect) && Catch::EndsWith("(image skipped)"));
    CHECK(d.skipped_images == 1);
    CHECK(d.samples.size() == 1);
  }
  // Whole numbers written with a fraction are fine; absent sizes are unknown.
  TempDir t("hardened_voc_ok");
  std::string bad;
  Dataset d = load_with_bad(t, voc_xml("<width> 50.0 </width><height>50</height>", voc_object("")), bad);
  REQUIRE(d.warnings.empty());
  CHECK((d.samples.at(1).width == 50 && d.samples[1].height == 50));
}

TEST_CASE("VOC: bad coordinates and flags skip the object naming the field and value", "[data][hardened]") {
  struct Case {
    std::string object, expect;
  };
  const std::vector<Case> cases = {
      {voc_object("", "1e10"), "non-numeric <xmin> '1e10' (not a finite number within +-1e7)"},
      {voc_object("", "1", "nan"), "non-numeric <ymin> 'nan'"},
      {voc_object("", "1", "1", "inf"), "non-numeric <xmax> 'inf'"},
      {voc_object("", "1", "1", "20", "0x14"), "non-numeric <ymax> '0x14'"},
      {voc_object("", "1", "1", "20", "1e400"), "non-numeric <ymax> '1e400'"},
      {voc_object("<difficult>2</difficult>"), "<difficult> is '2', not 0 or 1"},
      {voc_object("<truncated>yes</truncated>"), "<truncated> is 'yes', not 0 or 1"},
  };
  for (const Case& c : cases) {
    INFO(c.object);
    TempDir t("hardened_voc_obj");
    std::string bad;
    const Dataset d = load_with_bad(t, voc_xml(kSize, voc_object("") + c.object), bad);
    REQUIRE(d.warnings.size() == 1);
    CHECK_THAT(d.warnings[0], StartsWith(bad + ": object 1 'cat': " + c.expect) && Catch::EndsWith("(object skipped)"));
    CHECK(d.skipped_objects == 1);
    REQUIRE(d.samples.size() == 2);
    CHECK(d.samples[1].objects.size() == 1);
  }
}

TEST_CASE("VOC: an annotation over the size limit, a FIFO or a device is skipped unread", "[data][hardened]") {
  {
    TempDir t("hardened_voc_big");
    eng::io::ReadLimits small = eng::io::read_limits();
    small.annotation_bytes = 100;
    eng::io::ScopedReadLimits scoped(small);
    std::string bad;
    const Dataset d = load_with_bad(t, voc_xml(kSize, voc_object("") + voc_object("")), bad);
    REQUIRE(d.warnings.size() == 2);  // good.xml is 188 bytes too: both over 100
    CHECK_THAT(d.warnings[1], StartsWith(bad + ": annotation file is ") &&
                                  Contains("larger than the limit of 100 bytes (set ENGINE_MAX_ANNOTATION_BYTES") &&
                                  Contains("(image skipped)"));
  }
  for (const bool fifo : {true, false}) {
    TempDir t("hardened_voc_fifo");
    const std::string bad_xml = t / "voc/Annotations/bad.xml";
    fs::create_directories(t.path / "voc/Annotations");
    if (fifo) REQUIRE(::mkfifo(bad_xml.c_str(), 0600) == 0);
    else fs::create_symlink("/dev/zero", bad_xml);
    std::string bad;
    const Dataset d = load_with_bad(t, "", bad);
    REQUIRE(d.warnings.size() == 1);
    CHECK_THAT(d.warnings[0], StartsWith(bad + ": annotation file is " + (fifo ? "a FIFO" : "a character device")));
    CHECK(d.samples.size() == 1);
  }
}

TEST_CASE("VOC split and class files: regular files with capped lines", "[data][hardened]") {
  TempDir t("hardened_lists");
  const std::string root = t / "voc";
  fs::create_directories(root + "/ImageSets/Main");
  fs::create_symlink("/dev/zero", root + "/ImageSets/Main/trainval.txt");
  VocOptions o;
  o.roots = {root};
  CHECK_THAT(error_of([&] { load_voc(o); }),
             StartsWith(root + "/ImageSets/Main/trainval.txt: split file is a character device"));
  write_file(root + "/ImageSets/Main/test.txt", "a\n" + std::string(70000, 'x') + "\n");
  o.split = "test";
  CHECK(error_of([&] { load_voc(o); }) ==
        root + "/ImageSets/Main/test.txt:2: line is longer than 65536 bytes (ENGINE_MAX_TEXT_LINE_BYTES)");
  write_file(t / "classes.txt", std::string("cat\ndo\0g\n", 9));
  CHECK_THAT(error_of([&] { read_class_names(t / "classes.txt"); }), StartsWith((t / "classes.txt") + ":2: NUL byte"));
}

TEST_CASE("COCO load: JSON files must be regular and under the JSON limit, every exception named",
          "[data][hardened]") {
  TempDir t("hardened_coco_file");
  CocoOptions o;
  o.require_images = false;
  o.json = t / "zero.json";
  fs::create_symlink("/dev/zero", o.json);
  CHECK_THAT(error_of([&] { load_coco(o); }), StartsWith(o.json + ": JSON file is a character device"));
  o.json = t / "fifo.json";
  REQUIRE(::mkfifo(o.json.c_str(), 0600) == 0);
  CHECK_THAT(error_of([&] { load_coco(o); }), StartsWith(o.json + ": JSON file is a FIFO"));
  o.json = t / "big.json";
  write_file(o.json, R"({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]})");
  {
    eng::io::ReadLimits small = eng::io::read_limits();
    small.json_bytes = 20;
    eng::io::ScopedReadLimits scoped(small);
    CHECK_THAT(error_of([&] { load_coco(o); }),
               StartsWith(o.json + ": JSON file is ") && Contains("larger than the limit of 20 bytes") &&
                   Contains("ENGINE_MAX_JSON_BYTES"));
  }
  // nlohmann's out_of_range (a number too big for a double), not only parse_error.
  o.json = t / "overflow.json";
  write_file(o.json, R"({"images": [{"id": 1e400}], "annotations": [], "categories": []})");
  const std::string e = error_of([&] { load_coco(o); });
  CHECK_THAT(e, StartsWith(o.json + ": malformed JSON: ") && Contains("1e400"));
  CHECK(e.find('\n') == std::string::npos);
}

TEST_CASE("COCO load: out-of-range numbers skip the item naming the field and value", "[data][hardened]") {
  struct Case {
    std::string image, annotation, expect;
  };
  const std::string img = R"({"id": 1, "file_name": "a.jpg", "width": 64, "height": 48})";
  const std::string ann = R"({"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]})";
  const std::vector<Case> cases = {
      {R"({"id": 1, "file_name": "a.jpg", "width": 1e10, "height": 48})", ann,
       "images[0]: \"width\" is 10000000000.0, not an integer in [0, 1000000] (image skipped)"},
      {R"({"id": 1, "file_name": "a.jpg", "width": 64, "height": 4294967344})", ann,
       "images[0]: \"height\" is 4294967344, not an integer in [0, 1000000] (image skipped)"},
      {R"({"id": 1, "file_name": "a.jpg", "width": -64, "height": 48})", ann, "\"width\" is -64"},
      {R"({"id": 18446744073709551615, "file_name": "a.jpg"})", "",
       "images[0]: no integer \"id\" (18446744073709551615) (image skipped)"},
      {img, R"({"id": 5, "image_id": 1.0, "category_id": 1, "bbox": [1, 1, 5, 5]})",
       "annotations[0] (id 5): no integer \"image_id\" (1.0) (object skipped)"},
      {img, R"({"id": 5, "image_id": 1, "category_id": 4294967297, "bbox": [1, 1, 5, 5]})",
       "unknown category_id 4294967297"},
      {img, R"({"id": 5, "image_id": 1, "category_id": 1, "bbox": [1e300, 1, 1e300, 5]})",
       "bad \"bbox\" [1e+300,1,1e+300,5] (not 4 numbers [x, y, w, h] within +-1e7)"},
      {img, R"({"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": -1e300})",
       "\"area\" is -1e+300, not a number within +-1e14"},
      {img, R"({"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 2})",
       "\"iscrowd\" is 2, not 0/1"},
  };
  for (const Case& c : cases) {
    INFO(c.image << " " << c.annotation);
    TempDir t("hardened_coco");
    CocoOptions o;
    o.require_images = false;
    o.json = t / "i.json";
    write_file(o.json, R"({"images": [)" + c.image + R"(], "annotations": [)" + c.annotation +
                           R"(], "categories": [{"id": 1, "name": "a"}]})");
    const Dataset d = load_coco(o);
    REQUIRE(d.warnings.size() == 1);
    CHECK_THAT(d.warnings[0], StartsWith(o.json + ": ") && Contains(c.expect));
  }
  TempDir t("hardened_coco_cat");
  CocoOptions o;
  o.json = t / "c.json";
  write_file(o.json, R"({"images": [], "annotations": [], "categories": [{"id": 2147483648, "name": "a"}]})");
  CHECK(error_of([&] { load_coco(o); }) ==
        o.json + ": categories[0] has no integer \"id\" in [-2^31, 2^31 - 1] (2147483648)");
}

TEST_CASE("COCO ground truth and detections.json for evaluation: every number range-checked", "[data][hardened]") {
  TempDir t("hardened_eval");
  const std::string gt = t / "gt.json";
  auto gt_error = [&](const std::string& ann) {
    write_file(gt, R"({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [)" + ann +
                       R"(], "categories": [{"id": 1, "name": "a"}]})");
    return error_of([&] { read_coco_gt(gt); });
  };
  CHECK(gt_error(R"({"image_id": 1, "category_id": 4294967297, "bbox": [1, 1, 5, 5]})") ==
        gt + ": annotations[0].category_id is 4294967297, not an integer in [-2147483648, 2147483647]");
  CHECK(gt_error(R"({"image_id": 1, "category_id": 1.5, "bbox": [1, 1, 5, 5]})") ==
        gt + ": annotations[0].category_id is 1.5, not an integer in [-2147483648, 2147483647]");
  CHECK_THAT(gt_error(R"({"image_id": 1, "category_id": 1, "bbox": [1e300, 1, 1e300, 5]})"),
             StartsWith(gt + ": annotations[0].bbox[0] is 1e+300, not a number in ["));
  CHECK_THAT(gt_error(R"({"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 7})"),
             Contains("annotations[0].iscrowd is 7, not 0/1"));
  CHECK_THAT(gt_error(R"({"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 1e30})"),
             Contains("annotations[0].area is 1e+30, not a number in ["));
  CHECK(gt_error(R"({"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 1})").empty());

  const std::string det = t / "detections.json";
  auto det_error = [&](const std::string& d) {
    write_file(det, R"({"images": [{"file": "a.jpg", "detections": [)" + d + "]}]}");
    return error_of([&] { read_detections(det); });
  };
  CHECK(det_error(R"({"category_id": 2.5, "score": 0.5, "bbox": [1, 1, 5, 5]})") ==
        det + ": images[0].detections[0].category_id is 2.5, not an integer in [-2147483648, 2147483647]");
  CHECK_THAT(det_error(R"({"category_id": 1, "score": "high", "bbox": [1, 1, 5, 5]})"),
             StartsWith(det + ": images[0].detections[0].score is \"high\", not a number"));
  CHECK_THAT(det_error(R"({"category_id": 1, "score": 1e400, "bbox": [1, 1, 5, 5]})"),
             StartsWith(det + ": malformed JSON: ") && Contains("1e400"));
  CHECK(det_error(R"({"category_id": 1, "score": 0.5, "bbox": [1, 1, 5, 5]})").empty());
  const std::string zero = t / "zero_det.json";
  fs::create_symlink("/dev/zero", zero);
  CHECK_THAT(error_of([&] { read_detections(zero); }), StartsWith(zero + ": JSON file is a character device"));
}

TEST_CASE("input lists: regular files only, size and line caps, one error line each", "[data][hardened]") {
  TempDir t("hardened_inputs");
  std::vector<std::string> errors;
  const std::string fifo = t / "fifo.txt";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const std::string zero = t / "zero.txt";
  fs::create_symlink("/dev/zero", zero);
  write_file(t / "long.txt", "a.jpg\n" + std::string(70000, 'y') + "\n");
  write_file(t / "img.jpg", "x");
  const std::string zero_jpg = t / "zero.jpg";
  fs::create_symlink("/dev/zero", zero_jpg);
  const std::vector<std::string> files =
      expand_inputs({"@" + fifo, "@" + zero, "@" + (t / "long.txt"), zero_jpg, fifo, t / "img.jpg"}, errors);
  CHECK(files == std::vector<std::string>{t / "img.jpg"});
  REQUIRE(errors.size() == 5);
  CHECK_THAT(errors[0], StartsWith(fifo + ": list file is a FIFO"));
  CHECK_THAT(errors[1], StartsWith(zero + ": list file is a character device"));
  CHECK(errors[2] == (t / "long.txt") + ":2: line is longer than 65536 bytes (ENGINE_MAX_TEXT_LINE_BYTES)");
  CHECK(errors[3] == zero_jpg + ": not a regular file (a FIFO, socket or device?)");
  CHECK(errors[4] == fifo + ": not a regular file (a FIFO, socket or device?)");
  for (const std::string& e : errors) CHECK(e.find('\n') == std::string::npos);
  eng::io::ReadLimits small = eng::io::read_limits();
  small.text_file_bytes = 4;
  eng::io::ScopedReadLimits scoped(small);
  errors.clear();
  CHECK(expand_inputs({"@" + (t / "long.txt")}, errors).empty());
  REQUIRE(errors.size() == 1);
  CHECK_THAT(errors[0], Contains("list file is 70007 bytes, larger than the limit of 4 bytes"));
}
