// 32-bit index maths (kernels/index32.h) and the int32 max-pool argmax (kernels/pool2d.h):
// the size checks at both sides of their limits, and every kernel that has a 32-bit and a
// 64-bit instantiation run both ways (kern::ForceIndex64 selects the 64-bit one) against the CPU.
#include <cstdint>
#include <functional>

#include "bf16_helpers.h"
#include "kernels/index32.h"
#include "kernels/pool2d.h"
#include "test_helpers.h"

using namespace eng;

TEST_CASE("index32: the size check at both sides of the limit") {
  using kern::index32_fits;
  using kern::kIndex32Limit;
  // The limit leaves room for one grid stride past the last element.
  REQUIRE(kIndex32Limit + kern::kMaxLaunchThreads == INT32_MAX);
  REQUIRE(index32_fits(0, 0));
  REQUIRE(index32_fits(kIndex32Limit, kIndex32Limit));
  REQUIRE(!index32_fits(kIndex32Limit + 1, 0));
  REQUIRE(!index32_fits(10, kIndex32Limit + 1));
  REQUIRE(!index32_fits(int64_t(1) << 40, 0));
  REQUIRE(!index32_fits(10, -1));  // a negative stride: never 32-bit
  {
    kern::ForceIndex64 force;
    REQUIRE(!index32_fits(10, 9));
    {
      kern::ForceIndex64 nested;
      REQUIRE(!index32_fits(10, 9));
    }
    REQUIRE(!index32_fits(10, 9));
  }
  REQUIRE(index32_fits(10, 9));
}

TEST_CASE("index32: the largest offset of a strided view") {
  const int64_t sizes[3] = {2, 3, 4}, contiguous[3] = {12, 4, 1}, broadcast[3] = {0, 4, 1};
  REQUIRE(kern::max_strided_offset(3, sizes, contiguous) == 23);
  REQUIRE(kern::max_strided_offset(3, sizes, broadcast) == 11);
  const int64_t transposed[3] = {1, 2, 6};
  REQUIRE(kern::max_strided_offset(3, sizes, transposed) == 1 + 4 + 18);
  const int64_t negative[3] = {12, -4, 1};
  REQUIRE(kern::max_strided_offset(3, sizes, negative) == -1);
  // A 2^31-element reach from a view of few elements (a huge stride) is caught.
  const int64_t big_sizes[2] = {2, 2}, big_strides[2] = {int64_t(1) << 31, 1};
  REQUIRE(!kern::index32_fits(4, kern::max_strided_offset(2, big_sizes, big_strides)));
}

TEST_CASE("max_pool2d: int32 argmax where a plane's indices fit, at both sides of the limit") {
  REQUIRE(kern::pool_argmax_int32(46340, 46340));   // 2,147,395,600 <= 2^31 - 1
  REQUIRE(!kern::pool_argmax_int32(46341, 46341));  // 2,147,488,281 >  2^31 - 1
  REQUIRE(kern::pool_argmax_int32(1, INT32_MAX));
  REQUIRE(!kern::pool_argmax_int32(2, int64_t(1) << 30));
  kern::ForceIndex64 force;
  REQUIRE(!kern::pool_argmax_int32(4, 4));
}

TEST_CASE("max_pool2d: the int32 and int64 argmax CPU kernels agree") {
  kern::Pool2dDims d;
  d.planes = 3, d.in_h = 7, d.in_w = 9, d.kernel_h = d.kernel_w = 3, d.stride_h = d.stride_w = 2;
  d.pad_h = d.pad_w = 1, d.out_h = 4, d.out_w = 5;
  Tensor x = test::random_f32({3, 7, 9}, 5), gy = test::random_f32({3, 4, 5}, 6);
  std::vector<float> y32(60), y64(60), gx32(189), gx64(189);
  std::vector<int32_t> i32(60);
  std::vector<int64_t> i64(60);
  kern::cpu::max_pool2d_forward<float, int32_t>(d, x.data<float>(), y32.data(), i32.data());
  kern::cpu::max_pool2d_forward<float, int64_t>(d, x.data<float>(), y64.data(), i64.data());
  REQUIRE(y32 == y64);
  for (size_t i = 0; i < i32.size(); ++i) REQUIRE(int64_t(i32[i]) == i64[i]);
  kern::cpu::max_pool2d_backward<float, int32_t>(d, i32.data(), gy.data<float>(), gx32.data());
  kern::cpu::max_pool2d_backward<float, int64_t>(d, i64.data(), gy.data<float>(), gx64.data());
  REQUIRE(gx32 == gx64);
}

TEST_CASE("max_pool2d: the front-end gives the same values and gradients with either argmax type") {
  Pool2dParams p;
  p.kernel_h = p.kernel_w = 3, p.stride_h = p.stride_w = 2, p.pad_h = p.pad_w = 1, p.ceil_mode = true;
  Tensor x0 = test::leaf({2, 3, 11, 8}, 7);
  Tensor r = test::leaf({2, 3, 6, 5}, 8).detach();
  auto run = [&]() {
    Tensor x = test::cpu_leaf(x0);
    Tensor y = max_pool2d(x, p);
    sum(mul(y, r)).backward();
    return std::make_pair(y.to_vector<double>(), x.grad().to_vector<double>());
  };
  auto a = run();
  std::pair<std::vector<double>, std::vector<double>> b;
  {
    kern::ForceIndex64 force;
    b = run();
  }
  REQUIRE(a.first == b.first);
  REQUIRE(a.second == b.second);
}

