// Size limits for everything the programs read from files: the one place where they live.
//
// A file larger than its limit is refused (one eng::Error naming the file, the size and the
// limit) BEFORE any of it is read or allocated, so a crafted or damaged file cannot make a
// program allocate more than the limit. Parsed forms can be larger than the file (a JSON
// DOM takes several times the text), so the limits are set well below the machine's memory.
//
//   field                      default   what it bounds                         env variable
//   json_bytes                 1 GiB     a JSON file (COCO instances,           ENGINE_MAX_JSON_BYTES
//                                        detections.json, results)
//   annotation_bytes           16 MiB    one annotation file (VOC XML)          ENGINE_MAX_ANNOTATION_BYTES
//   text_file_bytes            64 MiB    a text list (@list.txt, a VOC split    ENGINE_MAX_TEXT_FILE_BYTES
//                                        file, a class file)
//   text_line_bytes            64 KiB    one line of such a list                ENGINE_MAX_TEXT_LINE_BYTES
//   safetensors_header_bytes   100 MiB   a safetensors JSON header (the         ENGINE_MAX_SAFETENSORS_HEADER_BYTES
//                                        reference implementation's limit)
//   tensor_bytes               16 GiB    one tensor as loaded into memory       ENGINE_MAX_TENSOR_BYTES
//   weights_file_bytes         64 GiB    a whole weights / checkpoint file      ENGINE_MAX_WEIGHTS_FILE_BYTES
//
// Each environment variable, when set, is a whole decimal number of bytes (1 or more);
// anything else makes the first reader throw naming the variable and its value.
// Programs read the limits with read_limits(); a program or test may change them for the
// whole process with set_read_limits() (call it before starting reader threads).
#pragma once
#include <cstdint>

namespace eng::io {

struct ReadLimits {
  uint64_t json_bytes = 1ull << 30;
  uint64_t annotation_bytes = 16ull << 20;
  uint64_t text_file_bytes = 64ull << 20;
  uint64_t text_line_bytes = 64ull << 10;
  uint64_t safetensors_header_bytes = 100ull << 20;
  uint64_t tensor_bytes = 16ull << 30;
  uint64_t weights_file_bytes = 64ull << 30;
};

// The limits in force: the defaults above, overridden by the environment variables (read
// once, at the first call), or whatever set_read_limits() set last.
ReadLimits read_limits();

// The defaults with the environment variables applied (what read_limits() starts from).
ReadLimits limits_from_environment();

// Replaces the limits for the whole process (every field must be >= 1).
void set_read_limits(const ReadLimits& limits);

// Restores a ReadLimits value when it goes out of scope (for tests and tools).
class ScopedReadLimits {
 public:
  explicit ScopedReadLimits(const ReadLimits& limits) : saved_(read_limits()) { set_read_limits(limits); }
  ~ScopedReadLimits() { set_read_limits(saved_); }
  ScopedReadLimits(const ScopedReadLimits&) = delete;
  ScopedReadLimits& operator=(const ScopedReadLimits&) = delete;

 private:
  ReadLimits saved_;
};

}  // namespace eng::io
