// libFuzzer harness: a COCO instances JSON read both ways the programs read it: as a
// training/evaluation dataset (data::load_coco, images not required) and as evaluation
// ground truth (data::read_coco_gt).
#include <cmath>
#include <cstdint>

#include "data/coco_json.h"
#include "data/dataset.h"
#include "engine/error.h"
#include "fuzz_common.h"

namespace {

bool finite_box(const data::Box& b) {
  return std::isfinite(b.x1) && std::isfinite(b.y1) && std::isfinite(b.x2) && std::isfinite(b.y2);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = (fuzz::scratch_dir() / "instances.json").string();
  fuzz::write_bytes(path, data, size);
  try {
    data::CocoOptions options;
    options.json = path;
    options.require_images = false;
    const data::Dataset d = data::load_coco(options);
    fuzz::require(d.class_names.size() == d.category_ids.size(), "class names and category ids differ in length");
    for (const std::string& w : d.warnings)
      fuzz::require(w.find('\n') == std::string::npos && w.find("instances.json") != std::string::npos,
                    "warning is not one line naming the file: " + w);
    const int classes = static_cast<int>(d.class_names.size());
    for (const data::Sample& s : d.samples)
      for (const data::Object& o : s.objects) {
        fuzz::require(o.label >= 0 && o.label < classes, "label out of range");
        fuzz::require(finite_box(o.box) && o.box.x2 > o.box.x1 && o.box.y2 > o.box.y1, "bad box kept");
      }
  } catch (const eng::Error& e) {
    fuzz::check_error_message(e, "instances.json");
  }
  try {
    const data::CocoGroundTruth gt = data::read_coco_gt(path);
    for (const data::GroundTruth& g : gt.annotations) fuzz::require(finite_box(g.box), "GT box not finite");
  } catch (const eng::Error& e) {
    fuzz::check_error_message(e, "instances.json");
  }
  return 0;
}
