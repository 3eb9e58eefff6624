// Convolutions through cuDNN (engine/detail/cudnn_conv.h): every conv shape of the detectors
// against the CPU in double, in FP32, TF32 and BF16, forward and both backward passes; the algorithm
// cache; deterministic mode; the workspace limit; conv2d_relu (cuDNN's fused conv + bias +
// ReLU) and its use by nn::Sequential.
//
// Tolerances are derived, not tuned. A result r = sum_k a_k b_k (K terms) computed with
// operands rounded to p significand bits (relative error u = 2^-p each, so a product is off by
// at most about 2u) and accumulated in FP32 (at most about K * 2^-24 relative, the classic
// gamma_K bound) satisfies
//     |r - r_exact| <= (2u + K 2^-24) * sum_k |a_k b_k|.
// sum_k |a_k b_k| is the same convolution on |a| and |b|, computed here in double. u is 0 for
// FP32 and 2^-11 for TF32 (10 explicit mantissa bits, rounding to nearest). BF16 tensors hold
// bf16 values, whose products are exact in FP32 (u = 0); their outputs are rounded to bf16,
// which adds 2^-8 |exact| (and 2^-8 S where cuDNN rounds the conv before adding the bias).
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "engine/cuda_context.h"
#include "engine/detail/cudnn_conv.h"
#include "engine/detail/op_utils.h"
#include "engine/nn/layers.h"
#include "models/detection_model.h"
#include "models/factories.h"
#include "test_helpers.h"

using namespace eng;

