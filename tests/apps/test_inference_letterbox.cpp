// Detections of a keep_aspect model land on the original image (apps/common/inference.h).
//
// A stub DetectionModel "finds" the bright pixels of each input (one box per image: their
// bounding box in input pixels) and asks for keep_aspect_ratio() or not. evaluate_model
// builds the loader from the model (lo.keep_aspect = model.keep_aspect_ratio()), runs
// detect_batch and maps the boxes back; a wide and a tall image with a bright rectangle
// must come back on their rectangles (to within one input pixel) and give AP 1, in both
// modes, with several test scales and with the mirrored pass. input_box_to_original, the
// mapping itself, is checked directly too.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "common/inference.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/input_fit.h"
#include "engine/error.h"
#include "models/detection_model.h"
#include "temp_dir.h"

namespace {

constexpr double kMean = 60;  // the stub's normalisation: mean 60, std 1 (padding = 60 raw)
constexpr double kBright = 130;

models::ModelConfig stub_config() {
  models::ModelConfig c;
  c.arch = "stub";
  c.num_classes = 2;
  c.input_size = 64;
  return c;
}

class BrightBoxModel : public models::DetectionModel {
 public:
  explicit BrightBoxModel(bool keep) : DetectionModel("BrightBoxModel", stub_config()), keep_(keep) {}
  models::HeadOutputs forward_heads(const eng::Tensor& images) override {
    models::HeadOutputs h;  // the heads are unused placeholders; the "feature" is the input
    h.box_regression = eng::zeros({images.size(0), 0, 4});
    h.class_logits = eng::zeros({images.size(0), 0, 2});
    h.features = {images.contiguous()};
    return h;
  }
  eng::Tensor anchors(eng::Device) const override { return eng::empty({0, 4}, eng::TensorOptions(eng::DType::f32)); }
  models::LossParts loss(const models::HeadOutputs&, const models::Targets&) override {
    ENGINE_FAIL("BrightBoxModel: no loss");
  }
  eng::det::PostprocessOptions postprocess_options() const override { return {}; }
  // One detection per image, label 1, score 0.9: the bounding box of the pixels whose
  // channel 0 (raw) is above kBright; none when there are none.
  eng::det::Detections postprocess(const models::HeadOutputs& h, const eng::det::PostprocessOptions&) override {
    const eng::Tensor& x = h.features.at(0);
    const int64_t n = x.size(0), hh = x.size(2), ww = x.size(3);
    eng::det::Detections d;
    d.boxes = eng::empty({n, 1, 4}, eng::TensorOptions(eng::DType::f32));
    d.scores = eng::empty({n, 1}, eng::TensorOptions(eng::DType::f32));
    d.labels = eng::empty({n, 1}, eng::TensorOptions(eng::DType::i64));
    d.counts = eng::empty({n}, eng::TensorOptions(eng::DType::i64));
    for (int64_t b = 0; b < n; ++b) {
      const float* p = x.data<float>() + b * 3 * hh * ww;
      // The loader's padding (normalised 0) at the bottom-right: the input was letterboxed.
      letterboxed_inputs += p[hh * ww - 1] == 0.0f;
      ++inputs;
      int64_t x1 = ww, y1 = hh, x2 = -1, y2 = -1;
      for (int64_t y = 0; y < hh; ++y)
        for (int64_t i = 0; i < ww; ++i)
          if (p[y * ww + i] + kMean > kBright) {
            x1 = std::min(x1, i);
            y1 = std::min(y1, y);
            x2 = std::max(x2, i + 1);
            y2 = std::max(y2, y + 1);
          }
      float* bx = d.boxes.data<float>() + 4 * b;
      bx[0] = static_cast<float>(x1);
      bx[1] = static_cast<float>(y1);
      bx[2] = static_cast<float>(x2);
      bx[3] = static_cast<float>(y2);
      d.scores.data<float>()[b] = 0.9f;
      d.labels.data<int64_t>()[b] = x2 > x1 ? 1 : -1;
      d.counts.data<int64_t>()[b] = x2 > x1 ? 1 : 0;
    }
    return d;
  }
  bool keep_aspect_ratio() const override { return keep_; }
  int inputs = 0, letterboxed_inputs = 0;
  std::vector<std::pair<std::string, eng::Shape>> block_shapes() override { return {}; }
  void set_input_size(int64_t size) override { record_input_size(size); }
  std::vector<double> pixel_mean() const override { return {kMean, kMean, kMean}; }
  std::vector<double> pixel_std() const override { return {1, 1, 1}; }

 private:
  bool keep_;
};

struct Picture {
  int w, h;
  data::Box rect;
};

// Dark images with one bright filled rectangle each, saved as PNG, the rectangle its object.
data::Dataset rect_dataset(const test::TempDir& dir, const std::vector<Picture>& pics) {
  data::Dataset d;
  d.class_names = {"rect"};
  d.category_ids = {1};
  for (size_t k = 0; k < pics.size(); ++k) {
    const Picture& p = pics[k];
    data::Image im;
    im.width = p.w;
    im.height = p.h;
    im.rgb.assign(static_cast<size_t>(p.w) * p.h * 3, 20);
    for (int y = static_cast<int>(p.rect.y1); y < p.rect.y2; ++y)
      for (int x = static_cast<int>(p.rect.x1); x < p.rect.x2; ++x)
        for (int c = 0; c < 3; ++c) im.rgb[(static_cast<size_t>(y) * p.w + x) * 3 + c] = 240;
    const std::string path = dir / ("img" + std::to_string(k) + ".png");
    data::save_png(path, im);
    data::Object o;
    o.box = p.rect;
    d.samples.push_back({path, "img" + std::to_string(k), p.w, p.h, {o}});
  }
  return d;
}

}  // namespace

