// Checked whole-file reads and strict number parsing. See engine/io/read_file.h.
#include "engine/io/read_file.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/error.h"
#include "engine/io/limits.h"

namespace eng::io {

namespace {

const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

std::string limit_hint(const char* limit_env) {
  return limit_env ? std::string(" (set ") + limit_env + " to raise it)" : std::string();
}

}  // namespace

InputFile::InputFile(const std::string& path, uint64_t max_bytes, const char* what, const char* limit_env)
    : path_(path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer (a hang).
  fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) {
    const int err = errno;
    if (err == ENOENT) ENGINE_FAIL(path, ": ", what, " not found");
    ENGINE_FAIL(path, ": cannot open ", what, " (", std::strerror(err), ")");
  }
  struct stat st;
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    ENGINE_FAIL(path, ": cannot read the size of ", what, " (", std::strerror(err), ")");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    ENGINE_FAIL(path, ": ", what, " is ", file_kind(st.st_mode), ", not a regular file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ > max_bytes) {
    ::close(fd_);
    ENGINE_FAIL(path, ": ", what, " is ", size_, " bytes, larger than the limit of ", max_bytes, " bytes",
                limit_hint(limit_env));
  }
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

void InputFile::read_at(uint64_t pos, void* dst, uint64_t n) const {
  ENGINE_CHECK(pos <= size_ && n <= size_ - pos, path_, ": read of ", n, " bytes at ", pos, " is past the end (",
               size_, " bytes)");
  auto* out = static_cast<char*>(dst);
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1u << 30));
    const ssize_t got = ::pread(fd_, out, chunk, static_cast<off_t>(pos));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) ENGINE_FAIL(path_, ": read error (", std::strerror(errno), ")");
    if (got == 0) ENGINE_FAIL(path_, ": read error (the file became shorter while it was read)");
    out += got;
    pos += static_cast<uint64_t>(got);
    n -= static_cast<uint64_t>(got);
  }
}

bool InputFile::grew() const {
  char extra;
  ssize_t got;
  do {
    got = ::pread(fd_, &extra, 1, static_cast<off_t>(size_));
  } while (got < 0 && errno == EINTR);
  return got > 0;
}

std::string read_file_capped(const std::string& path, uint64_t max_bytes, const char* what, const char* limit_env) {
  InputFile f(path, max_bytes, what, limit_env);
  std::string bytes(static_cast<size_t>(f.size()), '\0');
  f.read_at(0, bytes.data(), f.size());
  // Bytes past the size found at open time mean the file grew: refuse it rather than read
  // an unbounded amount.
  ENGINE_CHECK(!f.grew(), path, ": ", what, " grew while it was read");
  return bytes;
}

void for_each_text_line(const std::string& path, const char* what,
                        const std::function<void(size_t line_no, const std::string& line)>& fn) {
  const ReadLimits limits = read_limits();
  const std::string text = read_file_capped(path, limits.text_file_bytes, what, "ENGINE_MAX_TEXT_FILE_BYTES");
  size_t start = 0, line_no = 0;
  std::string line;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    ENGINE_CHECK(end - start <= limits.text_line_bytes, path, ":", line_no, ": line is longer than ",
                 limits.text_line_bytes, " bytes (ENGINE_MAX_TEXT_LINE_BYTES)");
    line.assign(text, start, end - start);
    ENGINE_CHECK(line.find('\0') == std::string::npos, path, ":", line_no, ": NUL byte in a text file (binary data?)");
    fn(line_no, line);
    start = end + 1;
  }
}

std::vector<std::string> read_text_lines(const std::string& path, const char* what) {
  std::vector<std::string> lines;
  for_each_text_line(path, what, [&](size_t, const std::string& line) { lines.push_back(line); });
  return lines;
}

// ---- numbers ----

bool parse_int64(const std::string& text, int64_t min, int64_t max, int64_t& out) {
  if (text.empty()) return false;
  int64_t v = 0;
  const char* first = text.data();
  const char* last = first + text.size();
  const auto r = std::from_chars(first, last, v, 10);  // '-' allowed, no '+', no space
  if (r.ec != std::errc() || r.ptr != last) return false;
  if (v < min || v > max) return false;
  out = v;
  return true;
}

bool parse_uint64(const std::string& text, uint64_t max, uint64_t& out) {
  if (text.empty()) return false;
  uint64_t v = 0;
  const char* first = text.data();
  const char* last = first + text.size();
  const auto r = std::from_chars(first, last, v, 10);  // unsigned: a '-' is not consumed
  if (r.ec != std::errc() || r.ptr != last || v > max) return false;
  out = v;
  return true;
}

bool parse_finite_double(const std::string& text, double& out) {
  if (text.empty()) return false;
  // Decimal syntax only: digits, one '.', an exponent, signs; refuses "inf", "nan", "0x1p3".
  for (char c : text)
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+')) return false;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || errno == ERANGE || !std::isfinite(v)) return false;
  out = v;
  return true;
}

}  // namespace eng::io
