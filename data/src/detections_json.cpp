// detections.json writer. See data/detections_json.h.
#include "data/detections_json.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include <nlohmann/json.hpp>

#include "engine/error.h"

namespace data {
namespace {

using nlohmann::json;

// nlohmann writes doubles in the shortest form that parses back to the same value, and
// escapes strings; invalid UTF-8 (e.g. from a file name) is replaced, not thrown on.
std::string dump(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string where(size_t image, size_t det) {
  return "images[" + std::to_string(image) + "].detections[" + std::to_string(det) + "]";
}

void check_record(const DetectionRecord& d, const std::string& name, const std::string& at) {
  const Box& b = d.box;
  ENGINE_CHECK(std::isfinite(d.score), name, ": ", at, ": score is not finite");
  ENGINE_CHECK(std::isfinite(b.x1) && std::isfinite(b.y1) && std::isfinite(b.x2) && std::isfinite(b.y2), name, ": ",
               at, ": box has a non-finite coordinate");
  ENGINE_CHECK(b.x2 >= b.x1 && b.y2 >= b.y1, name, ": ", at, ": box corners out of order (", b.x1, ", ", b.y1, ", ",
               b.x2, ", ", b.y2, ")");
}

std::string record_line(const DetectionRecord& d) {
  const Box& b = d.box;
  const std::string bbox =
      "[" + dump(b.x1) + ", " + dump(b.y1) + ", " + dump(b.x2 - b.x1) + ", " + dump(b.y2 - b.y1) + "]";
  return "{\"category_id\": " + dump(d.category_id) + ", \"label\": " + dump(d.label) + ", \"score\": " +
         dump(d.score) + ", \"bbox\": " + bbox + "}";
}

}  // namespace

void write_text_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::error_code ec;
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) {
      const int err = errno;
      ENGINE_FAIL(path, ": cannot create ", tmp, " (", std::strerror(err), ")");
    }
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    f.close();
    if (!f) {
      std::filesystem::remove(tmp, ec);
      ENGINE_FAIL(path, ": write failed");
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ec2;
    std::filesystem::remove(tmp, ec2);
    ENGINE_FAIL(path, ": cannot rename ", tmp, " into place (", ec.message(), ")");
  }
}

std::string detections_json_text(const std::vector<ImageDetections>& images, const std::string& name) {
  std::ostringstream os;
  os << "{\"images\": [";
  for (size_t i = 0; i < images.size(); ++i) {
    const ImageDetections& im = images[i];
    os << (i ? ",\n" : "\n") << "  {\"file\": " << dump(im.file) << ", \"width\": " << im.width
       << ", \"height\": " << im.height << ", \"detections\": [";
    for (size_t n = 0; n < im.detections.size(); ++n) {
      check_record(im.detections[n], name, where(i, n));
      os << (n ? ",\n" : "\n") << "    " << record_line(im.detections[n]);
    }
    os << (im.detections.empty() ? "]}" : "\n  ]}");
  }
  os << (images.empty() ? "]}\n" : "\n]}\n");
  return os.str();
}

void write_detections_json(const std::string& path, const std::vector<ImageDetections>& images) {
  write_text_atomically(path, detections_json_text(images, path));
}

}  // namespace data
