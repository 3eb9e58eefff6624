// uint8 batches (data::LoaderOptions::uint8_images) and their upload (apps/common/
// batch_upload.h): the loader's u8 batch normalised equals its float batch up to the 8-bit
// rounding of the resized pixels, in both modes and with augmentation; batch_images_on gives
// the same input on the CPU and on CUDA (upload on the copy stream, normalised on the compute
// stream) for u8 and f32 batches.
#include <catch2/catch.hpp>

#include <cmath>

#include "common/batch_upload.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/synth.h"
#include "engine/allocator.h"
#include "engine/normalize_images.h"
#include "temp_dir.h"
#include "test_helpers.h"

namespace {

const data::Dataset& dataset() {
  static test::TempDir dir("batch_upload");
  static const data::Dataset d = [] {
    data::SynthOptions so;
    so.width = 72;
    so.height = 56;
    so.num_classes = 3;
    data::write_synth_dataset(dir.path.string(), data::SynthFormat::Voc, 12, 0, 99, so);
    data::VocOptions o;
    o.roots = {dir.path.string()};
    return data::load_voc(o);
  }();
  return d;
}

data::LoaderOptions options(bool train, bool u8, bool pinned) {
  data::LoaderOptions o;
  o.batch_size = 4;
  o.workers = 0;
  o.seed = 3;
  o.train = train;
  o.input_sizes = {48, 40};
  o.mean = {123.675, 116.28, 103.53};
  o.std = {58.395, 57.12, 57.375};
  o.uint8_images = u8;
  o.pinned = pinned;
  return o;
}

// Largest |a - b| in units of the smallest std (the 8-bit rounding allows 0.5).
double worst_pixel_error(const eng::Tensor& a, const eng::Tensor& b) {
  const std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  REQUIRE(x.size() == y.size());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(double(x[i]) - y[i]) * 57.12);
  return worst;
}

}  // namespace

TEST_CASE("batch upload: the loader's u8 batches normalise to its float batches", "[data][loader][batch_upload]") {
  for (bool train : {true, false}) {
    data::Loader f32_loader(dataset(), options(train, false, false));
    data::Loader u8_loader(dataset(), options(train, true, false));
    for (int i = 0; i < 2; ++i) {
      data::Batch a, b;
      REQUIRE(f32_loader.next(a));
      REQUIRE(u8_loader.next(b));
      REQUIRE(b.images.dtype() == eng::DType::u8);
      REQUIRE(a.images.dtype() == eng::DType::f32);
      CHECK(a.samples == b.samples);
      CHECK(a.input_size == b.input_size);
      REQUIRE(a.images_at.size() == b.images_at.size());
      for (size_t k = 0; k < a.images_at.size(); ++k) {
        REQUIRE(a.images_at[k].sizes() == b.images_at[k].sizes());
        const eng::Tensor n = eng::normalize_images(b.images_at[k], options(train, true, false).mean,
                                                    options(train, true, false).std);
        CHECK(worst_pixel_error(n, a.images_at[k]) <= 0.5 + 1e-3);
      }
      REQUIRE(a.objects.size() == b.objects.size());
      for (size_t k = 0; k < a.objects.size(); ++k) CHECK(a.objects[k].size() == b.objects[k].size());
    }
  }
}

TEST_CASE("batch upload: batch_images_on on the CPU and its errors", "[batch_upload]") {
  data::Loader loader(dataset(), options(true, true, false));
  data::Batch b;
  REQUIRE(loader.next(b));
  const auto o = options(true, true, false);
  const eng::Tensor x = app::batch_images_on(b, eng::Device::cpu(), o.mean, o.std);
  CHECK(x.dtype() == eng::DType::f32);
  CHECK(x.to_vector<float>() == eng::normalize_images(b.images, o.mean, o.std).to_vector<float>());
  // A float batch is taken as already normalised.
  data::Batch f;
  f.images = eng::full({1, 3, 2, 2}, 0.25);
  CHECK(app::batch_images_on(f, eng::Device::cpu(), o.mean, o.std).to_vector<float>() ==
        std::vector<float>(12, 0.25f));
  data::Batch bad;
  bad.number = 7;
  bad.images = eng::zeros({1, 3, 2, 2}, eng::TensorOptions(eng::DType::i32));
  CHECK_THROWS_WITH(app::batch_images_on(bad, eng::Device::cpu(), o.mean, o.std),
                    Catch::Contains("batch 7") && Catch::Contains("i32"));
}

TEST_CASE("batch upload: cuda matches cpu for pinned u8 and f32 batches", "[batch_upload][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (bool u8 : {true, false}) {
    data::Loader loader(dataset(), options(true, u8, true));
    const auto o = options(true, u8, true);
    for (int i = 0; i < 3; ++i) {  // several batches through the pinned and device caches
      data::Batch b;
      REQUIRE(loader.next(b));
      CHECK(b.images.storage()->pinned());
      const eng::Tensor ref = app::batch_images_on(b, eng::Device::cpu(), o.mean, o.std);
      const eng::Tensor got = app::batch_images_on(b, eng::Device::cuda(), o.mean, o.std);
      CHECK(got.is_cuda());
      CHECK(got.cpu().to_vector<float>() == ref.to_vector<float>());
      const eng::Tensor got16 = app::batch_images_on(b, eng::Device::cuda(), o.mean, o.std, eng::DType::bf16);
      CHECK(got16.dtype() == eng::DType::bf16);
      CHECK(got16.cpu().to_vector<float>() ==
            app::batch_images_on(b, eng::Device::cpu(), o.mean, o.std, eng::DType::bf16).to_vector<float>());
    }
  }
}
