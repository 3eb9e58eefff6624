// Drawing detections onto 8-bit RGB images: box outlines, text and labelled boxes.
//
// Conventions (docs/detect-output.md):
//   * a Box (x1, y1, x2, y2) is drawn on the pixels whose indices are the rounded corners,
//     inclusive: columns round(x1) and round(x2) and rows round(y1) and round(y2) are the
//     outer edge of the outline, and a thicker outline grows inward from there;
//   * corners given in the wrong order are swapped; a box with a NaN corner draws nothing;
//     everything is clipped to the image, so boxes partly or fully outside are safe;
//   * text is stb_easy_font's ASCII bitmap font (glyph cells 9 px high), magnified by an
//     integer `scale`; characters outside printable ASCII are drawn as '?'; one line only
//     ('\n' is drawn as a space);
//   * draw_detection puts a filled tag "caption" in the box colour just above the box's
//     top-left corner, or just inside the box when the image has no room above it.
#pragma once
#include <cstdint>
#include <string>

#include "data/image.h"
#include "data/metrics.h"

namespace data {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};
inline bool operator==(Rgb a, Rgb b) { return a.r == b.r && a.g == b.g && a.b == b.b; }
inline bool operator!=(Rgb a, Rgb b) { return !(a == b); }

// A bright colour for a class: the hue steps by the golden ratio of a turn per label
// (neighbouring labels are far apart on the colour wheel), saturation 0.85, value 0.95.
// Deterministic; any int label (negative too).
Rgb class_colour(int label);

// Black or white, whichever reads better on `background` (by its luminance).
Rgb text_colour_on(Rgb background);

// Outline of `box`, `thickness` pixels wide (values below 1 count as 1), growing inward.
void draw_rect(Image& img, const Box& box, Rgb colour, int thickness);

// Fills the pixel rectangle [x0, x1] x [y0, y1] (inclusive, any order), clipped.
void fill_rect(Image& img, long long x0, long long y0, long long x1, long long y1, Rgb colour);

// Text with its top-left corner at (x, y); only the glyph pixels are written.
// Every pixel written lies in [x, x + text_width) x [y, y + text_height).
void draw_text(Image& img, int x, int y, const std::string& text, Rgb fg, int scale);
int text_width(const std::string& text, int scale);  // advance width, in pixels
int text_height(int scale);                          // 9 * scale

// The line width and text scale draw_detection uses for an image of this size:
// thickness max(2, min(w, h) / 200); scale 2 when min(w, h) >= 480, else 1.
int detection_thickness(const Image& img);
int detection_text_scale(const Image& img);

// Box outline plus a filled tag holding `caption` (e.g. "dog 0.87"): the tag's background
// is `colour` and its text black or white (text_colour_on). The tag sits above the box's
// top-left corner, or inside the box at that corner when there is no room above; it is
// shifted left to stay inside the image where it can. A box wholly outside the image
// (or with a NaN corner) draws nothing.
void draw_detection(Image& img, const Box& box, const std::string& caption, Rgb colour);

}  // namespace data