namespace {

enum class Precision { fp32, tf32, bf16 };
const char* precision_name(Precision p) {
  return p == Precision::fp32 ? "fp32" : p == Precision::tf32 ? "tf32" : "bf16";
}
// The operand rounding of each precision: none in FP32; TF32 rounds the float operands to 10
// mantissa bits. BF16 tensors already hold bf16 values (exact products), so u = 0 there and
// the output rounding is what the bound adds (output_u).
double operand_u(Precision p) { return p == Precision::tf32 ? std::ldexp(1.0, -11) : 0.0; }
double output_u(Precision p) { return p == Precision::bf16 ? std::ldexp(1.0, -8) : 0.0; }

// Sets TF32 for the scope and restores FP32 after (tests share the process-wide switch).
struct Tf32Scope {
  explicit Tf32Scope(bool on) { cuda::set_tf32(on); }
  ~Tf32Scope() { cuda::set_tf32(false); }
};
struct DeterministicScope {
  explicit DeterministicScope(bool on) { cuda::set_deterministic(on); }
  ~DeterministicScope() { cuda::set_deterministic(false); }
};

Conv2dParams params_of(const kern::Conv2dDims& d) {
  Conv2dParams p;
  p.stride_h = d.stride_h;
  p.stride_w = d.stride_w;
  p.pad_h = d.pad_h;
  p.pad_w = d.pad_w;
  p.dilation_h = d.dil_h;
  p.dilation_w = d.dil_w;
  return p;
}

std::string dims_str(const kern::Conv2dDims& d) {
  return "x [" + std::to_string(d.N) + ", " + std::to_string(d.C) + ", " + std::to_string(d.H) + ", " +
         std::to_string(d.W) + "] w [" + std::to_string(d.O) + ", " + std::to_string(d.C) + ", " +
         std::to_string(d.kh) + ", " + std::to_string(d.kw) + "] stride " + std::to_string(d.stride_h) + " pad " +
         std::to_string(d.pad_h) + " dil " + std::to_string(d.dil_h);
}

// Every distinct convolution a model runs at `size` (batch set to 1), collected with the conv
// observer during one CPU forward.
std::vector<kern::Conv2dDims> model_conv_shapes(const std::string& arch, int64_t size) {
  manual_seed(3);
  models::ModelConfig c;
  c.arch = arch;
  c.num_classes = 21;
  c.input_size = size;
  std::shared_ptr<models::DetectionModel> m;
  if (arch == "tiny_ssd") m = models::make_tiny_ssd(c);
  else if (arch == "retinanet_resnet50_fpn") m = models::make_retinanet(c);
  else m = models::make_ssd_vgg16(c);
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;
  std::map<Key, kern::Conv2dDims> seen;
  detail::set_conv2d_observer([&](const kern::Conv2dDims& d, DType) {
    kern::Conv2dDims one = d;
    one.N = 1;
    seen[Key{one.C, one.H, one.W, one.O, one.kh, one.kw, one.stride_h, one.pad_h, one.dil_h, one.stride_w}] = one;
  });
  {
    NoGradGuard g;
    m->forward_heads(zeros({1, 3, size, size}));
  }
  detail::set_conv2d_observer(nullptr);
  std::vector<kern::Conv2dDims> out;
  for (auto& kv : seen) out.push_back(kv.second);
  return out;
}

// |actual - exact| <= bound elementwise; "" or the worst element.
std::string within(const Tensor& actual, const Tensor& exact, const Tensor& bound) {
  auto a = actual.to(Device::cpu()).to_vector<double>();
  auto e = exact.to_vector<double>();
  auto b = bound.to_vector<double>();
  if (a.size() != e.size()) return "size mismatch";
  double worst = 0;
  size_t wi = 0;
  bool bad = false;
  for (size_t i = 0; i < a.size(); ++i) {
    const double excess = std::fabs(a[i] - e[i]) - b[i];
    if (!(excess <= 0) && (!bad || excess > worst)) {
      worst = excess;
      wi = i;
      bad = true;
    }
  }
  if (!bad) return "";
  return "element " + std::to_string(wi) + ": got " + std::to_string(a[wi]) + ", exact " + std::to_string(e[wi]) +
         ", bound " + std::to_string(b[wi]);
}

// Bound tensor (2u + K 2^-24) * abs_sum + a floor for exact zeros; for a rounded (bf16)
// output, + out_u (|exact| + abs_sum) (its one rounding, plus the first rounding of cuDNN's
// conv before the bias add, relative to at most abs_sum).
Tensor bound_of(const Tensor& abs_sum, double u, int64_t terms, const Tensor& exact = Tensor(), double out_u = 0) {
  NoGradGuard g;
  Tensor b = add_scalar(abs_sum * (2.0 * u + static_cast<double>(terms) * std::ldexp(1.0, -24)), 1e-30);
  if (out_u > 0) b = add(b, (abs(exact) + abs_sum) * out_u);
  return b;
}

// One convolution on CUDA (cuDNN) in precision p against double on the CPU: y, dx, dw, db.
void check_against_double(const kern::Conv2dDims& d, Precision prec, uint64_t seed) {
  INFO(dims_str(d) << " " << precision_name(prec));
  const Conv2dParams p = params_of(d);
  const Tensor x64 = test::leaf({d.N, d.C, d.H, d.W}, seed);
  const Tensor w64 = test::leaf({d.O, d.C, d.kh, d.kw}, seed + 1);
  const Tensor b64 = test::leaf({d.O}, seed + 2);
  Tensor dy64;
  {
    NoGradGuard g;
    dy64 = test::leaf({d.N, d.O, d.Ho, d.Wo}, seed + 3).detach();
  }
  // The operands the device sees (f32, or bf16 tensors), and their exact (double) result.
  const DType dt = prec == Precision::bf16 ? DType::bf16 : DType::f32;
  const Tensor xf = x64.detach().to(dt), wf = w64.detach().to(dt), bf = b64.detach().to(dt);
  const Tensor xe = test::cpu_leaf(xf.to(DType::f64)), we = test::cpu_leaf(wf.to(DType::f64)),
               be = test::cpu_leaf(bf.to(DType::f64));
  const Tensor dye = dy64.to(dt).to(DType::f64);
  Tensor ye = conv2d(xe, we, be, p);
  ye.backward(dye);
  // sum |a b| for each output: the same convolutions on absolute values.
  Tensor ax = test::cpu_leaf(abs(xe.detach())), aw = test::cpu_leaf(abs(we.detach()));
  Tensor ay = conv2d(ax, abs(we.detach()), Tensor(), p);  // for y
  Tensor ax2 = test::cpu_leaf(xe.detach());
  conv2d(ax2, abs(we.detach()), Tensor(), p).backward(abs(dye));  // ax2.grad: sum |dy w| per x
  conv2d(abs(xe.detach()), aw, Tensor(), p).backward(abs(dye));   // aw.grad: sum |dy x| per w
  Tensor adb = sum(abs(dye), {0, 2, 3});

  Tf32Scope tf32(prec == Precision::tf32);
  Tensor xc = test::cuda_leaf(xf), wc = test::cuda_leaf(wf), bc = test::cuda_leaf(bf);
  Tensor yc = conv2d(xc, wc, bc, p);
  yc.backward(dye.to(dt).cuda());
  REQUIRE(yc.dtype() == dt);
  const double u = operand_u(prec), ou = output_u(prec);
  const int64_t K = d.C * d.kh * d.kw;
  {
    INFO("forward");
    // The bias adds one more exactly-representable term.
    const std::string m = within(yc, ye.detach(), bound_of(add(ay, abs(be.detach()).view({1, d.O, 1, 1})), u, K + 1,
                                                                       ye.detach(), ou));
    INFO(m);
    REQUIRE(m.empty());
  }
  {
    INFO("backward data");
    const std::string m = within(xc.grad(), xe.grad(), bound_of(ax2.grad(), u, d.O * d.kh * d.kw, xe.grad(), ou));
    INFO(m);
    REQUIRE(m.empty());
  }
  {
    INFO("backward filter");
    const std::string m = within(wc.grad(), we.grad(), bound_of(aw.grad(), u, d.N * d.Ho * d.Wo, we.grad(), ou));
    INFO(m);
    REQUIRE(m.empty());
  }
  {
    INFO("backward bias");
    const std::string m = within(bc.grad(), be.grad(), bound_of(adb, 0.0, d.N * d.Ho * d.Wo, be.grad(), ou));
    INFO(m);
    REQUIRE(m.empty());
  }
  // The precision really ran: tensor-core math exactly in TF32 and BF16.
  for (auto dir : {cuda::cudnn::Direction::forward, cuda::cudnn::Direction::backward_data,
                   cuda::cudnn::Direction::backward_filter}) {
    const auto c = cuda::cudnn::chosen(d, dt, dir);
    REQUIRE(c.found);
    CHECK(c.tensor_op == (prec != Precision::fp32));
  }
}

void check_model_shapes(const std::string& arch, int64_t size, int64_t batch) {
  const auto shapes = model_conv_shapes(arch, size);
  REQUIRE(!shapes.empty());
  uint64_t seed = 100;
  int cudnn_shapes = 0;
  for (kern::Conv2dDims d : shapes) {
    d.N = batch;
    if (d.dil_h > 1 || d.dil_w > 1) continue;  // dilated convs run on our implicit GEMM
    ++cudnn_shapes;
    for (Precision p : {Precision::fp32, Precision::tf32, Precision::bf16}) check_against_double(d, p, seed += 10);
  }
  INFO(arch << ": " << shapes.size() << " distinct conv shapes, " << cudnn_shapes << " through cuDNN");
  CHECK(cudnn_shapes > 0);
}

}  // namespace

