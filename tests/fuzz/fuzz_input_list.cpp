// libFuzzer harness: an "@list.txt" argument of ssd_detect (data::expand_inputs), then the
// output names made from the files it lists (data::output_stem). Relative entries resolve
// inside a scratch folder holding the list and two small files; absolute entries may name any
// path on the machine, which expand_inputs only stats and lists (it reads no image).
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "data/input_list.h"
#include "fuzz_common.h"

namespace {

const std::filesystem::path& list_dir() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path d = fuzz::scratch_dir() / "inputs";
    std::filesystem::create_directories(d / "photos");
    const uint8_t byte = 0;
    fuzz::write_bytes(d / "a.jpg", &byte, 1);
    fuzz::write_bytes(d / "photos" / "b.png", &byte, 1);
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path list = list_dir() / "list.txt";
  fuzz::write_bytes(list, data, size);
  std::vector<std::string> errors;
  // Problems are reported in `errors`, never thrown (data/input_list.h): any exception
  // escaping here is a finding.
  const std::vector<std::string> files = data::expand_inputs({"@" + list.string()}, errors);
  for (const std::string& e : errors) fuzz::require(e.find('\n') == std::string::npos, "error spans lines: " + e);
  std::set<std::string> used;
  for (const std::string& f : files) {
    const std::string stem = data::output_stem(f, used);
    fuzz::require(!stem.empty() && stem.find('/') == std::string::npos, "bad output stem '" + stem + "'");
  }
  fuzz::require(used.size() == files.size(), "output stems are not unique");
  return 0;
}
