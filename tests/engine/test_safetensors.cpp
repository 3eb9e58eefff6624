// safetensors: round trips, hand-built F16/BF16 files, and one test per kind of bad file.
#include "test_helpers.h"
#include "temp_dir.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "engine/io/safetensors.h"
#include "engine/nn/layers.h"

using namespace eng;
using namespace eng::io;
namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using test::write_file;

namespace {

// A fresh, empty directory per test case; kept (and removed) until the test program exits, since
// bad_file() hands out paths inside it after returning.
fs::path temp_dir(const std::string& name) {
  static std::vector<std::unique_ptr<test::TempDir>> dirs;
  dirs.push_back(std::make_unique<test::TempDir>("safetensors_" + name));
  return dirs.back()->path;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string u64_le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A file: 8-byte header length, the header text as given, then the data bytes.
std::string st_file(const std::string& header, const std::string& data) { return u64_le(header.size()) + header + data; }

// Writes a file with the given header and data into a fresh dir; returns its path.
std::string bad_file(const std::string& test, const std::string& header, const std::string& data) {
  fs::path p = temp_dir(test) / "bad.safetensors";
  write_file(p, st_file(header, data));
  return p.string();
}

std::string u16_le(const std::vector<uint16_t>& v) {
  std::string s;
  for (uint16_t x : v) {
    s += static_cast<char>(x & 0xff);
    s += static_cast<char>(x >> 8);
  }
  return s;
}

float float_from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

const std::string kF32Pair = std::string(8, '\0');  // two f32 zeros

}  // namespace

TEST_CASE("safetensors: round trip of every dtype, 0-d and empty tensors, and metadata") {
  fs::path p = temp_dir("roundtrip") / "all.safetensors";
  Tensor big = from_vector<int64_t>({int64_t(1) << 40, -5, 0, 123456789012}, {2, 2});
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"f32", from_vector<float>({1.5f, -2.25f, 3e-8f, 1e30f, 0.0f, -0.0f}, {2, 3})},
      {"f64", scalar_tensor(3.141592653589793, DType::f64)},
      {"i32", from_vector<int32_t>({-7, 0, 2147483647, -2147483647 - 1}, {4})},
      {"i64", big},
      {"u8", from_vector<uint8_t>({0, 255, 7}, {3})},
      {"b8", from_vector<uint8_t>({1, 0, 0, 1, 1}, {5}, TensorOptions(DType::b8))},
      {"empty", zeros({0, 3})},
      {"strided", arange(6, DType::f32).reshape({2, 3}).transpose(0, 1)},  // saved contiguous
  };
  std::map<std::string, std::string> meta = {{"iteration", "42"}, {"config", "{\"lr\": 0.01}"}, {"empty", ""}};
  save_safetensors(p.string(), tensors, meta);

  SafetensorsFile f = load_safetensors(p.string());
  REQUIRE(f.metadata == meta);
  REQUIRE(f.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& want = tensors[i].second;
    const Tensor& got = f.tensors[i].second;
    INFO(tensors[i].first);
    REQUIRE(f.tensors[i].first == tensors[i].first);  // given order kept
    REQUIRE(got.dtype() == want.dtype());
    REQUIRE(got.sizes() == want.sizes());
    REQUIRE(!got.is_cuda());
    REQUIRE(got.to_vector<double>() == want.to_vector<double>());
  }
  REQUIRE(f.get("i64").to_vector<int64_t>() == big.to_vector<int64_t>());  // exact beyond 2^53 too
  REQUIRE(f.get("f64").dim() == 0);
  REQUIRE(f.get("strided").to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  REQUIRE(std::signbit(f.get("f32").to_vector<float>()[5]));
  REQUIRE(f.contains("u8"));
  REQUIRE(!f.contains("nope"));
  REQUIRE_THROWS_WITH(f.get("nope"), Catch::Contains("no tensor named 'nope'"));
}

