// Dataset readers (data/dataset.h): Pascal VOC trees and COCO instance files written into a
// temporary folder by each test; the image files are a few bytes (only existence matters).
#include <catch2/catch.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "engine/error.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using namespace data;
using test::TempDir;
using test::write_file;

namespace {

// A VOC <object>: class name, difficult flag and the XML's 1-based coordinates (as text, so
// the tests can write bad ones).
std::string voc_object(const std::string& name, const std::string& xmin, const std::string& ymin,
                       const std::string& xmax, const std::string& ymax, bool difficult = false) {
  return "  <object><name>" + name + "</name><pose>Unspecified</pose><truncated>0</truncated><difficult>" +
         (difficult ? "1" : "0") + "</difficult>\n    <bndbox><xmin>" + xmin + "</xmin><ymin>" + ymin +
         "</ymin><xmax>" + xmax + "</xmax><ymax>" + ymax + "</ymax></bndbox></object>\n";
}

// A VOC annotation; an empty `filename` leaves the element out, width 0 leaves <size> out.
std::string voc_xml(const std::string& filename, int width, int height, const std::string& objects) {
  std::string x = "<annotation>\n  <folder>VOC2007</folder>\n";
  if (!filename.empty()) x += "  <filename>" + filename + "</filename>\n";
  if (width > 0)
    x += "  <size><width>" + std::to_string(width) + "</width><height>" + std::to_string(height) +
         "</height><depth>3</depth></size>\n";
  return x + objects + "</annotation>\n";
}

// Writes Annotations/<id>.xml and (if `image` is not empty) JPEGImages/<image>.
void add_voc_image(const std::string& root, const std::string& id, const std::string& xml, const std::string& image) {
  write_file(root + "/Annotations/" + id + ".xml", xml);
  if (!image.empty()) write_file(root + "/JPEGImages/" + image, "not really a jpeg");
}

void write_split(const std::string& root, const std::string& split, const std::vector<std::string>& ids) {
  std::string text;
  for (const std::string& id : ids) text += id + "\n";
  write_file(root + "/ImageSets/Main/" + split + ".txt", text);
}

VocOptions voc(const std::string& root, const std::string& split = "trainval") {
  VocOptions o;
  o.roots = {root};
  o.split = split;
  return o;
}

bool approx_box(const Box& b, double x1, double y1, double x2, double y2) {
  return b.x1 == Approx(x1) && b.y1 == Approx(y1) && b.x2 == Approx(x2) && b.y2 == Approx(y2);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const eng::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("voc_class_names: the 20 classes in the standard order", "[data][dataset]") {
  const auto names = voc_class_names();
  REQUIRE(names.size() == 20);
  CHECK(names.front() == "aeroplane");
  CHECK(names[11] == "dog");
  CHECK(names[14] == "person");
  CHECK(names.back() == "tvmonitor");
}

TEST_CASE("read_class_names: trims, skips blank lines, rejects duplicates and empty files", "[data][dataset]") {
  TempDir t("test_dataset");
  write_file(t / "ok.txt", "  cat \n\n\tdog\r\n\n  \nbird");
  CHECK(read_class_names(t / "ok.txt") == std::vector<std::string>{"cat", "dog", "bird"});

  write_file(t / "dup.txt", "cat\ndog\n cat\n");
  const std::string dup = error_of([&] { read_class_names(t / "dup.txt"); });
  CHECK_THAT(dup, Catch::Contains(t / "dup.txt") && Catch::Contains("duplicate") && Catch::Contains("cat"));

  write_file(t / "empty.txt", "\n  \n");
  CHECK_THAT(error_of([&] { read_class_names(t / "empty.txt"); }), Catch::Contains(t / "empty.txt"));
  CHECK_THAT(error_of([&] { read_class_names(t / "missing.txt"); }), Catch::Contains(t / "missing.txt"));
}

TEST_CASE("load_voc: boxes minus 1, labels, difficult, size, filename fallback, empty images kept",
          "[data][dataset]") {
  TempDir t("test_dataset");
  const std::string root = t / "VOC2007";
  add_voc_image(root, "000001",
                voc_xml("000001.jpg", 353, 500,
                        voc_object("dog", "48", "240", "195", "371") +
                            voc_object("person", "8", "12", "352", "498", /*difficult=*/true)),
                "000001.jpg");
  // No <filename> and no <size>: the image is <id>.jpg, the size unknown.
  add_voc_image(root, "000002", voc_xml("", 0, 0, voc_object("train", "139", "200", "207", "301")), "000002.jpg");
  // No objects at all: kept.
  add_voc_image(root, "000003", voc_xml("000003.jpg", 100, 80, ""), "000003.jpg");
  write_split(root, "trainval", {"000001", "000002", "000003"});

  const Dataset d = load_voc(voc(root));
  REQUIRE(d.warnings.empty());
  CHECK(d.skipped_images == 0);
  CHECK(d.skipped_objects == 0);
  CHECK(d.class_names == voc_class_names());
  REQUIRE(d.category_ids.size() == 20);
  CHECK(d.category_ids.front() == 1);
  CHECK(d.category_ids.back() == 20);
  REQUIRE(d.samples.size() == 3);

  const Sample& a = d.samples[0];
  CHECK(a.key == "000001.jpg");
  CHECK(fs::path(a.image_path) == fs::path(root) / "JPEGImages" / "000001.jpg");
  CHECK(a.width == 353);
  CHECK(a.height == 500);
  REQUIRE(a.objects.size() == 2);
  CHECK(a.objects[0].label == 11);  // dog
  CHECK(approx_box(a.objects[0].box, 47, 239, 194, 370));
  CHECK_FALSE(a.objects[0].difficult);
  CHECK(a.objects[1].label == 14);  // person
  CHECK(approx_box(a.objects[1].box, 7, 11, 351, 497));
  CHECK(a.objects[1].difficult);

  const Sample& b = d.samples[1];
  CHECK(b.key == "000002.jpg");
  CHECK(b.width == 0);
  CHECK(b.height == 0);
  REQUIRE(b.objects.size() == 1);
  CHECK(b.objects[0].label == 18);  // train
  CHECK(approx_box(b.objects[0].box, 138, 199, 206, 300));

  CHECK(d.samples[2].objects.empty());
}

TEST_CASE("load_voc: a box just past the border is clipped, 0-based XML coordinates too", "[data][dataset]") {
  TempDir t("test_dataset");
  const std::string root = t / "voc";
  // 100x80 image: xmax 101 -> x2 100 (on the border); ymax 81.5 -> 80.5 (0.5 px past: clipped to 80);
  // xmin 0 -> x1 -1 (1 px past: clipped to 0).
  add_voc_image(root, "a", voc_xml("a.jpg", 100, 80, voc_object("cat", "0", "10", "101", "81.5")), "a.jpg");
  write_split(root, "trainval", {"a"});
  const Dataset d = load_voc(voc(root));
  REQUIRE(d.warnings.empty());
  REQUIRE(d.samples.at(0).objects.size() == 1);
  CHECK(approx_box(d.samples[0].objects[0].box, 0, 9, 100, 80));
}

TEST_CASE("load_voc: classes.txt in the root, or a --classes file, sets the classes", "[data][dataset]") {
  TempDir t("test_dataset");
  const std::string root = t / "voc";
  add_voc_image(root, "a", voc_xml("a.jpg", 50, 50, voc_object("widget", "1", "1", "10", "10") +
                                                        voc_object("gadget", "11", "11", "20", "20")),
                "a.jpg");
  write_split(root, "trainval", {"a"});
  write_file(root + "/classes.txt", "gadget\nwidget\n");

  SECTION("classes.txt in the first root") {
    const Dataset d = load_voc(voc(root));
    CHECK(voc_classes_file(voc(root)) == (fs::path(root) / "classes.txt").string());
    CHECK(d.class_names == std::vector<std::string>{"gadget", "widget"});
    CHECK(d.category_ids == std::vector<int>{1, 2});
    REQUIRE(d.samples.at(0).objects.size() == 2);
    CHECK(d.samples[0].objects[0].label == 1);
    CHECK(d.samples[0].objects[1].label == 0);
  }
  SECTION("an explicit class file wins; names it does not list are skipped with a warning") {
    write_file(t / "mine.txt", "widget\n");
    VocOptions o = voc(root);
    o.classes_file = t / "mine.txt";
    const Dataset d = load_voc(o);
    CHECK(d.class_names == std::vector<std::string>{"widget"});
    REQUIRE(d.samples.at(0).objects.size() == 1);
    CHECK(d.samples[0].objects[0].label == 0);
    REQUIRE(d.warnings.size() == 1);
    CHECK_THAT(d.warnings[0], Catch::Contains("a.xml") && Catch::Contains("'gadget'") &&
                                  Catch::Contains("unknown class") && Catch::EndsWith("(object skipped)"));
  }
}

TEST_CASE("load_voc: several roots are joined in order, duplicate ids allowed", "[data][dataset]") {
  TempDir t("test_dataset");
  for (const char* year : {"VOC2007", "VOC2012"}) {
    const std::string root = t / year;
    add_voc_image(root, "000005", voc_xml("000005.jpg", 50, 50, voc_object("cat", "1", "1", "10", "10")), "000005.jpg");
    write_split(root, "trainval", {"000005"});
  }
  add_voc_image(t / "VOC2012", "2008_000001", voc_xml("2008_000001.jpg", 50, 50, ""), "2008_000001.jpg");
  write_split(t / "VOC2012", "trainval", {"000005", "2008_000001"});
  VocOptions o;
  o.roots = {t / "VOC2007", t / "VOC2012"};
  const Dataset d = load_voc(o);
  REQUIRE(d.warnings.empty());
  REQUIRE(d.samples.size() == 3);
  CHECK(fs::path(d.samples[0].image_path).parent_path().parent_path() == fs::path(t / "VOC2007"));
  CHECK(fs::path(d.samples[1].image_path).parent_path().parent_path() == fs::path(t / "VOC2012"));
  CHECK(d.samples[2].key == "2008_000001.jpg");
}

namespace {

struct VocBadCase {
  const char* what;
  std::string xml;        // the bad image's annotation ("" : no XML file)
  bool write_image;       // write JPEGImages/bad.jpg
  bool image_skipped;     // else one object is skipped
  const char* problem;    // in the warning
};

}  // namespace

TEST_CASE("load_voc: each per-item problem gives one warning naming the file and skips only that item",
          "[data][dataset]") {
  const std::string good_obj = voc_object("cat", "1", "1", "20", "20");
  const std::vector<VocBadCase> cases = {
      {"missing XML", "", true, true, "annotation file not found"},
      {"malformed XML", "<annotation><filename>bad.jpg</filename><object>", true, true, "malformed XML"},
      {"no annotation element", "<something/>", true, true, "malformed XML"},
      {"missing image file", voc_xml("bad.jpg", 50, 50, good_obj), false, true, "not found"},
      {"unknown class", voc_xml("bad.jpg", 50, 50, good_obj + voc_object("unicorn", "1", "1", "5", "5")), true,
       false, "unknown class"},
      {"non-numeric coordinate", voc_xml("bad.jpg", 50, 50, good_obj + voc_object("dog", "1", "abc", "5", "5")),
       true, false, "non-numeric <ymin> 'abc'"},
      {"missing coordinate",
       voc_xml("bad.jpg", 50, 50,
               good_obj + "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax></bndbox></object>"),
       true, false, "missing <ymax>"},
      {"missing bndbox", voc_xml("bad.jpg", 50, 50, good_obj + "<object><name>dog</name></object>"), true, false,
       "no <bndbox>"},
      {"zero width", voc_xml("bad.jpg", 50, 50, good_obj + voc_object("dog", "10", "1", "10", "5")), true, false,
       "zero or negative area"},
      {"negative height", voc_xml("bad.jpg", 50, 50, good_obj + voc_object("dog", "1", "9", "5", "5")), true, false,
       "zero or negative area"},
      {"outside the image", voc_xml("bad.jpg", 50, 50, good_obj + voc_object("dog", "1", "1", "53", "20")), true,
       false, "outside the 50x50 image"},
      {"negative coordinate", voc_xml("bad.jpg", 0, 0, good_obj + voc_object("dog", "-5", "1", "10", "20")), true,
       false, "outside the image"},
  };
  for (const VocBadCase& c : cases) {
    DYNAMIC_SECTION(c.what) {
      TempDir t("test_dataset");
      const std::string root = t / "voc";
      add_voc_image(root, "good", voc_xml("good.jpg", 50, 50, good_obj), "good.jpg");
      const std::string xml = root + "/Annotations/bad.xml";
      if (!c.xml.empty()) write_file(xml, c.xml);
      if (c.write_image) write_file(root + "/JPEGImages/bad.jpg", "x");
      write_split(root, "trainval", {"good", "bad"});

      const Dataset d = load_voc(voc(root));
      REQUIRE(d.warnings.size() == 1);
      const std::string& w = d.warnings[0];
      CHECK_THAT(w, Catch::StartsWith(xml + ": ") && Catch::Contains(c.problem));
      CHECK(w.find('\n') == std::string::npos);
      CHECK(d.samples.at(0).key == "good.jpg");
      CHECK(d.samples[0].objects.size() == 1);
      if (c.image_skipped) {
        CHECK_THAT(w, Catch::EndsWith("(image skipped)"));
        CHECK(d.skipped_images == 1);
        CHECK(d.skipped_objects == 0);
        CHECK(d.samples.size() == 1);
      } else {
        CHECK_THAT(w, Catch::EndsWith("(object skipped)") && Catch::Contains(": object 1 '"));
        CHECK(d.skipped_images == 0);
        CHECK(d.skipped_objects == 1);
        REQUIRE(d.samples.size() == 2);
        CHECK(d.samples[1].objects.size() == 1);  // the good object of the bad image stays
      }
    }
  }
}

TEST_CASE("load_voc: an existing <id>.jpg is used when <filename> names a missing file", "[data][dataset]") {
  TempDir t("test_dataset");
  const std::string root = t / "voc";
  add_voc_image(root, "a", voc_xml("wrong_name.jpg", 50, 50, ""), "a.jpg");
  write_split(root, "trainval", {"a"});
  const Dataset d = load_voc(voc(root));
  REQUIRE(d.warnings.empty());
  CHECK(d.samples.at(0).key == "a.jpg");
}

TEST_CASE("load_voc: require_images = false reads annotations without the image files", "[data][dataset]") {
  TempDir t("test_dataset");
  const std::string root = t / "voc";
  add_voc_image(root, "a", voc_xml("a_file.jpg", 50, 50, voc_object("cat", "1", "1", "20", "20")), "");
  add_voc_image(root, "b", voc_xml("", 50, 50, ""), "");
  write_split(root, "test", {"a", "b"});
  VocOptions o = voc(root, "test");
  o.require_images = false;
  const Dataset d = load_voc(o);
  REQUIRE(d.warnings.empty());
  REQUIRE(d.samples.size() == 2);
  CHECK(d.samples[0].key == "a_file.jpg");
  CHECK(d.samples[1].key == "b.jpg");
  o.require_images = true;
  CHECK(load_voc(o).skipped_images == 2);
}

TEST_CASE("load_voc: a missing root, split or class file throws naming the path", "[data][dataset]") {
  TempDir t("test_dataset");
  const std::string root = t / "voc";
  write_split(root, "trainval", {});
  CHECK_THAT(error_of([&] { load_voc(voc(t / "nowhere")); }), Catch::Contains(t / "nowhere"));
  CHECK_THAT(error_of([&] { load_voc(voc(root, "val")); }),
             Catch::Contains((fs::path(root) / "ImageSets" / "Main" / "val.txt").string()));
  VocOptions o = voc(root);
  o.classes_file = t / "no_classes.txt";
  CHECK_THAT(error_of([&] { load_voc(o); }), Catch::Contains(t / "no_classes.txt"));
  // A good first root does not hide a bad second one.
  o = voc(root);
  o.roots.push_back(t / "missing_2012");
  CHECK_THAT(error_of([&] { load_voc(o); }), Catch::Contains(t / "missing_2012"));
  // An empty split is a valid, empty dataset.
  CHECK(load_voc(voc(root)).samples.empty());
}

namespace {

// A COCO file with categories listed out of id order, crowd and area fields, and an image
// without annotations.
const char* kCocoGood = R"({
  "images": [
    {"id": 10, "file_name": "b.jpg", "width": 200, "height": 100},
    {"id": 3, "file_name": "a.jpg", "width": 64, "height": 48},
    {"id": 7, "file_name": "empty.jpg"}
  ],
  "annotations": [
    {"id": 1, "image_id": 3, "category_id": 18, "bbox": [1.5, 2, 10, 20], "area": 150.5, "iscrowd": 0},
    {"id": 2, "image_id": 10, "category_id": 1, "bbox": [0, 0, 200, 100], "area": 9000, "iscrowd": 1},
    {"id": 3, "image_id": 3, "category_id": 3, "bbox": [30, 10, 5, 5]}
  ],
  "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
})";

void write_coco_images(const TempDir& t, const std::string& dir) {
  for (const char* f : {"a.jpg", "b.jpg", "empty.jpg"}) write_file(t / (dir + "/" + f), "x");
}

}  // namespace

