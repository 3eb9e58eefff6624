// engine/io/read_file.h and engine/io/limits.h: the checked whole-file read every reader
// uses (regular files only, size caps, line caps) and the strict number parsers.
#include "temp_dir.h"

#include <cstdlib>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "engine/error.h"
#include "engine/io/limits.h"
#include "engine/io/read_file.h"

using namespace eng::io;
namespace fs = std::filesystem;

TEST_CASE("read_file_capped: reads a regular file whole, refuses directories, FIFOs and devices unread",
          "[io][read_file]") {
  test::TempDir d("read_file");
  const std::string p = d / "a.txt";
  test::write_file(p, std::string("hello\0world", 11));
  REQUIRE(read_file_capped(p, 100, "test file") == std::string("hello\0world", 11));
  REQUIRE(read_file_capped(p, 11, "test file").size() == 11);
  REQUIRE_THROWS_WITH(read_file_capped(p, 10, "test file", "ENGINE_MAX_X"),
                      Catch::StartsWith(p + ": test file is 11 bytes, larger than the limit of 10 bytes") &&
                          Catch::Contains("set ENGINE_MAX_X"));
  REQUIRE_THROWS_WITH(read_file_capped(d / "none", 10, "test file"), Catch::Equals(d / "none" + ": test file not found"));
  REQUIRE_THROWS_WITH(read_file_capped(d.path.string(), 10, "test file"), Catch::Contains("is a directory"));
  // A FIFO with no writer: refused at once (opened non-blocking), never waited on.
  const std::string fifo = d / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  REQUIRE_THROWS_WITH(read_file_capped(fifo, 1 << 20, "JSON file"),
                      Catch::StartsWith(fifo + ": JSON file is a FIFO (named pipe), not a regular file"));
  // A link to an endless device: refused without reading.
  const std::string zero = d / "zero.json";
  fs::create_symlink("/dev/zero", zero);
  REQUIRE_THROWS_WITH(read_file_capped(zero, 1 << 20, "JSON file"),
                      Catch::StartsWith(zero + ": JSON file is a character device, not a regular file"));
}

TEST_CASE("InputFile: a sparse file over the cap is refused from its size alone", "[io][read_file]") {
  test::TempDir d("read_file_sparse");
  const std::string p = d / "big.bin";
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, off_t(3) << 30) == 0);  // 3 GiB of holes: nothing on disk
  ::close(fd);
  REQUIRE_THROWS_WITH(read_file_capped(p, 1ull << 30, "JSON file"),
                      Catch::StartsWith(p + ": JSON file is 3221225472 bytes, larger than the limit of 1073741824"));
  InputFile f(p, 4ull << 30, "weights");
  REQUIRE(f.size() == (3ull << 30));
  char buf[4] = {1, 1, 1, 1};
  f.read_at((3ull << 30) - 4, buf, 4);
  REQUIRE((buf[0] == 0 && buf[3] == 0));
  REQUIRE_THROWS_WITH(f.read_at((3ull << 30) - 2, buf, 4), Catch::StartsWith(p + ": read of 4 bytes") &&
                                                            Catch::Contains("past the end"));
  REQUIRE_THROWS_WITH(f.read_at(~0ull - 1, buf, 4), Catch::Contains("past the end"));
}

TEST_CASE("read_text_lines: lines, the line cap and NUL bytes", "[io][read_file]") {
  test::TempDir d("read_lines");
  const std::string p = d / "list.txt";
  test::write_file(p, "a\r\n\nb");
  REQUIRE(read_text_lines(p, "list file") == std::vector<std::string>{"a\r", "", "b"});
  std::vector<size_t> numbers;
  for_each_text_line(p, "list file", [&](size_t n, const std::string&) { numbers.push_back(n); });
  REQUIRE(numbers == std::vector<size_t>{1, 2, 3});
  test::write_file(p, "");
  REQUIRE(read_text_lines(p, "list file").empty());
  ReadLimits small = read_limits();
  small.text_line_bytes = 8;
  small.text_file_bytes = 64;
  ScopedReadLimits scoped(small);
  test::write_file(p, "12345678\n123456789\n");
  REQUIRE_THROWS_WITH(read_text_lines(p, "list file"),
                      Catch::Equals(p + ":2: line is longer than 8 bytes (ENGINE_MAX_TEXT_LINE_BYTES)"));
  test::write_file(p, std::string("ab\n\0\n", 5));
  REQUIRE_THROWS_WITH(read_text_lines(p, "list file"), Catch::StartsWith(p + ":2: NUL byte"));
  test::write_file(p, std::string(65, 'x'));
  REQUIRE_THROWS_WITH(read_text_lines(p, "list file"),
                      Catch::Contains("list file is 65 bytes, larger than the limit of 64 bytes") &&
                          Catch::Contains("ENGINE_MAX_TEXT_FILE_BYTES"));
}

