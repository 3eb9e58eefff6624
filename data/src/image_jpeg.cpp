// JPEG decoding through libjpeg-turbo's libjpeg API (data/image.h explains the policy).
//
// libjpeg reports errors through a callback that must not return; ours formats the message
// and longjmps back to decode_raw(). C++ rules for longjmp: decode_raw() creates no object
// with a destructor after its setjmp, and everything libjpeg touches lives in a Context the
// caller owns, so nothing is skipped or left indeterminate by the jump. The C++ wrapper
// (decode_jpeg) turns the outcome into eng::Error.
#include <algorithm>
#include <climits>
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE and size_t declared first

// clang-format off
#include <jpeglib.h>
#include <jerror.h>  // after jpeglib.h: its message list depends on jconfig.h's settings
// clang-format on

#include "data/detail/image_decoders.h"
#include "engine/error.h"

namespace data {
namespace {

struct ErrorManager {
  jpeg_error_mgr pub;  // first member: libjpeg hands back a pointer to it
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  int code = 0;
};

struct ScanLimit {
  jpeg_progress_mgr pub;  // first member, as above
  int max_scans = 0;
};

enum class Outcome { ok, libjpeg_error, over_limits, bad_colour_space, no_memory, no_progress };

// Everything decode_raw's libjpeg calls touch, owned by the caller.
struct Context {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  ScanLimit scans;
  bool created = false;
  // Results.
  int width = 0, height = 0;          // in the file
  int out_width = 0, out_height = 0;  // decoded
  int denom = 1;
  int colour_space = 0;               // J_COLOR_SPACE of the file
  std::vector<uint8_t> rgb;
  std::vector<uint8_t> cmyk;          // CMYK/YCCK files: libjpeg's 4-channel output
  std::vector<JSAMPROW> rows;
  ~Context() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

[[noreturn]] void on_error(j_common_ptr c) {
  auto* e = reinterpret_cast<ErrorManager*>(c->err);
  e->code = c->err->msg_code;
  (*c->err->format_message)(c, e->message);
  std::longjmp(e->jump, 1);
}

// Warnings that mean pixel data is missing or wrong: errors (the image is not decoded as
// its author meant). The rest (junk between segments, unknown JFIF revision or Adobe
// transform code, a bad ICC marker) leave the pixels intact and are ignored, as PIL does.
bool is_corrupt_data_warning(int code) {
  switch (code) {
    case JWRN_JPEG_EOF:           // premature end of file: libjpeg would fill with grey
    case JWRN_HIT_MARKER:         // premature end of a data segment
    case JWRN_HUFF_BAD_CODE:
#if JPEG_LIB_VERSION >= 70 || defined(D_ARITH_CODING_SUPPORTED)
    case JWRN_ARITH_BAD_CODE:
#endif
    case JWRN_MUST_RESYNC:        // lost a restart marker
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION:
    case JWRN_TOO_MUCH_DATA:
      return true;
    default:
      return false;
  }
}

void on_message(j_common_ptr c, int level) {
  if (level >= 0) return;  // trace output
  if (is_corrupt_data_warning(c->err->msg_code)) on_error(c);
  ++c->err->num_warnings;
}

// Called by libjpeg while it consumes input; a crafted progressive file with thousands of
// tiny scans would otherwise cost a full coefficient pass each.
void on_progress(j_common_ptr c) {
  auto* limit = reinterpret_cast<ScanLimit*>(c->progress);
  auto* d = reinterpret_cast<j_decompress_ptr>(c);
  if (d->input_scan_number > limit->max_scans) {
    auto* e = reinterpret_cast<ErrorManager*>(c->err);
    e->code = -1;
    std::snprintf(e->message, sizeof(e->message), "more than %d scans (the limit for a progressive JPEG)",
                  limit->max_scans);
    std::longjmp(e->jump, 1);
  }
}

bool dims_within(int64_t w, int64_t h, const ImageLimits& l) {
  return w > 0 && h > 0 && w <= l.max_width && h <= l.max_height && w * h <= l.max_pixels;
}

// Adobe CMYK (and YCCK, which libjpeg turns into CMYK) stores the inks inverted: 255 = no
// ink. Without an Adobe marker the values are taken as plain ink amounts. RGB = (1 - ink C)
// (1 - ink K) and so on, in 0..255 with rounding.
void cmyk_to_rgb(const uint8_t* cmyk, uint8_t* rgb, size_t pixels, bool inverted) {
  for (size_t i = 0; i < pixels; ++i, cmyk += 4, rgb += 3) {
    const unsigned k = inverted ? cmyk[3] : 255u - cmyk[3];
    for (int c = 0; c < 3; ++c) {
      const unsigned v = inverted ? cmyk[c] : 255u - cmyk[c];
      rgb[c] = static_cast<uint8_t>((v * k + 127) / 255);
    }
  }
}

// The libjpeg part. Only trivially destructible locals after the setjmp (see the top).
Outcome decode_raw(Context* ctx, const uint8_t* data, size_t n, const ImageLimits* limits,
                   const DecodeOptions* options, int forced_denom) {
  jpeg_decompress_struct* cinfo = &ctx->cinfo;
  cinfo->err = jpeg_std_error(&ctx->err.pub);
  ctx->err.pub.error_exit = on_error;
  ctx->err.pub.emit_message = on_message;
  ctx->err.message[0] = '\0';
  if (setjmp(ctx->err.jump)) return Outcome::libjpeg_error;

  jpeg_create_decompress(cinfo);
  ctx->created = true;
  // Caps libjpeg's own allocations beyond its small working buffers (the whole-image
  // coefficient arrays of progressive and multi-scan files): past the cap it fails with
  // "Backing store not supported" instead of allocating.
  cinfo->mem->max_memory_to_use = static_cast<long>(std::min<int64_t>(limits->max_decoder_bytes, LONG_MAX));
  ctx->scans.pub.progress_monitor = on_progress;
  ctx->scans.max_scans = limits->max_jpeg_scans;
  cinfo->progress = &ctx->scans.pub;
  jpeg_mem_src(cinfo, data, static_cast<unsigned long>(n));
  jpeg_read_header(cinfo, TRUE);

  ctx->width = static_cast<int>(std::min<JDIMENSION>(cinfo->image_width, INT_MAX));
  ctx->height = static_cast<int>(std::min<JDIMENSION>(cinfo->image_height, INT_MAX));
  if (!dims_within(ctx->width, ctx->height, *limits)) return Outcome::over_limits;

  ctx->colour_space = cinfo->jpeg_color_space;
  bool four = false;
  switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
      cinfo->out_color_space = JCS_RGB;  // libjpeg-turbo replicates grey itself
      break;
    case JCS_CMYK:
    case JCS_YCCK:
      cinfo->out_color_space = JCS_CMYK;
      four = true;
      break;
    default:
      return Outcome::bad_colour_space;
  }

