// End-to-end tests of ssd_detect (with ssd_data, ssd_train and ssd_eval): the built
// programs run through test::run_app, weights made either by a short ssd_train run or by
// app::save_checkpoint on a freshly initialised tiny_ssd.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "common/checkpoint.h"
#include "data/draw.h"
#include "data/image.h"
#include "engine/tensor.h"
#include "models/detection_model.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The programs run here use OpenMP. On a shared, oversubscribed machine its default
// spin-waiting makes a short ssd_train run several times slower (measured 138 s against
// 20 s for the acceptance run at load 5 on 2 cores); a value already set wins.
const bool kPassiveOpenMp = [] { return ::setenv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0; }();

// A fresh folder under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("ssd_detect_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::string q(const std::string& s) { return "'" + s + "'"; }

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

json read_json(const std::string& path) {
  INFO("reading " << path);
  REQUIRE(fs::exists(path));
  return json::parse(read_text(path));
}

// A deterministic test picture: smooth gradients plus a few filled rectangles.
data::Image pattern_image(int w, int h, uint32_t seed) {
  data::Image img;
  img.width = w;
  img.height = h;
  img.rgb.resize(static_cast<size_t>(w) * h * 3);
  std::mt19937 rng(seed);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &img.rgb[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = static_cast<uint8_t>(40 + 150 * x / std::max(1, w - 1));
      p[1] = static_cast<uint8_t>(60 + 120 * y / std::max(1, h - 1));
      p[2] = static_cast<uint8_t>(90 + (x * 7 + y * 3 + static_cast<int>(seed)) % 50);
    }
  for (int k = 0; k < 3; ++k) {
    const int x0 = static_cast<int>(rng() % static_cast<uint32_t>(w / 2)), y0 = static_cast<int>(rng() % static_cast<uint32_t>(h / 2));
    const int x1 = std::min(w - 1, x0 + 10 + static_cast<int>(rng() % static_cast<uint32_t>(w / 2)));
    const int y1 = std::min(h - 1, y0 + 10 + static_cast<int>(rng() % static_cast<uint32_t>(h / 2)));
    const uint8_t c[3] = {static_cast<uint8_t>(rng() % 256), static_cast<uint8_t>(rng() % 256),
                          static_cast<uint8_t>(rng() % 256)};
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x)
        for (int ch = 0; ch < 3; ++ch) img.rgb[(static_cast<size_t>(y) * w + x) * 3 + ch] = c[ch];
  }
  return img;
}

data::Image mirrored(const data::Image& img) {
  data::Image out = img;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x)
      for (int c = 0; c < 3; ++c)
        out.rgb[(static_cast<size_t>(y) * img.width + x) * 3 + c] = img.at(img.width - 1 - x, y, c);
  return out;
}

const std::vector<std::string> kNames = {"circle", "square", "triangle"};

// Weights of a freshly initialised tiny_ssd (input 128, 3 classes) with metadata.
void write_untrained_weights(const std::string& path, uint64_t seed, int64_t num_classes = 4) {
  eng::manual_seed(seed);
  models::ModelConfig mc;
  mc.arch = "tiny_ssd";
  mc.num_classes = num_classes;
  mc.anchor_preset = "coco";
  mc.input_size = 128;
  auto model = models::create_model(mc);
  app::ClassList classes;
  for (int64_t k = 1; k < num_classes; ++k) {
    classes.names.push_back(k <= 3 ? kNames[static_cast<size_t>(k - 1)] : "class" + std::to_string(k));
    classes.category_ids.push_back(static_cast<int>(k));
  }
  app::save_checkpoint(path, *model, nullptr, app::TrainState{}, classes);
  REQUIRE(fs::exists(path));
}

test::AppRun detect(const std::string& args) {
  INFO("ssd_detect " << args);
  test::AppRun r = test::run_app("ssd_detect", args);
  return r;
}

struct Det {
  int category_id;
  double score, x1, y1, x2, y2;
};

