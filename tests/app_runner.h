// Runs a built program of apps/ from a test: the executables sit at <build>/apps/<name>
// (this test is <build>/tests/<exe>). stdout and stderr are captured separately.
#pragma once
#include <catch2/catch.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace test {

inline std::string app_path(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path exe = fs::read_symlink("/proc/self/exe");
  const fs::path p = exe.parent_path().parent_path() / "apps" / name;
  if (!fs::exists(p)) FAIL(name << " not found at " << p.string() << " (build the " << name << " target first)");
  return p.string();
}

struct AppRun {
  int status = -1;   // exit status; -1 when killed by a signal
  int signal = 0;    // the signal that killed it, if any
  std::string out;   // stdout
  std::string err;   // stderr
};

// Runs `<apps>/<name> <args>` through the shell (quote paths in `args` yourself).
inline AppRun run_app(const std::string& name, const std::string& args) {
  namespace fs = std::filesystem;
  static int counter = 0;
  const std::string err_file =
      (fs::temp_directory_path() / ("app_err_" + std::to_string(::getpid()) + "_" + std::to_string(counter++))).string();
  const std::string cmd = "'" + app_path(name) + "' " + args + " 2>'" + err_file + "'";
  AppRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = ::pclose(p);
  if (WIFEXITED(st)) {
    r.status = WEXITSTATUS(st);
  } else if (WIFSIGNALED(st)) {
    r.signal = WTERMSIG(st);
  }
  std::ifstream e(err_file, std::ios::binary);
  std::ostringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  std::remove(err_file.c_str());
  return r;
}

inline std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  for (std::string l; std::getline(is, l);) out.push_back(l);
  return out;
}

}  // namespace test
