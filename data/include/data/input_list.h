// Turning the detector's --input arguments into a list of image files.
//
// Each argument is one of:
//   * a directory: its regular files whose extension is .jpg, .jpeg, .png or .bmp (any
//     case), not recursing into subdirectories, sorted by file name (byte order);
//   * "@list.txt": a list file with one path per line; blank lines and lines whose first
//     non-blank character is '#' are ignored, surrounding whitespace (and a CR) is trimmed,
//     relative paths are resolved against the list file's folder; each entry is a file or a
//     directory as here (lists do not nest: "@" starts a file name inside a list);
//   * anything else that exists and is a regular file (after following links): an image
//     file, kept as given whatever its extension (the decoder judges the contents); a
//     FIFO, socket or device is an error.
// A list file must be a regular file of at most ReadLimits::text_file_bytes (64 MiB) with
// lines of at most text_line_bytes (64 KiB) and no NUL byte (engine/io/limits.h).
// Problems do not throw: a missing path, an unreadable or empty list file and a directory
// without images each add one line "<path>: <problem>" to `errors` and contribute nothing.
// A file reached twice (same canonical path) is kept once, at its first position.
#pragma once
#include <set>
#include <string>
#include <vector>

namespace data {

std::vector<std::string> expand_inputs(const std::vector<std::string>& args, std::vector<std::string>& errors);

// True for .jpg .jpeg .png .bmp in any case.
bool has_image_extension(const std::string& path);

// The file's stem ("dir/img.jpg" -> "img"), made unique against `used` by appending
// "_1", "_2", ... (the first free one); the result is added to `used`. An empty stem
// becomes "image".
std::string output_stem(const std::string& path, std::set<std::string>& used);

}  // namespace data
