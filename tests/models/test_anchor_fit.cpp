// Anchor fit and k-means anchor sizes (models/anchor_fit.h), custom anchor scales
// (models/anchor_scales.h) and their metadata round trip.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "common/anchor_report.h"
#include "data/synth.h"
#include "engine/error.h"
#include "models/anchor_fit.h"
#include "models/anchor_scales.h"
#include "models/detection_model.h"
#include "models/weights.h"
#include "temp_dir.h"

using models::BoxShape;

namespace {

// A generated training set (boxes only, no files): `n` scenes of the synthetic generator.
data::Dataset synth_boxes(int n, double min_size, double max_size, uint64_t seed) {
  data::SynthOptions o;
  o.min_size = min_size;
  o.max_size = max_size;
  data::Dataset d;
  d.class_names = data::synth_class_names(o.num_classes);
  for (int i = 0; i < o.num_classes; ++i) d.category_ids.push_back(i + 1);
  for (int i = 0; i < n; ++i) {
    data::SynthScene s = data::render_scene(o, data::synth_image_seed(seed, 0, static_cast<uint64_t>(i)));
    data::Sample sample;
    sample.key = std::to_string(i);
    sample.width = o.width;
    sample.height = o.height;
    sample.objects = s.objects;
    d.samples.push_back(sample);
  }
  return d;
}

std::shared_ptr<models::DetectionModel> make(const std::string& arch, const std::string& preset,
                                             std::vector<double> scales = {}, int64_t size = 0) {
  models::ModelConfig c;
  c.arch = arch;
  c.num_classes = 3;
  c.anchor_preset = preset;
  c.anchor_scales = std::move(scales);
  c.input_size = size;
  return models::create_model(c);
}

}  // namespace

TEST_CASE("shape_iou is the IoU of two shapes sharing a centre", "[anchor_fit]") {
  CHECK(models::shape_iou({2, 4}, {4, 2}) == Approx(4.0 / 12.0));
  CHECK(models::shape_iou({3, 5}, {3, 5}) == 1.0);
  CHECK(models::shape_iou({1, 1}, {2, 2}) == Approx(0.25));
}

TEST_CASE("measure_anchor_fit counts boxes whose best anchor reaches IoU 0.5 and takes the median", "[anchor_fit]") {
  const eng::Tensor anchors = eng::from_vector(std::vector<float>{0, 0, 10, 10, 0, 0, 20, 20}, {2, 4});
  // IoU with the best anchor: 1 (exact), 0.5 (half of the 10x10), 0.16 (4x4 inside the 10x10).
  const std::vector<data::Box> boxes = {{0, 0, 10, 10}, {0, 0, 10, 5}, {0, 0, 4, 4}};
  const models::AnchorFit fit = models::measure_anchor_fit(boxes, anchors);
  CHECK(fit.boxes == 3);
  CHECK(fit.recall == Approx(2.0 / 3.0));
  CHECK(fit.median_iou == Approx(0.5));
  CHECK(models::measure_anchor_fit({}, anchors).boxes == 0);
  CHECK_THROWS_WITH(models::measure_anchor_fit(boxes, eng::from_vector(std::vector<float>{0, 0, 1}, {1, 3})),
                    Catch::Contains("anchors must be [A, 4]"));
}

TEST_CASE("fit_boxes scales boxes to the input as the loader does and skips difficult, crowd and unsized", "[anchor_fit]") {
  data::Dataset d;
  data::Sample a;
  a.width = 200;
  a.height = 100;
  a.objects.push_back({{20, 10, 60, 50}, 0, false, false, -1});
  a.objects.push_back({{0, 0, 10, 10}, 0, true, false, -1});   // difficult
  a.objects.push_back({{0, 0, 10, 10}, 0, false, true, -1});   // crowd
  a.objects.push_back({{0, 0, 0.5, 50}, 0, false, false, -1}); // 0.5 px wide at input 200... kept? see below
  data::Sample b = a;
  b.width = 0;  // no size in the annotation
  d.samples = {a, b};
  const models::TrainingBoxes tb = models::fit_boxes(d, 100);
  CHECK(tb.unsized_images == 1);
  REQUIRE(tb.boxes.size() == 1);  // the 0.5 px box is 0.25 px at input 100: dropped (< 1 px)
  CHECK(tb.boxes[0].x1 == Approx(10));
  CHECK(tb.boxes[0].y1 == Approx(10));
  CHECK(tb.boxes[0].x2 == Approx(30));
  CHECK(tb.boxes[0].y2 == Approx(50));
}

