// The batch loader (data/loader.h): deterministic training stream (any worker count, resume
// with start_batch), epoch structure, boxes into input pixels, multiscale, the evaluation
// pass, option errors, and the acceptance test: 200 randomly corrupted copies of valid images
// and annotations go through load_voc and both loader modes without a crash or hang, every
// bad item reported once and skipped.
//
// Data: one synthetic VOC dataset (40 images of 96x80) written once per process into a
// temporary folder; input sides 64 and 96 keep every test fast.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/synth.h"
#include "engine/error.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

constexpr int kImageW = 96, kImageH = 80;
constexpr int kImages = 40;
constexpr int kClasses = 3;

// A fresh folder, removed with its contents when the object dies.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("test_loader_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

data::SynthOptions synth_options() {
  data::SynthOptions o;
  o.width = kImageW;
  o.height = kImageH;
  o.num_classes = kClasses;
  o.min_objects = 1;
  o.max_objects = 4;
  return o;
}

// The shared clean VOC root (written on first use, removed at exit).
const std::string& clean_root() {
  static TempDir dir;
  static const std::string root = [] {
    data::write_synth_dataset(dir.path.string(), data::SynthFormat::Voc, kImages, 0, 1234, synth_options());
    return dir.path.string();
  }();
  return root;
}

const data::Dataset& clean_dataset() {
  static const data::Dataset d = [] {
    data::VocOptions o;
    o.roots = {clean_root()};
    data::Dataset ds = data::load_voc(o);
    REQUIRE(ds.samples.size() == static_cast<size_t>(kImages));
    REQUIRE(ds.warnings.empty());
    return ds;
  }();
  return d;
}

data::LoaderOptions base_options() {
  data::LoaderOptions o;
  o.batch_size = 4;
  o.workers = 0;
  o.prefetch = 2;
  o.seed = 5;
  o.input_sizes = {64};
  o.mean = {123.675, 116.28, 103.53};
  o.std = {58.395, 57.12, 57.375};
  return o;
}

data::AugmentOptions no_augment() {
  data::AugmentOptions a;
  a.photometric = a.expand = a.crop = a.flip = false;
  return a;
}

std::vector<data::Batch> take(data::Loader& loader, int count) {
  std::vector<data::Batch> out;
  for (int i = 0; i < count; ++i) {
    data::Batch b;
    REQUIRE(loader.next(b));
    out.push_back(std::move(b));
  }
  return out;
}

bool same_tensor(const eng::Tensor& a, const eng::Tensor& b) {
  if (a.sizes() != b.sizes()) return false;
  if (a.numel() == 0) return true;
  return std::memcmp(a.data<float>(), b.data<float>(), static_cast<size_t>(a.numel()) * sizeof(float)) == 0;
}

bool same_objects(const std::vector<std::vector<data::Object>>& a, const std::vector<std::vector<data::Object>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size()) return false;
    for (size_t j = 0; j < a[i].size(); ++j) {
      const data::Object &x = a[i][j], &y = b[i][j];
      if (x.label != y.label || x.difficult != y.difficult || x.box.x1 != y.box.x1 || x.box.y1 != y.box.y1 ||
          x.box.x2 != y.box.x2 || x.box.y2 != y.box.y2)
        return false;
    }
  }
  return true;
}

// "" when the two batches are identical (bit for bit), else what differs.
std::string batch_difference(const data::Batch& a, const data::Batch& b) {
  if (a.number != b.number) return "number";
  if (a.epoch != b.epoch) return "epoch";
  if (a.input_size != b.input_size) return "input size";
  if (a.samples != b.samples) return "samples";
  if (a.widths != b.widths || a.heights != b.heights) return "original sizes";
  if (!same_objects(a.objects, b.objects)) return "objects";
  if (!same_tensor(a.images, b.images)) return "images";
  if (a.images_at.size() != b.images_at.size()) return "images_at count";
  for (size_t i = 0; i < a.images_at.size(); ++i)
    if (!same_tensor(a.images_at[i], b.images_at[i])) return "images_at[" + std::to_string(i) + "]";
  return "";
}

bool all_finite(const eng::Tensor& t) {
  if (t.numel() == 0) return true;
  const float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(p[i])) return false;
  return true;
}

