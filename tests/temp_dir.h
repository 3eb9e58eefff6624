// A fresh, uniquely named folder under the system temp dir for one test, removed with its
// contents when the object goes out of scope; and a helper that writes a whole file.
#pragma once
#include <catch2/catch.hpp>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>

namespace test {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag = "test") {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path() /
           ("engine_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  // The path of `rel` inside the folder.
  std::string operator/(const std::string& rel) const { return (path / rel).string(); }
};

// Writes `bytes` to `path` (parent folders created); the test fails if it cannot.
inline void write_file(const std::string& path, const std::string& bytes) {
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  std::ofstream f(path, std::ios::binary);
  f << bytes;
  f.close();
  REQUIRE(f.good());
}

}  // namespace test
