// Expanding --input arguments (files, directories, @lists). See data/input_list.h.
#include "data/input_list.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <system_error>

#include "engine/error.h"
#include "engine/io/read_file.h"

namespace data {
namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n\f\v";
  const size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(ws) - a + 1);
}

// Collects the files in order, each once, and the error lines.
class Collector {
 public:
  Collector(std::vector<std::string>& files, std::vector<std::string>& errors) : files_(files), errors_(errors) {}

  void add_arg(const std::string& arg) {
    if (!arg.empty() && arg[0] == '@') add_list(arg.substr(1));
    else add_path(arg, "");
  }

 private:
  // `where` (" (listed in ...)") is appended to error lines for paths read from a list.
  void add_path(const std::string& path, const std::string& where) {
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (path.empty() || !fs::exists(st)) return error(path.empty() ? "\"\"" : path, "no such file or directory" + where);
    if (fs::is_directory(st)) return add_dir(path, where);
    // A FIFO or a device (e.g. a link to /dev/zero) would never end or block the decoder.
    if (!fs::is_regular_file(st)) return error(path, "not a regular file (a FIFO, socket or device?)" + where);
    add_file(path);
  }

  void add_file(const std::string& path) {
    std::error_code ec;
    fs::path key = fs::weakly_canonical(path, ec);
    if (ec) key = fs::path(path).lexically_normal();
    if (seen_.insert(key.string()).second) files_.push_back(path);
  }

  void add_dir(const std::string& dir, const std::string& where) {
    std::vector<std::string> names;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code ec2;
      if (!it->is_regular_file(ec2)) continue;  // follows links; subdirectories are skipped
      const std::string name = it->path().filename().string();
      if (has_image_extension(name)) names.push_back(name);
    }
    if (ec) return error(dir, "cannot read directory (" + ec.message() + ")" + where);
    if (names.empty()) return error(dir, "no .jpg, .jpeg, .png or .bmp files in directory" + where);
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) add_file((fs::path(dir) / n).string());
  }

  void add_list(const std::string& list) {
    std::error_code ec;
    if (list.empty()) return error("@", "no list file named after '@'");
    if (fs::is_directory(list, ec)) return error(list, "list file is a directory");
    if (!fs::exists(list, ec)) return error(list, "no such list file");
    // Regular file, size and line caps (engine/io/limits.h): a FIFO or /dev/zero is refused.
    // The whole list is checked before any entry is added, so a bad list adds nothing.
    std::vector<std::pair<size_t, std::string>> entries;  // (line number, path)
    try {
      eng::io::for_each_text_line(list, "list file", [&](size_t line_no, const std::string& line) {
        std::string entry = trim(line);
        if (!entry.empty() && entry[0] != '#') entries.emplace_back(line_no, std::move(entry));
      });
    } catch (const eng::Error& e) {
      return errors_.push_back(e.what());
    }
    const fs::path base = fs::path(list).parent_path();
    for (const auto& [line_no, entry] : entries) {
      const fs::path p(entry);
      const std::string resolved = p.is_absolute() || base.empty() ? entry : (base / p).string();
      add_path(resolved, " (listed in " + list + " line " + std::to_string(line_no) + ")");
    }
    if (entries.empty()) error(list, "list file names no paths");
  }

  void error(const std::string& path, const std::string& problem) { errors_.push_back(path + ": " + problem); }

  std::vector<std::string>& files_;
  std::vector<std::string>& errors_;
  std::set<std::string> seen_;
};

}  // namespace

bool has_image_extension(const std::string& path) {
  const std::string ext = lower(fs::path(path).extension().string());
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

std::vector<std::string> expand_inputs(const std::vector<std::string>& args, std::vector<std::string>& errors) {
  std::vector<std::string> files;
  Collector collector(files, errors);
  for (const std::string& arg : args) collector.add_arg(arg);
  return files;
}

std::string output_stem(const std::string& path, std::set<std::string>& used) {
  std::string stem = fs::path(path).stem().string();
  if (stem.empty()) stem = "image";
  std::string name = stem;
  for (int n = 1; used.count(name); ++n) name = stem + "_" + std::to_string(n);
  used.insert(name);
  return name;
}

}  // namespace data
