// libFuzzer harness: one Pascal VOC annotation (Annotations/<id>.xml) read by data::load_voc
// from a scratch VOC root whose split file lists that one id (images not required); its
// classes.txt holds the synthetic generator's classes and the 20 VOC classes.
#include <cmath>
#include <cstdint>
#include <filesystem>

#include "data/dataset.h"
#include "data/synth.h"
#include "engine/error.h"
#include "fuzz_common.h"

namespace {

const std::filesystem::path& voc_root() {
  static const std::filesystem::path root = [] {
    const std::filesystem::path r = fuzz::scratch_dir() / "voc";
    std::filesystem::create_directories(r / "ImageSets" / "Main");
    std::filesystem::create_directories(r / "Annotations");
    const std::string split = "fuzz\n";
    fuzz::write_bytes(r / "ImageSets" / "Main" / "trainval.txt", reinterpret_cast<const uint8_t*>(split.data()),
                      split.size());
    // The classes of both the synthetic generator (the seeds) and Pascal VOC.
    std::string classes;
    for (const std::string& c : data::synth_class_names(data::kMaxSynthClasses)) classes += c + "\n";
    for (const std::string& c : data::voc_class_names()) classes += c + "\n";
    fuzz::write_bytes(r / "classes.txt", reinterpret_cast<const uint8_t*>(classes.data()), classes.size());
    return r;
  }();
  return root;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path xml = voc_root() / "Annotations" / "fuzz.xml";
  fuzz::write_bytes(xml, data, size);
  data::VocOptions options;
  options.roots = {voc_root().string()};
  options.require_images = false;
  try {
    const data::Dataset d = data::load_voc(options);
    for (const std::string& w : d.warnings) {
      fuzz::require(w.find('\n') == std::string::npos, "warning spans lines: " + w);
      fuzz::require(w.find("fuzz.xml") != std::string::npos, "warning does not name the file: " + w);
    }
    const int classes = static_cast<int>(d.class_names.size());
    for (const data::Sample& s : d.samples) {
      fuzz::require(s.width >= 0 && s.height >= 0, "negative image size");
      for (const data::Object& o : s.objects) {
        fuzz::require(o.label >= 0 && o.label < classes, "label out of range");
        fuzz::require(std::isfinite(o.box.x1) && std::isfinite(o.box.y1) && std::isfinite(o.box.x2) &&
                          std::isfinite(o.box.y2),
                      "box coordinate not finite");
        fuzz::require(o.box.x2 > o.box.x1 && o.box.y2 > o.box.y1, "box of zero or negative area kept");
      }
    }
  } catch (const eng::Error& e) {
    fuzz::check_error_message(e, "fuzz.xml");
  }
  return 0;
}
