// A plain driver for the fuzz harnesses outside libFuzzer (the normal gcc build, no
// sanitizers): "fuzz_replay <target> <files or folders>" runs the harness of <target> once on
// every file named, or in a folder named (sorted, not recursive). Each harness is compiled
// with its LLVMFuzzerTestOneInput renamed fuzz_entry_<target> (tests/fuzz/CMakeLists.txt).
// A harness that finds a fault aborts or lets an exception escape, failing the test.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#define FUZZ_TARGETS(X) X(image) X(voc_xml) X(coco_json) X(detections_json) X(coco_results) X(safetensors) X(checkpoint) X(input_list)
#define DECLARE(name) extern "C" int fuzz_entry_##name(const uint8_t* data, size_t size);
FUZZ_TARGETS(DECLARE)

using Entry = int (*)(const uint8_t*, size_t);

int main(int argc, char** argv) {
  Entry entry = nullptr;
#define PICK(name) \
  if (argc > 1 && std::strcmp(argv[1], #name) == 0) entry = fuzz_entry_##name;
  FUZZ_TARGETS(PICK)
  if (entry == nullptr) {
    std::fprintf(stderr, "usage: fuzz_replay <target> <files or folders>; targets:");
#define LIST(name) std::fprintf(stderr, " %s", #name);
    FUZZ_TARGETS(LIST)
    std::fprintf(stderr, "\n");
    return 2;
  }
  std::vector<std::filesystem::path> files;
  for (int i = 2; i < argc; ++i) {
    const std::filesystem::path p = argv[i];
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
    } else {
      files.push_back(p);
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "fuzz_replay: cannot read %s\n", f.c_str());
      return 1;
    }
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::fprintf(stderr, "fuzz_replay %s: %s (%zu bytes)\n", argv[1], f.c_str(), bytes.size());
    entry(bytes.data(), bytes.size());
  }
  std::printf("fuzz_replay %s: %zu inputs, no fault\n", argv[1], files.size());
  return files.empty() ? 1 : 0;
}
