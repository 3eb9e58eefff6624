// safetensors: the file format for weights and checkpoints.
//
// Layout (all integers little-endian):
//   bytes [0, 8)        u64 N, the length of the JSON header
//   bytes [8, 8 + N)    JSON header, padded with spaces (we pad so 8 + N is a multiple of 8)
//   bytes [8 + N, end)  the data section: raw tensor bytes, row-major, little-endian
// The header is one JSON object:
//   { "__metadata__": {"key": "value", ...},                      (optional, strings only)
//     "<tensor name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ... }
// where [begin, end) is relative to the start of the data section and
// end - begin = numel * itemsize. A 0-dim tensor has shape [] and one element.
//
// dtypes: F32, F64, I32, I64, U8, BOOL, BF16 are written and read as eng's f32, f64, i32,
// i64, u8, b8, bf16 (BF16: the bfloat16 bits as little-endian uint16, torch's layout; read
// as they are, so a bf16 tensor round-trips bit for bit). F16 is read and widened to f32
// (exactly: every half value is representable in f32). Loading weights into a model
// (Module::load_state_dict, Optimizer::load_state) casts each tensor to the parameter's
// dtype, so BF16 weights load into f32 parameters exactly.
//
// Every problem with a file is an eng::Error whose message starts with the file path and
// names the problem (the field and its value) in one line; the loader checks every size and
// offset against the file size before reading, so a damaged file can never make it read out
// of bounds. What load_safetensors refuses:
//   * a path that is not a regular file (directory, FIFO, device: refused unread), a file
//     over ReadLimits::weights_file_bytes, a header length over safetensors_header_bytes
//     (100 MiB) or past the end of the file (engine/io/limits.h);
//   * a header that is not JSON (any nlohmann exception, e.g. the number 1e400), not an
//     object, has a key twice at any level (two tensors of one name), or nests > 16 deep;
//   * an entry that is not an object, an empty name, an unknown dtype, a shape with more
//     than 16 dimensions or an entry outside [0, 2^63 - 1] or whose element count overflows
//     int64, data_offsets that are not two integers in [0, 2^63 - 1], reversed, past the
//     data section, overlapping another tensor's, or not numel * itemsize bytes long;
//   * a tensor whose loaded size exceeds ReadLimits::tensor_bytes;
//   * __metadata__ that is not an object of strings.
// Header order need not follow the offsets, and gaps between tensors are allowed.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace eng::io {

struct SafetensorsFile {
  std::vector<std::pair<std::string, Tensor>> tensors;  // in header order, on the CPU
  std::map<std::string, std::string> metadata;          // "__metadata__", empty if absent

  // The tensor called `name`; throws naming it when absent.
  Tensor get(const std::string& name) const;
  bool contains(const std::string& name) const;
};

// Writes `tensors` (any device, any layout: copied to the CPU contiguous) in the given
// order. The file is written to `path + ".tmp"`, flushed to disk and renamed over `path`,
// so `path` is always either the old file or the complete new one.
// Names must be unique, non-empty and not "__metadata__".
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

SafetensorsFile load_safetensors(const std::string& path);

}  // namespace eng::io
