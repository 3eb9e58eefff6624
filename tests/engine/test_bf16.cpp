// bf16 through the engine: the dtype, the kern::bf16 conversions, casts in the strided copy
// (round to nearest even, one rounding from every source type), factories, printing, the
// differentiable to(dtype), the one-line error from ops without a bf16 kernel, and the CUDA
// casts bit for bit against the CPU ones.
//
// Hand-computed values: 1.0 is 0x3F80 and bf16's spacing in [1, 2) is 2^-7, so
// 1 + 2^-8 is a tie between 0x3F80 (even) and 0x3F81 and rounds down, and 1 + 3*2^-8 is a
// tie between 0x3F81 and 0x3F82 (even) and rounds up.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "engine/detection.h"
#include "kernels/bf16.h"
#include "test_helpers.h"

using namespace eng;

namespace {

const double k2m8 = std::ldexp(1.0, -8);

std::vector<uint16_t> bits_of(const Tensor& t) {
  std::vector<uint16_t> out;
  for (kern::bf16 v : t.to_vector<kern::bf16>()) out.push_back(v.bits);
  return out;
}

Tensor bf16_from_bits(const std::vector<uint16_t>& bits, const Shape& shape) {
  std::vector<kern::bf16> v;
  for (uint16_t b : bits) v.push_back(kern::bf16{b});
  return from_vector(v, shape);
}

}  // namespace

TEST_CASE("bf16: the dtype", "[bf16]") {
  REQUIRE(dtype_size(DType::bf16) == 2);
  REQUIRE(std::string(dtype_name(DType::bf16)) == "bf16");
  REQUIRE(is_floating(DType::bf16));
  STATIC_REQUIRE(dtype_of<kern::bf16>::value == DType::bf16);
  STATIC_REQUIRE(sizeof(kern::bf16) == 2);
  Tensor t = empty({3, 5}, DType::bf16);
  REQUIRE(t.dtype() == DType::bf16);
}

TEST_CASE("bf16: kern conversions round to nearest even", "[bf16]") {
  using kern::bf16_to_float;
  using kern::float_to_bf16_rne;
  const float f2m8 = static_cast<float>(k2m8);
  REQUIRE(float_to_bf16_rne(1.0f).bits == 0x3F80);
  REQUIRE(float_to_bf16_rne(1.0f + f2m8).bits == 0x3F80);                 // tie, down to even
  REQUIRE(float_to_bf16_rne(1.0f + 3 * f2m8).bits == 0x3F82);             // tie, up to even
  REQUIRE(float_to_bf16_rne(std::nextafter(1.0f + f2m8, 2.0f)).bits == 0x3F81);
  REQUIRE(float_to_bf16_rne(-(1.0f + 3 * f2m8)).bits == 0xBF82);
  REQUIRE(float_to_bf16_rne(1.0f / 3.0f).bits == 0x3EAB);                 // 0x3EAAAAAB
  REQUIRE(float_to_bf16_rne(2.0f - std::ldexp(1.0f, -9)).bits == 0x4000);  // carry into the exponent
  REQUIRE(float_to_bf16_rne(std::numeric_limits<float>::quiet_NaN()).bits == 0x7FFF);
  REQUIRE(float_to_bf16_rne(std::numeric_limits<float>::infinity()).bits == 0x7F80);
  REQUIRE(float_to_bf16_rne(-std::numeric_limits<float>::infinity()).bits == 0xFF80);
  REQUIRE(float_to_bf16_rne(std::numeric_limits<float>::max()).bits == 0x7F80);  // overflow
  REQUIRE(float_to_bf16_rne(std::ldexp(1.0f, -133)).bits == 0x0001);          // smallest subnormal
  REQUIRE(float_to_bf16_rne(std::ldexp(1.0f, -134)).bits == 0x0000);          // tie with 0
  REQUIRE(kern::float_to_bf16_rz(1.0f + 3 * f2m8).bits == 0x3F81);
  REQUIRE(kern::float_to_bf16_rz(std::numeric_limits<float>::max()).bits == 0x7F7F);
  REQUIRE(bf16_to_float(kern::bf16{0x3F81}) == 1.0078125f);
  REQUIRE(bf16_to_float(kern::bf16{0xC049}) == -3.140625f);
  // One rounding from double: through float, 1 + 2^-8 + 2^-40 would become a tie.
  REQUIRE(kern::double_to_bf16_rne(1.0 + k2m8 + std::ldexp(1.0, -40)).bits == 0x3F81);
  REQUIRE(kern::double_to_bf16_rne(-(1.0 + k2m8 + std::ldexp(1.0, -40))).bits == 0xBF81);
  REQUIRE(kern::double_to_bf16_rne(1e300).bits == 0x7F80);
  REQUIRE(kern::double_to_bf16_rne(1e-300).bits == 0x0000);
  REQUIRE(kern::double_to_bf16_rne(-1e-300).bits == 0x8000);
  // Integers: 257 is a tie (-> 256), 259 goes to 260; 2^40 + 2^32 + 1 is just past a tie.
  REQUIRE(bf16_to_float(kern::int64_to_bf16_rne(257)) == 256.0f);
  REQUIRE(bf16_to_float(kern::int64_to_bf16_rne(259)) == 260.0f);
  REQUIRE(bf16_to_float(kern::int64_to_bf16_rne(-259)) == -260.0f);
  REQUIRE(bf16_to_float(kern::int64_to_bf16_rne((int64_t{1} << 40) + (int64_t{1} << 32) + 1)) ==
          std::ldexp(1.0f + 1.0f / 128, 40));
  REQUIRE(bf16_to_float(kern::int64_to_bf16_rne(std::numeric_limits<int64_t>::min())) == -std::ldexp(1.0f, 63));
}