TEST_CASE("safetensors: header layout follows the format") {
  fs::path p = temp_dir("layout") / "x.safetensors";
  save_safetensors(p.string(), {{"b", zeros({3}, DType::f64)}, {"a", zeros({2, 1}, DType::u8)}, {"s", scalar_tensor(1)}},
                   {{"k", "v"}});
  std::string bytes = read_bytes(p);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  REQUIRE((8 + n) % 8 == 0);
  REQUIRE(bytes.size() == 8 + n + 24 + 2 + 4);
  auto header = Json::parse(bytes.substr(8, n));
  std::vector<std::string> keys;
  for (auto it = header.begin(); it != header.end(); ++it) keys.push_back(it.key());
  REQUIRE(keys == std::vector<std::string>{"__metadata__", "b", "a", "s"});
  REQUIRE(header["__metadata__"]["k"] == "v");
  REQUIRE(header["b"]["dtype"] == "F64");
  REQUIRE(header["b"]["data_offsets"] == Json::array({0, 24}));
  REQUIRE(header["a"]["dtype"] == "U8");
  REQUIRE(header["a"]["shape"] == Json::array({2, 1}));
  REQUIRE(header["a"]["data_offsets"] == Json::array({24, 26}));
  REQUIRE(header["s"]["shape"].is_array());
  REQUIRE(header["s"]["shape"].empty());
  REQUIRE(header["s"]["data_offsets"] == Json::array({26, 30}));
  // Padding is spaces after the closing brace.
  std::string text = bytes.substr(8, n);
  REQUIRE(text[text.find_last_not_of(' ')] == '}');
}

TEST_CASE("safetensors: F16 values are widened to f32 exactly") {
  // 1.0, -2.5, 65504 (largest half), 2^-24 (smallest subnormal), 1023 * 2^-24 (largest
  // subnormal), 2^-14 (smallest normal), +inf, -inf, NaN, -0.0
  std::vector<uint16_t> h = {0x3C00, 0xC100, 0x7BFF, 0x0001, 0x03FF, 0x0400, 0x7C00, 0xFC00, 0x7E00, 0x8000};
  std::string header = R"({"h":{"dtype":"F16","shape":[2,5],"data_offsets":[0,20]}})";
  fs::path p = temp_dir("f16") / "h.safetensors";
  write_file(p, st_file(header, u16_le(h)));
  Tensor t = load_safetensors(p.string()).get("h");
  REQUIRE(t.dtype() == DType::f32);
  REQUIRE(t.sizes() == Shape{2, 5});
  auto v = t.to_vector<float>();
  REQUIRE(v[0] == 1.0f);
  REQUIRE(v[1] == -2.5f);
  REQUIRE(v[2] == 65504.0f);
  REQUIRE(v[3] == std::ldexp(1.0f, -24));
  REQUIRE(v[4] == std::ldexp(1023.0f, -24));
  REQUIRE(v[5] == std::ldexp(1.0f, -14));
  REQUIRE(std::isinf(v[6]));
  REQUIRE(v[6] > 0);
  REQUIRE(std::isinf(v[7]));
  REQUIRE(v[7] < 0);
  REQUIRE(std::isnan(v[8]));
  REQUIRE(v[9] == 0.0f);
  REQUIRE(std::signbit(v[9]));
}

TEST_CASE("safetensors: BF16 values are the upper half of an f32") {
  // 1.0, -2.5, 3.140625, +inf, NaN, 2^-133 (a bf16 subnormal), the largest finite bf16
  std::vector<uint16_t> b = {0x3F80, 0xC020, 0x4049, 0x7F80, 0x7FC0, 0x0001, 0x7F7F};
  std::string header = R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[7],"data_offsets":[0,14]}})";
  fs::path p = temp_dir("bf16") / "b.safetensors";
  write_file(p, st_file(header, u16_le(b)));
  SafetensorsFile f = load_safetensors(p.string());
  REQUIRE(f.metadata.at("format") == "pt");
  // Loaded as bf16, bits untouched (the NaN keeps its payload 0x7FC0).
  REQUIRE(f.get("b").dtype() == DType::bf16);
  std::vector<uint16_t> loaded;
  for (kern::bf16 x : f.get("b").to_vector<kern::bf16>()) loaded.push_back(x.bits);
  REQUIRE(loaded == b);
  auto v = f.get("b").to_vector<float>();
  REQUIRE(v[0] == 1.0f);
  REQUIRE(v[1] == -2.5f);
  REQUIRE(v[2] == 3.140625f);
  REQUIRE(std::isinf(v[3]));
  REQUIRE(std::isnan(v[4]));
  REQUIRE(v[5] == std::ldexp(1.0f, -133));
  REQUIRE(bits_of(v[6]) == 0x7F7F0000u);
  REQUIRE(v[6] == float_from_bits(0x7F7F0000u));
}

