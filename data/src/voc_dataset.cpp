// Pascal VOC reader: <root>/ImageSets/Main/<split>.txt, <root>/Annotations/<id>.xml,
// <root>/JPEGImages/<file>. See data/dataset.h and docs/datasets.md.
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <unordered_map>

#include <pugixml.hpp>

#include "data/coco_json.h"
#include "data/dataset.h"
#include "engine/error.h"
#include "engine/io/limits.h"
#include "engine/io/read_file.h"

namespace data {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> read_split_ids(const std::string& root, const std::string& split) {
  ENGINE_CHECK(!fs::is_regular_file(root), root, ": is a file, not a VOC root folder (a COCO file must end in .json)");
  ENGINE_CHECK(fs::is_directory(root), root, ": VOC root folder not found");
  const std::string path = (fs::path(root) / "ImageSets" / "Main" / (split + ".txt")).string();
  std::error_code ec;
  ENGINE_CHECK(fs::exists(path, ec), path, ": split file not found (split '", split, "')");
  std::vector<std::string> ids;
  eng::io::for_each_text_line(path, "split file", [&](size_t, const std::string& line) {
    std::istringstream is(line);
    std::string id;
    if (is >> id) ids.push_back(id);  // first token; class-specific lists add a "1/-1" column
  });
  return ids;
}

// A finite decimal number within +-kMaxCoordinate (surrounding space allowed, as XML
// writers indent); no hex, inf or nan.
bool parse_coordinate(const std::string& text, double& value) {
  double v = 0;
  if (!eng::io::parse_finite_double(detail::trim(text), v) || std::fabs(v) > detail::kMaxCoordinate) return false;
  value = v;
  return true;
}

// <size><width>, <height>, <depth>: absent or empty is 0 (unknown); else a whole number in
// [0, max] (written as "500" or "500.0"); anything else is the problem, for a warning.
std::string parse_size(const pugi::xml_node& size, const char* key, int64_t max, int& out) {
  out = 0;
  const std::string text = detail::trim(size.child_value(key));
  if (text.empty()) return "";
  double v = 0;
  // Range first, then the conversion: 1e10 or nan never reaches static_cast<int>.
  if (!eng::io::parse_finite_double(text, v) || v < 0 || v > static_cast<double>(max) || v != std::floor(v))
    return std::string("<size><") + key + "> is '" + text.substr(0, 40) + "', not a whole number in [0, " +
           std::to_string(max) + "]";
  out = static_cast<int>(v);
  return "";
}

// <difficult>, <truncated>: absent or empty is false; else exactly 0 or 1.
std::string parse_flag(const pugi::xml_node& obj, const char* key, bool& out) {
  const std::string text = detail::trim(obj.child_value(key));
  out = text == "1";
  if (text.empty() || text == "0" || text == "1") return "";
  return std::string("<") + key + "> is '" + text.substr(0, 40) + "', not 0 or 1";
}

// The problem part of an eng::Error "<path>: <problem>" (the warning names the file itself).
std::string problem_of(const std::string& message, const std::string& path) {
  return message.compare(0, path.size() + 2, path + ": ") == 0 ? message.substr(path.size() + 2) : message;
}

// Reads the images and objects of one split, accumulating into `out`.
class VocReader {
 public:
  VocReader(const std::vector<std::string>& class_names, bool require_images, Dataset& out)
      : require_images_(require_images), out_(out) {
    for (size_t i = 0; i < class_names.size(); ++i) label_of_[class_names[i]] = static_cast<int>(i);
  }

  void read_root(const std::string& root, const std::vector<std::string>& ids) {
    for (const std::string& id : ids) read_image(root, id);
  }

 private:
  void skip_image(const std::string& file, const std::string& problem) {
    out_.warnings.push_back(detail::printable(file + ": " + problem + " (image skipped)"));
    ++out_.skipped_images;
  }

  void skip_object(const std::string& file, size_t index, const std::string& name, const std::string& problem) {
    out_.warnings.push_back(detail::printable(file + ": object " + std::to_string(index) + " '" + name +
                                              "': " + problem + " (object skipped)"));
    ++out_.skipped_objects;
  }

  // The image file: <filename> in JPEGImages/, else <id>.jpg; "" (and `problem`) if missing.
  std::string image_file(const std::string& root, const std::string& id, const std::string& filename,
                         std::string& problem) const {
    const fs::path dir = fs::path(root) / "JPEGImages";
    const fs::path named = dir / (filename.empty() ? id + ".jpg" : filename);
    if (!require_images_ || fs::exists(named)) return named.string();
    const fs::path by_id = dir / (id + ".jpg");
    if (!filename.empty() && fs::exists(by_id)) return by_id.string();
    problem = "image file " + named.string() + " not found";
    return "";
  }