TEST_CASE("load_coco: category-id order, corner boxes, crowd and area kept, empty images kept",
          "[data][dataset]") {
  TempDir t("test_dataset");
  write_file(t / "ann/instances.json", kCocoGood);
  CocoOptions o;
  o.json = t / "ann/instances.json";
  SECTION("images next to the JSON by default") { write_coco_images(t, "ann"); }
  SECTION("an explicit images folder") {
    write_coco_images(t, "img");
    o.images_dir = t / "img";
  }
  const Dataset d = load_coco(o);
  REQUIRE(d.warnings.empty());
  CHECK(d.class_names == std::vector<std::string>{"person", "car", "dog"});
  CHECK(d.category_ids == std::vector<int>{1, 3, 18});
  REQUIRE(d.samples.size() == 3);

  const Sample& b = d.samples[0];
  CHECK(b.key == "b.jpg");
  CHECK(b.width == 200);
  CHECK(b.height == 100);
  REQUIRE(b.objects.size() == 1);
  CHECK(b.objects[0].label == 0);
  CHECK(b.objects[0].iscrowd);
  CHECK(b.objects[0].area == 9000);
  CHECK(approx_box(b.objects[0].box, 0, 0, 200, 100));

  const Sample& a = d.samples[1];
  CHECK(fs::path(a.image_path).filename() == "a.jpg");
  REQUIRE(a.objects.size() == 2);
  CHECK(a.objects[0].label == 2);
  CHECK(approx_box(a.objects[0].box, 1.5, 2, 11.5, 22));
  CHECK(a.objects[0].area == 150.5);
  CHECK_FALSE(a.objects[0].iscrowd);
  CHECK_FALSE(a.objects[0].difficult);
  CHECK(a.objects[1].label == 1);
  CHECK(a.objects[1].area <= 0);  // absent: the box area is used

  CHECK(d.samples[2].objects.empty());
  CHECK(d.samples[2].width == 0);

  const auto gt = ground_truth(d);
  REQUIRE(gt.size() == 3);
  CHECK(gt[0].image == "b.jpg");
  CHECK(gt[0].category == 1);
  CHECK(gt[0].iscrowd);
  CHECK(gt[0].area == 9000);
  CHECK(gt[1].category == 18);
  CHECK(gt[2].category == 3);
}

