// libFuzzer harness: a safetensors weights file (eng::io::load_safetensors): header, dtypes,
// shapes, offsets and the data section.
#include <cstdint>

#include "engine/dtype.h"
#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = (fuzz::scratch_dir() / "weights.safetensors").string();
  fuzz::write_bytes(path, data, size);
  try {
    const eng::io::SafetensorsFile f = eng::io::load_safetensors(path);
    for (const auto& [name, t] : f.tensors) {
      fuzz::require(!name.empty(), "tensor with an empty name");
      const size_t bytes = static_cast<size_t>(t.numel()) * eng::dtype_size(t.dtype());
      // F16 is widened to f32 in memory: at most twice the bytes it takes in the file.
      fuzz::require(bytes <= 2 * size, "tensor '" + name + "' holds more bytes than the file");
      // Read every byte (ASan checks that the tensor's memory is really this large).
      const auto* p = static_cast<const uint8_t*>(t.raw_data());
      unsigned sum = 0;
      for (size_t i = 0; i < bytes; ++i) sum += p[i];
      volatile unsigned sink = sum;
      (void)sink;
      fuzz::require(f.contains(name), "tensor listed but not found by name");
    }
  } catch (const eng::Error& e) {
    fuzz::check_error_message(e, "weights.safetensors");
  }
  return 0;
}
