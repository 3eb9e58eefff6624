// safetensors reader and writer (format described in engine/io/safetensors.h).
//
// Reading validates the whole header against the file size first (lengths, dtypes, shapes,
// offsets, overlaps), then reads each tensor's bytes straight into its storage.
#include "engine/io/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <unistd.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/limits.h"
#include "engine/io/read_file.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.cpp assumes a little-endian host (the file format is little-endian)"
#endif

namespace eng::io {

namespace {

using Json = nlohmann::ordered_json;  // keeps the header's key order

// ---- dtypes ----
struct FileDType {
  const char* name;   // as written in the header
  size_t itemsize;    // bytes per element in the file
  DType loads_as;     // eng dtype of the loaded tensor
};

const FileDType kFileDTypes[] = {
    {"F32", 4, DType::f32}, {"F64", 8, DType::f64}, {"I32", 4, DType::i32}, {"I64", 8, DType::i64},
    {"U8", 1, DType::u8},   {"BOOL", 1, DType::b8}, {"F16", 2, DType::f32}, {"BF16", 2, DType::bf16},
};

const FileDType* find_file_dtype(const std::string& name) {
  for (const auto& d : kFileDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

const char* file_dtype_name(DType dt) {
  switch (dt) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
    case DType::b8: return "BOOL";
    case DType::bf16: return "BF16";
  }
  return "?";
}

// ---- 16-bit floats -> f32 ----
float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// IEEE 754 binary16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
float half_to_float(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1u;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f)  // inf (mantissa 0) or NaN: same mantissa bits, f32's all-ones exponent
    return bits_to_float((sign << 31) | 0x7f800000u | (mantissa << 13));
  // Normal: (1024 + m) * 2^(e - 25); subnormal (e == 0): m * 2^-24. Exact in f32.
  const double magnitude = exponent == 0 ? std::ldexp(static_cast<double>(mantissa), -24)
                                         : std::ldexp(static_cast<double>(mantissa + 1024), static_cast<int>(exponent) - 25);
  return static_cast<float>(sign ? -magnitude : magnitude);
}

// ---- helpers ----
[[noreturn]] void fail(const std::string& path, const std::string& problem) { ENGINE_FAIL(path, ": ", problem); }

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string shape_text(const Shape& s) { return shape_str(s); }

// A JSON value as it appears in the header, cut short for messages (never throws: invalid
// UTF-8 is replaced).
std::string value_text(const Json& j) {
  std::string t = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (t.size() > 60) t = t.substr(0, 57) + "...";
  return t;
}

// A JSON number that is a non-negative integer fitting in int64.
bool as_index(const Json& j, uint64_t& out) {
  if (!j.is_number_unsigned()) return false;
  out = j.get<uint64_t>();
  return out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

// Real headers nest three deep (object, entry, list); anything far deeper is damage.
constexpr int kMaxHeaderDepth = 16;
// More dimensions than any tensor the engine makes.
constexpr size_t kMaxDims = 16;

// Thrown by the parse callback; turned into one line naming the file.
struct HeaderProblem {
  std::string what;
};

// Parses the header, refusing duplicated keys at any level (nlohmann would keep the last
// one silently) and absurd nesting. Every exception becomes one line naming the file.
Json parse_header(const std::string& path, const std::string& text) {
  std::vector<std::set<std::string>> open_objects;  // keys seen in each open object
  auto callback = [&](int depth, Json::parse_event_t event, Json& parsed) -> bool {
    if (depth > kMaxHeaderDepth)
      throw HeaderProblem{"header nests deeper than " + std::to_string(kMaxHeaderDepth) + " levels"};
    switch (event) {
      case Json::parse_event_t::object_start: open_objects.emplace_back(); break;
      case Json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case Json::parse_event_t::key: {
        const std::string key = parsed.get<std::string>();
        if (!open_objects.empty() && !open_objects.back().insert(key).second)
          throw HeaderProblem{"header has the key " + quoted(key) + " twice" +
                              (open_objects.size() == 1 ? " (duplicated tensor name)" : "")};
        break;
      }
      default: break;
    }
    return true;
  };
  try {
    return Json::parse(text, callback);
  } catch (const HeaderProblem& p) {
    fail(path, p.what);
  } catch (const Json::exception& e) {  // parse_error, out_of_range (e.g. 1e400), type_error, ...
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
}

// One validated header entry.
struct Entry {
  std::string name;
  const FileDType* dtype;
  Shape shape;
  uint64_t begin, end;  // relative to the data section
};

Entry parse_entry(const std::string& path, const std::string& name, const Json& j, uint64_t data_bytes,
                  const ReadLimits& limits) {
  const std::string what = "tensor " + quoted(name);
  if (name.empty()) fail(path, "header has a tensor with an empty name");
  if (!j.is_object()) fail(path, "header entry for " + what + " is not a JSON object: " + value_text(j));

  auto dt = j.find("dtype");
  if (dt == j.end() || !dt->is_string()) fail(path, "header entry for " + what + " is missing a \"dtype\" string");
  const std::string dtype_name_in_file = dt->get<std::string>();
  const FileDType* dtype = find_file_dtype(dtype_name_in_file);
  if (!dtype)
    fail(path, what + " has unknown dtype " + quoted(dtype_name_in_file) +
                   " (supported: F32, F64, F16, BF16, I64, I32, U8, BOOL)");

  auto sh = j.find("shape");
  if (sh == j.end() || !sh->is_array())
    fail(path, "header entry for " + what + " is missing a \"shape\" list");
  if (sh->size() > kMaxDims)
    fail(path, what + " \"shape\" has " + std::to_string(sh->size()) + " dimensions (at most " +
                   std::to_string(kMaxDims) + ")");
  Shape shape;
  for (const Json& d : *sh) {
    uint64_t v;
    if (!as_index(d, v))
      fail(path, what + " \"shape\" entry " + value_text(d) + " is not an integer in [0, 2^63 - 1]");
    shape.push_back(static_cast<int64_t>(v));
  }
  // The element count must fit in int64 even when a zero dimension makes it 0 (strides are
  // products of the other dimensions).
  int64_t numel = 1, numel_nonzero = 1;
  for (int64_t d : shape) {
    if (d != 0 && __builtin_mul_overflow(numel_nonzero, d, &numel_nonzero))
      fail(path, what + " \"shape\" " + shape_text(shape) + " has more elements than fit in int64");
    numel = d == 0 ? 0 : numel;
  }
  if (numel != 0) numel = numel_nonzero;

  auto off = j.find("data_offsets");
  uint64_t begin = 0, end = 0;
  if (off == j.end() || !off->is_array() || off->size() != 2)
    fail(path, "header entry for " + what + " is missing a \"data_offsets\" pair of non-negative integers");
  if (!as_index((*off)[0], begin) || !as_index((*off)[1], end))
    fail(path, what + " \"data_offsets\" " + value_text(*off) + " are not integers in [0, 2^63 - 1]");
  if (begin > end)
    fail(path, what + " has data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                   "] with begin > end");
  if (end > data_bytes)
    fail(path, what + " has data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                   "] past the end of the data section (" + std::to_string(data_bytes) + " bytes)");

  // numel * itemsize must equal the byte span (span <= file size, so a match cannot overflow).
  const uint64_t span = end - begin;
  const uint64_t n = static_cast<uint64_t>(numel);
  if (n > span / dtype->itemsize || n * dtype->itemsize != span)
    fail(path, what + " has shape " + shape_text(shape) + " and dtype " + dtype->name + " but data_offsets span " +
                   std::to_string(span) + " bytes (size mismatch)");
  // In memory (F16 is widened to f32), against the per-tensor limit.
  const uint64_t loaded = n * dtype_size(dtype->loads_as);
  if (loaded > limits.tensor_bytes)
    fail(path, what + " needs " + std::to_string(loaded) + " bytes, more than the limit of " +
                   std::to_string(limits.tensor_bytes) + " bytes per tensor (ENGINE_MAX_TENSOR_BYTES)");
  return Entry{name, dtype, shape, begin, end};
}

Tensor read_tensor(const InputFile& in, const Entry& e, uint64_t data_start) {
  Tensor t = empty(e.shape, TensorOptions(e.dtype->loads_as));
  const uint64_t bytes = e.end - e.begin;
  const uint64_t pos = data_start + e.begin;
  const std::string name = e.dtype->name;
  if (name == "F16") {
    std::vector<unsigned char> raw(bytes);
    in.read_at(pos, raw.data(), bytes);
    float* out = t.data<float>();
    for (uint64_t i = 0; i < bytes / 2; ++i) {
      const uint16_t v = static_cast<uint16_t>(raw[2 * i] | (raw[2 * i + 1] << 8));  // little-endian
      out[i] = half_to_float(v);
    }
  } else {  // BF16 included: little-endian uint16 bits, kern::bf16's layout on this host
    in.read_at(pos, t.raw_data(), bytes);
    if (name == "BOOL") {  // any non-zero byte is true; store canonical 0/1
      auto* p = static_cast<unsigned char*>(t.raw_data());
      for (uint64_t i = 0; i < bytes; ++i) p[i] = p[i] ? 1 : 0;
    }
  }
  return t;
}

}  // namespace

// ---- SafetensorsFile ----
bool SafetensorsFile::contains(const std::string& name) const {
  for (const auto& kv : tensors)
    if (kv.first == name) return true;
  return false;
}

Tensor SafetensorsFile::get(const std::string& name) const {
  for (const auto& kv : tensors)
    if (kv.first == name) return kv.second;
  ENGINE_FAIL("safetensors: no tensor named ", quoted(name));
}

// ---- load ----
SafetensorsFile load_safetensors(const std::string& path) {
  const ReadLimits limits = read_limits();
  const InputFile in(path, limits.weights_file_bytes, "safetensors file", "ENGINE_MAX_WEIGHTS_FILE_BYTES");
  const uint64_t file_bytes = in.size();
  if (file_bytes < 8)
    fail(path, "file is " + std::to_string(file_bytes) + " bytes, shorter than the 8-byte header length");
  unsigned char len_bytes[8];
  in.read_at(0, len_bytes, 8);
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | len_bytes[i];
  if (header_bytes > limits.safetensors_header_bytes)
    fail(path, "header length " + std::to_string(header_bytes) + " is larger than the limit of " +
                   std::to_string(limits.safetensors_header_bytes) + " bytes (ENGINE_MAX_SAFETENSORS_HEADER_BYTES)");
  if (header_bytes > file_bytes - 8)
    fail(path, "header length " + std::to_string(header_bytes) + " runs past the end of the file (" +
                   std::to_string(file_bytes) + " bytes)");

  std::string header_text(header_bytes, '\0');
  in.read_at(8, header_text.data(), header_bytes);
  const Json header = parse_header(path, header_text);
  if (!header.is_object()) fail(path, "header is not a JSON object: " + value_text(header));

  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_bytes = file_bytes - data_start;
  SafetensorsFile out;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      const Json& m = it.value();
      if (!m.is_object()) fail(path, "__metadata__ must map strings to strings, not " + value_text(m));
      for (auto mt = m.begin(); mt != m.end(); ++mt) {
        if (!mt.value().is_string())
          fail(path, "__metadata__ must map strings to strings: " + quoted(mt.key()) + " is " + value_text(mt.value()));
        out.metadata[mt.key()] = mt.value().get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, it.key(), it.value(), data_bytes, limits));
  }