TEST_CASE("bf16: casts through Tensor::to", "[bf16]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const float f2m8 = static_cast<float>(k2m8);
  Tensor f = from_vector<float>({1.0f + f2m8, 1.0f + 3 * f2m8, 1.0f / 3.0f, nan, -inf, -0.0f, 3.0e38f, 0.5f}, {8});
  Tensor b = f.to(DType::bf16);
  REQUIRE(b.dtype() == DType::bf16);
  REQUIRE(bits_of(b) == std::vector<uint16_t>{0x3F80, 0x3F82, 0x3EAB, 0x7FFF, 0xFF80, 0x8000, 0x7F62, 0x3F00});
  // bf16 -> f32 / f64 is exact.
  const std::vector<float> back = b.to(DType::f32).to_vector<float>();
  REQUIRE(back[1] == 1.015625f);
  REQUIRE(std::isnan(back[3]));
  REQUIRE(back[4] == -inf);
  REQUIRE(std::signbit(back[5]));
  REQUIRE(b.to(DType::f64).to_vector<double>()[2] == 0.333984375);
  // f64 -> bf16 rounds once.
  Tensor d = from_vector<double>({1.0 + k2m8 + std::ldexp(1.0, -40), 1.0 + k2m8, -2.5}, {3});
  REQUIRE(bits_of(d.to(DType::bf16)) == std::vector<uint16_t>{0x3F81, 0x3F80, 0xC020});
  // Integers -> bf16 round once; bf16 -> integers truncate like float -> int.
  REQUIRE(bits_of(from_vector<int32_t>({257, 259, -259, 7}, {4}).to(DType::bf16)) ==
          std::vector<uint16_t>{0x4380, 0x4382, 0xC382, 0x40E0});
  const int64_t big = (int64_t{1} << 40) + (int64_t{1} << 32) + 1;
  REQUIRE(from_vector<int64_t>({big}, {1}).to(DType::bf16).to_vector<double>()[0] == std::ldexp(1.0 + 1.0 / 128, 40));
  REQUIRE(from_vector<uint8_t>({255, 0}, {2}).to(DType::bf16).to_vector<float>() == std::vector<float>{255, 0});
  Tensor neg = from_vector<float>({-7.75f, 2.99f, 0.0f}, {3}).to(DType::bf16);
  REQUIRE(neg.to(DType::i32).to_vector<int32_t>() == std::vector<int32_t>{-7, 2, 0});
  REQUIRE(neg.to(DType::b8).to_vector<uint8_t>() == std::vector<uint8_t>{1, 1, 0});
  REQUIRE(bits_of(from_vector<uint8_t>({1, 0}, {2}).to(DType::b8).to(DType::bf16)) == std::vector<uint16_t>{0x3F80, 0});
}