TEST_CASE("safetensors: a bf16 tensor is written as BF16 in torch's layout and read back bit for bit") {
  const std::vector<uint16_t> bits = {0x3F80, 0xC020, 0x7FFF, 0x0001, 0xFF80, 0x8000};
  std::vector<kern::bf16> v;
  for (uint16_t b : bits) v.push_back(kern::bf16{b});
  Tensor t = from_vector(v, {2, 3});
  fs::path p = temp_dir("bf16_round_trip") / "w.safetensors";
  save_safetensors(p.string(), {{"w", t}, {"wt", t.transpose(0, 1)}});
  // The file: header entry dtype "BF16", and the data section holds little-endian uint16s.
  const std::string bytes = read_bytes(p);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  Json header = Json::parse(bytes.substr(8, n));
  REQUIRE(header["w"]["dtype"] == "BF16");
  REQUIRE(header["w"]["shape"] == Json::array({2, 3}));
  REQUIRE(header["w"]["data_offsets"] == Json::array({0, 12}));
  REQUIRE(bytes.substr(8 + n, 12) == u16_le(bits));
  REQUIRE(bytes.substr(8 + n + 12, 12) == u16_le({0x3F80, 0x0001, 0xC020, 0xFF80, 0x7FFF, 0x8000}));
  SafetensorsFile f = load_safetensors(p.string());
  REQUIRE(f.get("w").dtype() == DType::bf16);
  REQUIRE(f.get("w").sizes() == Shape{2, 3});
  std::vector<uint16_t> back;
  for (kern::bf16 x : f.get("w").to_vector<kern::bf16>()) back.push_back(x.bits);
  REQUIRE(back == bits);
}

TEST_CASE("safetensors: BF16 weights load into f32 parameters exactly") {
  // A torch-style BF16 file for a Linear(3, 2): weight and bias.
  const std::vector<uint16_t> w = {0x3F80, 0xC020, 0x4049, 0x3EAB, 0x0001, 0xBF81}, b = {0x3F00, 0xC2C8};
  std::string header = R"({"weight":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},)"
                       R"("bias":{"dtype":"BF16","shape":[2],"data_offsets":[12,16]}})";
  fs::path p = temp_dir("bf16_weights") / "linear.safetensors";
  write_file(p, st_file(header, u16_le(w) + u16_le(b)));
  nn::Linear lin(3, 2);
  lin.load_state_dict(load_safetensors(p.string()).tensors);
  REQUIRE(lin.weight.dtype() == DType::f32);
  const std::vector<float> got = lin.weight.to_vector<float>();
  for (size_t i = 0; i < w.size(); ++i) REQUIRE(bits_of(got[i]) == static_cast<uint32_t>(w[i]) << 16);
  REQUIRE(lin.bias.to_vector<float>() == std::vector<float>{0.5f, -100.0f});
}

TEST_CASE("safetensors: bad file: missing or not a regular file") {
  fs::path d = temp_dir("missing");
  std::string p = (d / "nope.safetensors").string();
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::StartsWith(p) && Catch::Contains("file not found"));
  REQUIRE_THROWS_WITH(load_safetensors(d.string()), Catch::StartsWith(d.string()) && Catch::Contains("not a regular file"));
}

TEST_CASE("safetensors: bad file: shorter than 8 bytes") {
  fs::path p = temp_dir("short") / "s.safetensors";
  write_file(p, "abc");
  REQUIRE_THROWS_WITH(load_safetensors(p.string()),
                      Catch::StartsWith(p.string()) && Catch::Contains("3 bytes, shorter than the 8-byte header"));
  write_file(p, "");
  REQUIRE_THROWS_WITH(load_safetensors(p.string()), Catch::Contains("0 bytes, shorter"));
}