TEST_CASE("conv2d (cuDNN): every conv shape of tiny_ssd matches double in fp32, tf32 and bf16", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_model_shapes("tiny_ssd", 256, 2);
}

TEST_CASE("conv2d (cuDNN): every conv shape of ssd300_vgg16 matches double in fp32, tf32 and bf16", "[cuda][slow]") {
  REQUIRE_CUDA_OR_SKIP();
  check_model_shapes("ssd300_vgg16", 300, 1);
}

TEST_CASE("conv2d (cuDNN): every conv shape of ssd512_vgg16 matches double in fp32, tf32 and bf16", "[cuda][slow]") {
  REQUIRE_CUDA_OR_SKIP();
  check_model_shapes("ssd512_vgg16", 512, 1);
}

// RetinaNet at 256 instead of 800: the same channel counts, kernels and strides (so the same
// cuDNN configurations); only the spatial sizes shrink, to keep the emulated run short.
TEST_CASE("conv2d (cuDNN): every conv shape of retinanet_resnet50_fpn matches double in fp32, tf32 and bf16",
          "[cuda][slow]") {
  REQUIRE_CUDA_OR_SKIP();
  check_model_shapes("retinanet_resnet50_fpn", 256, 1);
}

TEST_CASE("conv2d (cuDNN): odd shapes, strides and 1x1 match double", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  auto dims = [](int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw, int64_t s,
                 int64_t pad) {
    kern::Conv2dDims d;
    d.N = N, d.C = C, d.H = H, d.W = W, d.O = O, d.kh = kh, d.kw = kw;
    d.stride_h = d.stride_w = s;
    d.pad_h = d.pad_w = pad;
    d.Ho = kern::conv2d_output_size(H, kh, s, pad, 1);
    d.Wo = kern::conv2d_output_size(W, kw, s, pad, 1);
    return d;
  };
  for (const auto& d : {dims(3, 5, 7, 9, 6, 3, 3, 1, 1), dims(2, 4, 11, 6, 3, 3, 2, 2, 0), dims(2, 7, 5, 5, 9, 1, 1, 1, 0),
                        dims(1, 3, 13, 13, 4, 5, 5, 2, 2)})
    for (Precision p : {Precision::fp32, Precision::tf32, Precision::bf16}) check_against_double(d, p, 7);
}

