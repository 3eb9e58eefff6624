// libFuzzer harness: data::decode_image on bytes in memory (JPEG, PNG and BMP: the decoder
// picks the format from the contents, so one target covers all three; the seed corpus holds
// files of each format, named by format).
#include <cstdint>

#include "data/image.h"
#include "engine/error.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Tighter limits than the defaults keep each execution small; the checks are the same.
  data::ImageLimits limits;
  limits.max_width = 4096;
  limits.max_height = 4096;
  limits.max_pixels = 4'000'000;
  const std::string name = "fuzz_input.img";
  try {
    const data::Image img = data::decode_image(data, size, name, limits);
    fuzz::require(img.width >= 1 && img.height >= 1, "decoded image has no pixels");
    fuzz::require(img.width <= limits.max_width && img.height <= limits.max_height &&
                      int64_t{img.width} * img.height <= limits.max_pixels,
                  "decoded image exceeds the limits");
    fuzz::require(img.rgb.size() == size_t(img.width) * img.height * 3, "pixel buffer size != width * height * 3");
    // Touch every byte so that a buffer the decoder left uninitialised at least gets read.
    unsigned sum = 0;
    for (uint8_t v : img.rgb) sum += v;
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const eng::Error& e) {
    fuzz::check_error_message(e, name);
  }
  return 0;
}