TEST_CASE("input_box_to_original: stretched, letterboxed, mirrored", "[apps][inference]") {
  const data::InputFit s = data::fit_input(200, 100, 64, false);
  const data::Box a = app::input_box_to_original({32, 16, 48, 32}, s, false);
  CHECK(a.x1 == 32 * (200.0 / 64));
  CHECK(a.y1 == 16 * (100.0 / 64));
  const data::InputFit k = data::fit_input(200, 100, 64, true);  // 64 x 32, 0.32
  const data::Box b = app::input_box_to_original({32, 16, 48, 32}, k, false);
  CHECK(b.x1 == Approx(100));
  CHECK(b.y1 == Approx(50));
  CHECK(b.x2 == Approx(150));
  CHECK(b.y2 == Approx(100));
  // Mirrored pass: flipped within the valid width 64: [16, 32] -> [32, 48].
  const data::Box m = app::input_box_to_original({16, 16, 32, 32}, k, true);
  CHECK(m.x1 == Approx(100));
  CHECK(m.x2 == Approx(150));
  // A box reaching into the padding is clipped to the image (torchvision's clip).
  const data::Box pc = app::input_box_to_original({40, 20, 64, 60}, k, false);
  CHECK(pc.x2 == Approx(200));
  CHECK(pc.y2 == Approx(100));
  CHECK(pc.y1 == Approx(62.5));
  const data::Box pm = app::input_box_to_original({60, 0, 70, 10}, k, true);  // unmirrored: [-6, 4]
  CHECK(pm.x1 == 0);
  CHECK(pm.x2 == Approx(4 / 0.32));
  // All padding: dropped (letterboxed only); partly padding: kept.
  CHECK(app::input_box_in_padding({10, 40, 20, 50}, k, false));
  CHECK(app::input_box_in_padding({10, 32, 20, 50}, k, false));
  CHECK_FALSE(app::input_box_in_padding({10, 31, 20, 50}, k, false));
  CHECK(app::input_box_in_padding({64, 0, 70, 10}, k, false));
  CHECK(app::input_box_in_padding({64, 0, 70, 10}, k, true));  // unmirrored: [-6, 0], clipped 0 wide
  CHECK_FALSE(app::input_box_in_padding({10, 40, 20, 50}, s, false));
  // Tall image: the valid region is narrow, the mirror still within it.
  const data::InputFit t = data::fit_input(50, 200, 64, true);  // 16 x 64
  const data::Box tm = app::input_box_to_original({0, 0, 4, 8}, t, true);
  CHECK(tm.x1 == Approx(12 * 50.0 / 16));
  CHECK(tm.x2 == Approx(50));
  CHECK(tm.y2 == Approx(8 * 200.0 / 64));
}

TEST_CASE("evaluate_model maps a keep_aspect model's detections back to the original images", "[apps][inference]") {
  test::TempDir dir("inference_letterbox");
  const std::vector<Picture> pics = {{200, 100, {120, 20, 170, 70}}, {90, 180, {10, 100, 60, 170}}};
  const data::Dataset d = rect_dataset(dir, pics);
  for (bool keep : {true, false}) {
    for (int variant = 0; variant < 3; ++variant) {
      app::InferenceOptions io;
      if (variant == 1) io.scales = {64, 96};
      if (variant == 2) io.flip = true;
      INFO("keep_aspect " << keep << ", variant " << variant);
      BrightBoxModel model(keep);
      const app::EvalRun run = app::evaluate_model(model, d, eng::Device::cpu(), io, 2, 0);
      CHECK(run.warnings.empty());
      REQUIRE(run.images.size() == 2);
      for (size_t k = 0; k < 2; ++k) {
        REQUIRE(run.images[k].detections.size() == 1);
        const data::Box& got = run.images[k].detections[0].box;
        const data::Box& want = pics[k].rect;
        // One input pixel at the smallest scale, in original pixels.
        const data::InputFit f = data::fit_input(pics[k].w, pics[k].h, 64, keep);
        const double tx = 1.0 / f.scale_x + 1e-9, ty = 1.0 / f.scale_y + 1e-9;
        INFO("image " << k << ": got " << got.x1 << "," << got.y1 << "," << got.x2 << "," << got.y2);
        CHECK(std::abs(got.x1 - want.x1) <= tx);
        CHECK(std::abs(got.x2 - want.x2) <= tx);
        CHECK(std::abs(got.y1 - want.y1) <= ty);
        CHECK(std::abs(got.y2 - want.y2) <= ty);
      }
      CHECK(run.result.ap50 == Approx(1.0));
      CHECK(model.config().input_size == 64);
      // The loader followed the model (lo.keep_aspect = model.keep_aspect_ratio()).
      CHECK(model.inputs > 0);
      CHECK(model.letterboxed_inputs == (keep ? model.inputs : 0));
    }
  }
}

TEST_CASE("detect_batch refuses a batch without input fits", "[apps][inference]") {
  BrightBoxModel model(true);
  data::Batch b;
  b.images = eng::zeros({1, 3, 64, 64});
  b.images_at = {b.images};
  b.samples = {0};
  b.widths = {64};
  b.heights = {64};
  CHECK_THROWS_WITH(app::detect_batch(model, b, eng::Device::cpu(), {}),
                    Catch::Matchers::Contains("input fits"));
}
