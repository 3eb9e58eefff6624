// Errors are exceptions. ENGINE_CHECK(cond, parts...) throws eng::Error with the parts
// streamed together; library code never calls exit() or abort().
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
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (void)std::initializer_list<int>{((os << parts), 0)...};
  return os.str();
}
}  // namespace detail

}  // namespace eng

#define ENGINE_FAIL(...) throw ::eng::Error(::eng::detail::concat(__VA_ARGS__))
#define ENGINE_CHECK(cond, ...)                 \
  do {                                          \
    if (!(cond)) ENGINE_FAIL(__VA_ARGS__);      \
  } while (0)
