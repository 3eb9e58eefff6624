// safetensors: lying headers (issue 18) and the size limits of engine/io/limits.h. Every
// crafted file is written by the test; big ones are sparse (ftruncate), so nothing large
// reaches the disk and nothing large is allocated.
#include "temp_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "engine/io/limits.h"
#include "engine/io/safetensors.h"

using namespace eng;
using namespace eng::io;
namespace fs = std::filesystem;

namespace {

std::string u64_le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// Writes length + header + data into `dir`/name; returns the path.
std::string st_file(const test::TempDir& dir, const std::string& name, const std::string& header,
                    const std::string& data = "") {
  const std::string p = dir / name;
  test::write_file(p, u64_le(header.size()) + header + data);
  return p;
}

// Extends `path` with holes to `bytes` in all.
void make_sparse(const std::string& path, uint64_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, static_cast<off_t>(bytes)) == 0);
  ::close(fd);
}

const std::string kEight(8, '\0');

}  // namespace

TEST_CASE("safetensors: a header number like 1e400 gives one line naming the file (issue 18)", "[io][safetensors]") {
  test::TempDir d("st_1e400");
  // nlohmann throws out_of_range (not parse_error) for these: both must name the file.
  for (const std::string& header :
       {std::string(R"({"w": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 8]}})"),
        std::string(R"({"__metadata__": {"a": "b"}, "x": 1e400})"), std::string(R"([-1e400])")}) {
    const std::string p = st_file(d, "a.safetensors", header, kEight);
    REQUIRE_THROWS_WITH(load_safetensors(p), Catch::StartsWith(p + ": header is not valid JSON") &&
                                                 Catch::Contains("1e400") && !Catch::Contains("\n"));
  }
}

TEST_CASE("safetensors: out-of-range, negative, fractional and huge integers are refused naming the field",
          "[io][safetensors]") {
  test::TempDir d("st_ints");
  struct Case {
    const char* header;
    const char* expect;
  };
  const Case cases[] = {
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", "\"data_offsets\" [-8,0] are not integers"},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}})", "\"data_offsets\" [0,8.0] are not"},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 18446744073709551616]}})", "are not integers"},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 9223372036854775808]}})", "are not integers"},
      {R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", "\"shape\" entry 2.5 is not an integer"},
      {R"({"w": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}})", "\"shape\" entry \"2\" is not"},
      {R"({"w": {"dtype": "F32", "shape": [9223372036854775808], "data_offsets": [0, 8]}})", "is not an integer"},
      {R"({"w": {"dtype": "F32", "shape": [3037000500, 3037000500, 0], "data_offsets": [0, 0]}})",
       "more elements than fit in int64"},
      {R"({"w": {"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1], "data_offsets": [0, 4]}})",
       "17 dimensions (at most 16)"},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}})", "past the end of the data section"},
      {R"({"w": {"dtype": "I64", "shape": [2], "data_offsets": [0, 8]}})", "size mismatch"},
      {R"({"w": {"dtype": "f32", "shape": [2], "data_offsets": [0, 8]}})", "unknown dtype 'f32'"},
      {R"({"": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", "tensor with an empty name"},
      {R"({"__metadata__": {"seed": null}})", "__metadata__ must map strings to strings: 'seed' is null"},
      {R"({"__metadata__": "x"})", "__metadata__ must map strings to strings, not \"x\""},
      {R"("just a string")", "header is not a JSON object: \"just a string\""},
      {R"(null)", "header is not a JSON object: null"},
  };
  for (const Case& c : cases) {
    INFO(c.header);
    const std::string p = st_file(d, "b.safetensors", c.header, kEight);
    REQUIRE_THROWS_WITH(load_safetensors(p), Catch::StartsWith(p + ": ") && Catch::Contains(c.expect));
  }
}

TEST_CASE("safetensors: a key given twice is refused at any level", "[io][safetensors]") {
  test::TempDir d("st_dup");
  std::string p = st_file(d, "dup.safetensors",
                          R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                          R"( "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                          kEight);
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::Equals(p + ": header has the key 'w' twice (duplicated tensor name)"));
  p = st_file(d, "dup2.safetensors", R"({"w": {"dtype": "F32", "dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})",
              kEight);
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::Equals(p + ": header has the key 'dtype' twice"));
  p = st_file(d, "dup3.safetensors", R"({"__metadata__": {"a": "1"}, "__metadata__": {"a": "2"}})");
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::Contains("'__metadata__' twice"));
}