TEST_CASE("safetensors: bad file: header length past the end or absurdly large") {
  fs::path p = temp_dir("hlen") / "h.safetensors";
  write_file(p, u64_le(100) + "{}");
  REQUIRE_THROWS_WITH(load_safetensors(p.string()),
                      Catch::StartsWith(p.string()) && Catch::Contains("header length 100 runs past the end of the file"));
  write_file(p, u64_le(~0ull) + "{}");
  REQUIRE_THROWS_WITH(load_safetensors(p.string()), Catch::StartsWith(p.string()) && Catch::Contains("larger than the limit of 104857600 bytes"));
}

TEST_CASE("safetensors: bad file: header not valid JSON") {
  std::string p = bad_file("json", "{\"a\": [1, 2", "");
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::StartsWith(p) && Catch::Contains("header is not valid JSON"));
}

TEST_CASE("safetensors: bad file: header not an object") {
  std::string p = bad_file("notobj", "[1, 2, 3]", "");
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::StartsWith(p) && Catch::Contains("header is not a JSON object"));
}

TEST_CASE("safetensors: bad file: entry not an object or missing dtype, shape or data_offsets") {
  std::string p = bad_file("entry", R"({"w": 5})", "");
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::StartsWith(p) && Catch::Contains("entry for tensor 'w' is not a JSON object"));
  p = bad_file("nodtype", R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", kF32Pair);
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::StartsWith(p) && Catch::Contains("tensor 'w' is missing a \"dtype\""));
  p = bad_file("noshape", R"({"w": {"dtype": "F32", "data_offsets": [0, 8]}})", kF32Pair);
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::StartsWith(p) && Catch::Contains("tensor 'w' is missing a \"shape\""));
  p = bad_file("negshape", R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", kF32Pair);
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::StartsWith(p) && Catch::Contains("\"shape\" entry -2 is not an integer"));
  p = bad_file("nooffsets", R"({"w": {"dtype": "F32", "shape": [2]}})", kF32Pair);
  REQUIRE_THROWS_WITH(load_safetensors(p),
                      Catch::StartsWith(p) && Catch::Contains("tensor 'w' is missing a \"data_offsets\" pair"));
  p = bad_file("oneoffset", R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", kF32Pair);
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::Contains("missing a \"data_offsets\" pair"));
}

TEST_CASE("safetensors: bad file: unknown dtype") {
  std::string p = bad_file("dtype", R"({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}})", "ab");
  REQUIRE_THROWS_WITH(load_safetensors(p),
                      Catch::StartsWith(p) && Catch::Contains("tensor 'w' has unknown dtype 'F8_E4M3'"));
}

TEST_CASE("safetensors: bad file: shape and byte length disagree") {
  std::string p = bad_file("size", R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", kF32Pair);
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::StartsWith(p) && Catch::Contains("tensor 'w' has shape [3]") &&
                                               Catch::Contains("span 8 bytes (size mismatch)"));
  // A shape whose element count overflows 64 bits is refused, not a crash.
  p = bad_file("huge", R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 8]}})",
               kF32Pair);
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::StartsWith(p) && Catch::Contains("more elements than fit in int64"));
}