TEST_CASE("k-means with 1 - IoU finds known shape groups, deterministically", "[anchor_fit]") {
  // Three groups of shapes, each a centre shape with +-5% jitter in w and h.
  const std::vector<BoxShape> centres = {{10, 10}, {40, 20}, {100, 120}};
  std::vector<BoxShape> shapes;
  for (const BoxShape& c : centres)
    for (double dw : {-0.05, 0.0, 0.05})
      for (double dh : {-0.05, 0.0, 0.05}) shapes.push_back({c.w * (1 + dw), c.h * (1 + dh)});
  for (uint64_t seed : {0ull, 1ull, 7ull}) {
    const auto clusters = models::kmeans_iou_shapes(shapes, 3, seed);
    REQUIRE(clusters.size() == 3);
    for (size_t j = 0; j < 3; ++j) {  // sorted by area: the group means (= the centres)
      CHECK(clusters[j].w == Approx(centres[j].w).epsilon(1e-9));
      CHECK(clusters[j].h == Approx(centres[j].h).epsilon(1e-9));
    }
  }
  const auto a = models::kmeans_iou_shapes(shapes, 2, 3), b = models::kmeans_iou_shapes(shapes, 2, 3);
  REQUIRE(a.size() == 2);
  CHECK((a[0].w == b[0].w && a[0].h == b[0].h && a[1].w == b[1].w && a[1].h == b[1].h));
  // More clusters never fit worse here: 1 cluster < 3 clusters.
  CHECK(models::mean_best_shape_iou(shapes, models::kmeans_iou_shapes(shapes, 1)) <
        models::mean_best_shape_iou(shapes, models::kmeans_iou_shapes(shapes, 3)));
  CHECK(models::mean_best_shape_iou(shapes, models::kmeans_iou_shapes(shapes, 3)) > 0.9);
  CHECK_THROWS_WITH(models::kmeans_iou_shapes({{1, 1}, {1, 1}}, 2), Catch::Contains("1 distinct box shapes cannot make 2"));
  CHECK_THROWS_WITH(models::kmeans_iou_shapes(shapes, 0), Catch::Contains("k must be at least 1"));
  CHECK_THROWS_WITH(models::kmeans_iou_shapes({{1, 0}}, 1), Catch::Contains("not positive"));
}

TEST_CASE("scales_from_clusters gives increasing scales, exact when k = L + 1", "[anchor_fit]") {
  const std::vector<BoxShape> c = {{10, 10}, {20, 20}, {40, 40}};
  const auto s = models::scales_from_clusters(c, 100, 3);
  REQUIRE(s.size() == 3);
  CHECK(s[0] == Approx(0.1));
  CHECK(s[1] == Approx(0.2));
  CHECK(s[2] == Approx(0.4));
  const auto t = models::scales_from_clusters(c, 100, 5);  // log-interpolated between clusters
  REQUIRE(t.size() == 5);
  CHECK(t[1] == Approx(std::sqrt(0.1 * 0.2)));
  const auto u = models::scales_from_clusters({{10, 10}}, 100, 3);  // ties nudged apart
  CHECK((u[0] < u[1] && u[1] < u[2]));
}