TEST_CASE("safetensors: deep nesting is refused, header order need not follow the offsets", "[io][safetensors]") {
  test::TempDir d("st_nest");
  const std::string deep = "{\"x\": " + std::string(100, '[') + std::string(100, ']') + "}";
  std::string p = st_file(d, "deep.safetensors", deep);
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::Equals(p + ": header nests deeper than 16 levels"));
  // b's bytes come first in the file though a is first in the header: a valid file.
  p = st_file(d, "order.safetensors",
              R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]},)"
              R"( "b": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})",
              std::string("\x01\x02\x03\x04", 4));
  const SafetensorsFile f = load_safetensors(p);
  REQUIRE(f.get("a").to_vector<uint8_t>() == std::vector<uint8_t>{3, 4});
  REQUIRE(f.get("b").to_vector<uint8_t>() == std::vector<uint8_t>{1, 2});
}

TEST_CASE("safetensors: header length over the limit or the file is refused before it is read", "[io][safetensors]") {
  test::TempDir d("st_hlimit");
  const std::string header = R"({"__metadata__": {"a": "b"}})";
  const std::string p = st_file(d, "h.safetensors", header);
  REQUIRE(load_safetensors(p).metadata.at("a") == "b");
  ReadLimits small = read_limits();
  small.safetensors_header_bytes = header.size() - 1;
  {
    ScopedReadLimits scoped(small);
    REQUIRE_THROWS_WITH(load_safetensors(p), Catch::Equals(p + ": header length " + std::to_string(header.size()) +
                                                           " is larger than the limit of " +
                                                           std::to_string(header.size() - 1) +
                                                           " bytes (ENGINE_MAX_SAFETENSORS_HEADER_BYTES)"));
  }
  // 200 MB claimed by a file of 200 MB of holes: over the default 100 MiB, refused unread.
  const std::string big = st_file(d, "big.safetensors", header);
  test::write_file(big, u64_le(200000000) + header);
  make_sparse(big, 8 + 200000000);
  REQUIRE_THROWS_WITH(load_safetensors(big), Catch::Contains("header length 200000000 is larger than the limit of 104857600"));
}

TEST_CASE("safetensors: a tensor over the tensor limit is refused before it is allocated", "[io][safetensors]") {
  test::TempDir d("st_tlimit");
  // 20 GiB of F32 declared, and a (sparse) file that really is that long: the default
  // 16 GiB per-tensor limit refuses it without allocating.
  const uint64_t n = 5ull << 30, bytes = 4 * n;
  const std::string header =
      R"({"w": {"dtype": "F32", "shape": [)" + std::to_string(n) + R"(], "data_offsets": [0, )" + std::to_string(bytes) + "]}}";
  const std::string p = st_file(d, "t.safetensors", header);
  make_sparse(p, 8 + header.size() + bytes);
  REQUIRE_THROWS_WITH(load_safetensors(p),
                      Catch::Equals(p + ": tensor 'w' needs 21474836480 bytes, more than the limit of 17179869184 bytes "
                                        "per tensor (ENGINE_MAX_TENSOR_BYTES)"));
  // F16 is widened to f32: the limit counts the loaded size.
  const std::string h16 = R"({"w": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}})";
  const std::string p16 = st_file(d, "h.safetensors", h16, kEight);
  ReadLimits small = read_limits();
  small.tensor_bytes = 15;
  ScopedReadLimits scoped(small);
  REQUIRE_THROWS_WITH(load_safetensors(p16), Catch::Contains("tensor 'w' needs 16 bytes, more than the limit of 15"));
}

TEST_CASE("safetensors: a weights file over the file limit, a FIFO or a device is refused unread", "[io][safetensors]") {
  test::TempDir d("st_flimit");
  const std::string p = st_file(d, "f.safetensors", R"({})");
  make_sparse(p, 65ull << 30);  // 65 GiB of holes, over the default 64 GiB
  REQUIRE_THROWS_WITH(load_safetensors(p),
                      Catch::Equals(p + ": safetensors file is 69793218560 bytes, larger than the limit of 68719476736 "
                                        "bytes (set ENGINE_MAX_WEIGHTS_FILE_BYTES to raise it)"));
  const std::string fifo = d / "fifo.safetensors";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  REQUIRE_THROWS_WITH(load_safetensors(fifo), Catch::StartsWith(fifo + ": safetensors file is a FIFO"));
  const std::string zero = d / "zero.safetensors";
  fs::create_symlink("/dev/zero", zero);
  REQUIRE_THROWS_WITH(load_safetensors(zero), Catch::StartsWith(zero + ": safetensors file is a character device"));
}
