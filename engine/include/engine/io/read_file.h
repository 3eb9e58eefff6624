// Reading whole input files safely, and parsing numbers from text strictly.
//
// Every reader of the project opens its files through these, so each gets the same checks:
//   * the path must name a regular file (after following links): a directory, a FIFO, a
//     socket or a device such as /dev/zero is refused without reading a byte (FIFOs are
//     opened non-blocking, so refusing one never hangs);
//   * the file must not be larger than the cap the caller gives (from engine/io/limits.h);
//   * a file that grows while it is read is refused rather than read past the cap.
// Errors are eng::Error, one line: "<path>: <problem>" where the problem names what the file
// is for (`what`, e.g. "JSON file") and the size and the limit when it is too big.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace eng::io {

// `limit_env` (may be null) is the environment variable that raises the cap; a too-large
// file's message names it.

// An open regular file of at most `max_bytes`, read by position (safetensors reads its
// header and each tensor this way without loading the whole file).
class InputFile {
 public:
  InputFile(const std::string& path, uint64_t max_bytes, const char* what, const char* limit_env = nullptr);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }  // as found when opened
  // `n` bytes at `pos`; throws "<path>: read error ..." when [pos, pos + n) is not all there.
  void read_at(uint64_t pos, void* dst, uint64_t n) const;
  // True when there are bytes past size(): the file grew after it was opened.
  bool grew() const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// The whole file as bytes, at most `max_bytes` of them.
std::string read_file_capped(const std::string& path, uint64_t max_bytes, const char* what,
                             const char* limit_env = nullptr);

// Calls `fn(line_no, line)` for each line of the file (from 1; without "\n", a trailing "\r"
// is kept for the caller to trim), after read_file_capped. A line longer than the line cap
// throws "<path>:<line>: line is longer than <max> bytes"; a NUL byte throws too (a binary
// file given as a list). Both caps come from read_limits() (text_file_bytes,
// text_line_bytes). Only the text and one line are held, whatever the number of lines.
void for_each_text_line(const std::string& path, const char* what,
                        const std::function<void(size_t line_no, const std::string& line)>& fn);

// All lines at once (for small files and tests): for_each_text_line collected.
std::vector<std::string> read_text_lines(const std::string& path, const char* what);

// Strict number parsing: the whole string must be the number (decimal digits with an
// optional leading '-'; no surrounding space, no '+'), and it must lie in [min, max]. False
// otherwise; nothing is converted on failure, so no value can overflow or wrap.
bool parse_int64(const std::string& text, int64_t min, int64_t max, int64_t& out);
bool parse_uint64(const std::string& text, uint64_t max, uint64_t& out);  // "-1" is refused
// A finite decimal number (strtod syntax without surrounding space, hex, inf or nan).
bool parse_finite_double(const std::string& text, double& out);

}  // namespace eng::io
