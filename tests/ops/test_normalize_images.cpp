// normalize_images (engine/normalize_images.h, kernels/normalize_image.h): uint8 images to
// the network's float / bf16 input. Hand-checked values, the one-line errors, and "cuda
// matches cpu" bit for bit on both CUDA kernels (the scalar one for planes that are not a
// multiple of 4, the four-pixel one otherwise), f32 and bf16.
#include "engine/normalize_images.h"
#include "test_helpers.h"

using eng::Device;
using eng::DType;
using eng::Tensor;

namespace {

Tensor u8_batch(const eng::Shape& s, uint32_t seed) {
  Tensor t = eng::empty(s, eng::TensorOptions(DType::u8));
  uint8_t* p = t.data<uint8_t>();
  uint32_t state = seed;
  for (int64_t i = 0; i < t.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    p[i] = static_cast<uint8_t>(state >> 24);
  }
  p[0] = 0;  // the extremes
  p[t.numel() - 1] = 255;
  return t;
}

const std::vector<double> kMean{123.675, 116.28, 103.53}, kStd{58.395, 57.12, 57.375};

}  // namespace

TEST_CASE("normalize_images: hand-checked values per channel", "[ops][normalize_images]") {
  Tensor x = eng::empty({1, 3, 1, 2}, eng::TensorOptions(DType::u8));
  const uint8_t v[6] = {0, 255, 10, 20, 100, 200};
  std::copy(v, v + 6, x.data<uint8_t>());
  Tensor y = eng::normalize_images(x, {10, 20, 30}, {2, 4, 10});
  CHECK(y.dtype() == DType::f32);
  CHECK(y.sizes() == eng::Shape{1, 3, 1, 2});
  CHECK(y.to_vector<float>() == std::vector<float>{-5.0f, 122.5f, -2.5f, 0.0f, 7.0f, 17.0f});
  // The float expression the header documents, also for a std that is not a power of 2.
  Tensor z = eng::normalize_images(u8_batch({2, 3, 3, 5}, 7), kMean, kStd);
  const std::vector<float> got = z.to_vector<float>();
  const Tensor xs = u8_batch({2, 3, 3, 5}, 7);
  for (int64_t i = 0; i < xs.numel(); ++i) {
    const int c = static_cast<int>((i / 15) % 3);
    const float want = (static_cast<float>(xs.data<uint8_t>()[i]) - static_cast<float>(kMean[c])) *
                       static_cast<float>(1.0 / kStd[c]);
    REQUIRE(got[static_cast<size_t>(i)] == want);
  }
  // bf16: the f32 value rounded to nearest even.
  Tensor b = eng::normalize_images(x, {10, 20, 30}, {2, 4, 10}, DType::bf16);
  CHECK(b.dtype() == DType::bf16);
  CHECK(b.to_vector<float>() == std::vector<float>{-5.0f, 122.5f, -2.5f, 0.0f, 7.0f, 17.0f});
}

TEST_CASE("normalize_images: bad input is one error naming the problem", "[ops][normalize_images]") {
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(eng::normalize_images(eng::zeros({1, 3, 2, 2}), kMean, kStd),
                    Contains("normalize_images") && Contains("u8") && Contains("f32"));
  CHECK_THROWS_WITH(eng::normalize_images(eng::empty({3, 2, 2}, eng::TensorOptions(DType::u8)), kMean, kStd),
                    Contains("normalize_images") && Contains("[3, 2, 2]"));
  CHECK_THROWS_WITH(eng::normalize_images(eng::empty({1, 5, 2, 2}, eng::TensorOptions(DType::u8)), kMean, kStd),
                    Contains("5 channels"));
  CHECK_THROWS_WITH(eng::normalize_images(eng::empty({1, 3, 2, 2}, eng::TensorOptions(DType::u8)), {1, 2}, kStd),
                    Contains("mean and std need 3 values"));
  CHECK_THROWS_WITH(eng::normalize_images(eng::empty({1, 3, 2, 2}, eng::TensorOptions(DType::u8)), kMean, {1, 0, 1}),
                    Contains("channel 1") && Contains("std must be positive"));
  CHECK_THROWS_WITH(
      eng::normalize_images(eng::empty({1, 3, 2, 2}, eng::TensorOptions(DType::u8)), kMean, kStd, DType::f64),
      Contains("f32 or bf16"));
  CHECK(eng::normalize_images(eng::empty({0, 3, 4, 4}, eng::TensorOptions(DType::u8)), kMean, kStd).numel() == 0);
}

TEST_CASE("normalize_images: cuda matches cpu", "[ops][normalize_images][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // 5x7 planes take the scalar kernel, 6x8 the four-pixel one; the batch slice starts the
  // input at an offset of one image.
  for (const eng::Shape& s : {eng::Shape{2, 3, 5, 7}, eng::Shape{3, 3, 6, 8}, eng::Shape{1, 1, 1, 1}}) {
    const Tensor x = u8_batch(s, static_cast<uint32_t>(s[2] * 31 + s[3]));
    const std::vector<double> mean(kMean.begin(), kMean.begin() + s[1]), std(kStd.begin(), kStd.begin() + s[1]);
    for (DType dt : {DType::f32, DType::bf16}) {
      INFO("shape " << eng::shape_str(s) << " dtype " << eng::dtype_name(dt));
      const Tensor ref = eng::normalize_images(x, mean, std, dt);
      const Tensor got = eng::normalize_images(x.to(Device::cuda()), mean, std, dt);
      CHECK(got.is_cuda());
      CHECK(got.dtype() == dt);
      CHECK(got.cpu().to_vector<float>() == ref.to_vector<float>());
      if (s[0] > 1) {
        const Tensor tail = x.narrow(0, 1, s[0] - 1);
        CHECK(eng::normalize_images(tail.to(Device::cuda()), mean, std, dt).cpu().to_vector<float>() ==
              eng::normalize_images(tail, mean, std, dt).to_vector<float>());
      }
    }
  }
}
