// Writes the fuzz seed corpora, tests/fuzz/corpus/<target>/, with the project's own writers
// (data::save_png / save_jpg, the synthetic VOC and COCO writer, write_detections_json,
// write_coco_results / write_coco_image_ids,
// eng::io::save_safetensors, app::save_checkpoint). Deterministic: the same program writes the
// same files. Usage: make_corpus <corpus dir>   (scripts/fuzz.sh --make-corpus runs it).
// Every seed is small (a few KB) so that libFuzzer mutates it quickly.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/checkpoint.h"
#include "data/coco_results.h"
#include "data/detections_json.h"
#include "data/image.h"
#include "data/synth.h"
#include "engine/dtype.h"
#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "engine/optim.h"
#include "engine/tensor.h"
#include "models/detection_model.h"
#include "models/weights.h"

namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  ENGINE_CHECK(f.good(), path.string(), ": cannot write");
}

std::string read_text(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void le(std::string& out, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// An uncompressed 24-bit BMP (BITMAPINFOHEADER, bottom-up rows padded to 4 bytes): the
// project reads BMP but has no BMP writer.
std::string bmp_bytes(const data::Image& img) {
  const uint32_t row = (img.width * 3 + 3) & ~3u;
  const uint32_t pixels = row * img.height;
  std::string b = "BM";
  le(b, 54 + pixels, 4);
  le(b, 0, 4);
  le(b, 54, 4);
  le(b, 40, 4);
  le(b, img.width, 4);
  le(b, img.height, 4);
  le(b, 1, 2);
  le(b, 24, 2);
  le(b, 0, 4);  // BI_RGB
  le(b, pixels, 4);
  le(b, 2835, 4);
  le(b, 2835, 4);
  le(b, 0, 4);
  le(b, 0, 4);
  for (int y = img.height - 1; y >= 0; --y) {
    std::string r;
    for (int x = 0; x < img.width; ++x)
      for (int c = 2; c >= 0; --c) r.push_back(static_cast<char>(img.at(x, y, c)));  // BGR
    r.resize(row, '\0');
    b += r;
  }
  return b;
}

data::Image scene(int w, int h, uint64_t seed) {
  data::SynthOptions o;
  o.width = w;
  o.height = h;
  o.num_classes = 3;
  o.min_objects = 1;
  o.max_objects = 2;
  return data::render_scene(o, seed).image;
}

void images(const fs::path& dir) {
  const data::Image a = scene(32, 32, 1), b = scene(48, 32, 2);
  data::Image tiny;
  tiny.width = 3;
  tiny.height = 2;
  tiny.rgb = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90};
  data::save_jpg((dir / "jpg_scene_q90").string(), a, 90);
  data::save_jpg((dir / "jpg_wide_q40").string(), b, 40);
  data::save_jpg((dir / "jpg_tiny").string(), tiny, 75);
  data::save_png((dir / "png_scene").string(), a);
  data::save_png((dir / "png_tiny").string(), tiny);
  write_text(dir / "bmp_scene", bmp_bytes(a));
  write_text(dir / "bmp_tiny", bmp_bytes(tiny));
}

// Synthetic VOC and COCO sets of two 32x32 images each; the annotation files are the seeds.
void annotations(const fs::path& voc, const fs::path& coco, const fs::path& scratch) {
  data::SynthOptions o;
  o.width = 40;
  o.height = 32;
  o.num_classes = 4;
  o.min_objects = 1;
  o.max_objects = 3;
  data::write_synth_dataset((scratch / "voc").string(), data::SynthFormat::Voc, 2, 1, 7, o);
  for (const char* id : {"000001", "000002", "000003"})
    fs::copy_file(scratch / "voc" / "Annotations" / (std::string(id) + ".xml"), voc / (std::string("synth_") + id + ".xml"),
                  fs::copy_options::overwrite_existing);
  // VOC's optional fields, which the generator does not write: difficult, truncated, a
  // fractional coordinate, a VOC class.
  write_text(voc / "fields.xml",
             "<annotation><filename>x.jpg</filename><size><width>64</width><height>48</height><depth>3</depth></size>"
             "<object><name>dog</name><difficult>1</difficult><truncated>0</truncated>"
             "<bndbox><xmin>1.5</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>"
             "<object><name>circle</name><difficult>0</difficult>"
             "<bndbox><xmin>10</xmin><ymin>10</ymin><xmax>64</xmax><ymax>48</ymax></bndbox></object></annotation>\n");
  data::write_synth_dataset((scratch / "coco").string(), data::SynthFormat::Coco, 2, 1, 7, o);
  fs::copy_file(scratch / "coco" / "instances_trainval.json", coco / "synth_trainval.json",
                fs::copy_options::overwrite_existing);
  fs::copy_file(scratch / "coco" / "instances_test.json", coco / "synth_test.json", fs::copy_options::overwrite_existing);
  // Optional fields: area, iscrowd, a float bbox, an image without annotations.
  write_text(coco / "fields.json",
             "{\"images\":[{\"id\":1,\"file_name\":\"a/b.jpg\",\"width\":64,\"height\":48},"
             "{\"id\":2,\"file_name\":\"c.jpg\",\"width\":10,\"height\":10}],"
             "\"annotations\":[{\"id\":5,\"image_id\":1,\"category_id\":3,\"bbox\":[1.5,2,20.25,30],"
             "\"area\":600.5,\"iscrowd\":1},{\"id\":6,\"image_id\":1,\"category_id\":7,\"bbox\":[0,0,64,48]}],"
             "\"categories\":[{\"id\":3,\"name\":\"cat\"},{\"id\":7,\"name\":\"dog\"}]}\n");
}

void detections(const fs::path& dir) {
  data::ImageDetections a;
  a.file = "photos/dog.jpg";
  a.width = 640;
  a.height = 480;
  a.detections.push_back({12, "dog", 0.875, {10.5, 20, 200, 300.25}});
  a.detections.push_back({3, "cat", 1e-3, {0, 0, 640, 480}});
  data::ImageDetections b;
  b.file = "empty.png";
  b.width = 32;
  b.height = 32;
  data::write_detections_json((dir / "two_images.json").string(), {a, b});
  data::write_detections_json((dir / "no_images.json").string(), {});
  data::write_detections_json((dir / "one_image.json").string(), {a});
}

// COCO results lists (data::write_coco_results) and an ids file beside one
// (data::write_coco_image_ids): the harness reads every seed both ways.
void coco_results(const fs::path& dir) {
  const std::vector<data::CocoResult> results = {
      {42, 18, 0.875, {10.5, 20, 210.5, 320.25}},
      {42, 1, 1e-3, {0, 0, 640, 480}},
      {7, 90, 0.5, {3.25, 4, 3.25, 4}},  // an empty box
  };
  data::write_coco_results((dir / "three.json").string(), results);
  data::write_coco_results((dir / "one.json").string(), {results[0]});
  data::write_coco_results((dir / "empty.json").string(), {});
  data::write_coco_image_ids((dir / "three.ids.json").string(),
                             {{7, "photos/cat.jpg", 64, 48}, {42, "dog.jpg", 640, 480}, {43, "none.png", 0, 0}});
}

eng::Tensor tensor_of(eng::DType dt, const eng::Shape& shape) {
  eng::Tensor t = eng::zeros(shape);
  float* p = t.data<float>();
  // Integer targets get small non-negative whole numbers (a cast of -1.0f to u8 is UB).
  const bool whole = !eng::is_floating(dt);
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = whole ? static_cast<float>(i % 2) : 0.25f * static_cast<float>(i) - 1.0f;
  return t.to(dt);
}

void safetensors(const fs::path& dir) {
  using eng::DType;
  eng::io::save_safetensors((dir / "f32_two.safetensors").string(),
                            {{"conv.weight", tensor_of(DType::f32, {2, 1, 2, 2})}, {"conv.bias", tensor_of(DType::f32, {2})}},
                            {{"arch", "tiny_ssd"}, {"note", "seed"}});
  eng::io::save_safetensors((dir / "dtypes.safetensors").string(),
                            {{"a", tensor_of(DType::f64, {3})},
                             {"b", tensor_of(DType::i32, {2, 2})},
                             {"c", tensor_of(DType::i64, {2})},
                             {"d", tensor_of(DType::u8, {5})},
                             {"e", tensor_of(DType::b8, {3})},
                             {"f", tensor_of(DType::bf16, {4})}});
  eng::io::save_safetensors((dir / "scalar_and_empty.safetensors").string(),
                            {{"step", tensor_of(DType::i64, {})}, {"none", tensor_of(DType::f32, {0, 3})}});
  eng::io::save_safetensors((dir / "no_tensors.safetensors").string(), {}, {{"k", "v"}});
  // F16 (read, never written by the project): the header of a 2-element F16 tensor by hand.
  const std::string header = "{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
  std::string f16;
  le(f16, static_cast<uint32_t>(header.size()), 4);
  le(f16, 0, 4);
  f16 += header;
  le(f16, 0x3c00, 2);  // 1.0
  le(f16, 0xc000, 2);  // -2.0
  write_text(dir / "f16.safetensors", f16);
}

// A real checkpoint of the harness's model (tiny_ssd, 3 classes, input 128) is several MB, so
// the seeds keep its metadata (written by app::save_checkpoint) and only a few tensors.
void checkpoints(const fs::path& dir, const fs::path& scratch) {
  models::ModelConfig c;
  c.arch = "tiny_ssd";
  c.num_classes = 3;
  c.input_size = 128;
  auto model = models::create_model(c);
  eng::optim::SGDOptions so;
  so.momentum = 0.9;
  eng::optim::SGD opt(model->named_parameters(), so);
  app::TrainState s;
  s.iteration = 120;
  s.next_batch = 121;
  s.seed = 42;
  s.best_metric = 0.5;
  s.best_iteration = 100;
  s.precision = "bf16";
  app::ClassList classes{{"circle", "square"}, {1, 2}};
  const std::string full = (scratch / "full.safetensors").string();
  app::save_checkpoint(full, *model, &opt, s, classes);
  const eng::io::SafetensorsFile f = eng::io::load_safetensors(full);
  std::vector<std::pair<std::string, eng::Tensor>> few;
  for (const auto& [name, t] : f.tensors)
    if (t.numel() <= 64 && few.size() < 4) few.emplace_back(name, t);
  eng::io::save_safetensors((dir / "training_state.safetensors").string(), few, f.metadata);
  std::map<std::string, std::string> weights_meta = f.metadata;
  for (const char* k : {"iteration", "next_batch", "seed", "optimizer_steps", "best_metric", "best_iteration"})
    weights_meta.erase(k);
  eng::io::save_safetensors((dir / "weights_only.safetensors").string(), {few.front()}, weights_meta);
  std::map<std::string, std::string> no_classes = f.metadata;
  no_classes.erase("classes");
  no_classes.erase("category_ids");
  eng::io::save_safetensors((dir / "no_classes.safetensors").string(), {}, no_classes);
}

void input_lists(const fs::path& dir) {
  write_text(dir / "files.txt", "a.jpg\nphotos/b.png\n");
  write_text(dir / "mixed.txt", "# photos\n\n  photos  \r\na.jpg\na.jpg\n./a.jpg\n@nested.txt\nmissing.jpg\n");
  write_text(dir / "folder.txt", "photos\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus <corpus dir>\n");
    return 2;
  }
  try {
    const fs::path out = argv[1];
    const fs::path scratch = out / ".scratch";
    for (const char* t : {"image", "voc_xml", "coco_json", "detections_json", "coco_results", "safetensors", "checkpoint",
                          "input_list"}) {
      fs::remove_all(out / t);
      fs::create_directories(out / t);
    }
    fs::create_directories(scratch);
    images(out / "image");
    annotations(out / "voc_xml", out / "coco_json", scratch);
    detections(out / "detections_json");
    coco_results(out / "coco_results");
    safetensors(out / "safetensors");
    checkpoints(out / "checkpoint", scratch);
    input_lists(out / "input_list");
    fs::remove_all(scratch);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_corpus: %s\n", e.what());
    return 1;
  }
  return 0;
}
