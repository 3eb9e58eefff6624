// JPEG encoding through libjpeg-turbo (data::save_jpg).
//
// Baseline JPEG, libjpeg's standard quantisation tables scaled by `quality` (1..100, the
// same scale as PIL and stb_image_write), Huffman tables optimised per image. Chroma is kept
// at full resolution (4:4:4) from quality 90 up, and halved both ways (4:2:0) below: what
// stb_image_write did, so files written before and after the change look alike.
//
// Errors: libjpeg's error callback must not return; ours longjmps back to encode(), which
// creates no object with a destructor after its setjmp (everything it touches lives in the
// caller's Context), and the C++ wrapper turns the outcome into eng::Error.
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE and size_t declared first
#include <cstdlib>

#include <jpeglib.h>

#include "data/detail/image_decoders.h"
#include "engine/error.h"

namespace data {
namespace {

struct ErrorManager {
  jpeg_error_mgr pub;  // first member: libjpeg hands back a pointer to it
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

struct Context {
  jpeg_compress_struct cinfo;
  ErrorManager err;
  bool created = false;
  unsigned char* buffer = nullptr;  // jpeg_mem_dest's output, malloc'd by libjpeg
  unsigned long size = 0;
  ~Context() {
    if (created) jpeg_destroy_compress(&cinfo);
    std::free(buffer);
  }
};

[[noreturn]] void on_error(j_common_ptr c) {
  auto* e = reinterpret_cast<ErrorManager*>(c->err);
  (*c->err->format_message)(c, e->message);
  std::longjmp(e->jump, 1);
}

// False on a libjpeg error (the message is in ctx.err.message).
bool encode(Context& ctx, const Image& image, int quality) {
  ctx.cinfo.err = jpeg_std_error(&ctx.err.pub);
  ctx.err.pub.error_exit = on_error;
  if (setjmp(ctx.err.jump)) return false;
  jpeg_create_compress(&ctx.cinfo);
  ctx.created = true;
  jpeg_mem_dest(&ctx.cinfo, &ctx.buffer, &ctx.size);
  ctx.cinfo.image_width = static_cast<JDIMENSION>(image.width);
  ctx.cinfo.image_height = static_cast<JDIMENSION>(image.height);
  ctx.cinfo.input_components = 3;
  ctx.cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&ctx.cinfo);
  jpeg_set_quality(&ctx.cinfo, quality, TRUE);
  ctx.cinfo.optimize_coding = TRUE;
  const int chroma = quality >= 90 ? 1 : 2;  // sampling factor of luma relative to chroma
  ctx.cinfo.comp_info[0].h_samp_factor = chroma;
  ctx.cinfo.comp_info[0].v_samp_factor = chroma;
  for (int c = 1; c < 3; ++c) ctx.cinfo.comp_info[c].h_samp_factor = ctx.cinfo.comp_info[c].v_samp_factor = 1;
  jpeg_start_compress(&ctx.cinfo, TRUE);
  const size_t stride = static_cast<size_t>(image.width) * 3;
  while (ctx.cinfo.next_scanline < ctx.cinfo.image_height) {
    // libjpeg does not write through the row pointer; the cast only fits its C signature.
    JSAMPROW row = const_cast<JSAMPROW>(image.rgb.data() + ctx.cinfo.next_scanline * stride);
    jpeg_write_scanlines(&ctx.cinfo, &row, 1);
  }
  jpeg_finish_compress(&ctx.cinfo);
  return true;
}

}  // namespace

namespace detail {

std::vector<uint8_t> encode_jpg(const Image& image, int quality, const std::string& name) {
  ENGINE_CHECK(quality >= 1 && quality <= 100, name, ": JPEG quality must be 1..100 (got ", quality, ")");
  ENGINE_CHECK(image.width > 0 && image.height > 0 && image.width <= JPEG_MAX_DIMENSION &&
                   image.height <= JPEG_MAX_DIMENSION,
               name, ": cannot encode a ", image.width, "x", image.height, " image as JPEG (sides 1..",
               JPEG_MAX_DIMENSION, ")");
  Context ctx;
  if (!encode(ctx, image, quality)) ENGINE_FAIL(name, ": JPEG encoding failed (", ctx.err.message, ")");
  ENGINE_CHECK(ctx.buffer != nullptr && ctx.size > 0, name, ": JPEG encoding failed (no output)");
  return std::vector<uint8_t>(ctx.buffer, ctx.buffer + ctx.size);
}

}  // namespace detail
}  // namespace data
