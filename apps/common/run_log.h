// What a training run reports while it runs: JSON lines appended to DIR/metrics.jsonl
// (flushed line by line, so a killed run keeps every line it wrote) and a human view on
// stdout: a progress bar redrawn in place on a terminal, plain lines otherwise.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace app {

class RunLog {
 public:
  // Writes `jsonl_path`: appends to it when `append` (a resumed run), else starts it afresh.
  // `interactive`: stdout is a terminal.
  RunLog(const std::string& jsonl_path, bool interactive, bool append);
  // A log that writes nothing (the ranks other than 0 of a data-parallel run: rank 0 owns
  // metrics.jsonl and stdout). Lines marked `always` in say() still reach stderr, prefixed.
  static RunLog silent(const std::string& prefix);
  void write(const nlohmann::json& line);  // one JSON object per line
  // Progress: "[#####.....] it 120/2000  loss 3.21 ..." redrawn on a terminal; printed as a
  // plain line otherwise.
  void progress(int64_t iteration, int64_t total, const std::string& text);
  // A line that must stay visible (ends any progress bar line first).
  void say(const std::string& text);
  // A warning: said on a normal log; on a silent one written to stderr with its prefix
  // (a bad image in another rank's shard is still reported, once, by that rank).
  void warn(const std::string& text);

 private:
  RunLog() = default;
  bool silent_ = false;
  std::string prefix_;
  std::ofstream out_;
  std::string path_;
  bool interactive_ = false;
  bool bar_open_ = false;
};

}  // namespace app