TEST_CASE("custom anchor scales: defaults unchanged, the coco scales reproduce the coco preset bit for bit", "[anchor_fit]") {
  const auto coco = make("ssd300_vgg16", "coco");
  const auto custom = make("ssd300_vgg16", "custom", {0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05});
  const eng::Tensor a = coco->anchors(eng::Device::cpu()), b = custom->anchors(eng::Device::cpu());
  REQUIRE(a.sizes() == b.sizes());
  CHECK(a.size(0) == 8732);
  const float* pa = a.contiguous().data<float>();
  const float* pb = b.contiguous().data<float>();
  bool same = true;
  for (int64_t i = 0; i < a.numel(); ++i) same = same && pa[i] == pb[i];
  CHECK(same);
  // tiny_ssd: the d2l table is the rounded scales 0.2, 0.37, 0.54, 0.71, 0.88, 1.05.
  const eng::Tensor t0 = make("tiny_ssd", "voc")->anchors(eng::Device::cpu());
  const eng::Tensor t1 = make("tiny_ssd", "custom", {0.2, 0.37, 0.54, 0.71, 0.88, 1.05})->anchors(eng::Device::cpu());
  REQUIRE(t0.size(0) == 5444);
  REQUIRE(t1.size(0) == 5444);
  float worst = 0;
  for (int64_t i = 0; i < t0.numel(); ++i)
    worst = std::max(worst, std::fabs(t0.data<float>()[i] - t1.data<float>()[i]));
  CHECK(worst < 0.2f);  // pixels at 256: 0.272 vs sqrt(0.2 * 0.37) = 0.27203
  // Smaller scales give smaller anchors: the first anchor is s_0 * 256 wide.
  const eng::Tensor t2 = make("tiny_ssd", "custom", {0.05, 0.1, 0.2, 0.4, 0.6, 0.8})->anchors(eng::Device::cpu());
  CHECK(t2.data<float>()[2] - t2.data<float>()[0] == Approx(0.05 * 256).epsilon(1e-5));
  CHECK(make("ssd512_vgg16", "custom", {0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7})->anchors(eng::Device::cpu()).size(0) ==
        24564);
}

TEST_CASE("bad anchor presets and scales are one-line errors", "[anchor_fit]") {
  CHECK_THROWS_WITH(make("tiny_ssd", "yolo"), Catch::Contains("'yolo' is not one of voc, coco, custom"));
  CHECK_THROWS_WITH(make("tiny_ssd", "custom"), Catch::Contains("takes 6 anchor scales"));
  CHECK_THROWS_WITH(make("tiny_ssd", "custom", {0.1, 0.2}), Catch::Contains("takes 6 anchor scales"));
  CHECK_THROWS_WITH(make("tiny_ssd", "voc", {0.1, 0.2, 0.3, 0.4, 0.5, 0.6}), Catch::Contains("need the preset 'custom'"));
  CHECK_THROWS_WITH(make("retinanet_resnet50_fpn", "custom", {0.1, 0.2}), Catch::Contains("takes no custom anchor sizes"));
  CHECK_THROWS_WITH(make("tiny_ssd", "custom", {0.1, 0.2, 0.2, 0.4, 0.5, 0.6}), Catch::Contains("must increase"));
  for (const char* bad : {"", "0.1,", ",0.1", "0.1,,0.2", "nan", "inf", "-0.1", "0x1p-3", "5", "0", "1e999", "0.2,0.1",
                          "0.1 ,0.2", "1e-3x"}) {
    INFO(bad);
    CHECK_THROWS_AS(models::parse_anchor_scales(bad, "--anchor-sizes"), eng::Error);
  }
  CHECK_THROWS_WITH(models::parse_anchor_scales("0.1,abc", "--anchor-sizes"),
                    Catch::Contains("--anchor-sizes: 'abc' (in '0.1,abc') is not a number in (0, 4]"));
  CHECK(models::parse_anchor_scales("0.05,1e-1,.2", "x") == std::vector<double>{0.05, 0.1, 0.2});
  models::ModelConfig c;
  c.arch = "tiny_ssd";
  CHECK_THROWS_WITH(app::apply_anchor_flags(c, "coco", "0.1,0.2,0.3,0.4,0.5,0.6", "voc"),
                    Catch::Contains("--anchor-sizes: given with --anchor-preset coco"));
  CHECK_THROWS_WITH(app::apply_anchor_flags(c, "big", "", "voc"), Catch::Contains("--anchor-preset: anchor preset 'big'"));
  app::apply_anchor_flags(c, "", "0.1,0.2,0.3,0.4,0.5,0.6", "voc");
  CHECK(c.anchor_preset == "custom");
  CHECK(c.anchor_scales.size() == 6);
}

