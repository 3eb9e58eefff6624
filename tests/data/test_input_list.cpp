// --input expansion: files, directories (image extensions, any case, sorted), @lists
// (comments, blank lines, relative paths), errors as lines, duplicates once; output stems.
#include <catch2/catch.hpp>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "data/input_list.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using test::TempDir;

namespace {

// Writes `text` (parent folders created) to `rel` inside `t`; returns its path.
std::string write_text(const TempDir& t, const std::string& rel, const std::string& text) {
  test::write_file(t / rel, text);
  return t / rel;
}
// A one-byte file at `rel` inside `t`; returns its path.
std::string touch(const TempDir& t, const std::string& rel) { return write_text(t, rel, "x"); }

}  // namespace

TEST_CASE("expand_inputs: files, directories, @lists, errors and duplicates", "[data][inputs]") {
  TempDir t("test_input_list");
  touch(t, "a.jpg");
  touch(t, "weird.xyz");
  for (const char* f : {"imgs/m.png", "imgs/Z.JPG", "imgs/a.Jpeg", "imgs/c.BMP", "imgs/notes.txt", "imgs/noext",
                        "imgs/sub/deep.jpg", "lists/photos/p1.jpg", "lists/photos/p0.png"})
    touch(t, f);
  fs::create_directories(t.path / "empty");
  fs::create_directories(t.path / "imgs/dir.jpg");  // a directory with an image-like name is skipped
  const std::string abs_b = touch(t, "b.png");
  write_text(t, "lists/list.txt",
             "# inputs for the test\n"
             "\n"
             "   ../a.jpg   \n"          // duplicate of an earlier argument
             "photos\r\n"                 // a directory, relative to the list, CRLF line
             "  # indented comment\n"
             "../imgs/m.png\n"            // duplicate reached by another spelling
             "missing.jpg\n"              // line 7
             + abs_b + "\n");             // absolute path

  std::vector<std::string> errors;
  const std::vector<std::string> files =
      data::expand_inputs({t / "a.jpg", t / "imgs", t / "weird.xyz", "@" + (t / "lists/list.txt"),
                           t / "missing.png", t / "empty", t / "a.jpg", "@" + (t / "nolist.txt")},
                          errors);

  const std::vector<std::string> expected = {
      t / "a.jpg",     t / "imgs/Z.JPG", t / "imgs/a.Jpeg", t / "imgs/c.BMP", t / "imgs/m.png",
      t / "weird.xyz", (t.path / "lists" / "photos" / "p0.png").string(),
      (t.path / "lists" / "photos" / "p1.jpg").string(), abs_b};
  REQUIRE(files == expected);

  REQUIRE(errors.size() == 4);
  CHECK_THAT(errors[0], StartsWith((t.path / "lists" / "missing.jpg").string() + ": "));
  CHECK_THAT(errors[0], Contains("no such file") && Contains("list.txt line 7"));
  CHECK(errors[1] == (t / "missing.png") + ": no such file or directory");
  CHECK_THAT(errors[2], StartsWith((t / "empty") + ": ") && Contains("no .jpg"));
  CHECK_THAT(errors[3], StartsWith((t / "nolist.txt") + ": ") && Contains("list file"));
  for (const std::string& e : errors) CHECK(e.find('\n') == std::string::npos);
}

TEST_CASE("expand_inputs: odd lists and arguments", "[data][inputs]") {
  TempDir t("test_input_list");
  std::vector<std::string> errors;

  SECTION("a list of comments only") {
    const std::string list = write_text(t, "only_comments.txt", "# nothing\n\n   \n");
    REQUIRE(data::expand_inputs({"@" + list}, errors).empty());
    REQUIRE(errors.size() == 1);
    CHECK_THAT(errors[0], StartsWith(list + ": "));
  }
  SECTION("a list that is a directory, and a bare '@'") {
    fs::create_directories(t.path / "d");
    REQUIRE(data::expand_inputs({"@" + (t / "d"), "@", ""}, errors).empty());
    REQUIRE(errors.size() == 3);
    CHECK_THAT(errors[0], StartsWith((t / "d") + ": "));
  }
  SECTION("a list without a trailing newline, naming a directory and a file") {
    touch(t, "x/1.png");
    touch(t, "y.jpg");
    const std::string list = write_text(t, "l.txt", "x\ny.jpg");
    REQUIRE(data::expand_inputs({"@" + list}, errors) ==
            std::vector<std::string>{(t.path / "x" / "1.png").string(), (t.path / "y.jpg").string()});
    REQUIRE(errors.empty());
  }
  SECTION("a directory path with a trailing slash") {
    touch(t, "x/1.png");
    REQUIRE(data::expand_inputs({(t / "x") + "/"}, errors) == std::vector<std::string>{t / "x/1.png"});
    REQUIRE(errors.empty());
  }
}

TEST_CASE("has_image_extension", "[data][inputs]") {
  CHECK(data::has_image_extension("a.jpg"));
  CHECK(data::has_image_extension("dir.x/A.JPEG"));
  CHECK(data::has_image_extension("b.Png"));
  CHECK(data::has_image_extension("c.bMp"));
  CHECK_FALSE(data::has_image_extension("d.gif"));
  CHECK_FALSE(data::has_image_extension("jpg"));
  CHECK_FALSE(data::has_image_extension("e.jpg.txt"));
}

TEST_CASE("output_stem makes stems unique", "[data][inputs]") {
  std::set<std::string> used;
  CHECK(data::output_stem("a/img.jpg", used) == "img");
  CHECK(data::output_stem("b/img.png", used) == "img_1");
  CHECK(data::output_stem("img.bmp", used) == "img_2");
  CHECK(data::output_stem("c/other.jpeg", used) == "other");
  CHECK(data::output_stem("x/img_3.jpg", used) == "img_3");
  CHECK(data::output_stem("y/img.jpg", used) == "img_4");  // img_3 is taken by a real stem
  CHECK(data::output_stem("archive.tar.gz", used) == "archive.tar");
  CHECK(data::output_stem("dir/", used) == "image");
  CHECK(used.size() == 8);
}
