// Shared by the libFuzzer harnesses (one per reader, fuzz_<target>.cpp): a per-process
// scratch folder for readers that only take a path, and the oracle every harness applies
// to a reader's error.
//
// The oracle (the project's bad-input rule, docs/testing.md "Fuzzing"): a reader may refuse
// an input only with eng::Error whose message is ONE line naming the file. Any other
// exception escapes the harness (libFuzzer reports it as a crash: "uncaught exception"), and
// an eng::Error that spans lines or does not name the file aborts with a one-line reason.
// Crashes, leaks, UB (UBSan, non-recoverable), timeouts and out-of-memory are reported by
// libFuzzer and the sanitizers themselves.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

namespace fuzz {

// A folder private to this process, engine_fuzz_<pid>, under $FUZZ_SCRATCH when set
// (scripts/fuzz.sh sets it and removes it afterwards, so a crashed process leaves nothing),
// else under /dev/shm when writable (no disk traffic), else the system temp folder. Removed
// at normal exit.
inline const std::filesystem::path& scratch_dir() {
  struct Dir {
    std::filesystem::path path;
    Dir() {
      std::error_code ec;
      const std::string name = "engine_fuzz_" + std::to_string(::getpid());
      std::filesystem::path base = "/dev/shm";
      if (const char* env = std::getenv("FUZZ_SCRATCH"); env != nullptr && *env != '\0') {
        base = env;
        std::filesystem::create_directories(base, ec);
      } else if (::access(base.c_str(), W_OK) != 0) {
        base = std::filesystem::temp_directory_path();
      }
      path = base / name;
      std::filesystem::remove_all(path, ec);
      std::filesystem::create_directories(path);
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static Dir dir;
  return dir.path;
}

// Replaces `path` with exactly these bytes.
inline void write_bytes(const std::filesystem::path& path, const uint8_t* data, size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n));
  f.close();
  if (!f.good()) {
    std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// Aborts (a libFuzzer finding) with `why` when `cond` is false.
inline void require(bool cond, const std::string& why) {
  if (cond) return;
  std::fprintf(stderr, "fuzz oracle: %s\n", why.c_str());
  std::abort();
}

// A reader's refusal must be one line that names `name` (the file, or the name given for
// errors).
inline void check_error_message(const std::exception& e, const std::string& name) {
  const std::string msg = e.what();
  require(msg.find('\n') == std::string::npos, "error message spans lines: " + msg);
  require(msg.find(name) != std::string::npos, "error message does not name '" + name + "': " + msg);
}

}  // namespace fuzz