TEST_CASE("bf16: strided copies, factories, item and printing", "[bf16]") {
  // A transposed bf16 view made contiguous keeps every bit.
  Tensor b = bf16_from_bits({0x3F80, 0x4000, 0x4040, 0x4080, 0x40A0, 0x40C0}, {2, 3});
  REQUIRE(bits_of(b.transpose(0, 1).contiguous()) == std::vector<uint16_t>{0x3F80, 0x4080, 0x4000, 0x40A0, 0x4040, 0x40C0});
  // copy_ casts on the way in and broadcasts.
  Tensor dst = zeros({2, 2}, DType::bf16);
  dst.copy_(from_vector<float>({1.0f + 3 * static_cast<float>(k2m8), 0.25f}, {2}));
  REQUIRE(bits_of(dst) == std::vector<uint16_t>{0x3F82, 0x3E80, 0x3F82, 0x3E80});
  // fill / full round the double value once.
  REQUIRE(bits_of(full({2}, 1.0 + k2m8, DType::bf16)) == std::vector<uint16_t>{0x3F80, 0x3F80});
  REQUIRE(bits_of(full({1}, 1.0 + k2m8 + 1e-9, DType::bf16)) == std::vector<uint16_t>{0x3F81});
  REQUIRE(bits_of(ones({3}, DType::bf16)) == std::vector<uint16_t>(3, 0x3F80));
  REQUIRE(bits_of(zeros({3}, DType::bf16)) == std::vector<uint16_t>(3, 0));
  Tensor f = empty({2}, DType::bf16);
  f.fill_(-3.0);
  REQUIRE(bits_of(f) == std::vector<uint16_t>{0xC040, 0xC040});
  // item() is exact.
  REQUIRE(full({}, 1.0 / 3.0, DType::bf16).item() == 0.333984375);
  // from_vector converts to bf16 when asked.
  REQUIRE(bits_of(from_vector<float>({1.0f + static_cast<float>(k2m8)}, {1}, TensorOptions(DType::bf16))) ==
          std::vector<uint16_t>{0x3F80});
  // Printing shows the values (as floats) and the dtype.
  const std::string s = bf16_from_bits({0x3F81, 0xC020}, {2}).to_string();
  INFO(s);
  REQUIRE(s.find("1.0078") != std::string::npos);
  REQUIRE(s.find("-2.5") != std::string::npos);
  REQUIRE(s.find("dtype=bf16") != std::string::npos);
}

TEST_CASE("bf16: to(dtype) is differentiable between float types", "[bf16]") {
  // x (f32) -> bf16 -> f32, then sum(y * w): dL/dy = w, which reaches x through the two
  // casts back: w rounded to bf16, then widened to f32.
  const float tie_up = 1.0f + 3 * static_cast<float>(k2m8);
  Tensor x = from_vector<float>({0.5f, 1.0f + static_cast<float>(k2m8)}, {2}).set_requires_grad(true);
  Tensor y = x.to(DType::bf16);
  REQUIRE(y.requires_grad());
  Tensor z = y.to(DType::f32);
  REQUIRE(z.to_vector<float>() == std::vector<float>{0.5f, 1.0f});
  Tensor w = from_vector<float>({tie_up, -2.0f}, {2});
  sum(z * w).backward();
  REQUIRE(x.grad().dtype() == DType::f32);
  REQUIRE(x.grad().to_vector<float>() == std::vector<float>{1.015625f, -2.0f});
}

TEST_CASE("bf16: ops without a bf16 kernel fail in one line naming op, dtype and shape", "[bf16]") {
  Tensor b = zeros({2, 3}, DType::bf16);
  auto check = [](const std::function<void()>& f, const std::string& op, const std::string& shape) {
    try {
      f();
      FAIL("no error for " << op);
    } catch (const Error& e) {
      const std::string msg = e.what();
      INFO(msg);
      REQUIRE(msg.find(op + ":") == 0);
      REQUIRE(msg.find("got bf16 of shape " + shape + " (no bf16 kernel)") != std::string::npos);
      REQUIRE(msg.find('\n') == std::string::npos);
    }
  };
  check([&] { det::box_iou(zeros({2, 4}, DType::bf16), zeros({3, 4}, DType::bf16)); }, "box_iou", "[2, 4]");
  check([&] { matmul(b, zeros({3, 2}, DType::bf16)); }, "matmul", "[2, 3]");
  check([&] { linear(b, zeros({4, 3}, DType::bf16)); }, "linear", "[2, 3]");
  // The dtype-only dispatch (no tensor at hand) still names op and dtype.
  REQUIRE_THROWS_WITH(dispatch_float(DType::bf16, "myop", [](auto) {}), Catch::StartsWith("myop: expected a f32 or f64 tensor, got bf16"));
}