TEST_CASE("max_pool2d: without a backward no argmax is written, same values") {
  kern::Pool2dDims d;
  d.planes = 2, d.in_h = 5, d.in_w = 6, d.kernel_h = d.kernel_w = 2, d.stride_h = d.stride_w = 2;
  d.out_h = 3, d.out_w = 3;
  Tensor x = test::random_f32({2, 5, 6}, 30);
  std::vector<float> y_with(18), y_without(18);
  std::vector<int32_t> idx(18, -7);
  kern::cpu::max_pool2d_forward<float, int32_t>(d, x.data<float>(), y_with.data(), idx.data());
  kern::cpu::max_pool2d_forward<float, int32_t>(d, x.data<float>(), y_without.data(), nullptr);
  REQUIRE(y_with == y_without);
  for (int32_t i : idx) REQUIRE(i >= 0);
  Pool2dParams p;
  Tensor xl = test::leaf({1, 2, 5, 6}, 31);
  Tensor y_grad = max_pool2d(xl, p);
  NoGradGuard ng;
  Tensor y_nograd = max_pool2d(xl, p);
  REQUIRE(!y_nograd.requires_grad());
  REQUIRE(y_nograd.to_vector<double>() == y_grad.to_vector<double>());
}

namespace {

// Runs f (which builds its inputs on a device and returns the tensors to compare) on the CPU,
// on CUDA with the 32-bit kernels, and on CUDA with the 64-bit kernels forced.
void check_both_index_widths(const std::function<std::vector<Tensor>(Device)>& f) {
  std::vector<Tensor> cpu = f(Device::cpu()), g32 = f(Device::cuda()), g64;
  {
    kern::ForceIndex64 force;
    g64 = f(Device::cuda());
  }
  REQUIRE(cpu.size() == g32.size());
  REQUIRE(cpu.size() == g64.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    INFO("result " << i);
    REQUIRE(g32[i].is_cuda());
    REQUIRE(g64[i].is_cuda());
    REQUIRE_CLOSE(g32[i].cpu().to(DType::f64), cpu[i].to(DType::f64), 0, 0);
    REQUIRE_CLOSE(g64[i].cpu().to(DType::f64), cpu[i].to(DType::f64), 0, 0);
  }
}

}  // namespace

TEST_CASE("index32: elementwise kernels, both index widths, cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_both_index_widths([](Device d) {
    Tensor a = test::random_f32({3, 5, 7}, 1).to(d), b = test::random_f32({5, 1}, 2).to(d);
    Tensor c = test::random_f32({3, 5, 7}, 3).to(d);
    Tensor x = test::cuda_leaf(test::random_f32({3, 5, 7}, 4));
    if (!d.is_cuda()) x = test::cpu_leaf(test::random_f32({3, 5, 7}, 4));
    Tensor h = mul_scalar(x, 1.5);
    Tensor s = sigmoid(h);   // unary forward + backward
    relu_(h);                // in place
    Tensor y = add(mul(s, h), add(a, b));  // broadcast binary, flat binary
    sum(mul(y, c)).backward();
    return std::vector<Tensor>{y.detach(), x.grad(), add(a, c), sub(a, b)};
  });
}

TEST_CASE("index32: copy kernels, both index widths, cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_both_index_widths([](Device d) {
    Tensor a = test::random_f32({4, 6, 5}, 11).to(d);
    Tensor t = a.permute({2, 0, 1}).contiguous();                // strided gather
    Tensor cast = a.transpose(0, 2).to(DType::bf16).to(DType::f32);  // cast through a strided view
    Tensor e = test::random_f32({1, 6, 1}, 12).to(d).expand({4, 6, 5}).contiguous();  // stride 0
    Tensor f = full({7, 9}, 2.5, TensorOptions(DType::f32).device(d));  // fill
    Tensor dst = zeros({6, 8}, TensorOptions(DType::f32).device(d));
    dst.slice(1, 0, 8, 2).copy_(a.select(2, 0).transpose(0, 1));  // strided source and destination
    return std::vector<Tensor>{t, cast, e, f, dst};
  });
}

TEST_CASE("index32: max_pool2d kernels, both index widths and argmax types, cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_both_index_widths([](Device d) {
    Pool2dParams p;
    p.kernel_h = p.kernel_w = 3, p.stride_h = p.stride_w = 2, p.pad_h = p.pad_w = 1, p.ceil_mode = true;
    Tensor x0 = test::random_f32({2, 3, 13, 10}, 21);
    Tensor x = d.is_cuda() ? test::cuda_leaf(x0) : test::cpu_leaf(x0);
    Tensor y = max_pool2d(x, p);
    Tensor r = test::random_f32(y.sizes(), 22).to(d);
    sum(mul(y, r)).backward();
    Tensor xb = test::random_bf16({2, 2, 9, 9}, 23).to(d);
    NoGradGuard ng;  // no argmax written
    return std::vector<Tensor>{y.detach(), x.grad(), max_pool2d(xb, p), max_pool2d(x, p)};
  });
}
