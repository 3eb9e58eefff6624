#include "common/run_log.h"

#include <cstdio>

#include "engine/error.h"

namespace app {

RunLog::RunLog(const std::string& jsonl_path, bool interactive, bool append)
    : out_(jsonl_path, append ? std::ios::app : std::ios::trunc), path_(jsonl_path), interactive_(interactive) {
  ENGINE_CHECK(out_.good(), jsonl_path, ": cannot open for writing");
}

RunLog RunLog::silent(const std::string& prefix) {
  RunLog log;
  log.silent_ = true;
  log.prefix_ = prefix;
  return log;
}

void RunLog::warn(const std::string& text) {
  if (!silent_) return say(text);
  std::fprintf(stderr, "%s%s\n", prefix_.c_str(), text.c_str());
  std::fflush(stderr);
}

void RunLog::write(const nlohmann::json& line) {
  if (silent_) return;
  out_ << line.dump() << '\n';
  out_.flush();
  ENGINE_CHECK(out_.good(), path_, ": write failed");
}

void RunLog::progress(int64_t iteration, int64_t total, const std::string& text) {
  if (silent_) return;
  if (!interactive_) {
    std::printf("%s\n", text.c_str());
    std::fflush(stdout);
    return;
  }
  constexpr int kWidth = 24;
  const double frac = total > 0 ? std::min(1.0, static_cast<double>(iteration) / total) : 0.0;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kWidth - filled), '.');
  std::printf("\r[%s] %s\033[K", bar.c_str(), text.c_str());
  std::fflush(stdout);
  bar_open_ = true;
}

void RunLog::say(const std::string& text) {
  if (silent_) return;
  if (bar_open_) std::printf("\n");
  bar_open_ = false;
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
}

}  // namespace app
