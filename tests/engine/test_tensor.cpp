// Tensor basics: factories, views sharing storage, copies, printing.
#include "test_helpers.h"

using namespace eng;

TEST_CASE("tensor: factories and item") {
  Tensor z = zeros({2, 3});
  REQUIRE(z.sizes() == Shape{2, 3});
  REQUIRE(z.dtype() == DType::f32);
  REQUIRE(z.to_vector<float>() == std::vector<float>(6, 0.0f));
  REQUIRE(ones({4}, DType::f64).to_vector<double>() == std::vector<double>(4, 1.0));
  REQUIRE(full({2}, 7.5).to_vector<float>() == std::vector<float>{7.5f, 7.5f});
  REQUIRE(arange(5, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  REQUIRE(arange(1.0, 2.0, 0.25, DType::f64).to_vector<double>() == std::vector<double>{1.0, 1.25, 1.5, 1.75});
  REQUIRE(scalar_tensor(3.0).item() == 3.0);
  REQUIRE(scalar_tensor(3.0).dim() == 0);
  REQUIRE_THROWS_WITH(zeros({2}).item(), Catch::Contains("2 elements"));
  Tensor v = from_vector<int32_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  REQUIRE(v.dtype() == DType::i32);
  REQUIRE(v.to_vector<double>() == std::vector<double>{1, 2, 3, 4, 5, 6});
}

TEST_CASE("tensor: seeded random numbers repeat") {
  Generator a(42), b(42), c(43);
  auto x = rand({100}, a).to_vector<float>();
  REQUIRE(x == rand({100}, b).to_vector<float>());
  REQUIRE(x != rand({100}, c).to_vector<float>());
  for (float v : x) REQUIRE((v >= 0.0f && v < 1.0f));
  Generator g(7);
  auto n = randn({20000}, g, DType::f64).to_vector<double>();
  double m = 0, s = 0;
  for (double v : n) m += v;
  m /= n.size();
  for (double v : n) s += (v - m) * (v - m);
  s = std::sqrt(s / n.size());
  REQUIRE(std::fabs(m) < 0.03);
  REQUIRE(std::fabs(s - 1.0) < 0.03);
}

TEST_CASE("tensor: views share storage") {
  Tensor x = arange(24, DType::f64).reshape({2, 3, 4});
  Tensor p = x.permute({2, 0, 1});
  REQUIRE(p.sizes() == Shape{4, 2, 3});
  REQUIRE(p.storage() == x.storage());
  REQUIRE(!p.is_contiguous());
  // p[i, j, k] == x[j, k, i]
  auto pv = p.contiguous().to_vector<double>();
  REQUIRE(pv[(1 * 2 + 1) * 3 + 2] == (1 * 3 + 2) * 4 + 1);

  Tensor t = x.transpose(0, 2);
  REQUIRE(t.sizes() == Shape{4, 3, 2});
  Tensor n = x.narrow(2, 1, 2);
  REQUIRE(n.sizes() == Shape{2, 3, 2});
  REQUIRE(n.storage() == x.storage());
  REQUIRE(n.contiguous().to_vector<double>()[0] == 1.0);
  Tensor s = x.slice(1, 0, 3, 2);
  REQUIRE(s.sizes() == Shape{2, 2, 4});
  REQUIRE(s.contiguous().to_vector<double>()[4] == 8.0);  // x[0, 2, 0]
  Tensor u = x.unsqueeze(0);
  REQUIRE(u.sizes() == Shape{1, 2, 3, 4});
  REQUIRE(u.squeeze(0).sizes() == Shape{2, 3, 4});
  REQUIRE(zeros({1, 3, 1}).squeeze().sizes() == Shape{3});
  Tensor e = from_vector<double>({1, 2, 3}, {3, 1}).expand({3, 4});
  REQUIRE(e.strides() == Shape{1, 0});
  REQUIRE(e.contiguous().to_vector<double>() == std::vector<double>{1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3});
  REQUIRE(x.view({6, -1}).sizes() == Shape{6, 4});
  REQUIRE_THROWS_WITH(p.view({24}), Catch::Contains("not contiguous"));
  REQUIRE(p.reshape({24}).sizes() == Shape{24});
  REQUIRE_THROWS_WITH(x.view({5, -1}), Catch::Contains("cannot infer"));
  REQUIRE(x.flatten(1).sizes() == Shape{2, 12});
  REQUIRE(x.select(1, 2).sizes() == Shape{2, 4});

  // Writing through a view is visible in the base.
  x.narrow(0, 1, 1).fill_(-1.0);
  auto xv = x.to_vector<double>();
  REQUIRE(xv[11] == 11.0);
  REQUIRE(xv[12] == -1.0);
  REQUIRE(xv[23] == -1.0);
}

TEST_CASE("tensor: copies and dtype conversion") {
  Tensor x = from_vector<double>({1.5, -2.0, 0.0}, {3});
  Tensor c = x.clone();
  REQUIRE(c.storage() != x.storage());
  c.fill_(9.0);
  REQUIRE(x.to_vector<double>()[0] == 1.5);
  REQUIRE(x.to(DType::i64).to_vector<int64_t>() == std::vector<int64_t>{1, -2, 0});
  REQUIRE(x.to(DType::b8).to_vector<uint8_t>() == std::vector<uint8_t>{1, 1, 0});
  Tensor dst = zeros({2, 3}, DType::f64);
  dst.copy_(x);  // broadcasts
  REQUIRE(dst.to_vector<double>() == std::vector<double>{1.5, -2.0, 0.0, 1.5, -2.0, 0.0});
  REQUIRE(x.detach().storage() == x.storage());
}

// Float -> integer conversions saturate (kernels/copy.h): C++ leaves them undefined out of
// range (UBSan found Tensor::to(u8) of -1.0f); the GPU's cvt.rzi saturates, so both agree.
std::vector<double> saturating_inputs() {
  const double nan = std::nan("");
  return {-1.0, 300.0, 255.9, -0.9, 2.5, nan, 1e30, -1e30, 3e9, -3e9, 2147483520.0, -2147483648.0, 9.3e18, -9.3e18};
}
void check_saturating(const std::vector<uint8_t>& u8, const std::vector<int32_t>& i32, const std::vector<int64_t>& i64) {
  CHECK(u8 == std::vector<uint8_t>{0, 255, 255, 0, 2, 0, 255, 0, 255, 0, 255, 0, 255, 0});
  const int32_t imax = 2147483647, imin = -2147483647 - 1;
  CHECK(i32 == std::vector<int32_t>{-1, 300, 255, 0, 2, 0, imax, imin, imax, imin, 2147483520, imin, imax, imin});
  const int64_t lmax = 9223372036854775807LL, lmin = -lmax - 1;
  CHECK(i64 == std::vector<int64_t>{-1, 300, 255, 0, 2, 0, lmax, lmin, 3000000000LL, -3000000000LL, 2147483520LL,
                                    -2147483648LL, lmax, lmin});
}

TEST_CASE("tensor: float to integer conversion saturates (NaN gives 0)") {
  for (DType src : {DType::f64, DType::f32}) {
    Tensor x = from_vector<double>(saturating_inputs(), {14}).to(src);
    INFO((src == DType::f32 ? "from f32" : "from f64"));  // every input is exact in f32
    check_saturating(x.to(DType::u8).to_vector<uint8_t>(), x.to(DType::i32).to_vector<int32_t>(),
                     x.to(DType::i64).to_vector<int64_t>());
  }
  Tensor f = empty({3}, DType::u8);
  f.fill_(-5.0);
  CHECK(f.to_vector<uint8_t>() == std::vector<uint8_t>{0, 0, 0});
}

TEST_CASE("tensor: float to integer conversion saturates on cuda as on cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = from_vector<double>(saturating_inputs(), {14}).to(DType::f32).to(Device::cuda());
  check_saturating(x.to(DType::u8).cpu().to_vector<uint8_t>(), x.to(DType::i32).cpu().to_vector<int32_t>(),
                   x.to(DType::i64).cpu().to_vector<int64_t>());
}

TEST_CASE("tensor: printing is readable") {
  Tensor x = arange(6, DType::f32).reshape({2, 3});
  std::string s = x.to_string();
  REQUIRE(s.find("[[0, 1, 2],") != std::string::npos);
  REQUIRE(s.find("shape=[2, 3]") != std::string::npos);
  REQUIRE(s.find("dtype=f32") != std::string::npos);
  Tensor big = arange(100, DType::i64);
  REQUIRE(big.to_string().find("...") != std::string::npos);
}

TEST_CASE("tensor: cpu allocator counts bytes") {
  size_t before = cpu_alloc::stats().allocated;
  {
    Tensor t = empty({1000}, DType::f64);
    REQUIRE(cpu_alloc::stats().allocated >= before + 8000);
    REQUIRE(reinterpret_cast<uintptr_t>(t.raw_data()) % 64 == 0);
  }
  REQUIRE(cpu_alloc::stats().allocated == before);
}

TEST_CASE("tensor: to(device) round trip", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = arange(10, DType::f32).reshape({2, 5}).transpose(0, 1);
  Tensor g = x.to(Device::cuda());
  REQUIRE(g.is_cuda());
  REQUIRE(g.cpu().to_vector<float>() == x.contiguous().to_vector<float>());
  auto before = cuda::alloc::stats();
  { Tensor a = empty({1 << 20}, TensorOptions(DType::f32).device(Device::cuda())); }
  { Tensor b = empty({1 << 20}, TensorOptions(DType::f32).device(Device::cuda())); }
  auto after = cuda::alloc::stats();
  REQUIRE(after.num_device_allocs - before.num_device_allocs <= 1);  // second reused the cached block
  REQUIRE(after.peak_allocated >= (size_t(4) << 20));
  cuda::alloc::empty_cache();
  REQUIRE(cuda::alloc::stats().reserved == cuda::alloc::stats().allocated);
}