TEST_CASE("conv2d (cuDNN): tf32 rounds the operands, fp32 does not", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // 1 + 2^-13 is exact in FP32 and rounds to 1 in TF32: a 1x1 conv of ones by it shows which.
  const float v = 1.0f + std::ldexp(1.0f, -13);
  Tensor x = full({1, 1, 2, 2}, v).cuda(), w = ones({1, 1, 1, 1}).cuda();
  {
    Tf32Scope s(false);
    auto y = conv2d(x, w, Tensor(), Conv2dParams{}).to_vector<float>();
    for (float e : y) CHECK(e == v);
  }
  {
    Tf32Scope s(true);
    auto y = conv2d(x, w, Tensor(), Conv2dParams{}).to_vector<float>();
    for (float e : y) CHECK(e == 1.0f);
  }
}

TEST_CASE("conv2d (cuDNN): algorithms are found once per shape, precision and mode", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  cuda::cudnn::clear_cache();
  const size_t before = cuda::cudnn::cache_stats().find_calls;
  Tensor x = test::cuda_leaf(test::random_f32({2, 3, 9, 9}, 1)), w = test::cuda_leaf(test::random_f32({4, 3, 3, 3}, 2));
  const Conv2dParams p = Conv2dParams::square(1, 1);
  for (int i = 0; i < 3; ++i) {
    conv2d(x, w, Tensor(), p).backward(ones({2, 4, 9, 9}).cuda());
  }
  // forward, backward data, backward filter: one search each, however many calls.
  CHECK(cuda::cudnn::cache_stats().find_calls - before == 3);
  CHECK(cuda::cudnn::cache_stats().keys == 1);
  {
    Tf32Scope s(true);  // another math mode is another key
    conv2d(x, w, Tensor(), p);
  }
  CHECK(cuda::cudnn::cache_stats().find_calls - before == 4);
  CHECK(cuda::cudnn::cache_stats().keys == 2);
  kern::Conv2dDims d;
  d.N = 2, d.C = 3, d.H = 9, d.W = 9, d.O = 4, d.kh = 3, d.kw = 3, d.pad_h = d.pad_w = 1, d.Ho = 9, d.Wo = 9;
  const auto c = cuda::cudnn::chosen(d, DType::f32, cuda::cudnn::Direction::forward);
  REQUIRE(c.found);
  CHECK(cuda::cudnn::algo_name(cuda::cudnn::Direction::forward, c.algo) != "?");
}

TEST_CASE("conv2d (cuDNN): deterministic mode picks deterministic algorithms, bit-identical gradients",
          "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  DeterministicScope det(true);
  cuda::cudnn::clear_cache();
  kern::Conv2dDims d;
  d.N = 4, d.C = 6, d.H = 10, d.W = 10, d.O = 5, d.kh = 3, d.kw = 3, d.pad_h = d.pad_w = 1, d.Ho = 10, d.Wo = 10;
  const Tensor xv = test::random_f32({4, 6, 10, 10}, 5), wv = test::random_f32({5, 6, 3, 3}, 6);
  const Tensor dy = test::random_f32({4, 5, 10, 10}, 7).cuda();
  std::vector<float> gx[2], gw[2];
  for (int run = 0; run < 2; ++run) {
    Tensor x = test::cuda_leaf(xv), w = test::cuda_leaf(wv);
    conv2d(x, w, Tensor(), Conv2dParams::square(1, 1)).backward(dy);
    gx[run] = x.grad().to_vector<float>();
    gw[run] = w.grad().to_vector<float>();
  }
  CHECK(gx[0] == gx[1]);
  CHECK(gw[0] == gw[1]);
  for (auto dir : {cuda::cudnn::Direction::forward, cuda::cudnn::Direction::backward_data,
                   cuda::cudnn::Direction::backward_filter}) {
    const auto c = cuda::cudnn::chosen(d, DType::f32, dir);
    REQUIRE(c.found);
    CHECK(c.deterministic);
  }
}

