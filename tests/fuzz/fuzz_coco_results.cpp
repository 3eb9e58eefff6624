// libFuzzer harness: a COCO results file (data/coco_results.h) read the ways ssd_eval reads
// it: as results (data::read_coco_results, then mapped to detections), and as an ids file
// or a COCO GT's "images" (data::read_coco_image_ids); plus the content sniffing that picks
// the reader (data::is_coco_results_file).
#include <cmath>
#include <cstdint>

#include "data/coco_results.h"
#include "engine/error.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = (fuzz::scratch_dir() / "results.json").string();
  fuzz::write_bytes(path, data, size);
  (void)data::is_coco_results_file(path);
  std::vector<data::CocoResult> results;
  try {
    results = data::read_coco_results(path);
    for (const data::CocoResult& r : results) {
      const data::Box& b = r.box;
      fuzz::require(std::isfinite(r.score) && std::isfinite(b.x1) && std::isfinite(b.y1) && std::isfinite(b.x2) &&
                        std::isfinite(b.y2),
                    "result with a non-finite score or coordinate accepted");
      fuzz::require(b.x2 >= b.x1 && b.y2 >= b.y1, "result with a negative width or height accepted");
      fuzz::require(r.image_id >= 0 && r.image_id <= data::kMaxCocoImageId, "image id out of range accepted");
    }
    // Whatever the reader accepts, the writer writes back (no value it cannot represent).
    (void)data::coco_results_text(results, "results.json");
  } catch (const eng::Error& e) {
    fuzz::check_error_message(e, "results.json");
  }
  try {
    const std::vector<data::CocoImageRef> images = data::read_coco_image_ids(path);
    std::vector<int64_t> unknown;
    const auto dets = data::coco_results_to_detections(results, images, unknown);
    fuzz::require(dets.size() <= results.size(), "more detections than results");
  } catch (const eng::Error& e) {
    fuzz::check_error_message(e, "results.json");
  }
  return 0;
}