TEST_CASE("limits: defaults, environment overrides and bad environment values", "[io][limits]") {
  const ReadLimits def;
  REQUIRE(def.json_bytes == (1ull << 30));
  REQUIRE(def.annotation_bytes == (16ull << 20));
  REQUIRE(def.safetensors_header_bytes == (100ull << 20));
  ::setenv("ENGINE_MAX_JSON_BYTES", "12345", 1);
  ::setenv("ENGINE_MAX_TENSOR_BYTES", "99", 1);
  ReadLimits l = limits_from_environment();
  REQUIRE(l.json_bytes == 12345);
  REQUIRE(l.tensor_bytes == 99);
  REQUIRE(l.annotation_bytes == def.annotation_bytes);
  for (const char* bad : {"-1", "1e9", "0", " 5", "+5", "18446744073709551616", "abc", ""}) {
    ::setenv("ENGINE_MAX_JSON_BYTES", bad, 1);
    REQUIRE_THROWS_WITH(limits_from_environment(),
                        Catch::Equals(std::string("environment variable ENGINE_MAX_JSON_BYTES='") + bad +
                                      "' is not a whole number of bytes >= 1"));
  }
  ::unsetenv("ENGINE_MAX_JSON_BYTES");
  ::unsetenv("ENGINE_MAX_TENSOR_BYTES");
  ReadLimits zero;
  zero.tensor_bytes = 0;
  REQUIRE_THROWS_WITH(set_read_limits(zero), Catch::Contains("at least 1 byte"));
}

TEST_CASE("parse_int64 / parse_uint64 / parse_finite_double accept only whole, in-range numbers", "[io][numbers]") {
  int64_t i = 7;
  REQUIRE((parse_int64("42", 0, 100, i) && i == 42));
  REQUIRE((parse_int64("-1", -1, 100, i) && i == -1));
  REQUIRE((parse_int64("007", 0, 100, i) && i == 7));
  i = 5;
  for (const char* bad : {"", " 1", "1 ", "+1", "1.0", "1e3", "0x10", "abc", "9223372036854775808", "-2", "101"})
    REQUIRE_FALSE(parse_int64(bad, -1, 100, i));
  REQUIRE(i == 5);  // untouched on failure
  REQUIRE((parse_int64("-9223372036854775808", INT64_MIN, INT64_MAX, i) && i == INT64_MIN));
  uint64_t u = 3;
  REQUIRE((parse_uint64("18446744073709551615", UINT64_MAX, u) && u == UINT64_MAX));
  for (const char* bad : {"-1", "-0", "18446744073709551616", "abc", "1 ", "+1", ""})
    REQUIRE_FALSE(parse_uint64(bad, UINT64_MAX, u));
  REQUIRE_FALSE(parse_uint64("11", 10, u));
  REQUIRE(u == UINT64_MAX);
  double x = 0;
  REQUIRE((parse_finite_double("1.5e2", x) && x == 150.0));
  REQUIRE((parse_finite_double("-0.25", x) && x == -0.25));
  for (const char* bad : {"", "1e400", "-1e400", "nan", "inf", "-inf", "0x1p3", " 1", "1 ", "1,5", "1e", "--1"})
    REQUIRE_FALSE(parse_finite_double(bad, x));
}

// Every eng::Error is one line: a newline read from a file (a tensor name, a metadata value)
// and echoed into a message is escaped (the fuzzers found both; engine/error.h).
TEST_CASE("errors: an eng::Error message is always one line (control characters escaped)") {
  const std::string name = "a\nb\rc\td\x01" "e\x7f";
  try {
    ENGINE_FAIL("x.safetensors: tensor '", name, "' is bad");
    FAIL("no throw");
  } catch (const eng::Error& e) {
    CHECK(std::string(e.what()) == "x.safetensors: tensor 'a\\nb\\rc\\td\\x01e\\x7f' is bad");
  }
  CHECK(eng::detail::one_line("caf\xc3\xa9 ok") == "caf\xc3\xa9 ok");  // UTF-8 passes through
}