TEST_CASE("conv2d (cuDNN): no algorithm needing more workspace than the limit is chosen", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const size_t old = cuda::cudnn::workspace_limit();
  cuda::cudnn::set_workspace_limit(0);
  cuda::cudnn::clear_cache();
  Tensor x = test::cuda_leaf(test::random_f32({2, 4, 8, 8}, 1)), w = test::cuda_leaf(test::random_f32({3, 4, 3, 3}, 2));
  conv2d(x, w, Tensor(), Conv2dParams::square(2, 1)).backward(ones({2, 3, 4, 4}).cuda());
  kern::Conv2dDims d;
  d.N = 2, d.C = 4, d.H = 8, d.W = 8, d.O = 3, d.kh = 3, d.kw = 3, d.stride_h = d.stride_w = 2;
  d.pad_h = d.pad_w = 1, d.Ho = 4, d.Wo = 4;
  for (auto dir : {cuda::cudnn::Direction::forward, cuda::cudnn::Direction::backward_data,
                   cuda::cudnn::Direction::backward_filter}) {
    const auto c = cuda::cudnn::chosen(d, DType::f32, dir);
    REQUIRE(c.found);
    CHECK(c.workspace == 0);
  }
  cuda::cudnn::set_workspace_limit(old);
  cuda::cudnn::clear_cache();
}

TEST_CASE("conv2d_relu: gradcheck", "[gradcheck]") {
  Tensor x = test::leaf({2, 3, 6, 5}, 1), w = test::leaf({4, 3, 3, 3}, 2), b = test::leaf({4}, 3);
  REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return conv2d_relu(in[0], in[1], in[2], Conv2dParams::square(1, 1)); },
                    {x, w, b});
}

TEST_CASE("conv2d_relu: equals relu(conv2d) with its gradients, on the cpu", "[conv2d]") {
  Tensor x = test::leaf({2, 3, 7, 7}, 4), w = test::leaf({5, 3, 3, 3}, 5), b = test::leaf({5}, 6);
  Tensor x2 = test::cpu_leaf(x), w2 = test::cpu_leaf(w), b2 = test::cpu_leaf(b);
  const Conv2dParams p = Conv2dParams::square(2, 1);
  Tensor y = conv2d_relu(x, w, b, p);
  Tensor y2 = relu(conv2d(x2, w2, b2, p));
  REQUIRE(y.grad_fn()->name() == "Conv2dReluBackward");
  REQUIRE(test::compare(y, y2, 0, 0).empty());
  Tensor g = test::leaf(y.sizes(), 9).detach();
  y.backward(g);
  y2.backward(g);
  CHECK(test::compare(x.grad(), x2.grad(), 1e-14, 1e-12).empty());
  CHECK(test::compare(w.grad(), w2.grad(), 1e-14, 1e-12).empty());
  CHECK(test::compare(b.grad(), b2.grad(), 1e-14, 1e-12).empty());
}