namespace {

struct CocoBadCase {
  const char* what;
  std::string annotation;  // one more annotation ("" : none)
  bool image_missing;      // leave a.jpg out
  const char* problem;
};

}  // namespace

TEST_CASE("load_coco: each per-item problem gives one warning naming the file and skips only that item",
          "[data][dataset]") {
  const std::vector<CocoBadCase> cases = {
      {"unknown image_id", R"({"id": 9, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]})", false,
       "unknown image_id 99"},
      {"unknown category_id", R"({"id": 9, "image_id": 3, "category_id": 2, "bbox": [1, 1, 5, 5]})", false,
       "unknown category_id 2"},
      {"bbox of 3 numbers", R"({"id": 9, "image_id": 3, "category_id": 1, "bbox": [1, 1, 5]})", false, "bbox"},
      {"bbox with a string", R"({"id": 9, "image_id": 3, "category_id": 1, "bbox": [1, "1", 5, 5]})", false,
       "bbox"},
      {"zero width", R"({"id": 9, "image_id": 3, "category_id": 1, "bbox": [1, 1, 0, 5]})", false,
       "zero or negative area"},
      {"outside the image", R"({"id": 9, "image_id": 3, "category_id": 1, "bbox": [60, 1, 10, 5]})", false,
       "outside the 64x48 image"},
      {"missing image file", "", true, "a.jpg not found"},
  };
  for (const CocoBadCase& c : cases) {
    DYNAMIC_SECTION(c.what) {
      TempDir t("test_dataset");
      std::string text = kCocoGood;
      if (!c.annotation.empty()) {
        const std::string anchor = R"("annotations": [)";
        text.insert(text.find(anchor) + anchor.size(), "\n    " + c.annotation + ",");
      }
      const std::string json = t / "instances.json";
      write_file(json, text);
      write_coco_images(t, ".");
      if (c.image_missing) fs::remove(t / "a.jpg");
      CocoOptions o;
      o.json = json;
      const Dataset d = load_coco(o);
      REQUIRE(d.warnings.size() == 1);
      CHECK_THAT(d.warnings[0], Catch::StartsWith(json + ": ") && Catch::Contains(c.problem));
      if (c.image_missing) {
        CHECK_THAT(d.warnings[0], Catch::EndsWith("(image skipped)"));
        CHECK(d.skipped_images == 1);
        CHECK(d.skipped_objects == 0);  // a.jpg's annotations go with it
        REQUIRE(d.samples.size() == 2);
        CHECK(d.samples[0].objects.size() == 1);
      } else {
        CHECK_THAT(d.warnings[0], Catch::EndsWith("(object skipped)") && Catch::Contains("annotations[0] (id 9)"));
        CHECK(d.skipped_images == 0);
        CHECK(d.skipped_objects == 1);
        REQUIRE(d.samples.size() == 3);
        CHECK(d.samples[1].objects.size() == 2);
      }
    }
  }
}