TEST_CASE("custom anchor scales travel in the weights metadata", "[anchor_fit]") {
  test::TempDir dir("anchor_fit_meta");
  const std::vector<double> scales = {0.05, 0.0712345678901234, 0.2, 0.4, 0.6, 0.8};
  const auto m = make("tiny_ssd", "custom", scales, 128);
  models::save_model_weights(*m, dir / "w.safetensors");
  const models::ModelConfig c = models::read_model_config(dir / "w.safetensors");
  CHECK(c.anchor_preset == "custom");
  CHECK(c.anchor_scales == scales);  // %.17g round-trips exactly
  const auto d = make("tiny_ssd", "voc", {}, 128);
  models::save_model_weights(*d, dir / "v.safetensors");
  const models::ModelConfig cv = models::read_model_config(dir / "v.safetensors");
  CHECK(cv.anchor_preset == "voc");
  CHECK(cv.anchor_scales.empty());
}

TEST_CASE("on small objects tiny_ssd's default anchors warn, and the k-means proposal fits better", "[anchor_fit]") {
  // Objects 5-20% of the image side (issue 14's case), at tiny_ssd's default input 256.
  const data::Dataset d = synth_boxes(60, 0.05, 0.2, 3);
  const auto model = make("tiny_ssd", "voc");
  const std::vector<std::string> lines = app::anchor_fit_lines(d, *model, "DATA");
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].find("anchors: tiny_ssd (voc) at input 256 on the training set:") == 0);
  CHECK(lines[1].find("warning: the anchors fit the training boxes poorly") == 0);
  CHECK(lines[1].find("ssd_data anchors --data DATA --arch tiny_ssd --input-size 256") != std::string::npos);

  const models::TrainingBoxes tb = models::fit_boxes(d, 256);
  REQUIRE(tb.boxes.size() > 60);
  const models::AnchorFit before = models::measure_anchor_fit(tb.boxes, model->anchors(eng::Device::cpu()));
  models::ModelConfig base = model->config();
  const models::AnchorProposal p = models::propose_anchor_scales(tb.boxes, base, 0, 0);
  const models::AnchorProposal q = models::propose_anchor_scales(tb.boxes, base, 0, 0);
  CHECK(p.scales == q.scales);  // deterministic
  REQUIRE(p.clusters.size() == 6);
  REQUIRE(p.scales.size() == 6);
  const auto fitted = make("tiny_ssd", "custom", p.scales);
  const models::AnchorFit after = models::measure_anchor_fit(tb.boxes, fitted->anchors(eng::Device::cpu()));
  const models::AnchorFit kmeans_only =
      models::measure_anchor_fit(tb.boxes, make("tiny_ssd", "custom", p.kmeans_scales)->anchors(eng::Device::cpu()));
  INFO("default " << models::describe_anchor_fit(before) << "; k-means " << models::describe_anchor_fit(kmeans_only)
                  << "; refined " << models::describe_anchor_fit(after));
  CHECK(after.recall == p.fit.recall);
  CHECK(before.recall < 0.5);
  CHECK(kmeans_only.recall > before.recall + 0.15);
  CHECK(after.recall >= kmeans_only.recall);
  CHECK(after.recall > before.recall + 0.3);
  CHECK(after.median_iou > before.median_iou);
  // At input 512 (strides halve) the proposal reaches 90%: no warning.
  const auto big = make("tiny_ssd", "voc", {}, 512);
  const models::AnchorProposal p512 = models::propose_anchor_scales(models::fit_boxes(d, 512).boxes, big->config(), 0, 0);
  INFO("at 512: " << models::describe_anchor_fit(p512.fit));
  CHECK(p512.fit.recall >= 0.9);
  CHECK(app::anchor_fit_lines(d, *make("tiny_ssd", "custom", p512.scales, 512), "DATA").size() == 1);
}

TEST_CASE("on the default synthetic objects tiny_ssd's anchors do not warn", "[anchor_fit]") {
  const data::Dataset d = synth_boxes(40, 0.15, 0.55, 5);
  const auto lines = app::anchor_fit_lines(d, *make("tiny_ssd", "voc"), "DATA");
  INFO(lines[0]);
  CHECK(lines.size() == 1);
}