TEST_CASE("conv2d_relu: cuda (cuDNN conv + bias + ReLU in one call) matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (bool with_bias : {true, false}) {
    INFO("bias " << with_bias);
    Tensor xv = test::random_f32({2, 4, 9, 8}, 11), wv = test::random_f32({6, 4, 3, 3}, 12),
           bv = test::random_f32({6}, 13);
    Tensor xc = test::cuda_leaf(xv), wc = test::cuda_leaf(wv), bc = with_bias ? test::cuda_leaf(bv) : Tensor();
    Tensor xr = test::cpu_leaf(xv), wr = test::cpu_leaf(wv), br = with_bias ? test::cpu_leaf(bv) : Tensor();
    const Conv2dParams p = Conv2dParams::square(1, 1);
    Tensor yc = conv2d_relu(xc, wc, bc, p), yr = conv2d_relu(xr, wr, br, p);
    REQUIRE(test::compare(yc.cpu(), yr, test::kGemmAtol, test::kGemmRtol).empty());
    Tensor g = test::random_f32(yr.sizes(), 14);
    yc.backward(g.cuda());
    yr.backward(g);
    CHECK(test::compare(xc.grad().cpu(), xr.grad(), test::kGemmAtol, test::kGemmRtol).empty());
    CHECK(test::compare(wc.grad().cpu(), wr.grad(), test::kGemmAtol, test::kGemmRtol).empty());
    if (with_bias) CHECK(test::compare(bc.grad().cpu(), br.grad(), test::kGemmAtol, test::kGemmRtol).empty());
  }
}

TEST_CASE("nn::Sequential: a Conv2d followed by ReLU runs as conv2d_relu", "[conv2d]") {
  manual_seed(1);
  auto seq = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv2d>(3, 4, 3, 1, 1), std::make_shared<nn::ReLU>(), std::make_shared<nn::Conv2d>(4, 2, 1)});
  auto* c0 = dynamic_cast<nn::Conv2d*>((*seq)[0].get());
  auto* c2 = dynamic_cast<nn::Conv2d*>((*seq)[2].get());
  Tensor x = test::random_f32({2, 3, 6, 6}, 3);
  Tensor y = seq->forward(x);
  Tensor ref = conv2d(relu(conv2d(x, c0->weight, c0->bias, c0->params)), c2->weight, c2->bias, c2->params);
  CHECK(test::compare(y, ref, 0, 0).empty());
  // The second conv's input is the fused op's output.
  REQUIRE(y.grad_fn());
  bool fused = false;
  for (const auto& e : y.grad_fn()->next_edges())
    if (e.fn && e.fn->name() == "Conv2dReluBackward") fused = true;
  CHECK(fused);
}

// What cuDNN rejects is one eng::Error naming the direction, the shapes and the dtype, never a
// crash (the front-end's own checks catch these before cuDNN for eng::conv2d; here the cuDNN
// layer is called directly with dims it must refuse).
TEST_CASE("conv2d (cuDNN): a convolution cuDNN rejects is one error naming shapes and dtype", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = test::random_f32({1, 2, 6, 6}, 1).cuda(), w = test::random_f32({3, 2, 3, 3}, 2).cuda();
  Tensor y = zeros({1, 3, 4, 4}).cuda();
  kern::Conv2dDims d;
  d.N = 1, d.C = 2, d.H = 6, d.W = 6, d.O = 3, d.kh = 3, d.kw = 3, d.Ho = 4, d.Wo = 4;
  // An output size that is not the convolution's (6 - 3 + 1 = 4 is; 5 is not).
  kern::Conv2dDims wrong = d;
  wrong.Ho = 5;
  REQUIRE_THROWS_WITH(cuda::cudnn::conv_forward(wrong, DType::f32, x.raw_data(), w.raw_data(), nullptr, y.raw_data(), false),
                      Catch::Contains("conv2d (cuDNN)") && Catch::Contains("x [1, 2, 6, 6] w [3, 2, 3, 3]") &&
                          Catch::Contains("f32"));
  // A zero-channel input: cuDNN refuses the descriptor.
  kern::Conv2dDims empty_c = d;
  empty_c.C = 0;
  REQUIRE_THROWS_WITH(cuda::cudnn::conv_forward(empty_c, DType::f32, x.raw_data(), w.raw_data(), nullptr, y.raw_data(),
                                                false),
                      Catch::Contains("conv2d (cuDNN") && Catch::Contains("x [1, 0, 6, 6]"));
  // A dtype cuDNN is not given: named too.
  REQUIRE_THROWS_WITH(cuda::cudnn::conv_forward(d, DType::i64, x.raw_data(), w.raw_data(), nullptr, y.raw_data(), false),
                      Catch::Contains("conv2d (cuDNN)") && Catch::Contains("i64"));
  // The right dims still work afterwards.
  REQUIRE_NOTHROW(cuda::cudnn::conv_forward(d, DType::f32, x.raw_data(), w.raw_data(), nullptr, y.raw_data(), false));
}