TEST_CASE("load_coco: a box less than 1 px past the border is clipped", "[data][dataset]") {
  TempDir t("test_dataset");
  write_file(t / "i.json", R"({"images": [{"id": 1, "file_name": "x.jpg", "width": 64, "height": 48}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [-0.5, 40, 64.8, 8.9]}],
    "categories": [{"id": 1, "name": "thing"}]})");
  CocoOptions o;
  o.json = t / "i.json";
  o.require_images = false;
  const Dataset d = load_coco(o);
  REQUIRE(d.warnings.empty());
  CHECK(approx_box(d.samples.at(0).objects.at(0).box, 0, 40, 64, 48));
}

TEST_CASE("load_coco: missing file, malformed JSON, missing arrays and bad categories throw naming the file",
          "[data][dataset]") {
  TempDir t("test_dataset");
  CocoOptions o;
  o.json = t / "missing.json";
  CHECK_THAT(error_of([&] { load_coco(o); }), Catch::Contains(o.json));
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{\"images\": [", "malformed JSON"},
      {"[]", "not a JSON object"},
      {R"({"images": [], "categories": [{"id": 1, "name": "a"}]})", "\"annotations\""},
      {R"({"images": {}, "annotations": [], "categories": [{"id": 1, "name": "a"}]})", "\"images\""},
      {R"({"images": [], "annotations": []})", "\"categories\""},
      {R"({"images": [], "annotations": [], "categories": []})", "empty"},
      {R"({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]})",
       "duplicate category id 1"},
      {R"({"images": [], "annotations": [], "categories": [{"id": "1", "name": "a"}]})", "categories[0]"},
  };
  for (const auto& [text, problem] : bad) {
    o.json = t / "bad.json";
    write_file(o.json, text);
    INFO(text);
    CHECK_THAT(error_of([&] { load_coco(o); }), Catch::Contains(o.json) && Catch::Contains(problem));
  }
}

