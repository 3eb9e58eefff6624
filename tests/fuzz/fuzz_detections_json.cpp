// libFuzzer harness: the detector's output file, detections.json, read back by the
// evaluator (data::read_detections).
#include <cmath>
#include <cstdint>

#include "data/coco_json.h"
#include "engine/error.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = (fuzz::scratch_dir() / "detections.json").string();
  fuzz::write_bytes(path, data, size);
  try {
    for (const data::Detection& d : data::read_detections(path))
      fuzz::require(std::isfinite(d.score) && std::isfinite(d.box.x1) && std::isfinite(d.box.y1) &&
                        std::isfinite(d.box.x2) && std::isfinite(d.box.y2),
                    "detection with a non-finite score or coordinate accepted");
  } catch (const eng::Error& e) {
    fuzz::check_error_message(e, "detections.json");
  }
  return 0;
}
