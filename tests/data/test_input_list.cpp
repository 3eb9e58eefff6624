// --input expansion: files, directories (image extensions, any case, sorted), @lists
// (comments, blank lines, relative paths), errors as lines, duplicates once; output stems.
#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "data/input_list.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("engine_test_inputs_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
            std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string p(const std::string& rel) const { return (path / rel).string(); }
  std::string touch(const std::string& rel) const {
    fs::create_directories((path / rel).parent_path());
    std::ofstream(path / rel) << "x";
    return p(rel);
  }
  std::string write(const std::string& rel, const std::string& text) const {
    fs::create_directories((path / rel).parent_path());
    std::ofstream(path / rel, std::ios::binary) << text;
    return p(rel);
  }
};

}  // namespace

TEST_CASE("expand_inputs: files, directories, @lists, errors and duplicates", "[data][inputs]") {
  TempDir t;
  t.touch("a.jpg");
  t.touch("weird.xyz");
  for (const char* f : {"imgs/m.png", "imgs/Z.JPG", "imgs/a.Jpeg", "imgs/c.BMP", "imgs/notes.txt", "imgs/noext",
                        "imgs/sub/deep.jpg", "lists/photos/p1.jpg", "lists/photos/p0.png"})
    t.touch(f);
  fs::create_directories(t.path / "empty");
  fs::create_directories(t.path / "imgs/dir.jpg");  // a directory with an image-like name is skipped
  const std::string abs_b = t.touch("b.png");
  t.write("lists/list.txt",
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
      data::expand_inputs({t.p("a.jpg"), t.p("imgs"), t.p("weird.xyz"), "@" + t.p("lists/list.txt"),
                           t.p("missing.png"), t.p("empty"), t.p("a.jpg"), "@" + t.p("nolist.txt")},
                          errors);

  const std::vector<std::string> expected = {
      t.p("a.jpg"),      t.p("imgs/Z.JPG"), t.p("imgs/a.Jpeg"), t.p("imgs/c.BMP"), t.p("imgs/m.png"),
      t.p("weird.xyz"),  (t.path / "lists" / "photos" / "p0.png").string(),
      (t.path / "lists" / "photos" / "p1.jpg").string(), abs_b};
  REQUIRE(files == expected);

  REQUIRE(errors.size() == 4);
  CHECK_THAT(errors[0], StartsWith((t.path / "lists" / "missing.jpg").string() + ": "));
  CHECK_THAT(errors[0], Contains("no such file") && Contains("list.txt line 7"));
  CHECK(errors[1] == t.p("missing.png") + ": no such file or directory");
  CHECK_THAT(errors[2], StartsWith(t.p("empty") + ": ") && Contains("no .jpg"));
  CHECK_THAT(errors[3], StartsWith(t.p("nolist.txt") + ": ") && Contains("list file"));
  for (const std::string& e : errors) CHECK(e.find('\n') == std::string::npos);
}

TEST_CASE("expand_inputs: odd lists and arguments", "[data][inputs]") {
  TempDir t;
  std::vector<std::string> errors;

  SECTION("a list of comments only") {
    const std::string list = t.write("only_comments.txt", "# nothing\n\n   \n");
    REQUIRE(data::expand_inputs({"@" + list}, errors).empty());
    REQUIRE(errors.size() == 1);
    CHECK_THAT(errors[0], StartsWith(list + ": "));
  }
  SECTION("a list that is a directory, and a bare '@'") {
    fs::create_directories(t.path / "d");
    REQUIRE(data::expand_inputs({"@" + t.p("d"), "@", ""}, errors).empty());
    REQUIRE(errors.size() == 3);
    CHECK_THAT(errors[0], StartsWith(t.p("d") + ": "));
  }
  SECTION("a list without a trailing newline, naming a directory and a file") {
    t.touch("x/1.png");
    t.touch("y.jpg");
    const std::string list = t.write("l.txt", "x\ny.jpg");
    REQUIRE(data::expand_inputs({"@" + list}, errors) ==
            std::vector<std::string>{(t.path / "x" / "1.png").string(), (t.path / "y.jpg").string()});
    REQUIRE(errors.empty());
  }
  SECTION("a directory path with a trailing slash") {
    t.touch("x/1.png");
    REQUIRE(data::expand_inputs({t.p("x") + "/"}, errors) == std::vector<std::string>{t.p("x/1.png")});
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
