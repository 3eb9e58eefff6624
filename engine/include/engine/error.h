// Errors are exceptions. ENGINE_CHECK(cond, parts...) throws eng::Error with the parts
// streamed together; library code never calls exit() or abort(). The message is always one
// line: control characters in it (a newline inside a tensor name or a metadata value read
// from a file, which the fuzzers found echoed into messages) are written as \n, \r, \t or
// \xHH.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace eng {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
// `s` with its control characters escaped (see above).
inline std::string one_line(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c != 0x7f) out += ch;
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (void)std::initializer_list<int>{((os << parts), 0)...};
  return one_line(os.str());
}
}  // namespace detail

}  // namespace eng

#define ENGINE_FAIL(...) throw ::eng::Error(::eng::detail::concat(__VA_ARGS__))
#define ENGINE_CHECK(cond, ...)                 \
  do {                                          \
    if (!(cond)) ENGINE_FAIL(__VA_ARGS__);      \
  } while (0)