std::vector<Det> detections_of(const json& image) {
  std::vector<Det> out;
  for (const json& d : image.at("detections")) {
    const auto& b = d.at("bbox");
    const double x = b[0], y = b[1], w = b[2], h = b[3];
    out.push_back({d.at("category_id").get<int>(), d.at("score").get<double>(), x, y, x + w, y + h});
  }
  return out;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

TEST_CASE("ssd_detect: detections evaluated by ssd_eval reproduce ssd_train's mAP", "[apps][ssd_detect]") {
  const double t0 = now_s();
  TempDir tmp("acc");
  const std::string D = tmp / "data", R = tmp / "run", O = tmp / "det";
  {
    auto r = test::run_app("ssd_data", "synth --out " + q(D) + " --n 64 --val 24 --seed 3 --size 160x120");
    INFO("ssd_data stdout:\n" << r.out << "stderr:\n" << r.err);
    REQUIRE(r.status == 0);
  }
  {
    auto r = test::run_app("ssd_train", "--arch tiny_ssd --data " + q(D) + " --val " + q(D) +
                                            " --input-size 128 --batch 8 --iters 40 --eval-every 0 --out " +
                                            q(R) + " --workers 1");
    INFO("ssd_train stdout:\n" << r.out << "stderr:\n" << r.err);
    REQUIRE(r.signal == 0);
    REQUIRE(r.status == 0);
  }
  const double t_train = now_s();
  json train_eval;
  {
    std::ifstream f(R + "/metrics.jsonl");
    REQUIRE(f.good());
    for (std::string line; std::getline(f, line);) {
      if (line.empty()) continue;
      json j = json::parse(line);
      if (j.contains("map_voc07")) train_eval = j;
    }
  }
  REQUIRE(train_eval.is_object());
  REQUIRE(train_eval.contains("map_voc_area"));
  REQUIRE(train_eval.contains("map_coco"));
  REQUIRE(train_eval.at("eval_images").get<int>() == 24);

  // The held-out images, as an @list.
  std::vector<std::string> ids;
  {
    std::ifstream f(D + "/ImageSets/Main/test.txt");
    for (std::string id; std::getline(f, id);)
      if (!id.empty()) ids.push_back(id);
  }
  REQUIRE(ids.size() == 24);
  const std::string list = tmp / "test_list.txt";
  {
    std::ofstream f(list);
    for (const auto& id : ids) f << D << "/JPEGImages/" << id << ".jpg\n";
  }
  {
    auto r = detect("--weights " + q(R + "/last.safetensors") + " --input " + q("@" + list) + " --out " + q(O));
    INFO("stdout:\n" << r.out << "stderr:\n" << r.err);
    REQUIRE(r.signal == 0);
    REQUIRE(r.status == 0);
    REQUIRE(r.err.empty());
  }
  const json dets = read_json(O + "/detections.json");
  REQUIRE(dets.at("images").size() == 24);
  auto e = test::run_app("ssd_eval", "--gt " + q(D) + " --det " + q(O + "/detections.json") + " --json");
  INFO("ssd_eval stdout:\n" << e.out << "stderr:\n" << e.err);
  REQUIRE(e.status == 0);
  const json detect_eval = json::parse(e.out);
  for (const char* key : {"map_voc07", "map_voc_area", "map_coco"}) {
    const double a = train_eval.at(key), b = detect_eval.at(key);
    std::printf("[ssd_detect acceptance] %-13s ssd_train %.12f  ssd_detect+ssd_eval %.12f  diff %.3g\n", key, a, b,
                std::fabs(a - b));
    CHECK(std::fabs(a - b) < 0.005);
    CHECK(std::fabs(a - b) < 1e-6);  // the same detections: equal up to float noise
  }
  CHECK(detect_eval.at("map_coco").get<double>() > 0);
  CHECK(detect_eval.at("map_voc07").get<double>() > 0);
  std::printf("[ssd_detect acceptance] data+train %.1f s, detect+eval %.1f s\n", t_train - t0, now_s() - t_train);
}

TEST_CASE("ssd_detect: unreadable inputs are reported and skipped, exit 1", "[apps][ssd_detect]") {
  TempDir tmp("bad");
  const std::string W = tmp / "w.safetensors", O = tmp / "out";
  write_untrained_weights(W, 11);
  const std::string good_png = tmp / "good_a.png", good_jpg = tmp / "good_b.jpg";
  data::save_png(good_png, pattern_image(96, 80, 1));
  data::save_jpg(good_jpg, pattern_image(120, 90, 2));
  const std::string trunc = tmp / "truncated.jpg", noise = tmp / "noise.png", empty = tmp / "empty.jpg",
                    text = tmp / "notes.txt", missing = tmp / "missing.png";
  {
    const std::string full = read_text(good_jpg);
    REQUIRE(full.size() > 200);
    write_text(trunc, full.substr(0, full.size() / 3));
    std::mt19937 rng(5);
    std::string bytes(700, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
    write_text(noise, bytes);
    write_text(empty, "");
    write_text(text, "this is not an image\n");
  }
  const std::vector<std::string> bad = {trunc, noise, empty, text, missing};
  std::string args = "--weights " + q(W) + " --out " + q(O) + " --batch 2 --input";
  for (const auto& p : {good_png, trunc, noise, good_jpg, empty, text, missing}) args += " " + q(p);
  auto r = detect(args);
  INFO("stdout:\n" << r.out << "stderr:\n" << r.err);
  REQUIRE(r.signal == 0);
  CHECK(r.status == 1);
  const auto err_lines = test::split_lines(r.err);
  for (const auto& b : bad) {
    int n = 0;
    for (const auto& l : err_lines) n += contains(l, b) ? 1 : 0;
    INFO("bad input " << b);
    CHECK(n == 1);
  }
  CHECK(err_lines.size() == bad.size());
  // The good ones: detections.json entries and annotated images.
  const json dets = read_json(O + "/detections.json");
  REQUIRE(dets.at("images").size() == 2);
  CHECK(dets["images"][0].at("file") == good_png);
  CHECK(dets["images"][0].at("width") == 96);
  CHECK(dets["images"][0].at("height") == 80);
  CHECK(dets["images"][1].at("file") == good_jpg);
  CHECK(dets["images"][1].at("width") == 120);
  CHECK(dets["images"][1].at("height") == 90);
  for (const auto& [path, w, h] : {std::tuple<std::string, int, int>{O + "/good_a.png", 96, 80},
                                   std::tuple<std::string, int, int>{O + "/good_b.jpg", 120, 90}}) {
    INFO(path);
    REQUIRE(fs::exists(path));
    const data::Image img = data::load_image(path);
    CHECK(img.width == w);
    CHECK(img.height == h);
  }
  // Only the two good images (and detections.json) in the output folder.
  int files = 0;
  for (const auto& entry : fs::directory_iterator(O)) {
    (void)entry;
    ++files;
  }
  CHECK(files == 3);
  CHECK(contains(r.out, "5 inputs failed"));
}

TEST_CASE("ssd_detect: the drawn box outline sits at the detected coordinates", "[apps][ssd_detect]") {
  TempDir tmp("draw");
  const std::string W = tmp / "w.safetensors", O = tmp / "out", in = tmp / "scene.png";
  write_untrained_weights(W, 7);
  const data::Image src = pattern_image(200, 150, 4);
  data::save_png(in, src);
  auto r = detect("--weights " + q(W) + " --input " + q(in) + " --out " + q(O) +
                  " --score-thresh 0 --draw-thresh 0 --topk 1");
  INFO("stdout:\n" << r.out << "stderr:\n" << r.err);
  REQUIRE(r.status == 0);
  CHECK(contains(r.out, "1 detections, 1 drawn"));
  const json dets = read_json(O + "/detections.json");
  REQUIRE(dets.at("images").size() == 1);
  const json& d = dets["images"][0]["detections"];
  REQUIRE(d.size() == 1);
  const int label = d[0].at("category_id").get<int>() - 1;
  const std::string name = d[0].at("label");
  CHECK(name == kNames.at(static_cast<size_t>(label)));
  const double score = d[0].at("score");
  const auto& b = d[0].at("bbox");
  const double bx = b[0], by = b[1], bw = b[2], bh = b[3];
  const long long x0 = std::llround(bx), y0 = std::llround(by), x1 = std::llround(bx + bw), y1 = std::llround(by + bh);
  INFO("box pixels " << x0 << "," << y0 << " - " << x1 << "," << y1 << ", label " << label << ", score " << score);

  const data::Image out = data::load_image(O + "/scene.png");
  REQUIRE(out.width == src.width);
  REQUIRE(out.height == src.height);
  const data::Rgb colour = data::class_colour(label);
  const int t = data::detection_thickness(out);
  // The caption tag, placed as data::draw_detection places it.
  char cap[64];
  std::snprintf(cap, sizeof cap, "%s %.2f", name.c_str(), score);
  const int s = data::detection_text_scale(out);
  const long long tag_w = data::text_width(cap, s) + 3LL * s, tag_h = data::text_height(s) + 2LL * s;
  long long tag_x = x0;
  if (tag_x + tag_w > out.width) tag_x = out.width - tag_w;
  tag_x = std::max(tag_x, 0LL);
  const long long tag_y = y0 - tag_h >= 0 ? y0 - tag_h : std::max(y0, 0LL);
  auto in_tag = [&](long long x, long long y) {
    return x >= tag_x && x < tag_x + tag_w && y >= tag_y && y < tag_y + tag_h;
  };
  auto pixel = [](const data::Image& img, long long x, long long y) {
    return data::Rgb{img.at(static_cast<int>(x), static_cast<int>(y), 0), img.at(static_cast<int>(x), static_cast<int>(y), 1),
                     img.at(static_cast<int>(x), static_cast<int>(y), 2)};
  };
  auto inside = [&](long long x, long long y) { return x >= 0 && y >= 0 && x < out.width && y < out.height; };
  int checked = 0, wrong = 0;
  auto expect_outline = [&](long long x, long long y) {
    if (!inside(x, y) || in_tag(x, y)) return;
    ++checked;
    if (pixel(out, x, y) != colour) ++wrong;
  };
  for (long long y = y0; y <= y1; ++y)  // left edge, full thickness
    for (long long x = x0; x < std::min(x0 + t, x1 + 1); ++x) expect_outline(x, y);
  for (long long y = std::max(y1 - t + 1, y0); y <= y1; ++y)  // bottom edge
    for (long long x = x0; x <= x1; ++x) expect_outline(x, y);
  INFO("outline pixels checked " << checked << ", wrong " << wrong);
  CHECK(checked >= 20);
  CHECK(wrong == 0);
  // The column / row just outside the left and bottom edges is not part of the outline.
  if (inside(x0 - 1, (y0 + y1) / 2) && !in_tag(x0 - 1, (y0 + y1) / 2))
    CHECK(pixel(out, x0 - 1, (y0 + y1) / 2) == pixel(src, x0 - 1, (y0 + y1) / 2));
  if (inside((x0 + x1) / 2, y1 + 1)) CHECK(pixel(out, (x0 + x1) / 2, y1 + 1) == pixel(src, (x0 + x1) / 2, y1 + 1));
  // Well inside the box: untouched.
  const long long cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  REQUIRE(cx - x0 > t + 1);
  REQUIRE(cy - y0 > t + 1);
  REQUIRE(inside(cx, cy));
  REQUIRE(!in_tag(cx, cy));
  CHECK(pixel(out, cx, cy) == pixel(src, cx, cy));
  // The tag is filled with the class colour where no glyph is (its padding column).
  if (inside(tag_x, tag_y + tag_h / 2)) CHECK(pixel(out, tag_x, tag_y + tag_h / 2) == colour);
}

TEST_CASE("ssd_detect: bad weights are one error line naming the file, exit 1", "[apps][ssd_detect]") {
  TempDir tmp("weights");
  const std::string W = tmp / "w.safetensors", in = tmp / "img.png", O = tmp / "out";
  write_untrained_weights(W, 3);
  data::save_png(in, pattern_image(64, 64, 9));
  const std::string missing = tmp / "nope.safetensors", junk = tmp / "junk.safetensors", classes = tmp / "two.txt";
  write_text(junk, "this is not a safetensors file, just some text that is long enough\n");
  write_text(classes, "circle\nsquare\n");
  struct Case {
    std::string what, args, named;
  };
  const std::vector<Case> cases = {
      {"missing weights", "--weights " + q(missing), missing},
      {"not safetensors", "--weights " + q(junk), junk},
      {"another architecture", "--weights " + q(W) + " --arch ssd300_vgg16", W},
      {"another class count", "--weights " + q(W) + " --classes " + q(classes), classes},
  };
  for (const Case& c : cases) {
    auto r = detect(c.args + " --input " + q(in) + " --out " + q(O));
    INFO(c.what << "\nstdout:\n" << r.out << "stderr:\n" << r.err);
    CHECK(r.signal == 0);
    CHECK(r.status == 1);
    const auto lines = test::split_lines(r.err);
    REQUIRE(lines.size() == 1);
    CHECK(contains(lines[0], c.named));
    CHECK(lines[0].rfind("ssd_detect: ", 0) == 0);
    CHECK(!fs::exists(O + "/detections.json"));
  }
  // The same weights with a matching class file work.
  write_text(classes, "a\nb\nc\n");
  auto ok = detect("--weights " + q(W) + " --classes " + q(classes) + " --input " + q(in) + " --out " + q(O));
  INFO("stdout:\n" << ok.out << "stderr:\n" << ok.err);
  CHECK(ok.status == 0);
  const json dets = read_json(O + "/detections.json");
  REQUIRE(dets["images"].size() == 1);
  REQUIRE(!dets["images"][0]["detections"].empty());
  for (const json& d : dets["images"][0]["detections"]) {
    const int id = d.at("category_id");
    CHECK(d.at("label") == std::string(1, static_cast<char>('a' + id - 1)));
  }
}

// The whole program on the device (pinned input batches, the model, the fused CUDA
// post-processing, results copied back) gives the CPU's detections.
TEST_CASE("ssd_detect: --device cuda gives the cpu's detections", "[apps][ssd_detect][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  TempDir tmp("cuda");
  const std::string W = tmp / "w.safetensors";
  write_untrained_weights(W, 9);
  const std::string A = tmp / "a.png", B = tmp / "b.png";
  data::save_png(A, pattern_image(128, 128, 21));
  data::save_png(B, pattern_image(150, 110, 22));
  for (const char* device : {"cpu", "cuda"}) {
    auto r = detect("--weights " + q(W) + " --input " + q(A) + " " + q(B) + " --out " + q(tmp / device) +
                    " --device " + device + " --precision fp32 --batch 2");
    INFO(device << " stdout:\n" << r.out << "stderr:\n" << r.err);
    REQUIRE(r.status == 0);
  }
  const json on_cpu = read_json(tmp / "cpu/detections.json"), on_cuda = read_json(tmp / "cuda/detections.json");
  REQUIRE(on_cpu["images"].size() == 2);
  REQUIRE(on_cuda["images"].size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    const auto c = detections_of(on_cpu["images"][i]), g = detections_of(on_cuda["images"][i]);
    INFO("image " << i);
    REQUIRE(!c.empty());
    REQUIRE(g.size() == c.size());
    for (size_t k = 0; k < c.size(); ++k) {
      INFO("detection " << k);
      CHECK(g[k].category_id == c[k].category_id);
      CHECK(g[k].score == Approx(c[k].score).epsilon(1e-3).margin(1e-5));
      CHECK(g[k].x1 == Approx(c[k].x1).margin(0.05));
      CHECK(g[k].y1 == Approx(c[k].y1).margin(0.05));
      CHECK(g[k].x2 == Approx(c[k].x2).margin(0.05));
      CHECK(g[k].y2 == Approx(c[k].y2).margin(0.05));
    }
  }
}

// --precision bf16 (BF16 forward, FP32 post-processing) runs end to end. The weights are
// untrained, so hundreds of near-equal scores (about 0.26) compete: bf16 rounding reorders
// them and the kept set is not comparable box by box (the numerics of the bf16 forward are
// checked by the model and training tests). What must hold: the same images and number of
// detections as the CPU, the best score within bf16 precision of the CPU's, valid classes and
// boxes inside the image.
TEST_CASE("ssd_detect: --precision bf16 on cuda runs and agrees with the cpu", "[apps][ssd_detect][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  TempDir tmp("cuda_bf16");
  const std::string W = tmp / "w.safetensors";
  write_untrained_weights(W, 9);
  const std::string A = tmp / "a.png";
  data::save_png(A, pattern_image(128, 96, 21));
  for (const char* device : {"cpu", "cuda"}) {
    auto r = detect("--weights " + q(W) + " --input " + q(A) + " --out " + q(tmp / device) + " --device " + device +
                    (std::string(device) == "cuda" ? " --precision bf16" : ""));
    INFO(device << " stdout:\n" << r.out << "stderr:\n" << r.err);
    REQUIRE(r.status == 0);
  }
  const json on_cpu = read_json(tmp / "cpu/detections.json"), on_cuda = read_json(tmp / "cuda/detections.json");
  REQUIRE(on_cuda["images"].size() == 1);
  const auto c = detections_of(on_cpu["images"][0]), g = detections_of(on_cuda["images"][0]);
  REQUIRE(!c.empty());
  CHECK(g.size() == c.size());
  REQUIRE(!g.empty());
  CHECK(g[0].score == Approx(c[0].score).epsilon(2e-2));
  for (const Det& d : g) {
    CHECK(d.category_id >= 1);
    CHECK(d.category_id <= 3);
    CHECK(d.x1 >= 0);
    CHECK(d.y1 >= 0);
    CHECK(d.x2 <= 128);
    CHECK(d.y2 <= 96);
  }
}

TEST_CASE("ssd_detect: multi-scale and mirrored testing", "[apps][ssd_detect]") {
  TempDir tmp("tta");
  const std::string W = tmp / "w.safetensors";
  write_untrained_weights(W, 5);
  // 128x128 = the model's input: the mirrored image's tensor is exactly the mirror of the
  // original's, so the two runs below see the same passes.
  const data::Image img = pattern_image(128, 128, 12);
  const std::string I = tmp / "I.png", M = tmp / "I_mirror.png", wide = tmp / "wide.png";
  data::save_png(I, img);
  data::save_png(M, mirrored(img));
  data::save_png(wide, pattern_image(176, 120, 13));

  SECTION("--scales 128,160 --flip gives detections") {
    auto r = detect("--weights " + q(W) + " --input " + q(I) + " " + q(wide) + " --out " + q(tmp / "ms") +
                    " --scales 128,160 --flip");
    INFO("stdout:\n" << r.out << "stderr:\n" << r.err);
    REQUIRE(r.status == 0);
    const json dets = read_json(tmp / "ms/detections.json");
    REQUIRE(dets["images"].size() == 2);
    for (const json& im : dets["images"]) {
      const auto d = detections_of(im);
      CHECK(!d.empty());
      CHECK(d.size() <= 200);
      // Boxes are clipped to the input in every pass, so they lie inside the original image.
      const double w = im["width"].get<double>(), h = im["height"].get<double>();
      int bad = 0;
      for (const Det& x : d)
        bad += (x.score >= 0.01 && x.score <= 1 && x.x1 <= x.x2 && x.y1 <= x.y2 && x.x1 >= -1e-3 &&
                x.y1 >= -1e-3 && x.x2 <= w + 1e-3 && x.y2 <= h + 1e-3)
                   ? 0
                   : 1;
      CHECK(bad == 0);
      // sorted best first
      CHECK(std::is_sorted(d.begin(), d.end(), [](const Det& p, const Det& r) { return p.score > r.score; }));
    }
  }

  SECTION("--flip is mirror-symmetric") {
    auto a = detect("--weights " + q(W) + " --input " + q(I) + " --out " + q(tmp / "fa") + " --flip");
    auto b = detect("--weights " + q(W) + " --input " + q(M) + " --out " + q(tmp / "fb") + " --flip");
    INFO("stdout:\n" << a.out << b.out << "stderr:\n" << a.err << b.err);
    REQUIRE(a.status == 0);
    REQUIRE(b.status == 0);
    auto da = detections_of(read_json(tmp / "fa/detections.json")["images"][0]);
    auto db = detections_of(read_json(tmp / "fb/detections.json")["images"][0]);
    const double w = img.width;
    for (Det& d : db) {
      const double x1 = w - d.x2, x2 = w - d.x1;
      d.x1 = x1;
      d.x2 = x2;
    }
    auto order = [](const Det& p, const Det& r) {
      if (p.category_id != r.category_id) return p.category_id < r.category_id;
      if (std::fabs(p.score - r.score) > 1e-9) return p.score > r.score;
      if (std::fabs(p.x1 - r.x1) > 1e-2) return p.x1 < r.x1;
      return p.y1 < r.y1;
    };
    std::sort(da.begin(), da.end(), order);
    std::sort(db.begin(), db.end(), order);
    REQUIRE(!da.empty());
    REQUIRE(da.size() == db.size());
    int bad = 0;
    for (size_t i = 0; i < da.size(); ++i) {
      const Det& p = da[i];
      const Det& r = db[i];
      const bool same = p.category_id == r.category_id && std::fabs(p.score - r.score) <= 1e-6 &&
                        std::fabs(p.x1 - r.x1) <= 1e-3 && std::fabs(p.x2 - r.x2) <= 1e-3 &&
                        std::fabs(p.y1 - r.y1) <= 1e-3 && std::fabs(p.y2 - r.y2) <= 1e-3;
      if (!same && bad++ < 5)
        UNSCOPED_INFO("#" << i << ": " << p.category_id << " " << p.score << " [" << p.x1 << "," << p.y1 << ","
                          << p.x2 << "," << p.y2 << "] vs " << r.category_id << " " << r.score << " [" << r.x1 << ","
                          << r.y1 << "," << r.x2 << "," << r.y2 << "]");
    }
    CHECK(bad == 0);
  }

  SECTION("--scales with the model's size is the plain run") {
    const std::string in = q(I) + " " + q(wide);
    auto a = detect("--weights " + q(W) + " --input " + in + " --out " + q(tmp / "plain"));
    auto b = detect("--weights " + q(W) + " --input " + in + " --out " + q(tmp / "s128") + " --scales 128");
    REQUIRE(a.status == 0);
    REQUIRE(b.status == 0);
    const std::string ja = read_text(tmp / "plain/detections.json"), jb = read_text(tmp / "s128/detections.json");
    REQUIRE(!ja.empty());
    CHECK(ja == jb);
    CHECK(read_text(tmp / "plain/I.png") == read_text(tmp / "s128/I.png"));
    // and a different single scale is not
    auto c = detect("--weights " + q(W) + " --input " + in + " --out " + q(tmp / "s160") + " --scales 160");
    REQUIRE(c.status == 0);
    CHECK(read_text(tmp / "s160/detections.json") != ja);
  }
}

TEST_CASE("ssd_detect: folders and @lists, summary and throughput lines", "[apps][ssd_detect]") {
  TempDir tmp("inputs");
  const std::string W = tmp / "w.safetensors";
  write_untrained_weights(W, 8);
  fs::create_directories(tmp / "imgs");
  fs::create_directories(tmp / "more");
  data::save_png(tmp / "imgs/a.png", pattern_image(80, 64, 1));
  data::save_jpg(tmp / "imgs/b.jpg", pattern_image(64, 80, 2));
  data::save_png(tmp / "imgs/c.PNG", pattern_image(100, 50, 3));
  write_text(tmp / "imgs/readme.txt", "not an image, skipped by the folder scan\n");
  data::save_jpg(tmp / "more/d.jpeg", pattern_image(70, 70, 4));
  data::save_png(tmp / "more/e.png", pattern_image(90, 60, 5));
  write_text(tmp / "more/list.txt", "# the list\n\nd.jpeg\n  e.png  \n" + (tmp / "imgs/a.png") + "\n");
  const std::string O = tmp / "out";
  auto r = detect("--weights " + q(W) + " --input " + q(tmp / "imgs") + " " + q("@" + (tmp / "more/list.txt")) +
                  " --out " + q(O) + " --batch 2 --workers 2");
  INFO("stdout:\n" << r.out << "stderr:\n" << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  const auto lines = test::split_lines(r.out);
  // a.png appears twice (folder and list) and is kept once: 5 images.
  const std::vector<std::pair<std::string, std::string>> expect = {
      {"imgs/a.png", "80x64"}, {"imgs/b.jpg", "64x80"}, {"imgs/c.PNG", "100x50"},
      {"more/d.jpeg", "70x70"}, {"more/e.png", "90x60"}};
  REQUIRE(lines.size() == expect.size() + 2);
  for (size_t i = 0; i < expect.size(); ++i) {
    INFO(lines[i]);
    CHECK(contains(lines[i], expect[i].first + ": " + expect[i].second + ", "));
    CHECK(contains(lines[i], " detections, "));
    CHECK(contains(lines[i], " drawn"));
    CHECK(contains(lines[i], " -> " + O + "/"));
  }
  const std::string& tp = lines[expect.size()];
  CHECK(tp.rfind("5 images in ", 0) == 0);
  CHECK(contains(tp, "images/s"));
  CHECK(contains(tp, "p50 "));
  CHECK(contains(tp, "p90 "));
  CHECK(contains(tp, "p99 "));
  CHECK(contains(lines.back(), "detections.json (5 images)"));
  const json dets = read_json(O + "/detections.json");
  REQUIRE(dets["images"].size() == 5);
  for (const char* f : {"a.png", "b.jpg", "c.png", "d.jpg", "e.png"}) {
    INFO(f);
    CHECK(fs::exists(fs::path(O) / f));
  }
}

// --cuda-graph: the forward replayed from one CUDA graph per input size (two test scales, a
// mirrored pass, three images) gives exactly the detections of the eager CUDA forward, in
// FP32 and under BF16 autocast.
TEST_CASE("ssd_detect: --cuda-graph gives the eager cuda detections", "[apps][ssd_detect][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  TempDir tmp("cuda_graph");
  const std::string W = tmp / "w.safetensors";
  write_untrained_weights(W, 9);
  const std::string A = tmp / "a.png", B = tmp / "b.png", C = tmp / "c.png";
  data::save_png(A, pattern_image(128, 128, 21));
  data::save_png(B, pattern_image(150, 110, 22));
  data::save_png(C, pattern_image(90, 120, 23));
  for (const std::string precision : {"fp32", "bf16"}) {
    INFO("precision " << precision);
    for (const std::string mode : {"eager", "graph"}) {
      const bool graph = mode == "graph";
      auto r = detect("--weights " + q(W) + " --input " + q(A) + " " + q(B) + " " + q(C) + " --out " +
                      q(tmp / (precision + mode)) + " --device cuda --precision " + precision +
                      " --batch 1 --scales 64,96 --flip" + (graph ? " --cuda-graph" : ""));
      INFO(mode << " stdout:\n" << r.out << "stderr:\n" << r.err);
      REQUIRE(r.status == 0);
      CHECK(contains(r.out, "cuda graphs: 2 captured") == graph);
    }
    const json eager = read_json(tmp / (precision + "eager/detections.json"));
    const json graphed = read_json(tmp / (precision + "graph/detections.json"));
    REQUIRE(eager["images"].size() == 3);
    REQUIRE(graphed["images"].size() == 3);
    size_t total = 0;
    for (size_t i = 0; i < 3; ++i) {
      INFO("image " << i);
      CHECK(graphed["images"][i]["detections"] == eager["images"][i]["detections"]);  // identical, not close
      total += eager["images"][i]["detections"].size();
    }
    CHECK(total > 0);
  }
}

TEST_CASE("ssd_detect: --cuda-graph is refused on the cpu and above batch 1 with one line", "[apps][ssd_detect]") {
  TempDir tmp("cuda_graph_refused");
  const std::string W = tmp / "w.safetensors";
  write_untrained_weights(W, 9);
  const std::string A = tmp / "a.png";
  data::save_png(A, pattern_image(64, 64, 21));
  auto r = detect("--weights " + q(W) + " --input " + q(A) + " --out " + q(tmp / "o") + " --device cpu --cuda-graph");
  CHECK(r.status == 1);
  CHECK(contains(r.err, "--cuda-graph needs --device cuda"));
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK_FALSE(fs::exists(tmp / "o/detections.json"));
  if (eng::cuda::available()) {
    r = detect("--weights " + q(W) + " --input " + q(A) + " --out " + q(tmp / "o") +
               " --device cuda --batch 4 --cuda-graph");
    CHECK(r.status == 1);
    CHECK(contains(r.err, "--cuda-graph runs at --batch 1 (got --batch 4)"));
  }
}
