// bench_kernels rows: 3x3 stride-1 convolutions on the CPU, im2col + GEMM against Winograd
// F(4x4, 3x3) (kernels/conv2d_winograd.h), both through eng::conv2d with the path forced by
// ENGINE_CPU_CONV (set and restored around each row), f32, batch 1 (one row at batch 4):
//   conv3x3_fwd_im2col / conv3x3_fwd_winograd   eng::conv2d forward with bias, no grad
//   conv3x3_bwd_im2col / conv3x3_bwd_winograd   forward + backward (gx, gw, gb) of sum(y * gy)
// Group conv3x3: six layers (VGG16 at SSD300, ResNet-50 at 800, tiny_ssd at 256).
// Group conv3x3_layers: every distinct stride-1 3x3 layer of VGG16 at SSD300 (conv1_1 ..
// conv5_3), ResNet-50's stride-1 3x3 layers at 512 and 800, tiny_ssd's at 256 (forward and
// forward + backward), the measurements behind kern::cpu::conv2d_winograd_preferred; at
// most 3 reps per row (about a minute), alone with --only conv3x3_layers.
// Each Winograd row is checked against the im2col result first (forward: y; fwd+bwd: the
// weight gradient): max |a - b| <= 1e-4 max |b| (max_err <= 1), else the row is invalid.
// tools/bench_torch.py has the PyTorch (oneDNN) rows of the same shapes, same names with _torch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bench {
using namespace eng;
namespace {

struct Layer {
  const char* name;
  int64_t C, O, H;  // square input, pad 1
  int64_t N = 1;
};

// Sets ENGINE_CPU_CONV for one scope (restores "unset").
struct PathGuard {
  explicit PathGuard(const char* mode) { setenv("ENGINE_CPU_CONV", mode, 1); }
  ~PathGuard() { unsetenv("ENGINE_CPU_CONV"); }
};

// max |a - b| / max |b|.
double rel_err(const Tensor& a, const Tensor& b) {
  const std::vector<float> av = a.to_vector<float>(), bv = b.to_vector<float>();
  double e = 0, m = 0;
  for (size_t i = 0; i < av.size(); ++i) {
    const double d = std::fabs(double(av[i]) - bv[i]);
    if (!(d <= e)) e = d;
    m = std::max(m, std::fabs(double(bv[i])));
  }
  return m > 0 ? e / m : e;
}

void bench_layer(const Options& o, std::vector<Row>& rows, const Layer& L, bool backward) {
  const int64_t N = L.N;
  Generator gen(7);
  Tensor x = rand({N, L.C, L.H, L.H}, gen), w = randn({L.O, L.C, 3, 3}, gen) * std::sqrt(2.0 / (L.C * 9));
  Tensor b = randn({L.O}, gen) * 0.1, gy = randn({N, L.O, L.H, L.H}, gen);
  const Conv2dParams p = Conv2dParams::square(1, 1, 1);
  const double flops = 2.0 * N * L.O * L.H * L.H * L.C * 9 * (backward ? 3 : 1);
  char shape[160];
  std::snprintf(shape, sizeof shape, "%s N=%lld %lld->%lld %lldx%lld k3 p1 f32%s", L.name, (long long)N,
                (long long)L.C, (long long)L.O, (long long)L.H, (long long)L.H, backward ? ", fwd+bwd" : "");
  Tensor ref;
  for (const char* mode : {"im2col", "winograd"}) {
    PathGuard guard(mode);
    std::function<void()> fn;
    Tensor out;
    if (!backward) {
      fn = [&] {
        NoGradGuard ng;
        out = conv2d(x, w, b, p);
      };
    } else {
      fn = [&] {
        Tensor xl = x.detach(), wl = w.detach(), bl = b.detach();
        xl.set_requires_grad(true), wl.set_requires_grad(true), bl.set_requires_grad(true);
        conv2d(xl, wl, bl, p).backward(gy);
        out = wl.grad();  // the gradient checked below (gx and gb are computed too)
      };
    }
    fn();
    Row r;
    double err = 0;
    if (ref.defined()) err = rel_err(out, ref);
    else ref = out;
    r = time_it(o, false, fn);
    r.name = std::string(backward ? "conv3x3_bwd_" : "conv3x3_fwd_") + mode;
    r.device = "cpu", r.shape = shape, r.flops = flops;
    r.max_err = err / 1e-4;  // <= 1: within 1e-4 of the im2col result, relative to its max
    r.valid = r.max_err <= 1.0;
    rows.push_back(r);
  }
}

const Layer kFew[] = {
    {"vgg conv2_2", 128, 128, 150}, {"vgg conv4_3", 512, 512, 38}, {"vgg conv5_3", 512, 512, 19},
    {"r50@800 layer1", 64, 64, 200}, {"tiny_ssd blk1", 64, 128, 32},  {"vgg conv5_3", 512, 512, 19, 4},
};

const Layer kAll[] = {
    {"vgg conv1_1", 3, 64, 300},      {"vgg conv1_2", 64, 64, 300},      {"vgg conv2_1", 64, 128, 150},
    {"vgg conv2_2", 128, 128, 150},   {"vgg conv3_1", 128, 256, 75},     {"vgg conv3_2/3", 256, 256, 75},
    {"vgg conv4_1", 256, 512, 38},    {"vgg conv4_2/3", 512, 512, 38},   {"vgg conv5_x", 512, 512, 19},
    {"r50@512 layer1", 64, 64, 128},  {"r50@512 layer2", 128, 128, 64},  {"r50@512 layer3", 256, 256, 32},
    {"r50@512 layer4", 512, 512, 16}, {"r50@800 layer1", 64, 64, 200},   {"r50@800 layer2", 128, 128, 100},
    {"r50@800 layer3", 256, 256, 50}, {"r50@800 layer4", 512, 512, 25},  {"tiny conv0a", 3, 16, 256},
    {"tiny conv0b", 16, 16, 256},     {"tiny conv1a", 16, 32, 128},      {"tiny conv1b", 32, 32, 128},
    {"tiny conv2a", 32, 64, 64},      {"tiny conv2b", 64, 64, 64},       {"tiny blk1a", 64, 128, 32},
    {"tiny blk1b", 128, 128, 32},     {"tiny blk2", 128, 128, 16},       {"tiny blk3", 128, 128, 8},
    {"tiny head0 cls", 64, 8, 32},    {"tiny head1 cls", 128, 8, 16},    {"tiny head3", 128, 16, 4},
};

void bench_few(const Options& o, std::vector<Row>& rows) {
  if (!o.cpu) return;
  for (const Layer& L : kFew) bench_layer(o, rows, L, false);
  for (const Layer& L : kFew) bench_layer(o, rows, L, true);
}

// At most 3 reps after 1 warm-up per row (about a minute in all on 2 cores), so that a plain
// `bench_kernels` run stays short.
void bench_all(const Options& o, std::vector<Row>& rows) {
  if (!o.cpu) return;
  Options few = o;
  few.reps = std::min(o.reps, 3);
  few.warmup = std::min(o.warmup, 1);
  for (const Layer& L : kAll) {
    bench_layer(few, rows, L, false);
    bench_layer(few, rows, L, true);
  }
}

const RegisterRows kRows(11, {
    {"conv3x3", "CPU 3x3 stride-1 conv, im2col vs Winograd F(4x4,3x3), forward and fwd+bwd, five layers", bench_few},
    {"conv3x3_layers",
     "CPU 3x3 stride-1 conv, im2col vs Winograd, every VGG16/ResNet-50/tiny_ssd layer (the cost rule's table; long)",
     bench_all},
});

}  // namespace
}  // namespace bench