  void read_image(const std::string& root, const std::string& id) {
    const std::string xml = (fs::path(root) / "Annotations" / (id + ".xml")).string();
    std::error_code ec;
    if (!fs::exists(xml, ec)) return skip_image(xml, "annotation file not found");
    // Regular file, at most ReadLimits::annotation_bytes, read before pugixml sees it.
    std::string text;
    try {
      text = eng::io::read_file_capped(xml, eng::io::read_limits().annotation_bytes, "annotation file",
                                       "ENGINE_MAX_ANNOTATION_BYTES");
    } catch (const eng::Error& e) {
      return skip_image(xml, problem_of(e.what(), xml));
    }
    pugi::xml_document doc;
    const pugi::xml_parse_result parsed = doc.load_buffer(text.data(), text.size());
    if (!parsed) return skip_image(xml, std::string("malformed XML: ") + parsed.description());
    const pugi::xml_node ann = doc.child("annotation");
    if (!ann) return skip_image(xml, "malformed XML: no <annotation> element");

    std::string problem;
    const std::string image = image_file(root, id, detail::trim(ann.child_value("filename")), problem);
    if (image.empty()) return skip_image(xml, problem);
    Sample s;
    s.image_path = image;
    s.key = image_key(image);
    int depth = 0;
    std::string bad = parse_size(ann.child("size"), "width", detail::kMaxImageSide, s.width);
    if (bad.empty()) bad = parse_size(ann.child("size"), "height", detail::kMaxImageSide, s.height);
    if (bad.empty()) bad = parse_size(ann.child("size"), "depth", 4, depth);  // channels: unused
    if (!bad.empty()) return skip_image(xml, bad);
    size_t index = 0;
    for (const pugi::xml_node& obj : ann.children("object")) read_object(xml, index++, obj, s);
    out_.samples.push_back(std::move(s));
  }

  // "" and the box, or the problem with the coordinates.
  static std::string read_box(const pugi::xml_node& obj, Box& box) {
    const pugi::xml_node bndbox = obj.child("bndbox");
    if (!bndbox) return "no <bndbox>";
    const char* keys[4] = {"xmin", "ymin", "xmax", "ymax"};
    double v[4];
    for (int k = 0; k < 4; ++k) {
      const pugi::xml_node node = bndbox.child(keys[k]);
      if (!node) return std::string("missing <") + keys[k] + ">";
      if (!parse_coordinate(node.child_value(), v[k]))
        return std::string("non-numeric <") + keys[k] + "> '" + detail::trim(node.child_value()).substr(0, 40) +
               "' (not a finite number within +-1e7)";
    }
    box = Box{v[0] - 1, v[1] - 1, v[2] - 1, v[3] - 1};  // 1-based inclusive pixels -> corners
    return "";
  }

  void read_object(const std::string& xml, size_t index, const pugi::xml_node& obj, Sample& s) {
    const std::string name = detail::trim(obj.child_value("name"));
    const auto label = label_of_.find(name);
    if (label == label_of_.end()) return skip_object(xml, index, name, "unknown class");
    Object o;
    o.label = label->second;
    bool truncated = false;
    std::string problem = parse_flag(obj, "difficult", o.difficult);
    if (problem.empty()) problem = parse_flag(obj, "truncated", truncated);
    if (problem.empty()) problem = read_box(obj, o.box);
    if (problem.empty()) problem = detail::check_box(o.box, s.width, s.height);
    if (!problem.empty()) return skip_object(xml, index, name, problem);
    s.objects.push_back(o);
  }

  bool require_images_;
  Dataset& out_;
  std::unordered_map<std::string, int> label_of_;
};

}  // namespace

std::string voc_classes_file(const VocOptions& options) {
  if (!options.classes_file.empty()) return options.classes_file;
  if (options.roots.empty()) return "";
  const fs::path in_root = fs::path(options.roots.front()) / "classes.txt";
  return fs::exists(in_root) ? in_root.string() : "";
}

Dataset load_voc(const VocOptions& options) {
  ENGINE_CHECK(!options.roots.empty(), "VOC dataset: no root folder given");
  Dataset out;
  const std::string classes = voc_classes_file(options);
  out.class_names = classes.empty() ? voc_class_names() : read_class_names(classes);
  for (size_t i = 0; i < out.class_names.size(); ++i) out.category_ids.push_back(static_cast<int>(i) + 1);
  // Every split file is read before any annotation, so a bad root fails fast.
  std::vector<std::vector<std::string>> ids;
  for (const std::string& root : options.roots) ids.push_back(read_split_ids(root, options.split));
  VocReader reader(out.class_names, options.require_images, out);
  for (size_t r = 0; r < options.roots.size(); ++r) reader.read_root(options.roots[r], ids[r]);
  return out;
}

}  // namespace data