TEST_CASE("safetensors: bad file: offsets out of range") {
  std::string p = bad_file("range", R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", kF32Pair);
  REQUIRE_THROWS_WITH(load_safetensors(p),
                      Catch::StartsWith(p) && Catch::Contains("past the end of the data section (8 bytes)"));
  p = bad_file("reversed", R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", kF32Pair);
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::StartsWith(p) && Catch::Contains("[8, 4] with begin > end"));
}

TEST_CASE("safetensors: bad file: overlapping tensors") {
  std::string p = bad_file("overlap",
                           R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                           R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                           std::string(12, '\0'));
  REQUIRE_THROWS_WITH(load_safetensors(p),
                      Catch::StartsWith(p) && Catch::Contains("tensors 'a' and 'b' have overlapping data_offsets"));
}

TEST_CASE("safetensors: bad file: __metadata__ not string to string") {
  std::string p = bad_file("meta", R"({"__metadata__": {"step": 3}})", "");
  REQUIRE_THROWS_WITH(load_safetensors(p),
                      Catch::StartsWith(p) && Catch::Contains("__metadata__ must map strings to strings"));
  p = bad_file("meta2", R"({"__metadata__": ["x"]})", "");
  REQUIRE_THROWS_WITH(load_safetensors(p), Catch::Contains("__metadata__ must map strings to strings"));
}

TEST_CASE("safetensors: save replaces an existing file whole and leaves no .tmp") {
  fs::path d = temp_dir("replace");
  std::string p = (d / "ckpt.safetensors").string();
  save_safetensors(p, {{"big", zeros({1000})}}, {{"iteration", "1"}});
  const auto big_size = fs::file_size(p);
  save_safetensors(p, {{"small", full({2}, 3.0)}});
  REQUIRE(fs::file_size(p) < big_size);
  REQUIRE(!fs::exists(p + ".tmp"));
  SafetensorsFile f = load_safetensors(p);
  REQUIRE(f.tensors.size() == 1);
  REQUIRE(f.tensors[0].first == "small");
  REQUIRE(f.metadata.empty());
  REQUIRE(f.get("small").to_vector<float>() == std::vector<float>{3, 3});
  size_t entries = 0;
  for (auto& e : fs::directory_iterator(d)) (void)e, ++entries;
  REQUIRE(entries == 1);
}

TEST_CASE("safetensors: save refuses bad input and leaves nothing behind") {
  fs::path d = temp_dir("savebad");
  std::string p = (d / "x.safetensors").string();
  REQUIRE_THROWS_WITH(save_safetensors(p, {{"a", zeros({1})}, {"a", zeros({1})}}),
                      Catch::StartsWith(p) && Catch::Contains("'a' is given twice"));
  REQUIRE_THROWS_WITH(save_safetensors(p, {{"__metadata__", zeros({1})}}), Catch::Contains("reserved"));
  REQUIRE_THROWS_WITH(save_safetensors(p, {{"", zeros({1})}}), Catch::Contains("empty name"));
  REQUIRE_THROWS_WITH(save_safetensors(p, {{"u", Tensor()}}), Catch::Contains("'u' is undefined"));
  REQUIRE(fs::is_empty(d));
  std::string nodir = (d / "no" / "such" / "dir.safetensors").string();
  REQUIRE_THROWS_WITH(save_safetensors(nodir, {{"a", zeros({1})}}),
                      Catch::StartsWith(nodir) && Catch::Contains("cannot open"));
}

TEST_CASE("safetensors: a module's state_dict saved and loaded into a fresh module is identical") {
  auto make = [] {
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Conv2d>(3, 4, 3), std::make_shared<nn::BatchNorm2d>(4), std::make_shared<nn::ReLU>(),
        std::make_shared<nn::FrozenBatchNorm2d>(4), std::make_shared<nn::Linear>(4, 2)});
  };
  manual_seed(21);
  auto a = make();
  {
    NoGradGuard g;
    a->find("1.running_var").fill_(2.5);
    a->find("1.num_batches_tracked").fill_(12345);
    a->find("3.bias").fill_(-0.75);
  }
  std::string p = (temp_dir("module") / "m.safetensors").string();
  save_safetensors(p, a->state_dict(), {{"arch", "test"}});

  manual_seed(22);
  auto b = make();
  SafetensorsFile f = load_safetensors(p);
  REQUIRE(f.metadata.at("arch") == "test");
  nn::LoadReport r = b->load_state_dict(f.tensors);
  REQUIRE(r.complete());
  auto sa = a->state_dict(), sb = b->state_dict();
  REQUIRE(sa.size() == 13);  // conv 2 + batchnorm 5 + frozen 4 + linear 2
  REQUIRE(sb.size() == sa.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    INFO(sa[i].first);
    REQUIRE(sa[i].first == sb[i].first);
    REQUIRE(sa[i].second.dtype() == sb[i].second.dtype());
    REQUIRE(sa[i].second.sizes() == sb[i].second.sizes());
    REQUIRE(sa[i].second.to_vector<double>() == sb[i].second.to_vector<double>());
  }
  REQUIRE(b->find("1.num_batches_tracked").item() == 12345.0);
}
