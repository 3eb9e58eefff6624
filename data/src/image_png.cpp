// PNG decoding through libpng (data/image.h explains the policy).
//
// libpng reports errors through png_error(), which longjmps to the setjmp in decode_raw();
// as in image_jpeg.cpp, decode_raw() creates no object with a destructor after it, and
// everything libpng touches lives in a Context the caller owns.
#include <algorithm>
#include <climits>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include <png.h>

#include "data/detail/image_decoders.h"
#include "engine/error.h"

namespace data {
namespace {

enum class Outcome { ok, libpng_error, over_limits, no_memory, bad_layout };

struct Context {
  png_structp png = nullptr;
  png_infop info = nullptr;
  const uint8_t* data = nullptr;  // the file, read through read_bytes
  size_t size = 0, pos = 0;
  char message[256] = {0};
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> rgb;
  std::vector<png_bytep> rows;
  ~Context() {
    if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
  }
};

[[noreturn]] void on_error(png_structp png, png_const_charp msg) {
  auto* ctx = static_cast<Context*>(png_get_error_ptr(png));
  std::snprintf(ctx->message, sizeof(ctx->message), "%s", msg ? msg : "unknown error");
  png_longjmp(png, 1);
}

// Warnings concern ancillary chunks or data after the image; the pixels are intact.
void on_warning(png_structp, png_const_charp) {}

void read_bytes(png_structp png, png_bytep out, png_size_t n) {
  auto* ctx = static_cast<Context*>(png_get_io_ptr(png));
  if (n > ctx->size - ctx->pos) png_error(png, "premature end of file (truncated)");
  std::memcpy(out, ctx->data + ctx->pos, n);
  ctx->pos += n;
}

bool dims_within(int64_t w, int64_t h, const ImageLimits& l) {
  return w > 0 && h > 0 && w <= l.max_width && h <= l.max_height && w * h <= l.max_pixels;
}

Outcome decode_raw(Context* ctx, const ImageLimits* limits) {
  ctx->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, on_error, on_warning);
  if (!ctx->png) return Outcome::no_memory;
  ctx->info = png_create_info_struct(ctx->png);
  if (!ctx->info) return Outcome::no_memory;
  if (setjmp(png_jmpbuf(ctx->png))) return Outcome::libpng_error;

  png_set_read_fn(ctx->png, ctx, read_bytes);
  // libpng's own limits, a second line behind ours: IHDR dimensions, the number of
  // ancillary chunks kept, and the bytes of any one chunk (a compressed iCCP/zTXt chunk
  // may not inflate past it).
  const auto cap = [](int64_t v) { return static_cast<png_uint_32>(std::clamp<int64_t>(v, 1, 0x7fffffff)); };
  png_set_user_limits(ctx->png, cap(limits->max_width), cap(limits->max_height));
  png_set_chunk_cache_max(ctx->png, 1000);
  png_set_chunk_malloc_max(ctx->png, 8u << 20);
  // A CRC error in any chunk, critical or ancillary, is an error (default: warn on ancillary).
  png_set_crc_action(ctx->png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);

  png_read_info(ctx->png, ctx->info);
  ctx->width = png_get_image_width(ctx->png, ctx->info);
  ctx->height = png_get_image_height(ctx->png, ctx->info);
  if (!dims_within(ctx->width, ctx->height, *limits)) return Outcome::over_limits;

  const int type = png_get_color_type(ctx->png, ctx->info);
  const int depth = png_get_bit_depth(ctx->png, ctx->info);
  if (depth == 16) png_set_strip_16(ctx->png);  // high byte, as stb_image and PIL do
  if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(ctx->png);
  if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(ctx->png);
  if (type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(ctx->png);  // dropped, not blended
  if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(ctx->png);
  png_set_interlace_handling(ctx->png);  // Adam7: libpng runs the passes into our rows
  png_read_update_info(ctx->png, ctx->info);
  if (png_get_channels(ctx->png, ctx->info) != 3 || png_get_bit_depth(ctx->png, ctx->info) != 8 ||
      png_get_rowbytes(ctx->png, ctx->info) != static_cast<size_t>(ctx->width) * 3)
    return Outcome::bad_layout;

  try {
    ctx->rgb.resize(static_cast<size_t>(ctx->width) * ctx->height * 3);
    ctx->rows.resize(ctx->height);
  } catch (const std::bad_alloc&) {
    return Outcome::no_memory;
  }
  for (size_t y = 0; y < ctx->height; ++y) ctx->rows[y] = ctx->rgb.data() + y * ctx->width * 3;
  png_read_image(ctx->png, ctx->rows.data());
  // Not png_read_end: the pixels are all in (the last IDAT's CRC was checked when the
  // image data ended); chunks after the image are not needed.
  return Outcome::ok;
}

}  // namespace

namespace detail {

Image decode_png(const uint8_t* data, size_t n, const std::string& name, const ImageLimits& limits) {
  Context ctx;
  ctx.data = data;
  ctx.size = n;
  switch (decode_raw(&ctx, &limits)) {
    case Outcome::ok:
      break;
    case Outcome::over_limits:
      check_dims(ctx.width, ctx.height, name, limits);
      ENGINE_FAIL(name, ": image dimensions ", ctx.width, "x", ctx.height, " over the limit");
    case Outcome::no_memory:
      ENGINE_FAIL(name, ": out of memory decoding a ", ctx.width, "x", ctx.height, " PNG");
    case Outcome::bad_layout:
      ENGINE_FAIL(name, ": unsupported PNG layout (colour type ", int(png_get_color_type(ctx.png, ctx.info)),
                  ", bit depth ", int(png_get_bit_depth(ctx.png, ctx.info)), ")");
    case Outcome::libpng_error:
      ENGINE_FAIL(name, ": corrupt or truncated PNG (", ctx.message, ")");
  }
  Image out;
  out.width = static_cast<int>(ctx.width);
  out.height = static_cast<int>(ctx.height);
  out.rgb = std::move(ctx.rgb);
  return out;
}

}  // namespace detail
}  // namespace data
