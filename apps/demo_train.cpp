// demo_train: the engine's main job until ssd_train exists. Trains a small conv net
// (conv-bn-relu-pool x2 + linear) on generated shape images and reports accuracy.
//   demo_train [--device cpu|cuda] [--iters N] [--batch N] [--lr X] [--seed N]
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "common/cli_rules.h"
#include "engine/cpu_threads.h"
#include "engine/allocator.h"
#include "models/shapes_demo.h"

int main(int argc, char** argv) {
  // OpenMP threads and their waiting, OpenBLAS single-threaded (engine/cpu_threads.h).
  if (!eng::init_cpu_threads(argc, argv, "demo_train")) return 1;
  CLI::App app{"Train a small conv net on generated shapes (engine demo)"};
  std::string device = "cpu";
  models::ShapesDemoConfig cfg;
  app.add_option("--device", device, "cpu or cuda")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--iters", cfg.iters, "training iterations")->capture_default_str();
  app.add_option("--batch", cfg.batch, "batch size")->capture_default_str();
  app.add_option("--lr", cfg.lr, "peak learning rate")->capture_default_str();
  app.add_option("--seed", cfg.seed, "random seed")->capture_default_str();
  // Every number checked on its text before conversion (common/config_check.h): CLI::Range
  // let NaN through (every comparison with NaN is false).
  app::apply_rules(app, app::demo_rules());
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "%s\n", app::cli_error_line("demo_train", e).c_str());
    return 1;
  }
  try {
    cfg.device = eng::parse_device(device);
    if (cfg.device.is_cuda() && !eng::cuda::available()) {
      std::fprintf(stderr, "demo_train: --device cuda asked for, but no CUDA device is available\n");
      return 1;
    }
    std::printf("demo_train: %lld iterations, batch %lld, lr %g, device %s\n", (long long)cfg.iters,
                (long long)cfg.batch, cfg.lr, cfg.device.str().c_str());
    auto r = models::train_shapes_demo(cfg, [](int64_t it, double loss, double lr) {
      std::printf("iter %5lld  loss %.4f  lr %.4f\n", (long long)it, loss, lr);
      std::fflush(stdout);
    });
    std::printf("parameters: %lld\n", (long long)r.parameters);
    std::printf("train accuracy: %.2f%%  test accuracy: %.2f%%  (%.1f s, %.0f img/s)\n", 100 * r.train_accuracy,
                100 * r.test_accuracy, r.seconds, cfg.iters * cfg.batch / r.seconds);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "demo_train: %s\n", e.what());
    return 1;
  }
}