  ctx->denom = forced_denom > 0 ? forced_denom : jpeg_scale_denom_for(ctx->width, ctx->height, *options);
  cinfo->scale_num = 1;
  cinfo->scale_denom = static_cast<unsigned>(ctx->denom);
  jpeg_calc_output_dimensions(cinfo);
  ctx->out_width = static_cast<int>(cinfo->output_width);
  ctx->out_height = static_cast<int>(cinfo->output_height);

  const size_t ow = static_cast<size_t>(ctx->out_width), oh = static_cast<size_t>(ctx->out_height);
  try {  // our allocations: bounded by the limits checked above
    ctx->rgb.resize(ow * oh * 3);
    if (four) ctx->cmyk.resize(ow * oh * 4);
    ctx->rows.resize(oh);
  } catch (const std::bad_alloc&) {
    return Outcome::no_memory;
  }
  uint8_t* base = four ? ctx->cmyk.data() : ctx->rgb.data();
  const size_t stride = ow * (four ? 4 : 3);
  for (size_t y = 0; y < oh; ++y) ctx->rows[y] = base + y * stride;

  jpeg_start_decompress(cinfo);
  if (cinfo->output_width != ow || cinfo->output_height != oh ||
      cinfo->output_components != (four ? 4 : 3))
    return Outcome::bad_colour_space;
  while (cinfo->output_scanline < cinfo->output_height) {
    const JDIMENSION y = cinfo->output_scanline;
    if (jpeg_read_scanlines(cinfo, ctx->rows.data() + y, cinfo->output_height - y) == 0) return Outcome::no_progress;
  }
  // Not jpeg_finish_decompress: every pixel is in, and whatever follows the last scan
  // (a missing EOI, trailing bytes) does not change them.
  if (four) cmyk_to_rgb(ctx->cmyk.data(), ctx->rgb.data(), ow * oh, cinfo->saw_Adobe_marker);
  return Outcome::ok;
}

}  // namespace

int jpeg_scale_denom_for(int width, int height, const DecodeOptions& options) {
  if (options.min_width <= 0 && options.min_height <= 0) return 1;
  for (int d : {8, 4, 2}) {
    const int64_t w = (static_cast<int64_t>(width) + d - 1) / d, h = (static_cast<int64_t>(height) + d - 1) / d;
    if (w >= options.min_width && h >= options.min_height) return d;
  }
  return 1;
}

namespace detail {

ScaledImage decode_jpeg(const uint8_t* data, size_t n, const std::string& name, const ImageLimits& limits,
                        const DecodeOptions& options, int scale_denom) {
  ENGINE_CHECK(scale_denom == 0 || scale_denom == 1 || scale_denom == 2 || scale_denom == 4 || scale_denom == 8,
               name, ": JPEG scale 1/", scale_denom, " not supported (1, 2, 4 or 8)");
  Context ctx;
  const Outcome r = decode_raw(&ctx, data, n, &limits, &options, scale_denom);
  switch (r) {
    case Outcome::ok:
      break;
    case Outcome::over_limits:
      check_dims(ctx.width, ctx.height, name, limits);
      ENGINE_FAIL(name, ": image dimensions ", ctx.width, "x", ctx.height, " over the limit");
    case Outcome::bad_colour_space:
      ENGINE_FAIL(name, ": unsupported JPEG colour space (", ctx.colour_space, ", ", ctx.cinfo.num_components,
                  " components; expected grey, YCbCr, RGB, CMYK or YCCK)");
    case Outcome::no_memory:
      ENGINE_FAIL(name, ": out of memory for a ", ctx.out_width, "x", ctx.out_height, " image");
    case Outcome::no_progress:
      ENGINE_FAIL(name, ": corrupt or truncated JPEG (the decoder made no progress)");
    case Outcome::libjpeg_error:
      if (ctx.err.code == JERR_NO_BACKING_STORE || ctx.err.code == JERR_OUT_OF_MEMORY)
        ENGINE_FAIL(name, ": the JPEG decoder needs more memory than the limit of ", limits.max_decoder_bytes,
                    " bytes (", ctx.err.message, ")");
      ENGINE_FAIL(name, ": corrupt or truncated JPEG (", ctx.err.message, ")");
  }
  ScaledImage out;
  out.image.width = ctx.out_width;
  out.image.height = ctx.out_height;
  out.image.rgb = std::move(ctx.rgb);
  out.original_width = ctx.width;
  out.original_height = ctx.height;
  out.scale_denom = ctx.denom;
  return out;
}

}  // namespace detail
}  // namespace data