  // No two tensors may share bytes (empty tensors occupy none). Header order need not follow
  // the offsets; gaps between tensors are allowed (they are never read).
  std::vector<const Entry*> by_begin;
  for (const Entry& e : entries)
    if (e.end > e.begin) by_begin.push_back(&e);
  std::sort(by_begin.begin(), by_begin.end(), [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_begin.size(); ++i) {
    const Entry& a = *by_begin[i - 1];
    const Entry& b = *by_begin[i];
    if (b.begin < a.end)
      fail(path, "tensors " + quoted(a.name) + " and " + quoted(b.name) + " have overlapping data_offsets ([" +
                     std::to_string(a.begin) + ", " + std::to_string(a.end) + ") and [" + std::to_string(b.begin) +
                     ", " + std::to_string(b.end) + "))");
  }

  for (const Entry& e : entries) {
    try {
      out.tensors.emplace_back(e.name, read_tensor(in, e, data_start));
    } catch (const std::bad_alloc&) {
      fail(path, "out of memory loading tensor " + quoted(e.name) + " (" + std::to_string(e.end - e.begin) +
                     " bytes in the file)");
    }
  }
  return out;
}

// ---- save ----
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Validate and build the header before touching the disk.
  std::set<std::string> seen;
  std::vector<Tensor> host;
  Json header = Json::object();
  if (!metadata.empty()) {
    Json m = Json::object();
    for (const auto& kv : metadata) m[kv.first] = kv.second;
    header["__metadata__"] = m;
  }
  uint64_t offset = 0;
  {
    NoGradGuard guard;
    for (const auto& kv : tensors) {
      const std::string& name = kv.first;
      if (name.empty()) fail(path, "cannot save a tensor with an empty name");
      if (name == "__metadata__") fail(path, "cannot save a tensor named \"__metadata__\" (reserved)");
      if (!seen.insert(name).second) fail(path, "tensor name " + quoted(name) + " is given twice");
      if (!kv.second.defined()) fail(path, "tensor " + quoted(name) + " is undefined");
      Tensor h = kv.second.detach().to(Device::cpu()).contiguous();
      const uint64_t bytes = static_cast<uint64_t>(h.numel()) * dtype_size(h.dtype());
      Json entry = Json::object();
      entry["dtype"] = file_dtype_name(h.dtype());
      entry["shape"] = Json::array();
      for (int64_t d : h.sizes()) entry["shape"].push_back(d);
      entry["data_offsets"] = Json::array({offset, offset + bytes});
      header[name] = entry;
      offset += bytes;
      host.push_back(h);
    }
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const Json::exception& e) {  // e.g. a name or metadata that is not UTF-8
    fail(path, std::string("cannot encode the header: ") + e.what());
  }
  while ((8 + header_text.size()) % 8 != 0) header_text += ' ';

  // Write "<path>.tmp", flush it to disk, then rename it over `path` (atomic on POSIX).
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(path, "cannot open " + tmp + " for writing (" + std::strerror(errno) + ")");
  bool ok = true;
  auto put = [&](const void* p, size_t n) {
    if (ok && n > 0) ok = std::fwrite(p, 1, n, f) == n;
  };
  unsigned char len_bytes[8];
  uint64_t n = header_text.size();
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(n >> (8 * i));
  put(len_bytes, 8);
  put(header_text.data(), header_text.size());
  for (const Tensor& h : host) put(h.raw_data(), static_cast<size_t>(h.numel()) * dtype_size(h.dtype()));
  ok = ok && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  const int saved_errno = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(path, "write to " + tmp + " failed (" + std::strerror(saved_errno) + ")");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    fail(path, "cannot rename " + tmp + " to the final name (" + std::strerror(e) + ")");
  }
}

}  // namespace eng::io