TEST_CASE("bf16: CUDA casts equal the CPU casts bit for bit", "[cuda][bf16]") {
  REQUIRE_CUDA_OR_SKIP();
  // Floats around every kind of rounding case: ties both ways, just off ties, subnormals,
  // overflow, NaN, Inf, signed zeros, and random values over a wide range.
  std::vector<float> f;
  for (int i = 0; i < 64; ++i) {
    const float tie = 1.0f + static_cast<float>(2 * i + 1) * static_cast<float>(k2m8);
    f.insert(f.end(), {tie, -tie, std::nextafter(tie, 0.0f), std::nextafter(tie, 4.0f)});
  }
  f.insert(f.end(), {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                     -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::max(), 3.0e38f, -0.0f,
                     0.0f, std::ldexp(1.0f, -134), std::ldexp(3.0f, -134), std::ldexp(1.0f, -149)});
  Generator g(5);
  for (float v : randn({2000}, g).to_vector<float>()) f.push_back(v * std::exp2(static_cast<float>(static_cast<int>(v * 40))));
  const int64_t n = static_cast<int64_t>(f.size());
  Tensor cpu_f = from_vector(f, {n});
  Tensor cuda_f = cpu_f.to(Device::cuda());
  REQUIRE(bits_of(cuda_f.to(DType::bf16)) == bits_of(cpu_f.to(DType::bf16)));
  // Doubles that sit just off a tie (the round-once case), integers of both widths.
  std::vector<double> d;
  std::vector<int64_t> i64;
  std::vector<int32_t> i32;
  for (int i = 0; i < 200; ++i) {
    d.push_back((1.0 + (2 * i + 1) * k2m8) * (1.0 + (i % 3 - 1) * std::ldexp(1.0, -45)));
    i64.push_back(((int64_t{1} << 40) + (int64_t{1} << 32)) * (i % 2 ? 1 : -1) + (i - 100));
    i32.push_back(257 * (i - 100) + i % 3);
  }
  Tensor cpu_d = from_vector(d, {200}), cpu_l = from_vector(i64, {200}), cpu_i = from_vector(i32, {200});
  REQUIRE(bits_of(cpu_d.to(Device::cuda()).to(DType::bf16)) == bits_of(cpu_d.to(DType::bf16)));
  REQUIRE(bits_of(cpu_l.to(Device::cuda()).to(DType::bf16)) == bits_of(cpu_l.to(DType::bf16)));
  REQUIRE(bits_of(cpu_i.to(Device::cuda()).to(DType::bf16)) == bits_of(cpu_i.to(DType::bf16)));
  // bf16 -> wider types, a strided bf16 copy and a fill, all on the device.
  Tensor cpu_b = cpu_f.to(DType::bf16);
  Tensor cuda_b = cpu_b.to(Device::cuda());
  const std::vector<float> wide_cpu = cpu_b.to(DType::f32).to_vector<float>();
  const std::vector<float> wide_cuda = cuda_b.to(DType::f32).to_vector<float>();
  REQUIRE(wide_cpu.size() == wide_cuda.size());
  for (size_t k = 0; k < wide_cpu.size(); ++k) {
    CAPTURE(k);
    REQUIRE((wide_cpu[k] == wide_cuda[k] || (std::isnan(wide_cpu[k]) && std::isnan(wide_cuda[k]))));
  }
  Tensor m = cpu_b.narrow(0, 0, 256).reshape({16, 16});
  REQUIRE(bits_of(m.to(Device::cuda()).transpose(0, 1).contiguous()) == bits_of(m.transpose(0, 1).contiguous()));
  Tensor filled = empty({5}, TensorOptions(DType::bf16).device(Device::cuda()));
  filled.fill_(1.0 + 3 * k2m8);
  REQUIRE(bits_of(filled) == std::vector<uint16_t>(5, 0x3F82));
}