// "" when every box is finite, of positive size and inside [0, s] x [0, s] with a valid label.
std::string box_problem(const data::Batch& b, int s, int num_classes) {
  for (size_t i = 0; i < b.objects.size(); ++i) {
    for (const data::Object& o : b.objects[i]) {
      const data::Box& x = o.box;
      const bool ok = std::isfinite(x.x1) && std::isfinite(x.y1) && std::isfinite(x.x2) && std::isfinite(x.y2) &&
                      x.x1 >= 0 && x.y1 >= 0 && x.x2 <= s && x.y2 <= s && x.x2 > x.x1 && x.y2 > x.y1 &&
                      o.label >= 0 && o.label < num_classes;
      if (!ok) {
        char buf[200];
        std::snprintf(buf, sizeof buf, "batch %lld item %zu: box (%g, %g, %g, %g) label %d at size %d",
                      static_cast<long long>(b.number), i, x.x1, x.y1, x.x2, x.y2, o.label, s);
        return buf;
      }
    }
  }
  return "";
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("loader: the training stream is the same with any number of workers", "[data][loader]") {
  const data::Dataset& ds = clean_dataset();
  data::LoaderOptions o = base_options();  // full SSD augmentation
  o.seed = 11;
  const int count = 2 * kImages / o.batch_size;  // two epochs

  std::vector<std::vector<data::Batch>> runs;
  for (int workers : {0, 1, 3}) {
    o.workers = workers;
    data::Loader loader(ds, o);
    REQUIRE(loader.batches_per_epoch() == kImages / o.batch_size);
    runs.push_back(take(loader, count));
    CHECK(loader.take_warnings().empty());
    CHECK(loader.bad_images() == 0);
  }
  for (size_t r = 1; r < runs.size(); ++r) {
    for (int g = 0; g < count; ++g) {
      INFO("run " << r << " batch " << g);
      CHECK(batch_difference(runs[0][static_cast<size_t>(g)], runs[r][static_cast<size_t>(g)]) == "");
    }
  }
  // A second loader with the same options repeats itself; the images really are augmented
  // (not all identical to the plain resize).
  for (int g = 0; g < count; ++g) {
    const data::Batch& b = runs[0][static_cast<size_t>(g)];
    CHECK(b.number == g);
    CHECK(b.images.sizes() == eng::Shape{o.batch_size, 3, 64, 64});
    CHECK(all_finite(b.images));
    CHECK(box_problem(b, 64, kClasses) == "");
  }

  // The order: epochs differ from each other, and another seed gives another order.
  auto order = [&](const std::vector<data::Batch>& run, int epoch) {
    std::vector<int> s;
    const int per = kImages / o.batch_size;
    for (int g = epoch * per; g < (epoch + 1) * per; ++g)
      s.insert(s.end(), run[static_cast<size_t>(g)].samples.begin(), run[static_cast<size_t>(g)].samples.end());
    return s;
  };
  CHECK(order(runs[0], 0) != order(runs[0], 1));
  o.seed = 12;
  o.workers = 2;
  data::Loader other(ds, o);
  const std::vector<data::Batch> run2 = take(other, count);
  CHECK(order(run2, 0) != order(runs[0], 0));
  CHECK(order(run2, 1) != order(runs[0], 1));
}

TEST_CASE("loader: epochs visit each sample at most once and start_batch resumes exactly", "[data][loader]") {
  const data::Dataset& ds = clean_dataset();
  data::LoaderOptions o = base_options();
  o.batch_size = 6;  // 40 / 6: 6 batches per epoch, 4 samples dropped each epoch
  o.workers = 2;
  o.seed = 21;
  const int per = kImages / o.batch_size;
  const int epochs = 3;
  data::Loader loader(ds, o);
  REQUIRE(loader.batches_per_epoch() == per);
  const std::vector<data::Batch> full = take(loader, epochs * per);

  std::vector<std::set<int>> seen(epochs);
  for (int g = 0; g < epochs * per; ++g) {
    const data::Batch& b = full[static_cast<size_t>(g)];
    INFO("batch " << g);
    CHECK(b.number == g);
    CHECK(b.epoch == g / per);
    CHECK(b.size() == o.batch_size);
    CHECK(b.widths == std::vector<int>(static_cast<size_t>(b.size()), kImageW));
    CHECK(b.heights == std::vector<int>(static_cast<size_t>(b.size()), kImageH));
    for (int s : b.samples) {
      CHECK(s >= 0);
      CHECK(s < kImages);
      CHECK(seen[static_cast<size_t>(g / per)].insert(s).second);  // at most once per epoch
    }
  }
  for (const auto& e : seen) CHECK(e.size() == static_cast<size_t>(per * o.batch_size));
  CHECK(seen[0] != seen[1]);  // the dropped tail changes with the shuffle (almost surely)

  // Resume at k, with a different worker count: exactly batches k, k + 1, ...
  for (int64_t k : {int64_t{1}, int64_t{per}, int64_t{per + 4}}) {
    for (int workers : {0, 3}) {
      data::LoaderOptions r = o;
      r.start_batch = k;
      r.workers = workers;
      data::Loader resumed(ds, r);
      const int count = epochs * per - static_cast<int>(k);
      const std::vector<data::Batch> tail = take(resumed, count);
      for (int i = 0; i < count; ++i) {
        INFO("start " << k << " workers " << workers << " batch " << k + i);
        CHECK(batch_difference(tail[static_cast<size_t>(i)], full[static_cast<size_t>(k + i)]) == "");
      }
    }
  }
}

TEST_CASE("loader: boxes follow the images into input pixels", "[data][loader]") {
  const data::Dataset& ds = clean_dataset();
  const int S = 64;
  const double fx = static_cast<double>(S) / kImageW, fy = static_cast<double>(S) / kImageH;

  SECTION("without augmentation the boxes are the dataset boxes scaled by S/W, S/H") {
    data::LoaderOptions o = base_options();
    o.augment = no_augment();
    o.batch_size = 5;
    o.workers = 1;
    data::Loader loader(ds, o);
    int compared = 0;
    for (const data::Batch& b : take(loader, 2 * kImages / o.batch_size)) {
      REQUIRE(b.objects.size() == b.samples.size());
      for (size_t i = 0; i < b.samples.size(); ++i) {
        const std::vector<data::Object>& want = ds.samples[static_cast<size_t>(b.samples[i])].objects;
        const std::vector<data::Object>& got = b.objects[i];
        REQUIRE(got.size() == want.size());
        for (size_t j = 0; j < got.size(); ++j) {
          CHECK(got[j].label == want[j].label);
          CHECK(got[j].box.x1 == Approx(want[j].box.x1 * fx).margin(1e-9));
          CHECK(got[j].box.y1 == Approx(want[j].box.y1 * fy).margin(1e-9));
          CHECK(got[j].box.x2 == Approx(want[j].box.x2 * fx).margin(1e-9));
          CHECK(got[j].box.y2 == Approx(want[j].box.y2 * fy).margin(1e-9));
          ++compared;
        }
        // And the image is the plain resize of the decoded file.
        std::vector<float> plain(static_cast<size_t>(3 * S * S));
        data::resize_normalize_into(data::load_image(ds.samples[static_cast<size_t>(b.samples[i])].image_path), S, S,
                                    o.mean, o.std, plain.data());
        CHECK(std::memcmp(plain.data(), b.images.data<float>() + i * plain.size(), plain.size() * sizeof(float)) ==
              0);
      }
    }
    CHECK(compared > kImages);
  }

  SECTION("with augmentation every box lies inside the input and has positive size") {
    data::LoaderOptions o = base_options();
    o.workers = 2;
    o.seed = 99;
    data::Loader loader(ds, o);
    int boxes = 0;
    for (const data::Batch& b : take(loader, 3 * kImages / o.batch_size)) {
      CHECK(box_problem(b, S, kClasses) == "");
      CHECK(all_finite(b.images));
      for (const auto& v : b.objects) boxes += static_cast<int>(v.size());
    }
    CHECK(boxes > kImages);
  }

  SECTION("difficult and crowd objects travel flagged (ignored targets); keep_difficult makes difficult plain") {
    data::Dataset marked = ds;
    size_t difficult = 0, crowd = 0, total = 0;
    for (data::Sample& s : marked.samples) {
      for (size_t j = 0; j < s.objects.size(); ++j) {
        if (j % 3 == 0) s.objects[j].difficult = true, ++difficult;
        if (j % 3 == 1) s.objects[j].iscrowd = true, ++crowd;
        ++total;
      }
    }
    REQUIRE(difficult > 0);
    REQUIRE(crowd > 0);
    struct Mode {
      bool keep_difficult, drop_ignored;
    };
    for (const Mode mode : {Mode{false, false}, Mode{true, false}, Mode{false, true}, Mode{true, true}}) {
      INFO("keep_difficult " << mode.keep_difficult << ", drop_ignored " << mode.drop_ignored);
      data::LoaderOptions o = base_options();
      o.augment = no_augment();
      o.batch_size = kImages;  // one batch = the whole epoch
      o.keep_difficult = mode.keep_difficult;
      o.drop_ignored = mode.drop_ignored;
      data::Loader loader(marked, o);
      data::Batch b;
      REQUIRE(loader.next(b));
      REQUIRE(b.size() == kImages);
      size_t n = 0, flagged = 0;
      for (size_t i = 0; i < b.samples.size(); ++i) {
        const data::Sample& s = marked.samples[static_cast<size_t>(b.samples[i])];
        std::vector<data::Object> want;
        for (data::Object x : s.objects) {
          if (mode.keep_difficult) x.difficult = false;
          if (mode.drop_ignored && (x.iscrowd || x.difficult)) continue;
          want.push_back(x);
        }
        REQUIRE(b.objects[i].size() == want.size());
        for (size_t j = 0; j < want.size(); ++j) {
          CHECK(b.objects[i][j].difficult == want[j].difficult);
          CHECK(b.objects[i][j].iscrowd == want[j].iscrowd);
          CHECK(b.objects[i][j].box.x1 == Approx(want[j].box.x1 * fx).margin(1e-9));
          CHECK(b.objects[i][j].box.y2 == Approx(want[j].box.y2 * fy).margin(1e-9));
          flagged += (want[j].difficult || want[j].iscrowd) ? 1 : 0;
        }
        n += want.size();
      }
      if (mode.drop_ignored) {
        CHECK(n == total - crowd - (mode.keep_difficult ? 0 : difficult));
        CHECK(flagged == 0);
      } else {
        CHECK(n == total);
        CHECK(flagged == crowd + (mode.keep_difficult ? 0 : difficult));
      }
    }
  }
}

TEST_CASE("loader: multiscale training draws one input size per batch", "[data][loader]") {
  const data::Dataset& ds = clean_dataset();
  data::LoaderOptions o = base_options();
  o.input_sizes = {64, 96};
  o.workers = 2;
  o.seed = 7;
  data::Loader loader(ds, o);
  std::set<int> sizes;
  for (const data::Batch& b : take(loader, 20)) {
    const int s = loader.input_size_of(b.number);
    INFO("batch " << b.number);
    CHECK((s == 64 || s == 96));
    CHECK(b.input_size == s);
    CHECK(b.images.sizes() == eng::Shape{b.size(), 3, s, s});
    REQUIRE(b.images_at.size() == 1);
    CHECK(same_tensor(b.images_at[0], b.images));
    CHECK(box_problem(b, s, kClasses) == "");
    CHECK(all_finite(b.images));
    sizes.insert(s);
  }
  CHECK(sizes == std::set<int>{64, 96});
  // The draw is a function of (seed, number) only.
  data::Loader again(ds, o);
  for (int64_t g = 0; g < 50; ++g) CHECK(again.input_size_of(g) == loader.input_size_of(g));
}

TEST_CASE("loader: evaluation is one ordered pass at every input size", "[data][loader]") {
  const data::Dataset& ds = clean_dataset();
  for (int workers : {0, 2}) {
    data::LoaderOptions o = base_options();
    o.train = false;
    o.batch_size = 6;  // 40 = 6 * 6 + 4: the last batch is partial
    o.workers = workers;
    o.input_sizes = {64, 96};
    o.keep_images = true;
    data::Loader loader(ds, o);
    REQUIRE(loader.batches_per_epoch() == 7);
    std::vector<int> order;
    data::Batch b;
    int64_t count = 0;
    while (loader.next(b)) {
      INFO("workers " << workers << " batch " << count);
      CHECK(b.number == count);
      CHECK(b.size() == (count < 6 ? 6 : 4));
      REQUIRE(b.images_at.size() == 2);
      CHECK(b.images_at[0].sizes() == eng::Shape{b.size(), 3, 64, 64});
      CHECK(b.images_at[1].sizes() == eng::Shape{b.size(), 3, 96, 96});
      CHECK(same_tensor(b.images, b.images_at[0]));
      CHECK(b.widths == std::vector<int>(static_cast<size_t>(b.size()), kImageW));
      CHECK(b.heights == std::vector<int>(static_cast<size_t>(b.size()), kImageH));
      REQUIRE(b.originals.size() == b.samples.size());
      for (size_t i = 0; i < b.samples.size(); ++i) {
        const data::Image decoded = data::load_image(ds.samples[static_cast<size_t>(b.samples[i])].image_path);
        CHECK(b.originals[i].width == decoded.width);
        CHECK(b.originals[i].height == decoded.height);
        CHECK(b.originals[i].rgb == decoded.rgb);
        for (size_t k = 0; k < 2; ++k) {
          const int s = o.input_sizes[k];
          std::vector<float> want(static_cast<size_t>(3 * s * s));
          data::resize_normalize_into(decoded, s, s, o.mean, o.std, want.data());
          CHECK(std::memcmp(want.data(), b.images_at[k].data<float>() + i * want.size(), want.size() * sizeof(float)) ==
                0);
        }
      }
      order.insert(order.end(), b.samples.begin(), b.samples.end());
      ++count;
    }
    CHECK(count == 7);
    std::vector<int> all(kImages);
    for (int i = 0; i < kImages; ++i) all[static_cast<size_t>(i)] = i;
    CHECK(order == all);
    CHECK_FALSE(loader.next(b));  // stays at the end
    CHECK(loader.take_warnings().empty());
  }
  // Without keep_images no originals are handed out.
  data::LoaderOptions o = base_options();
  o.train = false;
  o.batch_size = 16;
  data::Loader loader(ds, o);
  data::Batch b;
  REQUIRE(loader.next(b));
  CHECK(b.originals.empty());
}

TEST_CASE("loader: option errors are reported clearly", "[data][loader]") {
  const data::Dataset& ds = clean_dataset();
  const data::Dataset empty;
  CHECK_THROWS_WITH(data::Loader(empty, base_options()), Contains("no images"));
  data::LoaderOptions o = base_options();
  o.batch_size = 0;
  CHECK_THROWS_WITH(data::Loader(ds, o), Contains("batch size"));
  o = base_options();
  o.workers = -1;
  CHECK_THROWS_WITH(data::Loader(ds, o), Contains("workers"));
  o = base_options();
  o.input_sizes = {64, 4};
  CHECK_THROWS_WITH(data::Loader(ds, o), Contains("input size 4"));
  o = base_options();
  o.input_sizes.clear();
  CHECK_THROWS_AS(data::Loader(ds, o), eng::Error);
  o = base_options();
  o.prefetch = 0;
  CHECK_THROWS_WITH(data::Loader(ds, o), Contains("prefetch"));
  o = base_options();
  o.mean = {1, 2};
  CHECK_THROWS_AS(data::Loader(ds, o), eng::Error);
  o = base_options();
  o.start_batch = -1;
  CHECK_THROWS_AS(data::Loader(ds, o), eng::Error);
}

TEST_CASE("loader: stopping early and datasets of only bad images", "[data][loader]") {
  const data::Dataset& ds = clean_dataset();
  // Destroying a loader whose workers are blocked on the prefetch bound does not hang.
  for (bool train : {true, false}) {
    data::LoaderOptions o = base_options();
    o.train = train;
    o.workers = 3;
    o.prefetch = 1;
    data::Loader loader(ds, o);
    data::Batch b;
    REQUIRE(loader.next(b));
  }
  {
    data::LoaderOptions o = base_options();
    o.workers = 2;
    data::Loader never_used(ds, o);
  }

  TempDir dir;
  data::Dataset bad = ds;
  bad.samples.resize(3);
  for (size_t i = 0; i < bad.samples.size(); ++i) {
    bad.samples[i].image_path = (dir.path / ("bad" + std::to_string(i) + ".jpg")).string();
    write_bytes(bad.samples[i].image_path, "not an image " + std::to_string(i));
  }
  // Evaluation: the batch comes back empty, each image reported once.
  for (int workers : {0, 2}) {
    data::LoaderOptions o = base_options();
    o.train = false;
    o.workers = workers;
    data::Loader loader(bad, o);
    data::Batch b;
    REQUIRE(loader.next(b));
    CHECK(b.size() == 0);
    CHECK(b.images.sizes() == eng::Shape{0, 3, 64, 64});
    CHECK_FALSE(loader.next(b));
    const std::vector<std::string> w = loader.take_warnings();
    CHECK(w.size() == 3);
    for (const std::string& line : w) CHECK(ends_with(line, "(image skipped)"));
    CHECK(loader.bad_images() == 3);
    CHECK(loader.take_warnings().empty());
  }
  // Training: no batch can ever be built; next() must fail instead of spinning forever.
  for (int workers : {0, 2}) {
    data::LoaderOptions o = base_options();
    o.batch_size = 2;
    o.workers = workers;
    data::Loader loader(bad, o);
    data::Batch b;
    CHECK_THROWS_WITH(loader.next(b), Contains("failed"));
    CHECK(loader.bad_images() == 3);
    CHECK(loader.take_warnings().size() == 3);
  }
}

// ---------------------------------------------------------------------------------------------
// The acceptance test: 200 randomly corrupted copies of valid images and annotations.

namespace {

struct XmlObject {
  std::string name, xmin, ymin, xmax, ymax;
  bool bndbox = true;
};

std::string make_xml(const std::string& filename, const std::string& width, const std::string& height,
                     const std::vector<XmlObject>& objects) {
  std::string x = "<annotation>\n  <folder>JPEGImages</folder>\n";
  if (!filename.empty()) x += "  <filename>" + filename + "</filename>\n";
  if (!width.empty())
    x += "  <size><width>" + width + "</width><height>" + height + "</height><depth>3</depth></size>\n";
  for (const XmlObject& o : objects) {
    x += "  <object><name>" + o.name + "</name><difficult>0</difficult>";
    if (o.bndbox)
      x += "<bndbox><xmin>" + o.xmin + "</xmin><ymin>" + o.ymin + "</ymin><xmax>" + o.xmax + "</xmax><ymax>" +
           o.ymax + "</ymax></bndbox>";
    x += "</object>\n";
  }
  return x + "</annotation>\n";
}

// What load_voc must say about a corrupted annotation.
enum class Expect { Nothing, ImageSkipped, ObjectSkipped, Unknown };

struct Copy {
  std::string id, xml, image;  // paths
  bool image_corrupted = false, annotation_corrupted = false;
  bool image_written = true;
  Expect expect = Expect::Nothing;
  int object = -1;  // ObjectSkipped: which object
  int objects = 0;  // objects in the XML
  std::string what;
};

}  // namespace

TEST_CASE("loader: 200 randomly corrupted images and annotations are reported and skipped", "[data][loader]") {
  const data::Dataset& clean = clean_dataset();
  TempDir dir;
  const fs::path root = dir.path / "VOC";
  fs::create_directories(root / "JPEGImages");
  fs::create_directories(root / "Annotations");
  fs::create_directories(root / "ImageSets" / "Main");
  fs::copy_file(fs::path(clean_root()) / "classes.txt", root / "classes.txt");

  std::mt19937_64 rng(20240607);  // raw draws only: the same corruption everywhere
  auto draw = [&](uint64_t n) { return n == 0 ? uint64_t{0} : rng() % n; };

  std::string split;
  // The clean originals, kept under their own ids.
  for (const data::Sample& s : clean.samples) {
    const std::string id = fs::path(s.image_path).stem().string();
    fs::copy_file(s.image_path, root / "JPEGImages" / (id + ".jpg"));
    fs::copy_file(fs::path(clean_root()) / "Annotations" / (id + ".xml"), root / "Annotations" / (id + ".xml"));
    split += id + "\n";
  }

  std::vector<Copy> copies;
  std::map<std::string, size_t> copy_of_xml, copy_of_image;
  for (int c = 0; c < 200; ++c) {
    Copy cp;
    char idbuf[16];
    std::snprintf(idbuf, sizeof idbuf, "c%03d", c);
    cp.id = idbuf;
    cp.xml = (root / "Annotations" / (cp.id + ".xml")).string();
    cp.image = (root / "JPEGImages" / (cp.id + ".jpg")).string();
    const data::Sample& src = clean.samples[draw(clean.samples.size())];
    const uint64_t mode = draw(3);  // 0: image, 1: annotation, 2: both
    cp.image_corrupted = mode != 1;
    cp.annotation_corrupted = mode != 0;

    // ---- the image ----
    std::string bytes = read_bytes(src.image_path);
    if (cp.image_corrupted) {
      switch (draw(8)) {
        case 0: {  // random byte flips
          const uint64_t k = 1 + draw(20);
          for (uint64_t i = 0; i < k; ++i) bytes[draw(bytes.size())] ^= static_cast<char>(1 + draw(255));
          cp.what += "image flips; ";
          break;
        }
        case 1:  // truncated at a random length
          bytes.resize(draw(bytes.size()));
          cp.what += "image truncated; ";
          break;
        case 2:  // zero bytes
          bytes.clear();
          cp.what += "image empty; ";
          break;
        case 3: {  // random bytes
          bytes.resize(1 + draw(4000));
          for (char& ch : bytes) ch = static_cast<char>(draw(256));
          cp.what += "image random; ";
          break;
        }
        case 4:  // a text file
          bytes = "This is not an image.\n<html><body>404 Not Found</body></html>\n";
          cp.what += "image text; ";
          break;
        case 5: {  // header damage
          const uint64_t k = 1 + draw(16);
          for (uint64_t i = 0; i < k && i < bytes.size(); ++i) bytes[i] = static_cast<char>(draw(256));
          cp.what += "image header; ";
          break;
        }
        case 6: {  // frame header with zero, over-the-limit or odd dimensions
          size_t p = std::string::npos;
          for (size_t i = 0; i + 9 < bytes.size(); ++i) {
            const unsigned char m = static_cast<unsigned char>(bytes[i + 1]);
            if (static_cast<unsigned char>(bytes[i]) == 0xFF && (m == 0xC0 || m == 0xC2)) {
              p = i;
              break;
            }
          }
          REQUIRE(p != std::string::npos);
          const uint64_t v = draw(3);
          const unsigned dim = v == 0 ? 0 : v == 1 ? 0xFFFF : 0x4000;  // 16384^2 > max_pixels
          for (size_t i : {p + 5, p + 7}) {
            bytes[i] = static_cast<char>(dim >> 8);
            bytes[i + 1] = static_cast<char>(dim & 0xFF);
          }
          cp.what += "image dims " + std::to_string(dim) + "; ";
          break;
        }
        default: {  // valid pixels, but a PNG behind a .jpg name (must still load)
          const std::string png = (dir.path / "tmp.png").string();
          data::save_png(png, data::load_image(src.image_path));
          bytes = read_bytes(png);
          cp.what += "image png; ";
          break;
        }
      }
    }

    // ---- the annotation ----
    std::vector<XmlObject> objs;
    for (const data::Object& o : src.objects) {
      // Back to VOC's 1-based inclusive pixels (synth boxes are integers).
      objs.push_back({clean.class_names[static_cast<size_t>(o.label)], std::to_string(std::lround(o.box.x1) + 1),
                      std::to_string(std::lround(o.box.y1) + 1), std::to_string(std::lround(o.box.x2) + 1),
                      std::to_string(std::lround(o.box.y2) + 1)});
    }
    REQUIRE(!objs.empty());
    cp.objects = static_cast<int>(objs.size());
    std::string filename = cp.id + ".jpg", width = std::to_string(kImageW), height = std::to_string(kImageH);
    std::string xml_text;
    bool raw = false;  // xml_text set directly
    if (cp.annotation_corrupted) {
      const int j = static_cast<int>(draw(objs.size()));
      XmlObject& o = objs[static_cast<size_t>(j)];
      auto object_skipped = [&](const std::string& w) {
        cp.expect = Expect::ObjectSkipped;
        cp.object = j;
        cp.what += w;
      };
      switch (draw(14)) {
        case 0: {  // truncated XML: cut before the closing tag is complete
          const std::string full = make_xml(filename, width, height, objs);
          const size_t end = full.rfind("</annotation>") + std::strlen("</annotation>");
          xml_text = full.substr(0, draw(end));
          raw = true;
          cp.expect = Expect::ImageSkipped;
          cp.what += "xml truncated";
          break;
        }
        case 1: {  // random byte flips: the outcome is not predictable
          xml_text = make_xml(filename, width, height, objs);
          const uint64_t k = 1 + draw(8);
          for (uint64_t i = 0; i < k; ++i) xml_text[draw(xml_text.size())] ^= static_cast<char>(1 + draw(255));
          raw = true;
          cp.expect = Expect::Unknown;
          cp.what += "xml flips";
          break;
        }
        case 2:
          o.name = "unicorn";
          object_skipped("unknown class");
          break;
        case 3:
          o.xmin = "-50";
          object_skipped("negative coordinate");
          break;
        case 4:
          o.xmax = "1e9";
          object_skipped("huge coordinate");
          break;
        case 5:
          o.ymin = draw(2) ? "nan" : "NaN";
          object_skipped("NaN coordinate");
          break;
        case 6:
          o.ymax = draw(2) ? "abc" : "";
          object_skipped("non-numeric coordinate");
          break;
        case 7:
          o.bndbox = false;
          object_skipped("missing bndbox");
          break;
        case 8:  // <filename> names a missing file; with no <id>.jpg either the image is skipped
          filename = "missing_" + cp.id + ".jpg";
          cp.image_written = draw(2) == 0;
          cp.expect = cp.image_written ? Expect::Nothing : Expect::ImageSkipped;
          cp.what += cp.image_written ? "filename missing, id.jpg fallback" : "filename and image missing";
          break;
        case 9:
          o.xmin = std::to_string(kImageW + 10);
          o.xmax = std::to_string(kImageW + 30);
          object_skipped("box outside image");
          break;
        case 10:  // the annotation claims a bigger image: the reader cannot tell, the loader clips
          width = height = "1000";
          o.xmin = o.ymin = "500";
          o.xmax = o.ymax = "900";
          cp.what += "size mismatch";
          break;
        case 11:  // no size and an enormous box: accepted by the reader (coordinates within
                  // +-1e7, data::detail::kMaxCoordinate), clipped by the loader
          width = height = "";
          o.xmax = o.ymax = "1e6";
          cp.what += "no size, huge box";
          break;
        case 12:
          std::swap(o.xmin, o.xmax);
          if (o.xmin == o.xmax) o.xmax = std::to_string(std::stoi(o.xmax) - 1);
          object_skipped("inverted box");
          break;
        default:
          xml_text.clear();
          raw = true;
          cp.expect = Expect::ImageSkipped;
          cp.what += "xml empty";
          break;
      }
    }
    if (!raw) xml_text = make_xml(filename, width, height, objs);
    write_bytes(cp.xml, xml_text);
    if (cp.image_written) write_bytes(cp.image, bytes);
    split += cp.id + "\n";
    copy_of_xml[cp.xml] = copies.size();
    copy_of_image[cp.image] = copies.size();
    copies.push_back(cp);
  }
  write_bytes((root / "ImageSets" / "Main" / "trainval.txt").string(), split);

  // ---- the reader ----
  data::VocOptions vo;
  vo.roots = {root.string()};
  const data::Dataset ds = data::load_voc(vo);
  const int K = static_cast<int>(ds.class_names.size());
  REQUIRE(K == kClasses);

  std::map<std::string, std::vector<std::string>> reader_warnings;  // xml path -> lines
  for (const std::string& w : ds.warnings) {
    const size_t colon = w.find(".xml: ");
    REQUIRE(colon != std::string::npos);
    const std::string xml = w.substr(0, colon + 4);
    INFO(w);
    REQUIRE(copy_of_xml.count(xml) == 1);  // never a clean annotation
    reader_warnings[xml].push_back(w);
  }
  std::map<std::string, int> sample_of_image;  // image path -> dataset index
  for (size_t i = 0; i < ds.samples.size(); ++i) {
    const data::Sample& s = ds.samples[i];
    CHECK(sample_of_image.emplace(s.image_path, static_cast<int>(i)).second);
    for (const data::Object& o : s.objects) {  // whatever the reader keeps is usable
      INFO(s.image_path);
      CHECK(o.label >= 0);
      CHECK(o.label < K);
      CHECK(std::isfinite(o.box.x1));
      CHECK(std::isfinite(o.box.y1));
      CHECK(std::isfinite(o.box.x2));
      CHECK(std::isfinite(o.box.y2));
      CHECK(o.box.x2 > o.box.x1);
      CHECK(o.box.y2 > o.box.y1);
      CHECK(o.box.x1 >= 0);
      CHECK(o.box.y1 >= 0);
      if (s.width > 0) CHECK(o.box.x2 <= s.width);
      if (s.height > 0) CHECK(o.box.y2 <= s.height);
    }
  }
  for (const data::Sample& s : clean.samples)  // the originals are all there
    CHECK(sample_of_image.count((root / "JPEGImages" / fs::path(s.image_path).filename()).string()) == 1);

  int expected_image_skips = 0, expected_object_skips = 0;
  for (const Copy& cp : copies) {
    INFO(cp.id << ": " << cp.what);
    const auto it = reader_warnings.find(cp.xml);
    const std::vector<std::string> lines = it == reader_warnings.end() ? std::vector<std::string>{} : it->second;
    const bool loaded = sample_of_image.count(cp.image) == 1;
    switch (cp.expect) {
      case Expect::Nothing:
        CHECK(lines.empty());
        CHECK(loaded);
        break;
      case Expect::ImageSkipped:
        ++expected_image_skips;
        CHECK_FALSE(loaded);
        REQUIRE(lines.size() == 1);
        CHECK(ends_with(lines[0], "(image skipped)"));
        break;
      case Expect::ObjectSkipped:
        ++expected_object_skips;
        CHECK(loaded);
        REQUIRE(lines.size() == 1);
        CHECK(starts_with(lines[0], cp.xml + ": object " + std::to_string(cp.object) + " "));
        CHECK(ends_with(lines[0], "(object skipped)"));
        if (loaded) {  // only that object is gone
          const data::Sample& s = ds.samples[static_cast<size_t>(sample_of_image[cp.image])];
          CHECK(s.objects.size() == static_cast<size_t>(cp.objects - 1));
        }
        break;
      case Expect::Unknown:  // a skipped image is always reported
        if (!loaded) {
          REQUIRE(lines.size() == 1);
          CHECK(ends_with(lines[0], "(image skipped)"));
        }
        break;
    }
  }
  CHECK(ds.skipped_images >= expected_image_skips);
  CHECK(ds.skipped_objects >= expected_object_skips);
  CHECK(static_cast<size_t>(ds.skipped_images + ds.skipped_objects) == ds.warnings.size());
  CHECK(ds.samples.size() == static_cast<size_t>(kImages) + copies.size() - static_cast<size_t>(ds.skipped_images));

  // ---- which images are bad: decide by decoding each one ourselves ----
  const int n = static_cast<int>(ds.samples.size());
  std::set<int> failing;
  for (int i = 0; i < n; ++i) {
    try {
      data::load_image(ds.samples[static_cast<size_t>(i)].image_path);
    } catch (const eng::Error&) {
      failing.insert(i);
    }
  }
  int decodable_corrupted = 0;
  for (const Copy& cp : copies)
    if (cp.image_corrupted && sample_of_image.count(cp.image) && !failing.count(sample_of_image[cp.image]))
      ++decodable_corrupted;
  CHECK(failing.size() > 40);  // the test exercises plenty of both kinds
  CHECK(decodable_corrupted > 0);
  for (const data::Sample& s : clean.samples)
    CHECK(failing.count(sample_of_image[(root / "JPEGImages" / fs::path(s.image_path).filename()).string()]) == 0);

  // Parses "<path>: <problem> (image skipped)" into the sample index; every line is new.
  auto collect = [&](data::Loader& loader, std::map<int, int>& reported) {
    for (const std::string& w : loader.take_warnings()) {
      INFO(w);
      CHECK(ends_with(w, " (image skipped)"));
      const size_t colon = w.find(".jpg: ");
      REQUIRE(colon != std::string::npos);
      const std::string path = w.substr(0, colon + 4);
      REQUIRE(sample_of_image.count(path) == 1);
      const int index = sample_of_image[path];
      CHECK(failing.count(index) == 1);  // never a valid image
      ++reported[index];
    }
  };
  auto check_reported = [&](const std::map<int, int>& reported, const data::Loader& loader) {
    std::set<int> got;
    for (const auto& kv : reported) {
      INFO("sample " << kv.first << " " << ds.samples[static_cast<size_t>(kv.first)].image_path);
      CHECK(kv.second == 1);  // exactly once
      got.insert(kv.first);
    }
    CHECK(got == failing);
    CHECK(loader.bad_images() == static_cast<int64_t>(failing.size()));
  };

  // ---- training: until every sample was either batched or reported ----
  {
    data::LoaderOptions o = base_options();
    o.batch_size = 6;
    o.workers = 2;
    o.seed = 3;
    data::Loader loader(ds, o);
    REQUIRE(loader.batches_per_epoch() == n / 6);
    std::map<int, int> reported;
    std::set<int> batched;
    int64_t last = -1;
    data::Batch b;
    int64_t epochs_done = 0;
    while (epochs_done < 12) {
      REQUIRE(loader.next(b));
      INFO("batch " << b.number);
      CHECK(b.number > last);  // empty batches are skipped, never repeated
      last = b.number;
      CHECK(b.size() >= 1);
      CHECK(b.size() <= 6);
      CHECK(b.images.sizes() == eng::Shape{b.size(), 3, 64, 64});
      CHECK(all_finite(b.images));
      CHECK(box_problem(b, 64, K) == "");
      for (int s : b.samples) {
        CHECK(failing.count(s) == 0);
        batched.insert(s);
      }
      collect(loader, reported);
      epochs_done = (b.number + 1) / loader.batches_per_epoch();
      if (epochs_done >= 1 && batched.size() + reported.size() == static_cast<size_t>(n)) break;
    }
    CHECK(batched.size() + failing.size() == static_cast<size_t>(n));  // everything seen
    collect(loader, reported);
    check_reported(reported, loader);
  }

  // ---- evaluation: one pass over everything, in order ----
  std::set<std::string> loader_reported_images;  // from the evaluation pass
  std::vector<data::Batch> eval_runs[2];
  for (int r = 0; r < 2; ++r) {
    data::LoaderOptions o = base_options();
    o.train = false;
    o.batch_size = 7;
    o.workers = r == 0 ? 2 : 0;
    o.input_sizes = {64, 96};
    data::Loader loader(ds, o);
    std::map<int, int> reported;
    std::vector<int> order;
    data::Batch b;
    while (loader.next(b)) {
      CHECK(b.images_at.size() == 2);
      for (const eng::Tensor& t : b.images_at) CHECK(all_finite(t));
      CHECK(b.images_at[1].sizes() == eng::Shape{b.size(), 3, 96, 96});
      order.insert(order.end(), b.samples.begin(), b.samples.end());
      collect(loader, reported);
      eval_runs[r].push_back(b);
    }
    CHECK(static_cast<int64_t>(eval_runs[r].size()) == (n + 6) / 7);
    std::vector<int> want;
    for (int i = 0; i < n; ++i)
      if (!failing.count(i)) want.push_back(i);
    CHECK(order == want);
    collect(loader, reported);
    check_reported(reported, loader);
    for (const auto& kv : reported) loader_reported_images.insert(ds.samples[static_cast<size_t>(kv.first)].image_path);
  }
  REQUIRE(eval_runs[0].size() == eval_runs[1].size());
  for (size_t i = 0; i < eval_runs[0].size(); ++i)
    CHECK(batch_difference(eval_runs[0][i], eval_runs[1][i]) == "");

  // ---- totals: every invalid corrupted item is covered by a reader or loader report ----
  int invalid = 0;
  for (const Copy& cp : copies) {
    INFO(cp.id << ": " << cp.what);
    const bool image_bad = !cp.image_written || [&] {
      try {
        data::load_image(cp.image);
        return false;
      } catch (const eng::Error&) {
        return true;
      }
    }();
    const bool annotation_bad = cp.expect == Expect::ImageSkipped || cp.expect == Expect::ObjectSkipped ||
                                reader_warnings.count(cp.xml) > 0;
    if (!image_bad && !annotation_bad) continue;
    ++invalid;
    const bool covered = reader_warnings.count(cp.xml) > 0 || loader_reported_images.count(cp.image) > 0;
    CHECK(covered);
    if (image_bad && sample_of_image.count(cp.image)) CHECK(loader_reported_images.count(cp.image) == 1);
  }
  CHECK(invalid > 120);
}

TEST_CASE("loader: tiny and extreme-aspect valid images train without failing", "[data][loader]") {
  TempDir dir;
  data::Dataset d;
  d.class_names = {"a"};
  d.category_ids = {1};
  const int sizes[][2] = {{1, 1}, {2, 1}, {1, 3}, {3, 3}, {1, 300}, {300, 1}, {5, 4}};
  int k = 0;
  for (const auto& wh : sizes) {
    data::Image im;
    im.width = wh[0];
    im.height = wh[1];
    im.rgb.assign(static_cast<size_t>(im.width) * im.height * 3, static_cast<uint8_t>(40 * k));
    data::Sample s;
    s.image_path = (dir.path / ("t" + std::to_string(k++) + ".png")).string();
    data::save_png(s.image_path, im);
    data::Object o;
    o.box = {0, 0, static_cast<double>(im.width), static_cast<double>(im.height)};
    s.objects = {o};
    d.samples.push_back(s);
  }
  data::LoaderOptions o = base_options();
  o.batch_size = 3;
  o.workers = 2;
  o.input_sizes = {64, 96};
  data::Loader loader(d, o);
  for (const data::Batch& b : take(loader, 200)) {
    CHECK(all_finite(b.images));
    CHECK(box_problem(b, b.input_size, 1) == "");
  }
  CHECK(loader.take_warnings().empty());
}

TEST_CASE("loader: images over the limits are reported and skipped", "[data][loader]") {
  const data::Dataset& ds = clean_dataset();
  data::LoaderOptions o = base_options();
  o.train = false;
  o.batch_size = 8;
  o.workers = 2;
  o.limits.max_width = kImageW - 1;  // every image is one pixel too wide
  data::Loader loader(ds, o);
  data::Batch b;
  int batches = 0;
  while (loader.next(b)) {
    CHECK(b.size() == 0);
    ++batches;
  }
  CHECK(batches == kImages / 8);
  const std::vector<std::string> w = loader.take_warnings();
  CHECK(w.size() == static_cast<size_t>(kImages));
  std::set<std::string> paths;  // one line per image, naming it (workers may report out of order)
  for (const std::string& line : w) {
    CHECK(ends_with(line, " (image skipped)"));
    paths.insert(line.substr(0, line.find(".jpg: ") + 4));
  }
  std::set<std::string> want;
  for (const data::Sample& s : ds.samples) want.insert(s.image_path);
  CHECK(paths == want);
  CHECK(loader.bad_images() == kImages);
}