TEST_CASE("load_dataset dispatches on .json, dataset_source and dataset_summary describe it", "[data][dataset]") {
  TempDir t("test_dataset");
  const std::string r1 = t / "VOC2007", r2 = t / "VOC2012";
  add_voc_image(r1, "a",
                voc_xml("a.jpg", 50, 50,
                        voc_object("cat", "1", "1", "20", "20") + voc_object("dog", "5", "5", "30", "30", true) +
                            voc_object("cat", "1", "1", "1", "9")),
                "a.jpg");
  add_voc_image(r2, "b", voc_xml("b.jpg", 50, 50, ""), "b.jpg");
  write_split(r1, "test", {"a"});
  write_split(r2, "test", {"b"});

  const Dataset v = load_dataset(r1 + "," + r2, "test", "");
  CHECK(v.samples.size() == 2);
  CHECK(dataset_source(r1 + "," + r2, "test", "") ==
        "VOC " + r1 + ", " + r2 + ", split test, classes the 20 VOC classes");
  const std::string summary = dataset_summary(v);
  CHECK_THAT(summary, Catch::Contains("images: 2 (1 without objects)\n"));
  CHECK_THAT(summary, Catch::Contains("objects: 2 (difficult: 1, crowd: 0)\n"));
  CHECK_THAT(summary, Catch::Contains("  cat: 1\n") && Catch::Contains("  dog: 1\n") &&
                          Catch::Contains("  aeroplane: 0\n"));
  CHECK_THAT(summary, Catch::Contains("skipped: 0 images, 1 objects (1 warnings)\n"));

  const auto gt = ground_truth(v);
  REQUIRE(gt.size() == 2);
  CHECK(gt[0].category == 8);  // cat: label 7
  CHECK(gt[1].category == 12);  // dog: label 11
  CHECK(gt[1].difficult);
  CHECK(gt[0].image == "a.jpg");

  write_file(t / "coco/instances.json", kCocoGood);
  const Dataset c = load_dataset(t / "coco/instances.json", "ignored", "", "", /*require_images=*/false);
  CHECK(c.category_ids == std::vector<int>{1, 3, 18});
  CHECK(c.samples.size() == 3);
  CHECK(dataset_source(t / "coco/instances.json", "x", "", t / "img") ==
        "COCO " + (t / "coco/instances.json") + ", images in " + (t / "img"));
  CHECK_THAT(error_of([&] { load_dataset(t / "coco/instances.json", "test", t / "classes.txt"); }),
             Catch::Contains("VOC datasets only"));
  CHECK_THAT(error_of([&] { load_dataset(r1, "test", "", t / "img"); }), Catch::Contains("COCO datasets only"));
}
