// The "awkward" synthetic preset: small, faint objects and planted annotation faults
// (data/synth_awkward.h).
#include "data/synth_awkward.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <pugixml.hpp>

#include "data/image.h"
#include "engine/error.h"

namespace data {

namespace {

namespace fs = std::filesystem;

std::string awkward_id(int number) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%06d", number);
  return buf;
}

void ensure_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  ENGINE_CHECK(!ec && fs::is_directory(dir), "cannot create directory '", dir.string(), "': ",
               ec ? ec.message() : "a file is in the way");
}

// Writes `text` to "<path>.tmp" and renames it into place (never a half-written file).
void write_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  std::error_code ec;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
      fs::remove(tmp, ec);
      ENGINE_FAIL(path.string(), ": cannot write");
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    ENGINE_FAIL(path.string(), ": cannot write (rename failed)");
  }
}

// A small counter-based generator for the fault positions (independent of the scene's).
struct FaultRng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int int_in(int lo, int hi) { return lo + static_cast<int>(next() % static_cast<uint64_t>(hi - lo + 1)); }
};

// One <object> with VOC's 1-based inclusive coordinates given as written.
void add_object(pugi::xml_node root, const std::string& name, bool difficult, long xmin, long ymin, long xmax,
                long ymax) {
  pugi::xml_node obj = root.append_child("object");
  obj.append_child("name").text().set(name.c_str());
  obj.append_child("pose").text().set("Unspecified");
  obj.append_child("truncated").text().set("0");
  obj.append_child("difficult").text().set(difficult ? "1" : "0");
  pugi::xml_node box = obj.append_child("bndbox");
  box.append_child("xmin").text().set(std::to_string(xmin).c_str());
  box.append_child("ymin").text().set(std::to_string(ymin).c_str());
  box.append_child("xmax").text().set(std::to_string(xmax).c_str());
  box.append_child("ymax").text().set(std::to_string(ymax).c_str());
}

// The annotation of image `number` with its planted faults.
std::string awkward_xml(int number, const std::string& file_name, const SynthScene& scene,
                        const std::vector<std::string>& names, uint64_t fault_seed) {
  const int W = scene.image.width, H = scene.image.height;
  FaultRng rng{fault_seed};
  pugi::xml_document doc;
  pugi::xml_node root = doc.append_child("annotation");
  root.append_child("folder").text().set("JPEGImages");
  root.append_child("filename").text().set(file_name.c_str());
  pugi::xml_node size = root.append_child("size");
  size.append_child("width").text().set(std::to_string(W).c_str());
  size.append_child("height").text().set(std::to_string(H).c_str());
  size.append_child("depth").text().set("3");
  for (size_t i = 0; i < scene.objects.size(); ++i) {
    const Object& o = scene.objects[i];
    long x2 = std::lround(o.box.x2) + 1;
    if (number % 7 == 0 && i == 0) x2 = W + 1;  // 1 px past the right border (within the reader's tolerance)
    add_object(root, names[static_cast<size_t>(o.label)], false, std::lround(o.box.x1) + 1,
               std::lround(o.box.y1) + 1, x2, std::lround(o.box.y2) + 1);
  }
  const std::string& any = names[static_cast<size_t>(rng.int_in(0, static_cast<int>(names.size()) - 1))];
  if (number % 5 == 0) {  // zero-area box
    const int x = rng.int_in(1, W), y = rng.int_in(1, H - 10);
    add_object(root, any, false, x, y, x, y + 9);
  }
  if (number % 7 == 0) {  // far past the border
    const int y = rng.int_in(1, H / 2);
    add_object(root, any, false, W - 10, y, W + 40, y + 20);
  }
  if (number % 3 == 0) {  // tiny difficult items
    const int count = rng.int_in(1, 3);
    for (int k = 0; k < count; ++k) {
      const int side = rng.int_in(1, 3);
      const int x = rng.int_in(1, W - side), y = rng.int_in(1, H - side);
      add_object(root, names[static_cast<size_t>(rng.int_in(0, static_cast<int>(names.size()) - 1))], true, x, y,
                 x + side - 1, y + side - 1);
    }
  }
  std::ostringstream text;
  doc.save(text, "  ");
  return text.str();
}

}  // namespace

SynthOptions awkward_synth_options(int width, int height, int num_classes) {
  SynthOptions o;
  o.width = width;
  o.height = height;
  o.num_classes = num_classes;
  o.min_objects = 2;
  o.max_objects = 8;
  o.min_size = 0.04;
  o.max_size = 0.14;
  o.contrast = 0.35;
  validate_synth_options(o);
  return o;
}

SynthSummary write_awkward_voc_dataset(const std::string& out_dir, int n, int n_val, uint64_t seed, int width,
                                       int height, int num_classes, const std::string& split) {
  const SynthOptions options = awkward_synth_options(width, height, num_classes);
  SynthOptions empty = options;
  empty.min_objects = empty.max_objects = 0;
  ENGINE_CHECK(n >= 1, "number of images must be >= 1 (got ", n, ")");
  ENGINE_CHECK(n_val >= 0, "number of held-out images must be >= 0 (got ", n_val, ")");
  ENGINE_CHECK(static_cast<int64_t>(n) + n_val <= 999999, "at most 999999 images in all (got ", n, " + ", n_val, ")");
  const bool split_ok = !split.empty() && std::all_of(split.begin(), split.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
  ENGINE_CHECK(split_ok, "bad split name '", split, "' (letters, digits, '_' and '-' only)");
  ENGINE_CHECK(!(split == "test" && n_val > 0), "split name 'test' is taken by the held-out images (--val)");

  const fs::path dir(out_dir);
  ensure_dir(dir / "JPEGImages");
  ensure_dir(dir / "Annotations");
  ensure_dir(dir / "ImageSets" / "Main");
  SynthSummary summary;
  summary.class_names = synth_class_names(num_classes);
  summary.objects_per_class.assign(summary.class_names.size(), 0);
  struct Plan {
    std::string name;
    uint64_t stream;
    int first, count;
  };
  std::vector<Plan> plans = {{split, 0, 1, n}};
  if (n_val > 0) plans.push_back({"test", 1, n + 1, n_val});
  for (const Plan& plan : plans) {
    std::string ids;
    for (int j = 0; j < plan.count; ++j) {
      const int number = plan.first + j;
      const std::string id = awkward_id(number);
      const uint64_t image_seed = synth_image_seed(seed, plan.stream, static_cast<uint64_t>(j));
      const SynthScene scene = render_scene(number % 25 == 1 ? empty : options, image_seed);
      for (const Object& o : scene.objects) ++summary.objects_per_class[static_cast<size_t>(o.label)];
      const std::string jpg = (dir / "JPEGImages" / (id + ".jpg")).string();
      save_jpg(jpg + ".tmp.jpg", scene.image, 95);
      std::error_code ec;
      fs::rename(jpg + ".tmp.jpg", jpg, ec);
      ENGINE_CHECK(!ec, jpg, ": cannot write (rename failed)");
      write_atomic(dir / "Annotations" / (id + ".xml"),
                   awkward_xml(number, id + ".jpg", scene, summary.class_names, image_seed ^ 0xFA17ull));
      ids += id + "\n";
    }
    write_atomic(dir / "ImageSets" / "Main" / (plan.name + ".txt"), ids);
    summary.splits.push_back(plan.name);
    summary.images_per_split.push_back(plan.count);
  }
  std::string classes;
  for (const std::string& c : summary.class_names) classes += c + "\n";
  write_atomic(dir / "classes.txt", classes);
  return summary;
}

}  // namespace data
