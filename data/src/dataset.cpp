// The parts of data/dataset.h shared by both formats: class files, the format dispatch,
// the summary, the ground-truth view and the box check. See data/dataset.h.
#include "data/dataset.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

#include "engine/error.h"
#include "engine/io/read_file.h"

namespace data {

namespace fs = std::filesystem;

namespace detail {

std::string printable(const std::string& s) { return eng::detail::one_line(s); }

std::string trim(const std::string& s) {
  const char* space = " \t\r\n\f\v";
  const size_t first = s.find_first_not_of(space);
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

namespace {

bool has_area(const Box& b) { return b.x2 > b.x1 && b.y2 > b.y1; }  // false on NaN too

std::string outside_message(const Box& b, int width, int height) {
  std::ostringstream os;
  os << "box (" << b.x1 << ", " << b.y1 << ", " << b.x2 << ", " << b.y2 << ") is outside the ";
  if (width > 0 && height > 0) {
    os << width << "x" << height << " image";
  } else {
    os << "image";
  }
  os << " by more than 1 pixel";
  return os.str();
}

}  // namespace

std::string check_box(Box& b, int width, int height) {
  if (!has_area(b)) return "zero or negative area";
  constexpr double kTolerance = 1.0;
  const double inf = std::numeric_limits<double>::infinity();
  const double max_x = width > 0 ? width : inf;
  const double max_y = height > 0 ? height : inf;
  if (b.x1 < -kTolerance || b.y1 < -kTolerance || b.x2 > max_x + kTolerance || b.y2 > max_y + kTolerance)
    return outside_message(b, width, height);
  b.x1 = std::clamp(b.x1, 0.0, max_x);
  b.y1 = std::clamp(b.y1, 0.0, max_y);
  b.x2 = std::clamp(b.x2, 0.0, max_x);
  b.y2 = std::clamp(b.y2, 0.0, max_y);
  if (!has_area(b)) return "zero area after clipping into the image";
  return "";
}

}  // namespace detail

std::vector<std::string> voc_class_names() {
  return {"aeroplane", "bicycle", "bird",  "boat",        "bottle", "bus",   "car",
          "cat",       "chair",   "cow",   "diningtable", "dog",    "horse", "motorbike",
          "person",    "pottedplant", "sheep", "sofa",    "train",  "tvmonitor"};
}

std::vector<std::string> read_class_names(const std::string& path) {
  std::error_code ec;
  ENGINE_CHECK(fs::exists(path, ec), path, ": cannot open class file (not found)");
  std::vector<std::string> names;
  std::set<std::string> seen;
  eng::io::for_each_text_line(path, "class file", [&](size_t line_no, const std::string& line) {
    const std::string name = detail::trim(line);
    if (name.empty()) return;
    ENGINE_CHECK(seen.insert(name).second, path, ":", line_no, ": duplicate class name '", name, "'");
    names.push_back(name);
  });
  ENGINE_CHECK(!names.empty(), path, ": class file has no class names");
  return names;
}

bool is_coco_path(const std::string& path) {
  const std::string ext = ".json";
  if (path.size() < ext.size()) return false;
  std::string tail = path.substr(path.size() - ext.size());
  std::transform(tail.begin(), tail.end(), tail.begin(), [](unsigned char c) { return std::tolower(c); });
  return tail == ext;
}

namespace {

std::vector<std::string> split_roots(const std::string& path) {
  std::vector<std::string> roots;
  std::istringstream is(path);
  for (std::string part; std::getline(is, part, ',');) {
    part = detail::trim(part);
    if (!part.empty()) roots.push_back(part);
  }
  ENGINE_CHECK(!roots.empty(), "no dataset path given ('", path, "')");
  return roots;
}

VocOptions voc_options(const std::string& path, const std::string& split, const std::string& classes_file,
                       const std::string& images_dir) {
  ENGINE_CHECK(images_dir.empty(), path, ": an images folder (", images_dir,
               ") applies to COCO datasets only; VOC images are in <root>/JPEGImages");
  VocOptions o;
  o.roots = split_roots(path);
  o.split = split;
  o.classes_file = classes_file;
  return o;
}

CocoOptions coco_options(const std::string& path, const std::string& classes_file, const std::string& images_dir) {
  ENGINE_CHECK(classes_file.empty(), classes_file, ": a class file applies to VOC datasets only; COCO takes its ",
               "classes from ", path);
  CocoOptions o;
  o.json = path;
  o.images_dir = images_dir;
  return o;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

}  // namespace

Dataset load_dataset(const std::string& path, const std::string& split, const std::string& classes_file,
                     const std::string& images_dir, bool require_images) {
  if (is_coco_path(path)) {
    CocoOptions o = coco_options(path, classes_file, images_dir);
    o.require_images = require_images;
    return load_coco(o);
  }
  VocOptions o = voc_options(path, split, classes_file, images_dir);
  o.require_images = require_images;
  return load_voc(o);
}

std::string dataset_source(const std::string& path, const std::string& split, const std::string& classes_file,
                           const std::string& images_dir) {
  if (is_coco_path(path)) {
    const CocoOptions o = coco_options(path, classes_file, images_dir);
    const std::string dir = o.images_dir.empty() ? fs::path(o.json).parent_path().string() : o.images_dir;
    return "COCO " + o.json + ", images in " + (dir.empty() ? "." : dir);
  }
  const VocOptions o = voc_options(path, split, classes_file, images_dir);
  const std::string classes = voc_classes_file(o);
  return "VOC " + join(o.roots, ", ") + ", split " + o.split + ", classes " +
         (classes.empty() ? "the 20 VOC classes" : "from " + classes);
}

std::string dataset_summary(const Dataset& d) {
  std::vector<int> per_class(d.class_names.size(), 0);
  int objects = 0, difficult = 0, crowd = 0, empty = 0;
  for (const Sample& s : d.samples) {
    if (s.objects.empty()) ++empty;
    for (const Object& o : s.objects) {
      ++objects;
      difficult += o.difficult;
      crowd += o.iscrowd;
      if (o.label >= 0 && o.label < static_cast<int>(per_class.size())) ++per_class[o.label];
    }
  }
  std::ostringstream os;
  os << "images: " << d.samples.size() << " (" << empty << " without objects)\n";
  os << "objects: " << objects << " (difficult: " << difficult << ", crowd: " << crowd << ")\n";
  os << "classes: " << d.class_names.size() << "\n";
  for (size_t c = 0; c < d.class_names.size(); ++c) os << "  " << d.class_names[c] << ": " << per_class[c] << "\n";
  os << "skipped: " << d.skipped_images << " images, " << d.skipped_objects << " objects (" << d.warnings.size()
     << " warnings)\n";
  return os.str();
}

std::vector<GroundTruth> ground_truth(const Dataset& d) {
  std::vector<GroundTruth> out;
  for (const Sample& s : d.samples) {
    for (const Object& o : s.objects) {
      ENGINE_CHECK(o.label >= 0 && o.label < static_cast<int>(d.category_ids.size()), s.key, ": label ", o.label,
                   " has no category id (", d.category_ids.size(), " classes)");
      GroundTruth g;
      g.image = s.key;
      g.box = o.box;
      g.category = d.category_ids[o.label];
      g.difficult = o.difficult;
      g.iscrowd = o.iscrowd;
      g.area = o.area;
      out.push_back(g);
    }
  }
  return out;
}

}  // namespace data
